"""Rendering contexts for the teacher, and parsing them back to the same numbers."""

from __future__ import annotations

import msgspec
import pytest
from tests.test_pose import FRONT, H, W, moved, person, without

from llava_pose.coco import load_split
from llava_pose.context import (
    parse_compact,
    parse_paper,
    pose_cues,
    render_compact,
    render_paper,
)
from llava_pose.records import ImageContext, Obj, Person

HIDDEN = (0.0, 0.0, 0)


def make_ctx() -> ImageContext:
    kps = [(0.5, 0.2, 2), (0.51, 0.19, 1)] + [HIDDEN] * 15
    return ImageContext(
        image_id=7,
        image="val2017/000000000007.jpg",
        width=640,
        height=480,
        captions=("A man throws a frisbee.", "Someone in a park."),
        objects=(Obj("frisbee", (0.1, 0.2, 0.15, 0.25)), Obj("cell phone", (0.0, 0.999, 1.0, 1.0))),
        persons=(
            Person((0.3, 0.1, 0.6, 0.9), tuple(kps)),
            Person((0.7, 0.5, 0.8, 0.95), (HIDDEN,) * 17),
        ),
    )


def test_paper_format_is_llava_style_with_normalized_numbers() -> None:
    messages = render_paper(make_ctx())
    assert messages[:2] == ["caption: A man throws a frisbee.", "caption: Someone in a park."]
    assert messages[2] == "frisbee: [0.1, 0.2, 0.15, 0.25]"
    assert messages[3] == "cell phone: [0.0, 0.999, 1.0, 1.0]"
    person = messages[4].split("\n")
    assert person[0] == "person: [0.3, 0.1, 0.6, 0.9]"
    assert person[1].startswith("keypoints: [[0.5, 0.2, 2], [0.51, 0.19, 1], [0.0, 0.0, 0]")
    assert person[1].count("[") == 17 + 1  # 17 triples inside one list
    # a person without any labelled keypoint is sent as a box only
    assert messages[5] == "person: [0.7, 0.5, 0.8, 0.95]"


def test_compact_format_uses_thousandths_and_marks_hidden_points() -> None:
    text = render_compact(make_ctx())
    lines = text.split("\n")
    assert lines[0] == "Captions:"
    assert "frisbee 100 200 150 250" in lines
    assert "cell phone 0 999 1000 1000" in lines
    person = next(line for line in lines if line.startswith("person 300"))
    points = person.split(": ")[1].split(" ")
    assert points[:3] == ["500,200", "510,190?", "-"] and len(points) == 17
    assert "person 700 500 800 950" in lines


@pytest.mark.parametrize("cues", [False, True])
@pytest.mark.parametrize("fmt", ["paper", "compact"])
def test_round_trip_on_every_coco_mini_image(coco_mini, fmt, cues) -> None:
    """The compact context loses nothing: parsing it back gives the same numbers (and the
    paper format too), on every image of the real COCO-MINI, people or not."""
    contexts = load_split(coco_mini, "val2017", human_only=False) + load_split(
        coco_mini, "train2017", human_only=False
    )
    assert len(contexts) >= 30  # all 34 images of tests/data/coco-mini
    for ctx in contexts:
        if fmt == "paper":
            captions, objects, persons = parse_paper(render_paper(ctx, cues=cues))
        else:
            captions, objects, persons = parse_compact(render_compact(ctx, cues=cues))
        assert tuple(captions) == ctx.captions
        assert tuple(objects) == ctx.objects
        for got, want in zip(persons, ctx.persons, strict=True):
            assert got.box == want.box
            if want.num_labelled:
                assert got.keypoints == want.keypoints
            else:  # sent as a box only: nothing labelled to lose
                assert got.num_labelled == 0


# -- pose cues (--cues) -----------------------------------------------------------------------


