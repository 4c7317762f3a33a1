"""How the offline teacher reads the scene descriptions: which it may repeat (spelling, a
missing article), which agree (the descriptions' votes, the annotated objects, the count of
people), who the commentary is for, and pronouns that follow the noun. Real COCO-MINI
descriptions where they show it, constructed ones for the rules themselves."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from tests.test_pose import FRONT, H, W, person

from llava_pose.coco import load_split
from llava_pose.records import ImageContext, Obj
from llava_pose.teachers import wording
from llava_pose.teachers.captions import (
    agree,
    known_word,
    normalise,
    pronouns_for,
    read_captions,
)


@pytest.fixture(scope="module")
def by_id(coco_mini: Path) -> dict[int, ImageContext]:
    return {
        c.image_id: c
        for split in ("train2017", "val2017")
        for c in load_split(coco_mini, split, human_only=False, check_images=False)
    }


def ctx(*captions: str, persons: int = 1, objects: tuple[Obj, ...] = ()) -> ImageContext:
    return ImageContext(
        image_id=1,
        image="x.jpg",
        width=W,
        height=H,
        captions=captions,
        objects=objects,
        persons=tuple(person(FRONT) for _ in range(persons)),
    )


def test_known_words_come_from_the_word_list_and_the_extra_words() -> None:
    assert all(known_word(w) for w in ("while", "standing", "toothbrush", "grey", "colour"))
    assert known_word("snowboarder") and known_word("frisbee")  # extra_words
    assert not any(known_word(w) for w in ("whiile", "standihng", "sittingon", "douchey"))


def test_normalise_rejects_typos_and_gives_a_bare_noun_its_article() -> None:
    assert normalise("a woman holding an umbrella whiile standing by a counter") is None
    assert normalise("some people standihng next to a green box") is None
    # a word another description of the image uses is accepted (a brand, a name)
    assert normalise("A man playing Wii in a dirty room.") == "a man playing Wii in a dirty room"
    assert normalise("A dog that looks like Lassy.", lambda w: w == "lassy") is not None
    assert (
        normalise("Baby brushing teeth while sitting on a toilet.")
        == "a baby brushing teeth while sitting on a toilet"
    )
    assert normalise("Young toddler sitting on a toilet.") == "a young toddler sitting on a toilet"
    assert normalise("Large group of people in line.") == "a large group of people in line"
    assert normalise("Donuts traveling down a belt.", nouns=["donut"]) == (
        "donuts traveling down a belt"
    )
    assert normalise("People looking at a stop light.") == "people looking at a stop light"
    # no article can be placed: not repeated
    assert normalise("Stacked pictures of the same person in a hat.") is None
    assert normalise("A clock on a building that says 8:25.") is None


def test_real_typos_are_never_repeated(by_id: dict[int, ImageContext]) -> None:
    for image_id, typo in ((227000, "standihng"), (181303, "douchey"), (434204, "fut")):
        assert any(typo in c for c in by_id[image_id].captions)
        texts = read_captions(by_id[image_id]).texts
        assert texts and not any(typo in t for t in texts), texts


def test_descriptions_vote_and_the_outvoted_are_dropped(by_id: dict[int, ImageContext]) -> None:
    # val 117645: three say snowboard, "a man on skis" and "a couple skiers" disagree (and one
    # person is annotated, not a couple)
    texts = read_captions(by_id[117645]).texts
    assert texts and all("snowboard" in t for t in texts)
    # train 183872: three say skiing, two snowboard, and a snowboard is annotated: it wins
    texts = read_captions(by_id[183872]).texts
    assert texts and not any("skiing" in t for t in texts)
    # val 501368: two say a woman, one a child; a lone person is either, not both
    texts = read_captions(by_id[501368]).texts
    assert any("woman" in t for t in texts) and not any("child" in t for t in texts)
    # a tie: neither side is repeated, the neutral one is
    tie = read_captions(ctx("A man on a bench.", "A woman on a bench.", "A person on a bench."))
    assert tie.texts == ("a person on a bench",)


def test_the_count_in_a_description_must_match_the_people(by_id: dict[int, ImageContext]) -> None:
    # val 183709: twelve people annotated; "four people wait to cross" is not repeated
    texts = read_captions(by_id[183709]).texts
    assert texts and not any(t.startswith("four") for t in texts)
    two = ctx("Two men riding waves.", "Three men riding waves.", persons=2)
    assert read_captions(two).texts == ("two men riding waves",)


def test_a_description_the_keypoints_contradict_is_dropped() -> None:
    c = ctx("A man on a bench by the road.", "A man by the road with a bag.")
    assert len(read_captions(c).texts) == 2
    assert read_captions(c, contradicted=lambda t: "bench" in t).texts == (
        "a man by the road with a bag",
    )


def test_who_the_commentary_is_for(by_id: dict[int, ImageContext]) -> None:
    assert read_captions(by_id[181303]).subjects == {"child"}  # a boy with a kite
    assert read_captions(by_id[109313]).subjects == {"adult"}
    toddler = ctx("A toddler sitting on a toilet.", "A baby brushing teeth.", "A young boy sits.")
    assert read_captions(toddler).subjects == {"baby"}
    # with several people every age mentioned counts
    family = ctx("A man and his daughter at a table.", "Two people eat.", persons=2)
    assert read_captions(family).subjects == {"adult", "child"}
    assert read_captions(ctx("A person on a bench in a park.")).subjects == frozenset()


def test_pronouns_follow_the_noun_and_agree_rewrites_a_description() -> None:
    assert pronouns_for("man") is wording.HE and pronouns_for("girl") is wording.SHE
    assert pronouns_for("toddler") is wording.THEY and pronouns_for("person") is wording.THEY
    assert agree("brushing his teeth", wording.THEY) == "brushing their teeth"
    assert agree("drying her hair with a towel", wording.HE) == "drying his hair with a towel"
    assert agree("looking at himself in the mirror", wording.THEY) == (
        "looking at themselves in the mirror"
    )
    assert agree("hugging her", wording.THEY) == "hugging them"
    assert agree("riding his board", wording.HE) == "riding his board"
    assert agree("holding a sign as he walks", wording.THEY) is None  # "they walks"


def test_an_annotated_object_outweighs_the_descriptions() -> None:
    board = Obj("snowboard", (0.4, 0.8, 0.6, 0.9))
    c = ctx(
        "A person skiing down a hill.",
        "A person skiing on fresh snow.",
        "A snowboarder going down a hill.",
        objects=(board,),
    )
    assert read_captions(c).texts == ("a snowboarder going down a hill",)
    plain = msgspec.structs.replace(c, objects=())  # without the object, "skiing" wins
    texts = read_captions(plain).texts
    assert texts and all("skiing" in t for t in texts)
