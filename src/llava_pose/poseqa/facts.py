"""The pose facts PoseQA may ask about: `pose.py`'s facts, kept only when clear by a margin.

A benchmark answer must be certain, not merely likely. Each fact below first needs `pose.py`'s
own verdict (posture_of, facing_of, arm_facts) and then a stricter margin on top, so a pose
near one of `pose.py`'s thresholds is never asked about. Every joint used must be labelled
*visible* (v=2): an occluded joint was placed by a guess. A pose model's joints must also be
scored with confidence (`KEYPOINT_SCORE_MIN`, `PERSON_SCORE_MIN`). All margins live here, in
`MARGINS`, and go into the manifest. Pure functions of one person's keypoints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..confidence import confident
from ..pose import (
    Body,
    Facing,
    Joint,
    Side,
    arm_facts,
    facing_of,
    joint_angle,
    make_body,
    posture_of,
)
from ..records import Person

# -- margins (fractions of the body scale, or degrees) ------------------------------------------

# A person placed by a pose model (`prepare --images`) is asked about only with a person score
# of at least this, and only joints scored at least this are used (on top of the threshold that
# made them visible: `confidence.confident`): nothing is asked about an uncertain joint.
PERSON_SCORE_MIN = 0.7
KEYPOINT_SCORE_MIN = 0.8
# Only people standing or sitting about upright are asked about (arms and sides mean the
# usual thing): torso within this of vertical.
UPRIGHT_TILT_MAX = 25.0
# Standing: both legs fully visible, each knee at least this straight (pose.py: 155) ...
STAND_KNEE_MIN = 165.0
# ... each hip->ankle within this of vertical (pose.py: 30) ...
STAND_LEG_MAX_DEG = 20.0
# ... and thigh and shin each at least this long (a thigh pointing at the camera, as when
# seated facing it, is short, ~0.1-0.3: that is not a clear standing leg; a child's legs are
# ~0.45 of the scale).
STAND_SEGMENT_MIN = 0.4
# Sitting: a visible thigh at least this far from vertical (pose.py: 55) and this long ...
SIT_THIGH_MIN_DEG = 65.0
SIT_THIGH_MIN_LENGTH = 0.5
# ... and, when the ankle is visible, the knee bent at least this much (pose.py: 120).
SIT_KNEE_MAX = 110.0
# Arm raised: the wrist this far above the shoulder (pose.py: 0.1); arm down: this far below.
ARM_RAISED_MIN = 0.4
ARM_DOWN_MIN = 0.3
# One hand higher than the other by at least this.
HAND_HIGHER_MIN = 0.4
# Facing the camera / away: shoulders this far apart along the body's left-right axis, in the
# order that says front or back (pose.py: 0.25).
FACING_SHOULDER_MIN = 0.45
# Facing a side of the picture: shoulders at most this far apart (side-on) and the nose this
# far in front of the ears (pose.py: 0.08).
PROFILE_SHOULDER_MAX = 0.15
PROFILE_NOSE_MIN = 0.2

MARGINS: dict[str, float] = {
    name: value
    for name, value in globals().items()
    if name.isupper() and isinstance(value, float) and name != "MARGINS"
}


def _visible(*joints: Joint | None) -> bool:
    return all(j is not None and j.v == 2 for j in joints)


def _length(a: Joint, b: Joint) -> float:
    return math.hypot(a.x - b.x, a.y - b.y)


def _from_vertical(a: Joint, b: Joint) -> float:
    """Angle of a->b from straight down, degrees."""
    return math.degrees(math.atan2(abs(b.x - a.x), b.y - a.y))


def upright(body: Body) -> bool:
    return body.torso_tilt is not None and body.torso_tilt <= UPRIGHT_TILT_MAX


def clear_posture(body: Body) -> str | None:
    """ "standing" or "sitting" when pose.py says so and the legs show it by a margin."""
    if not upright(body):
        return None
    posture, occluded = posture_of(body)
    if occluded or posture not in ("standing", "sitting"):
        return None
    legs = [
        (body.j(f"{s} hip"), body.j(f"{s} knee"), body.j(f"{s} ankle")) for s in ("left", "right")
    ]
    if posture == "standing":
        for hip, knee, ankle in legs:
            if not _visible(hip, knee, ankle):
                return None
            assert hip is not None and knee is not None and ankle is not None
            if min(_length(hip, knee), _length(knee, ankle)) < STAND_SEGMENT_MIN * body.scale:
                return None
            angle = joint_angle((hip.x, hip.y), (knee.x, knee.y), (ankle.x, ankle.y))
            if angle < STAND_KNEE_MIN or _from_vertical(hip, ankle) > STAND_LEG_MAX_DEG:
                return None
        return "standing"
    for hip, knee, ankle in legs:
        if not _visible(hip, knee):
            continue
        assert hip is not None and knee is not None
        if _length(hip, knee) < SIT_THIGH_MIN_LENGTH * body.scale:
            continue
        if not SIT_THIGH_MIN_DEG <= _from_vertical(hip, knee) <= 180 - SIT_THIGH_MIN_DEG:
            continue
        if ankle is not None:
            if ankle.v != 2:
                continue
            if joint_angle((hip.x, hip.y), (knee.x, knee.y), (ankle.x, ankle.y)) > SIT_KNEE_MAX:
                continue
        return "sitting"
    return None


def arm_up(body: Body, side: Side) -> bool | None:
    """True: that arm is clearly raised above the shoulder; False: clearly down; None: unclear."""
    if not upright(body):
        return None
    sh, wr = body.j(f"{side} shoulder"), body.j(f"{side} wrist")
    if not _visible(sh, wr):
        return None
    assert sh is not None and wr is not None
    rise = (sh.y - wr.y) / body.scale
    height = arm_facts(body, side, None, False).height
    if rise >= ARM_RAISED_MIN and height in ("above_shoulder", "above_head"):
        return True
    if rise <= -ARM_DOWN_MIN and height == "below_shoulder":
        return False
    return None


def any_arm_up(body: Body) -> bool | None:
    """True: an arm is clearly raised; False: both clearly down; None: unclear."""
    arms = [arm_up(body, "left"), arm_up(body, "right")]
    if True in arms:
        return True
    return False if arms == [False, False] else None


def higher_hand(body: Body) -> Side | None:
    """The person's own hand that is clearly higher in the picture."""
    if not upright(body):
        return None
    lw, rw = body.j("left wrist"), body.j("right wrist")
    if not _visible(lw, rw):
        return None
    assert lw is not None and rw is not None
    diff = (rw.y - lw.y) / body.scale  # > 0: the left wrist is higher
    if abs(diff) < HAND_HIGHER_MIN:
        return None
    return "left" if diff > 0 else "right"


