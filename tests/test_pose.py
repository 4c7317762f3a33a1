"""Pose facts on constructed poses (each fact, unknown joints, aspect ratio) and on real COCO.

Geometry only: how the facts are worded is tests/teachers/test_wording.py."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import msgspec
import pytest

from llava_pose import pose
from llava_pose.coco import load_split
from llava_pose.pose import PoseFacts
from llava_pose.records import KEYPOINT_NAMES, ImageContext, Obj, Person

W = H = 400

# A person standing square to the camera on a 400x400 image (pixels): their left side is on
# the image's right. Torso 100 px long, arms hanging, legs straight.
FRONT: dict[str, tuple[float, float]] = {
    "nose": (200, 60),
    "left eye": (206, 54),
    "right eye": (194, 54),
    "left ear": (214, 58),
    "right ear": (186, 58),
    "left shoulder": (230, 100),
    "right shoulder": (170, 100),
    "left elbow": (234, 150),
    "right elbow": (166, 150),
    "left wrist": (237, 200),
    "right wrist": (163, 200),
    "left hip": (220, 200),
    "right hip": (180, 200),
    "left knee": (222, 270),
    "right knee": (178, 270),
    "left ankle": (224, 340),
    "right ankle": (176, 340),
}


def person(
    points: dict[str, tuple[float, float]],
    *,
    v: dict[str, int] | None = None,
    width: int = W,
    height: int = H,
    box: tuple[float, float, float, float] | None = None,
) -> Person:
    """A Person from pixel points; joints not given are unlabelled (0, 0, 0)."""
    v = v or {}
    kps = []
    for name in KEYPOINT_NAMES:
        vis = v.get(name, 2 if name in points else 0)
        if name in points and vis > 0:
            x, y = points[name]
            kps.append((x / width, y / height, vis))
        else:
            kps.append((0.0, 0.0, 0))
    if box is None:
        xs = [x for x, _, vis in kps if vis]
        ys = [y for _, y, vis in kps if vis]
        box = (min(xs) - 0.02, min(ys) - 0.05, max(xs) + 0.02, max(ys) + 0.02)
    return Person(box=box, keypoints=tuple(kps))


def facts(points: dict[str, tuple[float, float]], **kw) -> PoseFacts:  # type: ignore[no-untyped-def]
    objects = kw.pop("objects", ())
    width, height = kw.get("width", W), kw.get("height", H)
    return pose.pose_facts(person(points, **kw), width, height, objects)


def moved(**changes: tuple[float, float]) -> dict[str, tuple[float, float]]:
    points = dict(FRONT)
    points.update({k.replace("_", " "): p for k, p in changes.items()})
    return points


def without(points: dict[str, tuple[float, float]], *names: str) -> dict[str, tuple[float, float]]:
    return {k: p for k, p in points.items() if k not in names}


# -- constructed poses --------------------------------------------------------------------------


def test_standing_front_person_basics() -> None:
    f = facts(FRONT)
    assert f.posture == "standing"
    assert f.facing == "camera"
    assert f.lean == "upright"
    assert all(a.hanging and a.height == "below_shoulder" for a in f.arms)
    assert all(leg.knee == "straight" and leg.lifted is False for leg in f.legs)
    assert f.stride is False


def test_raised_arms_above_head_and_above_shoulder() -> None:
    f = facts(
        moved(
            right_elbow=(160, 60), right_wrist=(158, 10), left_elbow=(268, 95), left_wrist=(300, 78)
        )
    )
    left, right = f.arms
    assert right.height == "above_head"
    assert right.elbow == "straight"
    assert left.height == "above_shoulder"


def test_straight_arm_extended_sideways_and_bent_elbow() -> None:
    f = facts(moved(left_elbow=(280, 100), left_wrist=(330, 102), right_wrist=(205, 130)))
    left, right = f.arms
    assert left.elbow == "straight" and left.elbow_angle is not None and left.elbow_angle > 170
    assert left.reach == "sideways"  # facing the camera: a horizontal arm goes out sideways
    assert right.elbow == "bent" and right.elbow_angle is not None and right.elbow_angle < 100
    assert right.hanging is False


def test_bent_knee_and_straight_leg() -> None:
    f = facts(moved(left_knee=(270, 250), left_ankle=(225, 300)))
    left, right = f.legs
    assert left.knee == "bent" and left.knee_angle is not None and left.knee_angle < 100
    assert right.knee == "straight"


def test_one_foot_lifted() -> None:
    f = facts(moved(left_knee=(235, 255), left_ankle=(228, 300)))
    assert f.legs[0].lifted is True
    assert f.legs[1].lifted is False


# Side view, facing the picture's right, sitting on a chair: thighs horizontal, shins down.
SEATED = {
    "nose": (228, 62),
    "right eye": (222, 56),
    "right ear": (198, 60),
    "left shoulder": (205, 100),
    "right shoulder": (198, 100),
    "right elbow": (215, 150),
    "right wrist": (250, 160),
    "left hip": (202, 200),
    "right hip": (196, 200),
    "left knee": (282, 205),
    "right knee": (276, 206),
    "left ankle": (284, 290),
    "right ankle": (278, 290),
}


def test_seated_pose_is_sitting_and_faces_right() -> None:
    f = facts(SEATED)
    assert f.posture == "sitting"
    assert f.facing == "right"
    assert all(leg.knee == "bent" for leg in f.legs)


def test_seated_pose_mirrored_faces_left() -> None:
    mirrored = {k: (W - x, y) for k, (x, y) in SEATED.items()}
    f = facts(mirrored)
    assert f.posture == "sitting"
    assert f.facing == "left"


# Seated facing the camera: the thighs point at the viewer (20 px of a 100 px torso) and the
# shins hang at full length. Hip, knee and ankle are nearly in a line, so the knee angle looks
# straight: the shape of COCO train2017 463557, once called "standing".
SEATED_FRONT = moved(
    left_knee=(222, 220), right_knee=(178, 220), left_ankle=(224, 305), right_ankle=(176, 305)
)


def test_seated_facing_the_camera_is_sitting_not_standing() -> None:
    f = facts(SEATED_FRONT)
    assert all(leg.knee == "straight" for leg in f.legs)  # what fooled the planted-leg test
    assert f.posture == "sitting"
    assert f.facing == "camera"


def test_foreshortened_thighs_under_a_leaning_torso_claim_nothing() -> None:
    # The same legs under a torso leaning 25 deg: a crouched stance facing the camera (an
    # umpire) as often as a seat. Neither standing nor sitting is claimed.
    leaning = dict(SEATED_FRONT)
    for name in ("nose", "left eye", "right eye", "left ear", "right ear"):
        x, y = leaning[name]
        leaning[name] = (x + 60, y + 10)
    for name in ("left shoulder", "right shoulder", "left elbow", "right elbow"):
        x, y = leaning[name]
        leaning[name] = (x + 45, y + 8)
    f = facts(leaning)
    assert f.posture is None


def test_one_foreshortened_thigh_stops_a_standing_claim() -> None:
    # One leg straight and long, the other's thigh pointing at the camera: conflicting, so no
    # posture rather than a wrong one.
    f = facts(moved(left_knee=(222, 215), left_ankle=(224, 300)))
    assert f.posture is None


def test_a_child_with_short_legs_still_stands() -> None:
    # Thighs a third of the torso (COCO train2017 37666, a small child walking) are short but
    # not pointing at the camera: the child still stands.
    f = facts(
        moved(
            left_knee=(221, 233),
            right_knee=(179, 233),
            left_ankle=(222, 273),
            right_ankle=(178, 273),
        )
    )
    assert f.posture == "standing"


def test_real_seated_boy_facing_the_camera_is_sitting() -> None:
    """COCO train2017 463557: every caption says the boy sits (on a couch, in a chair)."""
    from llava_pose.coco import read_contexts

    (ctx,) = read_contexts(Path(__file__).parent / "data" / "pose-cases" / "contexts.jsonl")
    assert ctx.image_id == 463557
    assert all("sit" in c.lower() for c in ctx.captions[:4])
    scene = pose.scene_facts(ctx)
    boy = max(scene.persons, key=lambda f: f.num_labelled)
    assert boy.posture == "sitting"


# Lying on the back along the picture's x axis, head on the left.
LYING = {
    "nose": (60, 195),
    "left shoulder": (100, 190),
    "right shoulder": (100, 210),
    "left elbow": (150, 185),
    "left wrist": (200, 185),
    "left hip": (200, 192),
    "right hip": (200, 208),
    "left knee": (270, 192),
    "right knee": (270, 208),
    "left ankle": (340, 194),
    "right ankle": (340, 206),
}


def test_horizontal_body_is_lying() -> None:
    f = facts(LYING)
    assert f.posture == "lying"
    assert f.lean is None  # a lean means nothing for a lying body
    assert f.stride is None and all(leg.lifted is None for leg in f.legs)


def test_bending_over_is_not_lying() -> None:
    # Torso horizontal over straight, vertical legs: bent at the waist, not lying.
    points = {
        "left shoulder": (110, 205),
        "right shoulder": (110, 195),
        "left hip": (200, 205),
        "right hip": (200, 195),
        "left knee": (202, 280),
        "right knee": (198, 280),
        "left ankle": (204, 360),
        "right ankle": (196, 360),
    }
    assert facts(points).posture == "bending"


def test_crouching_and_kneeling() -> None:
    crouch = moved(
        left_hip=(220, 250),
        right_hip=(180, 250),
        left_shoulder=(230, 150),
        right_shoulder=(170, 150),
        left_knee=(240, 215),
        right_knee=(160, 215),
        left_ankle=(222, 285),
        right_ankle=(178, 285),
    )
    crouch = {k: p for k, p in crouch.items() if "elbow" not in k and "wrist" not in k}
    crouch = without(crouch, "nose", "left eye", "right eye", "left ear", "right ear")
    assert facts(crouch).posture == "crouching"
    kneel = {
        "left shoulder": (230, 100),
        "right shoulder": (170, 100),
        "left hip": (220, 200),
        "right hip": (180, 200),
        "left knee": (222, 290),
        "right knee": (178, 290),
        "left ankle": (300, 295),
        "right ankle": (256, 295),
    }
    assert facts(kneel).posture == "kneeling"


def test_pitcher_wind_up_is_not_kneeling() -> None:
    # From a real COCO pitcher: the right shin swings up level behind a straight, planted
    # left leg. A horizontal shin under a vertical thigh alone would read as a kneel.
    points = {
        "left shoulder": (424, 166),
        "right shoulder": (379, 140),
        "left hip": (392, 215),
        "right hip": (374, 203),
        "left knee": (383, 244),
        "right knee": (379, 237),
        "left ankle": (367, 302),
        "right ankle": (418, 243),
    }
    f = facts(points, width=640, height=480)
    assert f.legs[1].knee == "bent"
    assert f.posture != "kneeling"


def test_ski_tuck_is_not_sitting() -> None:
    # From a real COCO skier seen from behind: sloping thighs over half-bent knees.
    points = {
        "left shoulder": (213, 299),
        "right shoulder": (233, 296),
        "left hip": (200, 327),
        "right hip": (217, 325),
        "left knee": (225, 344),
        "right knee": (241, 337),
        "left ankle": (234, 370),
        "right ankle": (247, 367),
    }
    assert facts(points, width=640, height=480).posture != "sitting"


def test_seen_from_the_back_faces_away() -> None:
    back = {k: (W - x, y) for k, (x, y) in FRONT.items()}  # left shoulder now on image left
    f = facts(back, v={"nose": 0, "left eye": 0, "right eye": 0})
    assert f.facing == "away"
    # A frontal face over a back view contradicts itself: facing is not claimed.
    assert facts(back).facing is None


def test_facing_without_shoulders_uses_the_face() -> None:
    head = {k: FRONT[k] for k in ("nose", "left eye", "right eye", "left ear", "right ear")}
    assert facts(head).facing == "camera"
    ears = {k: FRONT[k] for k in ("left ear", "right ear")}
    assert facts(ears).facing == "away"


def test_left_right_order_of_two_people() -> None:
    a = person(FRONT, box=(0.6, 0.1, 0.9, 0.9))
    b = person(FRONT, box=(0.1, 0.1, 0.4, 0.9))
    assert pose.left_to_right([a, b]) == (1, 0)
    assert pose.relative_side(b, a) == "left"
    assert pose.relative_side(a, b) == "right"
    assert pose.relative_side(a, person(FRONT, box=(0.61, 0.1, 0.91, 0.9))) is None
    fa = pose.pose_facts(a, W, H)
    fb = pose.pose_facts(b, W, H)
    assert (fa.frame_x, fb.frame_x) == ("right", "left")
    assert fa.depth == "foreground"


def test_unlabelled_arm_produces_no_statement_about_it() -> None:
    f = facts(without(FRONT, "right elbow", "right wrist"))
    right = f.arms[1]
    assert right.height is None and right.elbow is None and not right.known
    assert f.arms[0].known


def test_unlabelled_legs_produce_no_statement_and_no_posture() -> None:
    f = facts(without(FRONT, "left knee", "right knee", "left ankle", "right ankle"))
    assert not any(leg.known for leg in f.legs)
    assert f.posture is None and f.stride is None
    assert all(leg.knee is None and leg.lifted is None for leg in f.legs)


def test_v0_joint_is_never_used_even_with_coordinates() -> None:
    # COCO writes (0, 0, 0) for unlabelled joints, but even a stray coordinate must not count.
    p = person(moved(right_wrist=(160, 10)))
    kps = list(p.keypoints)
    i = KEYPOINT_NAMES.index("right wrist")
    kps[i] = (kps[i][0], kps[i][1], 0)
    f = pose.pose_facts(Person(box=p.box, keypoints=tuple(kps)), W, H)
    assert f.arms[1].height is None and f.arms[1].elbow is None


def test_occluded_joints_are_used_but_hedged() -> None:
    f = facts(FRONT, v={"left knee": 1})
    assert f.legs[0].knee == "straight" and f.legs[0].occluded
    assert f.posture_occluded and f.posture == "standing"
    assert f.legs[1].knee == "straight" and not f.legs[1].occluded


def test_person_without_any_labelled_joint_has_no_pose() -> None:
    empty = Person(box=(0.1, 0.1, 0.3, 0.6), keypoints=((0.0, 0.0, 0),) * 17)
    f = pose.pose_facts(empty, W, H)
    assert not f.has_pose and f.num_labelled == 0
    assert f.posture is f.facing is f.lean is f.stride is None
    assert not any(a.known for a in f.arms) and not any(leg.known for leg in f.legs)
    assert f.frame_x == "left"


def test_aspect_ratio_changes_the_angle() -> None:
    # The same normalized arm: elbow 0.1 to the side of and 0.05 below shoulder and wrist.
    norm = {"left shoulder": (0.3, 0.4), "left elbow": (0.4, 0.45), "left wrist": (0.5, 0.4)}

    def elbow(width: int, height: int) -> pose.ArmFacts:
        points = {k: (x * width, y * height) for k, (x, y) in norm.items()}
        return facts(points, width=width, height=height).arms[0]

    def expected(width: int, height: int) -> float:
        return 2 * math.degrees(math.atan((0.1 * width) / (0.05 * height)))

    square, wide, tall = elbow(400, 400), elbow(800, 400), elbow(400, 800)
    assert square.elbow_angle == pytest.approx(expected(400, 400))  # ~127 deg
    assert wide.elbow_angle == pytest.approx(expected(800, 400))  # ~152 deg
    assert tall.elbow_angle == pytest.approx(expected(400, 800))  # 90 deg
    assert (square.elbow, wide.elbow, tall.elbow) == ("slightly_bent", "straight", "bent")


def test_image_scale_does_not_change_facts() -> None:
    p = person(moved(left_knee=(270, 250), left_ankle=(225, 300)))
    small, big = pose.pose_facts(p, 400, 400), pose.pose_facts(p, 1600, 1600)
    assert replace(small, arms=big.arms, legs=big.legs) == big
    assert [a.elbow for a in small.arms] == [a.elbow for a in big.arms]
    assert [leg.knee for leg in small.legs] == [leg.knee for leg in big.legs]


def test_hand_and_feet_contacts() -> None:
    racket = Obj("tennis racket", (250 / W, 180 / H, 290 / W, 230 / H))
    board = Obj("skateboard", (150 / W, 330 / H, 260 / W, 360 / H))
    table = Obj("dining table", (100 / W, 190 / H, 180 / W, 260 / H))
    f = facts(moved(left_wrist=(260, 200)), objects=(racket, board, table))
    kinds = {(c.kind, c.category, c.side) for c in f.contacts}
    assert ("holding", "tennis racket", "left") in kinds
    assert ("on_feet", "skateboard", None) in kinds
    assert ("touching", "dining table", "right") in kinds  # wrist over a table: "by", not held
    far = Obj("cup", (10 / W, 10 / H, 20 / W, 20 / H))
    assert facts(FRONT, objects=(far,)).contacts == ()


def test_holding_with_both_hands() -> None:
    bat = Obj("baseball bat", (150 / W, 190 / H, 250 / W, 210 / H))
    f = facts(FRONT, objects=(bat,))
    assert {c.side for c in f.contacts if c.kind == "holding"} == {"left", "right"}


# -- real COCO ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_contexts(coco_mini: Path) -> list[ImageContext]:
    return [
        ctx
        for split in ("train2017", "val2017")
        for ctx in load_split(coco_mini, split, human_only=False, check_images=False)
    ]


def _labelled(p: Person, *names: str) -> bool:
    return all(p.keypoints[KEYPOINT_NAMES.index(n)][2] > 0 for n in names)


def test_real_coco_facts_never_come_from_unlabelled_joints(
    real_contexts: list[ImageContext],
) -> None:
    checked = 0
    for ctx in real_contexts:
        scene = pose.scene_facts(ctx)
        assert sorted(scene.left_to_right) == list(range(len(ctx.persons)))
        for p, f in zip(ctx.persons, scene.persons, strict=True):
            checked += 1
            if p.num_labelled == 0:
                assert not f.has_pose and f.contacts == ()
                continue
            for side, arm in zip(("left", "right"), f.arms, strict=True):
                if arm.height is not None:
                    assert _labelled(p, f"{side} shoulder", f"{side} wrist")
                if arm.elbow is not None:
                    assert _labelled(p, f"{side} shoulder", f"{side} elbow", f"{side} wrist")
                    assert 0 <= (arm.elbow_angle or 0) <= 180
            for side, leg in zip(("left", "right"), f.legs, strict=True):
                if leg.knee is not None:
                    assert _labelled(p, f"{side} hip", f"{side} knee", f"{side} ankle")
                if leg.lifted is not None:
                    assert _labelled(p, "left ankle", "right ankle")
            if f.posture is not None or f.lean is not None:
                assert _labelled(p, "left shoulder") or _labelled(p, "right shoulder")
                assert _labelled(p, "left hip") or _labelled(p, "right hip")
            if f.stride is not None:
                assert _labelled(p, "left ankle", "right ankle")
            for c in f.contacts:
                if c.side is not None:
                    assert _labelled(p, f"{c.side} wrist")
    assert checked > 100


def _mirror(ctx: ImageContext) -> ImageContext:
    """The image flipped left-right, with left/right joint names swapped (as flip augmentation)."""

    def flip_box(b: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        return (1 - b[2], b[1], 1 - b[0], b[3])

    swap = [
        KEYPOINT_NAMES.index(n.replace("left", "@").replace("right", "left").replace("@", "right"))
        for n in KEYPOINT_NAMES
    ]
    persons = []
    for p in ctx.persons:
        kps = [(1 - x, y, v) if v else (x, y, v) for x, y, v in p.keypoints]
        persons.append(Person(box=flip_box(p.box), keypoints=tuple(kps[j] for j in swap)))
    objects = tuple(Obj(o.category, flip_box(o.box)) for o in ctx.objects)
    return msgspec.structs.replace(ctx, persons=tuple(persons), objects=objects)


SWAP = {"left": "right", "right": "left"}


def _arm(a: pose.ArmFacts) -> tuple[object, ...]:
    return (a.height, a.elbow, a.hanging, a.reach)


def test_real_coco_facts_mirror_consistently(real_contexts: list[ImageContext]) -> None:
    """Flipping the picture swaps every left/right fact and changes nothing else."""
    described = 0
    for ctx in real_contexts:
        plain, flipped = pose.scene_facts(ctx), pose.scene_facts(_mirror(ctx))
        for a, b in zip(plain.persons, flipped.persons, strict=True):
            described += a.has_pose
            assert a.posture == b.posture
            assert SWAP.get(a.facing or "", a.facing) == b.facing
            assert SWAP.get(a.lean or "", a.lean) == b.lean
            assert SWAP.get(a.frame_x, a.frame_x) == b.frame_x
            for x, y in ((a.arms[0], b.arms[1]), (a.arms[1], b.arms[0])):
                assert _arm(x) == _arm(y)
            for x, y in ((a.legs[0], b.legs[1]), (a.legs[1], b.legs[0])):
                assert (x.knee, x.lifted) == (y.knee, y.lifted)
    assert described > 50
