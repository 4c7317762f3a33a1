"""Clear facts on constructed poses: asked when clear, withheld near a threshold."""

from __future__ import annotations

from tests.poseqa.people import RIGHT_ARM_UP, SITTING, SIZE, STANDING, person

from llava_pose.poseqa.facts import ARM_RAISED_MIN, MARGINS, ClearFacts, clear_facts


def facts(points: dict[str, tuple[float, float]], v: int = 2) -> ClearFacts:
    return clear_facts(person(points, v=v), SIZE, SIZE)


def test_standing_facing_camera_arms_down() -> None:
    assert facts(STANDING) == ClearFacts("standing", (False, False), False, None, "camera")


def test_right_arm_raised_is_the_persons_own_right() -> None:
    f = facts(RIGHT_ARM_UP)
    assert f.arm_up == (False, True) and f.any_arm_up is True and f.higher_hand == "right"


def test_sitting_side_on_faces_the_pictures_right() -> None:
    f = facts(SITTING)
    assert f.posture == "sitting" and f.facing == "right" and f.arm_up == (False, None)


def test_occluded_joints_give_no_fact() -> None:
    assert facts(STANDING, v=1) == ClearFacts()


def test_wrist_just_above_the_shoulder_is_not_asked() -> None:
    # pose.py calls this arm raised (0.1 of the scale above the shoulder); PoseQA does not.
    scale = 300  # shoulders to hips, pixels
    rise = (ARM_RAISED_MIN / 2) * scale / SIZE
    near = {**STANDING, "right elbow": (0.34, 0.2), "right wrist": (0.3, 0.2 - rise)}
    assert facts(near).arm_up == (False, None) and facts(near).any_arm_up is None


def test_thighs_pointing_at_the_camera_are_not_clear_standing() -> None:
    # Seated facing the camera: short thighs, shins hanging straight below the knees.
    seated = {
        **STANDING,
        "left knee": (0.54, 0.55),
        "right knee": (0.46, 0.55),
        "left ankle": (0.54, 0.8),
        "right ankle": (0.46, 0.8),
    }
    assert facts(seated).posture is None


def test_bent_standing_knee_is_not_clear() -> None:
    bent = {**STANDING, "left knee": (0.6, 0.7)}  # ~163 deg at the knee: pose.py says standing
    assert facts(bent).posture is None


def test_margins_are_listed_for_the_manifest() -> None:
    assert MARGINS["ARM_RAISED_MIN"] == ARM_RAISED_MIN and "STAND_KNEE_MIN" in MARGINS