def clear_facing(body: Body) -> Facing | None:
    """facing_of's verdict, when the shoulders and face show it by a margin."""
    if not upright(body):
        return None
    facing = facing_of(body)
    ls, rs, nose = body.j("left shoulder"), body.j("right shoulder"), body.j("nose")
    eyes = [body.j("left eye"), body.j("right eye")]
    if facing is None or not _visible(ls, rs):
        return None
    assert ls is not None and rs is not None
    sep = body.across((ls.x, ls.y), (rs.x, rs.y))
    if facing == "camera":
        return facing if sep >= FACING_SHOULDER_MIN and _visible(nose, *eyes) else None
    if facing == "away":
        face_seen = any(j is not None and j.v == 2 for j in (nose, *eyes))
        return facing if sep <= -FACING_SHOULDER_MIN and not face_seen else None
    ears = [e for e in (body.j("left ear"), body.j("right ear")) if e is not None and e.v == 2]
    if abs(sep) > PROFILE_SHOULDER_MAX or not _visible(nose) or not ears:
        return None
    assert nose is not None
    ex = sum(e.x for e in ears) / len(ears)
    ey = sum(e.y for e in ears) / len(ears)
    off = body.across((nose.x, nose.y), (ex, ey))
    if abs(off) < PROFILE_NOSE_MIN or (off > 0) != (facing == "right"):
        return None
    return facing


@dataclass(frozen=True)
class ClearFacts:
    """What may be asked about one person; None: not clear enough to ask."""

    posture: str | None = None
    arm_up: tuple[bool | None, bool | None] = (None, None)  # own left, own right
    any_arm_up: bool | None = None
    higher_hand: Side | None = None
    facing: Facing | None = None


def clear_facts(person: Person, width: int, height: int) -> ClearFacts:
    person = confident(person, KEYPOINT_SCORE_MIN, PERSON_SCORE_MIN)
    if person.num_labelled == 0:
        return ClearFacts()
    body = make_body(person, width, height)
    return ClearFacts(
        posture=clear_posture(body),
        arm_up=(arm_up(body, "left"), arm_up(body, "right")),
        any_arm_up=any_arm_up(body),
        higher_hand=higher_hand(body),
        facing=clear_facing(body),
    )