def cue_ctx(*persons: Person, objects: tuple[Obj, ...] = ()) -> ImageContext:
    return ImageContext(
        image_id=7,
        image="x.jpg",
        width=W,
        height=H,
        captions=("A person.",),
        objects=objects,
        persons=persons,
    )


def test_a_cue_says_posture_limbs_with_angles_facing_and_hidden_parts() -> None:
    raised = moved(left_elbow=(240, 60), left_wrist=(245, 10))  # the person's left arm up
    [cue] = pose_cues(cue_ctx(person(raised, v={"right ear": 1})))
    assert cue is not None and cue.startswith("pose: standing; facing the camera; ")
    assert "left arm raised above the head (elbow straight, " in cue
    assert "right arm hanging down (elbow straight, " in cue
    assert "left leg straight (knee 1" in cue and "only person" in cue
    assert cue.endswith("hidden: right ear")


def test_cues_give_the_order_from_the_left_and_skip_people_without_keypoints() -> None:
    right = person({k: (x + 150, y) for k, (x, y) in FRONT.items()})
    left = person({k: (x - 150, y) for k, (x, y) in FRONT.items()})
    nobody = Person(box=(0.1, 0.1, 0.2, 0.2), keypoints=((0.0, 0.0, 0),) * 17)
    cues = pose_cues(cue_ctx(right, nobody, left))
    assert cues[1] is None
    assert cues[0] and cues[0].endswith("3rd of 3 from the left")
    assert cues[2] and cues[2].endswith("1st of 3 from the left")


def test_an_unlabelled_limb_gets_no_cue() -> None:
    [cue] = pose_cues(cue_ctx(person(without(FRONT, "left elbow", "left wrist"))))
    assert cue is not None and "left arm" not in cue and "right arm" in cue


@pytest.mark.parametrize("fmt", ["paper", "compact"])
def test_cues_add_one_line_after_each_labelled_persons_keypoints(coco_mini, fmt) -> None:
    for ctx in load_split(coco_mini, "train2017"):
        plain = render_paper(ctx) if fmt == "paper" else [render_compact(ctx)]
        cued = render_paper(ctx, cues=True) if fmt == "paper" else [render_compact(ctx, cues=True)]
        added = [line for line in "\n".join(cued).split("\n") if line.startswith("pose: ")]
        assert len(added) == sum(1 for c in pose_cues(ctx) if c)
        assert added and not any("pose: " in m for m in plain)
        # everything else is unchanged: removing the cue lines gives the plain rendering
        stripped = ["\n".join(x for x in m.split("\n") if not x.startswith("pose: ")) for m in cued]
        assert stripped == plain


def test_cached_renderings_belong_to_their_own_context(coco_mini) -> None:
    """Renderings are remembered by context identity (detail and reasoning reuse them): a
    context equal in all but one caption, or met again after many others, renders its own."""
    from llava_pose import context

    contexts = load_split(coco_mini, "val2017", human_only=False)
    for ctx in contexts + contexts[::-1]:
        assert render_paper(ctx) == context.paper_caption_messages(
            ctx
        ) + context.paper_annotation_messages(ctx)
        other = msgspec.structs.replace(ctx, captions=(*ctx.captions, "Extra."))
        assert render_paper(other)[len(ctx.captions)] == "caption: Extra."
        assert "Extra." in render_compact(other) and "Extra." not in render_compact(ctx)


def test_negative_zero_is_written_as_before() -> None:
    """Numbers are formatted once per value, but -0.0 (== 0.0 as a key) keeps its sign."""
    zero = ImageContext(
        image_id=1,
        image="x.jpg",
        width=1,
        height=1,
        captions=("c",),
        objects=(Obj("cup", (0.0, 0.5, 0.25, 1.0)), Obj("cup", (-0.0, 0.5, 0.25, 1.0))),
    )
    assert render_paper(zero)[1:] == ["cup: [0.0, 0.5, 0.25, 1.0]", "cup: [-0.0, 0.5, 0.25, 1.0]"]
