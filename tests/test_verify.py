"""The pose-claim checker: each claim kind on constructed poses (supported, contradicted,
unverifiable), negation, subject resolution, and zero false alarms on hand-labelled sentences
about real COCO-MINI images."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
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


def test_labelled_set_is_big_enough_and_well_formed(labelled) -> None:  # type: ignore[no-untyped-def]
    assert len(labelled) >= 60
    for r, _ in labelled:
        assert r["claims"] and r["note"] is not None
        assert all(
            c["kind"] in verify.KINDS and c["verdict"] in verify.VERDICTS for c in r["claims"]
        )


def test_no_false_alarm_on_labelled_sentences(labelled) -> None:  # type: ignore[no-untyped-def]
    pairs = []
    for r, claims in labelled:
        got = verify.align([(c["kind"], c["verdict"]) for c in r["claims"]], claims)
        for expected, said in got:
            assert not (expected == "supported" and said == "contradicted"), r["text"]
        pairs += got
    scores = verify.precision_recall(pairs)
    print("\nchecker on the labelled set:", scores)
    assert scores["contradicted"]["precision"] == 1.0
    assert scores["supported"]["precision"] == 1.0
    assert scores["contradicted"]["said"] >= 1 and scores["supported"]["said"] >= 10


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

    from llava_pose.verify import _match

    rng = random.Random(0)
    vocab = ["a", "b", "c", "the", "arm"]
    for _ in range(3000):
        words = [rng.choice(vocab) for _ in range(rng.randint(0, 6))]
        phrase = tuple(rng.choice(vocab) for _ in range(rng.randint(0, 3)))
        i = rng.randint(-3, 8)
        assert _match(words, i, phrase) == (tuple(words[i : i + len(phrase)]) == phrase)
