"""The pose-claim checker: each claim kind on constructed poses (supported, contradicted,
unverifiable), negation, subject resolution, and zero false alarms on hand-labelled sentences
about real COCO-MINI images."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from tests.conftest import perf_script
from tests.test_pose import FRONT, SEATED, SEATED_FRONT, H, W, moved, person, without
from tests.test_pose import LYING as POSE_LYING

from llava_pose import verify
from llava_pose.coco import load_split
from llava_pose.records import ImageContext, Obj, Person
from llava_pose.verify import check_text, summarize

LABELLED = Path(__file__).parent / "data" / "verify" / "labelled.yaml"

ARMS_UP = moved(
    left_elbow=(240, 60), right_elbow=(160, 60), left_wrist=(245, 10), right_wrist=(155, 10)
)
LYING = without(POSE_LYING, "left elbow", "left wrist")


def shifted(points: dict[str, tuple[float, float]], dx: float) -> dict[str, tuple[float, float]]:
    return {k: (x + dx, y) for k, (x, y) in points.items()}


def scene(*persons: Person, objects: tuple[Obj, ...] = ()) -> ImageContext:
    return ImageContext(1, "train2017/x.jpg", W, H, ("a caption",), objects, persons)


def one(points: dict[str, tuple[float, float]], **kw) -> ImageContext:  # type: ignore[no-untyped-def]
    return scene(person(points, **kw))


def verdicts(text: str, ctx: ImageContext) -> list[tuple[str, str]]:
    return [(c.kind, c.verdict) for c in check_text(text, ctx)]


# -- posture ------------------------------------------------------------------------------------


def test_posture_supported_contradicted_and_negated() -> None:
    ctx = one(FRONT)
    assert verdicts("The man is standing.", ctx) == [("posture", "supported")]
    assert verdicts("The man is sitting on a bench.", ctx) == [("posture", "contradicted")]
    assert verdicts("He is lying on the floor.", ctx) == [("posture", "contradicted")]
    assert verdicts("The man is not sitting.", ctx) == [("posture", "supported")]
    assert verdicts("The man isn't standing.", ctx) == [("posture", "contradicted")]
    sat = one(SEATED)
    assert verdicts("A person sits on a chair.", sat) == [("posture", "supported")]
    assert verdicts("A person stands by the chair.", sat) == [("posture", "contradicted")]
    assert verdicts("The person is lying down.", one(LYING)) == [("posture", "supported")]


def test_surfer_standing_in_a_crouch_is_not_a_false_alarm() -> None:
    crouch = {
        "left shoulder": (215, 150), "right shoulder": (185, 150),
        "left hip": (215, 250), "right hip": (185, 250),
        "left knee": (260, 275), "right knee": (140, 275),
        "left ankle": (230, 300), "right ankle": (170, 300),
    }  # fmt: skip
    got = check_text("The person is standing on the board.", one(crouch))
    assert [c.verdict for c in got] != ["contradicted"]


def test_seated_facing_camera_never_contradicts_sitting() -> None:
    # Short, straight-looking thighs: whatever posture_of says, "sitting" is no false alarm.
    got = check_text("The boy is sitting on the couch.", one(SEATED_FRONT))
    assert [c.verdict for c in got] in (["supported"], ["unverifiable"])


def test_hidden_leg_joints_make_posture_unverifiable() -> None:
    hidden = {n: 1 for n in ("left knee", "right knee", "left ankle", "right ankle")}
    got = check_text("The man is sitting.", one(FRONT, v=hidden))
    assert [c.verdict for c in got] == ["unverifiable"]


def test_bending_over_judged_by_the_torso() -> None:
    assert verdicts("The man is bending over.", one(FRONT)) == [("posture", "contradicted")]


# -- arms and legs ------------------------------------------------------------------------------


def test_arm_states() -> None:
    down, up = one(FRONT), one(ARMS_UP)
    assert verdicts("His left arm is raised.", down) == [("arm", "contradicted")]
    assert verdicts("His left arm is raised.", up) == [("arm", "supported")]
    assert verdicts("The man raises both arms above his head.", up) == [("arm", "supported")]
    assert verdicts("His arms hang by his sides.", down) == [("arm", "supported")]
    assert verdicts("His arms hang by his sides.", up) == [("arm", "contradicted")]
    assert verdicts("His right arm is not raised.", down) == [("arm", "supported")]


def test_arm_bent_and_extended() -> None:
    bent = one(moved(left_elbow=(240, 150), left_wrist=(200, 130)))
    assert verdicts("His left arm is bent.", bent) == [("arm", "supported")]
    assert verdicts("His left arm is outstretched.", bent) == [("arm", "contradicted")]
    out = one(moved(left_elbow=(280, 100), left_wrist=(330, 100)))
    assert verdicts("His left arm is extended.", out) == [("arm", "supported")]


def test_unlabelled_arm_is_unverifiable() -> None:
    ctx = one(without(FRONT, "left wrist", "left elbow"))
    got = check_text("His left arm is raised.", ctx)
    assert [c.verdict for c in got] == ["unverifiable"]
    assert "not labelled" in got[0].reason


def test_leg_states() -> None:
    assert verdicts("His legs are straight.", one(FRONT)) == [("leg", "supported")]
    assert verdicts("His legs are straight.", one(SEATED)) == [("leg", "contradicted")]
    assert verdicts("His knees are bent.", one(SEATED)) == [("leg", "supported")]
    wide = one(moved(left_ankle=(260, 340), right_ankle=(140, 340)))
    assert verdicts("He stands with his feet apart.", wide) == [
        ("posture", "supported"),
        ("leg", "supported"),
    ]


def test_which_hand_or_foot_is_higher() -> None:
    left_up = one(moved(left_elbow=(240, 60), left_wrist=(245, 10)))
    assert verdicts("His left hand is higher than his right.", left_up) == [("higher", "supported")]
    assert verdicts("His right hand is higher than his left.", left_up) == [
        ("higher", "contradicted")
    ]
    lifted = one(moved(right_knee=(178, 250), right_ankle=(176, 280)))
    assert verdicts("His right foot is lifted.", lifted) == [("higher", "supported")]


# -- facing and place ---------------------------------------------------------------------------


def test_facing() -> None:
    assert verdicts("He is facing the camera.", one(FRONT)) == [("facing", "supported")]
    assert verdicts("He is facing away from the camera.", one(FRONT)) == [
        ("facing", "contradicted")
    ]
    back = {k: (W - x, y) for k, (x, y) in FRONT.items()}
    away = one(back, v={"nose": 0, "left eye": 0, "right eye": 0})
    assert verdicts("He has his back to the camera.", away) == [("facing", "supported")]
    assert verdicts("He faces the camera.", away) == [("facing", "contradicted")]
    # a profile is too close to "facing the camera" to call
    assert verdicts("The person is facing the camera.", one(SEATED)) == [("facing", "unverifiable")]


def test_placement_and_order() -> None:
    left, right = person(shifted(FRONT, -150)), person(shifted(FRONT, 150))
    ctx = scene(right, left)  # index 0 is on the picture's right
    assert verdicts("The man on the left is on the left side of the picture.", ctx) == [
        ("placement", "supported")
    ]
    assert verdicts("The man on the right is on the left side of the image.", ctx) == [
        ("placement", "contradicted")
    ]
    assert verdicts("The man on the left is to the left of the woman on the right.", ctx) == [
        ("order", "supported")
    ]
    assert verdicts("The man on the left is to the right of the woman on the right.", ctx) == [
        ("order", "contradicted")
    ]


# -- subjects -----------------------------------------------------------------------------------


def test_position_ordinal_and_middle_subjects() -> None:
    a, b, c = (person(shifted(FRONT, dx)) for dx in (-150, 0, 150))
    sitting = person(shifted(SEATED, 0))
    ctx = scene(c, sitting, a)  # left to right: a (2), sitting (1), c (0)
    [claim] = check_text("The person in the middle is sitting.", ctx)
    assert (claim.person, claim.verdict) == (1, "supported")
    [claim] = check_text("The second person from the right is standing.", ctx)
    assert (claim.person, claim.verdict) == (1, "contradicted")
    [claim] = check_text("The man on the far left is standing.", ctx)
    assert (claim.person, claim.verdict) == (2, "supported")
    _ = b


def test_pronouns_follow_the_last_subject() -> None:
    left, right = person(shifted(FRONT, -150)), person(shifted(SEATED, 150))
    ctx = scene(left, right)
    got = check_text(
        "The woman on the right is sitting. The man on the left is standing. He is facing the camera.",
        ctx,
    )
    assert [(c.person, c.kind, c.verdict) for c in got] == [
        (1, "posture", "supported"),
        (0, "posture", "supported"),
        (0, "facing", "supported"),
    ]
    # "she" skips the man back to the woman
    got = check_text("The woman on the right talks to the man on the left. She is sitting.", ctx)
    assert [(c.person, c.verdict) for c in got] == [(1, "supported")]


def test_ambiguous_subjects_are_unverifiable() -> None:
    ctx = scene(person(shifted(FRONT, -150)), person(shifted(FRONT, 150)))
    [claim] = check_text("The man is sitting.", ctx)
    assert (claim.person, claim.verdict) == (None, "unverifiable")
    [claim] = check_text("He is sitting.", ctx)
    assert claim.verdict == "unverifiable"
    [claim] = check_text("Another man is sitting.", one(FRONT))
    assert claim.verdict == "unverifiable"


def test_group_claims_hold_for_each_member() -> None:
    ctx = scene(person(shifted(FRONT, -150)), person(shifted(SEATED, 150)))
    [claim] = check_text("Both men are standing.", ctx)
    assert (claim.persons, claim.person, claim.verdict) == ((0, 1), None, "contradicted")
    [claim] = check_text(
        "The two people are standing.",
        scene(person(shifted(FRONT, -150)), person(shifted(FRONT, 150))),
    )
    assert claim.verdict == "supported"
    [claim] = check_text("All three men are standing.", ctx)
    assert claim.verdict == "unverifiable"  # three named, two in the picture


def test_role_noun_resolved_by_the_object_in_hand() -> None:
    batter = person(shifted(FRONT, -150))
    other = person(shifted(FRONT, 150))
    bat = Obj("baseball bat", (0.0, 0.45, 0.2, 0.55))  # at the left person's right wrist
    ctx = scene(other, batter, objects=(bat,))
    [claim] = check_text("The batter is sitting.", ctx)
    assert (claim.person, claim.verdict) == (1, "contradicted")
    [claim] = check_text("The catcher is sitting.", ctx)
    assert claim.person is None


def test_advice_questions_and_nouns_are_not_claims() -> None:
    ctx = one(FRONT)
    assert check_text("He should sit upright with his arms relaxed.", ctx) == []
    assert check_text("Is the man sitting?", ctx) == []
    assert check_text("People watch from the stands.", ctx) == []


def test_summarize_counts_every_kind_and_verdict() -> None:
    claims = check_text("The man is standing. He is sitting. His left arm is raised.", one(FRONT))
    s = summarize(claims)
    assert (s["claims"], s["supported"], s["contradicted"]) == (3, 1, 2)
    assert s["by_kind"]["posture"] == {"supported": 1, "contradicted": 1, "unverifiable": 0}
    assert s["contradicted_share"] == round(2 / 3, 4)
    assert set(s["by_kind"]) == set(verify.KINDS)


def test_claim_spans_are_the_sentences() -> None:
    text = "The man is standing.  He is sitting."
    spans = [text[a:b] for a, b in (c.span for c in check_text(text, one(FRONT)))]
    assert spans == ["The man is standing.", "He is sitting."]


# -- how a sentence holds its claims: negation, time, hedges ----------------------------------------


def test_a_negation_before_the_owner_of_the_limb_is_on_the_claim() -> None:
    down, up = one(FRONT), one(ARMS_UP)
    for text in (
        "The man does not have his arms raised.",
        "He has no arm raised.",
        "He never raises his left arm above his head.",
        "He stands without raising his arms.",
    ):
        assert ("arm", "supported") in verdicts(text, down), text
    assert verdicts("The man does not have his arms raised.", up) == [("arm", "contradicted")]
    assert verdicts("He has no arm raised.", up) == [("arm", "contradicted")]


def test_not_both_and_a_plain_plural_under_a_negation() -> None:
    left_up = one(moved(left_elbow=(240, 60), left_wrist=(245, 10)))
    # one arm up: "not both" is true, "his arms are not raised" is neither clearly
    assert verdicts("He does not have both arms raised.", left_up) == [("arm", "supported")]
    assert verdicts("His arms are not raised.", left_up) == [("arm", "unverifiable")]
    assert verdicts("His arms are not raised.", one(ARMS_UP)) == [("arm", "contradicted")]
    assert verdicts("He does not have both arms raised.", one(ARMS_UP)) == [("arm", "contradicted")]


def test_a_negation_whose_reach_is_unclear_leaves_the_claim_unverifiable() -> None:
    ctx = one(FRONT)
    # the negation is on "standing" (or on the whole), never plainly on the arms
    assert verdicts("He is not standing with his arms raised.", ctx)[1] == ("arm", "unverifiable")
    assert verdicts("He is not sitting and raising his arms.", ctx)[1] == ("arm", "unverifiable")
    assert verdicts("He doesn't seem to mind standing.", ctx) == [("posture", "unverifiable")]
    assert verdicts("He is not yet standing.", ctx) == [("posture", "unverifiable")]


def test_a_negation_stops_at_a_contrast_or_a_new_subject_and_goes_over_or() -> None:
    ctx = one(FRONT)
    assert verdicts("He is not sitting but standing.", ctx) == [
        ("posture", "supported"),
        ("posture", "supported"),
    ]
    assert verdicts("He is not sitting, he is standing.", ctx)[1] == ("posture", "supported")
    assert verdicts("He is not sitting or lying down.", ctx) == [
        ("posture", "supported"),
        ("posture", "supported"),
    ]
    assert verdicts("He is not, however, standing.", ctx) == [("posture", "contradicted")]


def test_a_negation_that_may_be_on_the_words_after_the_claim_never_contradicts_it() -> None:
    seated = one(SEATED)
    # true of a woman who sits with her legs apart, or on the floor
    for text in ("She is not sitting with her legs crossed.", "She is not sitting on the couch."):
        assert verdicts(text, seated) == [("posture", "unverifiable")], text
    assert verdicts("She is not sitting.", seated) == [("posture", "contradicted")]
    assert verdicts("She is not sitting at all in the picture.", seated) == [
        ("posture", "contradicted")
    ]
    # when the claim itself clearly does not hold, the sentence is true either way
    assert verdicts("He is not sitting on the couch.", one(FRONT)) == [("posture", "supported")]


def test_words_that_look_like_a_negation_are_none() -> None:
    ctx = one(FRONT)
    assert verdicts("No, he is sitting.", ctx) == [("posture", "contradicted")]
    assert verdicts("Not only is he standing, his arms are raised.", ctx) == [
        ("posture", "supported"),
        ("arm", "contradicted"),
    ]
    assert verdicts("Without a doubt he is standing.", ctx) == [("posture", "supported")]


@pytest.mark.parametrize(
    "text",
    [
        "He was sitting on the bench.",
        "He sat on the bench earlier.",
        "He used to have his arms raised.",
        "He stopped raising his arms.",
        "He might be sitting.",
        "He could have his arms raised above his head.",
        "He sometimes sits on the bench.",
        "He hardly ever raises his arms.",
        "He rarely faces away from the camera.",
        "Perhaps, he is lying down.",
        "He was standing and raising his arms above his head.",
    ],
)
def test_a_past_a_change_a_guess_or_a_habit_is_unverifiable(text: str) -> None:
    got = check_text(text, one(FRONT))
    assert got and all(c.verdict == "unverifiable" for c in got), got
    assert all("the picture shows the present" in c.reason for c in got)


def test_the_present_part_of_a_changed_state_is_checked() -> None:
    ctx = one(FRONT)
    for text in (
        "The man was sitting earlier but is now standing.",
        "The man was sitting earlier, and is now standing.",
        "The man who was sitting is now standing.",
    ):
        assert verdicts(text, ctx) == [("posture", "unverifiable"), ("posture", "supported")], text
    assert verdicts("The man was standing earlier but is now sitting.", ctx)[1] == (
        "posture",
        "contradicted",
    )


def test_a_negated_group_claim_says_only_what_holds_for_every_reading() -> None:
    standing, seated = person(shifted(FRONT, -150)), person(shifted(SEATED, 150))
    # "both are not sitting": neither sits, or not both do; one of two sitting decides nothing
    [claim] = check_text("Both men are not sitting.", scene(standing, seated))
    assert claim.verdict == "unverifiable"
    [claim] = check_text(
        "Both men are not sitting.",
        scene(person(shifted(FRONT, -150)), person(shifted(FRONT, 150))),
    )
    assert claim.verdict == "supported"


# -- a body that cannot be seated -------------------------------------------------------------------


def test_a_straight_standing_body_contradicts_sitting_even_with_a_hidden_ankle() -> None:
    hidden = one(FRONT, v={"right ankle": 1})
    [claim] = check_text("The man is sitting.", hidden)
    assert claim.verdict == "contradicted" and "hips and knees straight" in claim.reason
    assert verdicts("The man is not sitting.", hidden) == [("posture", "supported")]


@pytest.mark.parametrize(
    ("name", "points", "v"),
    [
        # thighs pointing at the camera from a seat: short beside the shins
        ("short thighs", SEATED_FRONT, {}),
        # knees forward of the hips: the hip is bent
        ("bent hips", moved(left_knee=(250, 245), right_knee=(210, 245)), {}),
        # a knee the annotator could not see
        ("hidden knee", FRONT, {"left knee": 1, "right ankle": 1}),
    ],
)
def test_only_a_clearly_straight_body_is_not_seated(
    name: str, points: dict[str, tuple[float, float]], v: dict[str, int]
) -> None:
    [claim] = check_text("The man is sitting.", one(points, v=v))
    assert claim.verdict != "contradicted", name


# -- time: linear in the text's length --------------------------------------------------------------


def _calls(text: str, ctx: ImageContext) -> int:
    """Python function calls made checking `text` (perf/verify_speed.py's measure)."""
    return perf_script("verify_speed").calls(text, ctx)


@pytest.mark.parametrize(
    "unit",
    [
        "The man is sitting. ",
        "She is sitting. ",  # a pronoun nobody earlier names
        "The man is not sitting and he was raising his arms, ",  # one growing sentence
    ],
)
def test_work_grows_linearly_with_the_text(unit: str) -> None:
    ctx = one(FRONT)
    check_text(unit, ctx)  # the word lists load once
    small, large = _calls(unit * 100, ctx), _calls(unit * 1000, ctx)
    assert large / small <= 10.5, (small, large)


# -- hand-labelled sentences about real images ---------------------------------------------------


@pytest.fixture(scope="module")
def labelled(coco_mini: Path) -> list[tuple[dict, list[verify.Claim]]]:  # type: ignore[type-arg]
    rows = yaml.safe_load(LABELLED.read_text("utf-8"))
    contexts = {
        (split, c.image_id): c
        for split in ("train2017", "val2017")
        for c in load_split(coco_mini, split, human_only=False)
    }
    return [(r, check_text(r["text"], contexts[(r["split"], r["image"])])) for r in rows]


TAGS = ("negated", "hedged", "changed")


def test_labelled_set_is_big_enough_and_well_formed(labelled) -> None:  # type: ignore[no-untyped-def]
    assert len(labelled) >= 100
    for r, _ in labelled:
        assert r["claims"] and r["note"] is not None
        assert all(
            c["kind"] in verify.KINDS and c["verdict"] in verify.VERDICTS for c in r["claims"]
        )
        assert r.get("tag") in (None, *TAGS)
    for tag in TAGS:
        assert sum(1 for r, _ in labelled if r.get("tag") == tag) >= 10, tag


def test_no_false_alarm_on_labelled_sentences(labelled) -> None:  # type: ignore[no-untyped-def]
    pairs: dict[str, list[tuple[str | None, str | None]]] = {t: [] for t in ("all", *TAGS)}
    for r, claims in labelled:
        got = verify.align([(c["kind"], c["verdict"]) for c in r["claims"]], claims)
        for expected, said in got:
            # a true sentence (or one the picture does not decide) is never contradicted
            assert not (expected in ("supported", "unverifiable") and said == "contradicted"), r[
                "text"
            ]
        pairs["all"] += got
        if r.get("tag"):
            pairs[r["tag"]] += got
    scores = {k: verify.precision_recall(v) for k, v in pairs.items()}
    print("\nchecker on the labelled set:", scores)
    assert scores["all"]["contradicted"]["precision"] == 1.0
    assert scores["all"]["supported"]["precision"] == 1.0
    assert scores["all"]["contradicted"]["said"] >= 5 and scores["all"]["supported"]["said"] >= 20
    assert scores["negated"]["contradicted"]["precision"] == 1.0
    assert scores["negated"]["supported"]["precision"] == 1.0
    assert scores["negated"]["supported"]["said"] >= 5
    assert scores["hedged"]["unverifiable"]["precision"] == 1.0
    assert scores["changed"]["contradicted"]["said"] == 0


def test_the_persons_own_side_is_not_a_place_in_the_picture() -> None:
    on_the_right = one(shifted(FRONT, 150))
    assert verdicts("He holds the racket in the left hand.", on_the_right) == []
    assert verdicts("He is on the left.", on_the_right) == [("placement", "contradicted")]


def test_nobody_is_about_everyone_and_not_checked() -> None:
    raised = one(moved(left_elbow=(240, 60), left_wrist=(245, 10)))
    assert verdicts("No, nobody has their arms raised.", raised) == []
    assert verdicts("No one is sitting.", raised) == []


def test_phrase_match_is_the_plain_slice_comparison() -> None:
    """`_match` checks the first word before slicing (speed); it answers as the plain
    comparison of the slice does, at every index, in range or not."""
    import random

    from llava_pose.verify.text import match as _match

    rng = random.Random(0)
    vocab = ["a", "b", "c", "the", "arm"]
    for _ in range(3000):
        words = [rng.choice(vocab) for _ in range(rng.randint(0, 6))]
        phrase = tuple(rng.choice(vocab) for _ in range(rng.randint(0, 3)))
        i = rng.randint(-3, 8)
        assert _match(words, i, phrase) == (tuple(words[i : i + len(phrase)]) == phrase)


# -- the bench scripts --------------------------------------------------------------------------


def test_precision_script_scores_the_whole_set_and_each_tag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert perf_script("verify_precision").main([]) == 0
    out = capsys.readouterr().out
    for title in ("all", *TAGS):
        assert f"\n{title}: " in "\n" + out
    assert "contradicted  said" in out and "precision 1.0" in out


def test_speed_script_prints_the_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    rc = perf_script("verify_speed").main(["--sentences", "20", "--repeat", "1"])
    out = capsys.readouterr().out
    assert rc in (0, 1)  # at 20 sentences fixed costs and noise may dominate the time
    assert out.count("time ratio x10/x1: ") == 2 and "worst time ratio" in out
