"""Pose facts from COCO keypoints: geometry only, no English.

Dataclasses of facts, the thresholds that decide them and pure functions of keypoints (and
object boxes). The offline teacher's wording of these facts is `llava_pose.teachers.wording`;
the claim checker (`llava_pose.verify`), the cues (`llava_pose.context`) and PoseQA read the
same facts. They must be right more often than they are interesting: every threshold below
errs on the side of saying nothing.

Conventions:

* Angles are measured in PIXEL space. Normalized coordinates are scaled back by the image
  width and height first, because the same normalized numbers make a different angle on a
  wide image than on a square one.
* Image y grows downward. "left arm" is the PERSON's left arm (COCO's convention); image sides
  are always worded as "the left side of the picture".
* A joint with v=0 (not labelled) is never used. A fact that needs a missing joint is unknown
  (None) and is never phrased. Joints with v=1 (labelled, occluded) are used, but the fact is
  marked `occluded` (the wording then hedges: "appears to be").
* Lengths are compared with a per-person body `scale` (about the torso length in pixels), so
  the thresholds mean the same on a child in the distance and an adult in close-up.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import resources
from typing import Literal

import yaml

from .records import KEYPOINT_NAMES, ImageContext, Obj, Person

Side = Literal["left", "right"]
Bend = Literal["straight", "slightly_bent", "bent"]
ArmHeight = Literal["above_head", "above_shoulder", "below_shoulder"]
Reach = Literal["forward", "backward", "sideways", "out"]
Posture = Literal["standing", "sitting", "crouching", "kneeling", "lying", "bending"]
Lean = Literal["upright", "forward", "back", "left", "right"]
Facing = Literal["camera", "away", "left", "right"]
FrameX = Literal["left", "centre", "right"]
Depth = Literal["foreground", "background"]
ContactKind = Literal["holding", "touching", "near", "on_feet", "riding", "seated", "lying_on"]

KP: dict[str, int] = {name: i for i, name in enumerate(KEYPOINT_NAMES)}

# -- thresholds (degrees, or fractions of the body scale) -----------------------------------

# A straight limb projects to a straight line, but a bent one can project straight when it
# bends towards the camera; annotators also click a few pixels off. 150 deg leaves room for
# that noise while a visibly bent elbow (~90-120 deg) stays "bent".
ELBOW_STRAIGHT_MIN = 150.0
ELBOW_BENT_MAX = 120.0  # between the two: "slightly bent"
# A standing knee is ~170-180 deg; 155 keeps a relaxed standing leg straight, while a flexed
# knee in a squat, a stride or on a seat (~90-130 deg) is bent.
KNEE_STRAIGHT_MIN = 155.0
KNEE_BENT_MAX = 130.0
# Segments shorter than this (fraction of scale, and pixels) point at the camera or are
# too small for their angle to mean anything.
MIN_SEGMENT = 0.15
MIN_SEGMENT_PX = 3.0
# Wrist higher than the shoulder by a tenth of the torso: clearly lifted, not a shrug.
RAISE_MARGIN = 0.10
# Top of the head above the highest labelled head point (eyes/ears sit below the crown),
# or above the shoulders when no head point is labelled.
HEAD_TOP_ABOVE_FACE = 0.15
HEAD_TOP_ABOVE_SHOULDERS = 0.6
# An arm "hangs" when shoulder->wrist points within this of straight down, the elbow is
# nearly straight and the arm is long enough in the image not to point at the camera.
HANG_MAX_DEG = 25.0
HANG_ELBOW_MIN = 140.0
HANG_MIN_LENGTH = 0.5
# An arm "reaches" when it is nearly straight and within this of horizontal, and long
# enough in the image (a reach towards the camera is foreshortened and not claimed).
REACH_MAX_DEG = 30.0
REACH_ELBOW_MIN = 140.0
REACH_MIN_LENGTH = 0.6
# Torso tilt from vertical: below UPRIGHT_MAX it is upright (normal sway and annotation
# noise), up to LYING_TILT it is a lean, from there the torso is horizontal.
UPRIGHT_MAX = 12.0
LYING_TILT = 60.0
# With the legs unknown, a horizontal torso alone says "lying" only when clearly flat.
LYING_TILT_NO_LEGS = 70.0
# Legs count as horizontal (lying) / vertical (bending over) within these of the vertical.
LEGS_HORIZONTAL_MIN = 50.0
LEGS_VERTICAL_MAX = 30.0
# Above this tilt the person is upside down (a flip, a handstand): no posture claimed.
INVERTED_TILT = 120.0
# Standing: torso within this of vertical, each known leg straightish and vertical.
STANDING_TILT_MAX = 45.0
STANDING_KNEE_MIN = 140.0
STANDING_LEG_MAX_DEG = 30.0
# ... and each such thigh long in the image. A thigh shorter than this points at the camera
# (a seated person seen from the front, COCO train2017 463557): its knee angle looks straight
# whatever the knee does, so the leg says nothing about standing (an adult's standing thigh
# is ~0.9, a small child's ~0.35-0.5; the seated boy's are 0.2).
STANDING_THIGH_MIN = 0.3
# Sitting: the thigh lies within 35 deg of horizontal (>= 55 from vertical) and is long
# enough in the image to have a direction; the torso is within 45 deg of upright.
SIT_THIGH_MIN_DEG = 55.0
SIT_THIGH_MIN_LENGTH = 0.35
SIT_TILT_MAX = 45.0
# ... and the knee is bent like on a chair (a seat puts it near 90 deg), or the whole leg is
# stretched out flat on the ground. In between (~120-150 deg, a ski tuck, a lunge) is no seat.
SIT_KNEE_MAX = 120.0
SIT_FLAT_KNEE_MIN = 150.0
# Sitting seen from the front: the thigh points at the camera (shorter than this) while the
# shin hangs down at full length below it.
SIT_FRONT_THIGH_MAX = 0.35
SIT_FRONT_SHIN_MIN = 0.5
# ... with the torso upright: a forward lean over foreshortened thighs is as often a crouched
# stance facing the camera (an umpire, a catcher rising) as a seat.
SIT_FRONT_TILT_MAX = 15.0
# Crouching/squatting: every known knee sharply bent and the hips down near the feet.
CROUCH_KNEE_MAX = 110.0
CROUCH_HIP_DROP_MAX = 0.5
# Kneeling: the shin lies flat (>= 60 deg from vertical) under an upright thigh.
KNEEL_SHIN_MIN_DEG = 60.0
KNEEL_THIGH_MAX_DEG = 35.0
KNEEL_KNEE_MAX = 130.0
# ... with that knee down at ground level (the lowest knee or ankle), not lifted behind.
KNEEL_KNEE_ABOVE_GROUND_MAX = 0.3
# Shoulders further apart than this along the body's left-right axis decide front/back;
# closer, the person is side-on (a frontal shoulder span is ~0.6-0.8 torso lengths).
SHOULDER_ORDER_MIN = 0.25
# In profile, the nose must sit this far in front of the ears/shoulders to give a direction.
PROFILE_NOSE_MIN = 0.08
# Feet this far apart sideways: a stride (side-on) or a wide stance (front/back).
STRIDE_MIN = 0.5
# One ankle this much higher than the other: that foot is off the ground.
LIFT_MIN = 0.25
# Both feet are planted (down at one level) only when a standing person's ankles differ in
# height by at most this fraction of the leg's length (`leg_length`): stricter than LIFT_MIN,
# so between the two neither a raised nor a planted foot is said.
PLANTED_MAX = 0.1
LEG_PER_SCALE = 1.8
# Frame thirds for left/centre/right; a person box at least this tall (fraction of the
# image) is in the foreground, one smaller than BACKGROUND_MAX in the background.
THIRD = 1 / 3
FOREGROUND_MIN = 0.5
BACKGROUND_MAX = 0.15
# Two persons whose box centres are closer than this (fraction of the width) are side by
# side; neither is called left of the other.
SIDE_BY_SIDE = 0.05
# A wrist within this (fraction of scale) outside an object box is "near" it.
NEAR_MARGIN = 0.3
# An ankle this close to a board counts as standing on it.
FOOT_MARGIN = 0.15


# -- geometry ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Joint:
    """A labelled keypoint in pixels."""

    x: float
    y: float
    v: int

    @property
    def occluded(self) -> bool:
        return self.v == 1


Vec = tuple[float, float]


def pixel_joints(person: Person, width: int, height: int) -> tuple[Joint | None, ...]:
    """The 17 keypoints in pixels; None for every joint that is not labelled (v=0)."""
    return tuple(Joint(x * width, y * height, v) if v > 0 else None for x, y, v in person.keypoints)


def _sub(a: Vec, b: Vec) -> Vec:
    return (a[0] - b[0], a[1] - b[1])


def _dot(a: Vec, b: Vec) -> float:
    return a[0] * b[0] + a[1] * b[1]


def _norm(a: Vec) -> float:
    return math.hypot(a[0], a[1])


def _xy(j: Joint) -> Vec:
    return (j.x, j.y)


def _angle_between(a: Vec, b: Vec) -> float:
    """Unsigned angle between two vectors, degrees."""
    na, nb = _norm(a), _norm(b)
    c = max(-1.0, min(1.0, _dot(a, b) / (na * nb)))
    return math.degrees(math.acos(c))


def _mid(joints: Sequence[Joint | None]) -> Vec | None:
    known = [j for j in joints if j is not None]
    if not known:
        return None
    return (sum(j.x for j in known) / len(known), sum(j.y for j in known) / len(known))


def joint_angle(a: Vec, b: Vec, c: Vec) -> float:
    """The angle at `b` between b->a and b->c, degrees (180 = straight)."""
    return _angle_between(_sub(a, b), _sub(c, b))


@dataclass(frozen=True)
class Body:
    """A person's joints in pixels with the body frame the facts are measured in."""

    joints: tuple[Joint | None, ...]
    scale: float  # ~ torso length, pixels
    up: Vec  # unit vector pointing to the head (image up for upright people)
    right: Vec  # unit vector to the viewer's right in the body frame
    torso_tilt: float | None  # degrees from image vertical; None without shoulders and hips
    box: tuple[float, float, float, float]  # pixels

    def j(self, name: str) -> Joint | None:
        return self.joints[KP[name]]

    def height_of(self, p: Vec, ref: Vec) -> float:
        """How far `p` is above `ref` along the body's up axis, in scale units."""
        return _dot(_sub(p, ref), self.up) / self.scale

    def across(self, p: Vec, ref: Vec) -> float:
        """How far `p` is right of `ref` (viewer's right in the body frame), in scale units."""
        return _dot(_sub(p, ref), self.right) / self.scale


def _pair(body_joints: tuple[Joint | None, ...], part: str) -> list[Joint | None]:
    return [body_joints[KP[f"left {part}"]], body_joints[KP[f"right {part}"]]]


def body_scale(
    joints: tuple[Joint | None, ...], box_px: tuple[float, float, float, float]
) -> float:
    """About one torso length in pixels, robust to a foreshortened torso or missing joints.

    The longest of the torso and the limb segments rescaled to torso proportions (upper arm
    ~0.6, thigh and shin ~0.9 torso lengths); a limb pointing at the camera only shortens,
    so the maximum is the least foreshortened estimate. Without any segment, a standing
    person's box is ~3 torso lengths tall.
    """
    estimates: list[float] = []
    sh = _mid(_pair(joints, "shoulder"))
    hp = _mid(_pair(joints, "hip"))
    if sh and hp:
        estimates.append(_norm(_sub(sh, hp)))
    for side in ("left", "right"):
        for a, b, ratio in (
            ("shoulder", "elbow", 0.6),
            ("hip", "knee", 0.9),
            ("knee", "ankle", 0.9),
        ):
            ja, jb = joints[KP[f"{side} {a}"]], joints[KP[f"{side} {b}"]]
            if ja and jb:
                estimates.append(_norm(_sub(_xy(ja), _xy(jb))) / ratio)
    if estimates and max(estimates) >= MIN_SEGMENT_PX:
        return max(estimates)
    x1, y1, x2, y2 = box_px
    return max(1.0, max(x2 - x1, y2 - y1) / 3)


def make_body(person: Person, width: int, height: int) -> Body:
    """Pixel joints plus the body frame: torso axis when known, else the image's up."""
    joints = pixel_joints(person, width, height)
    x1, y1, x2, y2 = person.box
    box = (x1 * width, y1 * height, x2 * width, y2 * height)
    scale = body_scale(joints, box)
    sh = _mid(_pair(joints, "shoulder"))
    hp = _mid(_pair(joints, "hip"))
    tilt = None
    up: Vec = (0.0, -1.0)
    if sh and hp:
        axis = _sub(sh, hp)
        length = _norm(axis)
        if length >= max(MIN_SEGMENT_PX, MIN_SEGMENT * scale):
            tilt = _angle_between(axis, (0.0, -1.0))
            if tilt >= LYING_TILT:
                # Horizontal or inverted: judge arms and facing in the body's own frame.
                up = (axis[0] / length, axis[1] / length)
    # Rotating `up` by +90 deg on screen (y down) gives the viewer's right.
    right: Vec = (-up[1], up[0])
    return Body(joints, scale, up, right, tilt, box)


# -- facts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArmFacts:
    """One arm. None fields are unknown (a needed joint is not labelled)."""

    side: Side
    height: ArmHeight | None = None
    elbow: Bend | None = None
    elbow_angle: float | None = None
    hanging: bool | None = None
    reach: Reach | None = None  # None: not reaching, or unknown
    occluded: bool = False  # some joint used is labelled but hidden (v=1)

    @property
    def known(self) -> bool:
        return self.height is not None or self.elbow is not None


@dataclass(frozen=True)
class LegFacts:
    """One leg. None fields are unknown."""

    side: Side
    knee: Bend | None = None
    knee_angle: float | None = None
    lifted: bool | None = None
    occluded: bool = False

    @property
    def known(self) -> bool:
        return self.knee is not None or bool(self.lifted)


@dataclass(frozen=True)
class Contact:
    """A body part at an object: a hand holding/touching/near it, feet on it, riding it."""

    kind: ContactKind
    category: str
    side: Side | None = None  # the hand, for hand contacts


@dataclass(frozen=True)
class PoseFacts:
    """Everything known about one person's pose: what the teachers, cues and checker use."""

    index: int  # position in ImageContext.persons
    num_labelled: int
    posture: Posture | None = None
    posture_occluded: bool = False
    torso_tilt: float | None = None
    lean: Lean | None = None
    facing: Facing | None = None
    arms: tuple[ArmFacts, ArmFacts] = (ArmFacts("left"), ArmFacts("right"))
    legs: tuple[LegFacts, LegFacts] = (LegFacts("left"), LegFacts("right"))
    stride: bool | None = None  # feet well apart sideways
    planted: bool | None = None  # standing with both feet down at one level
    frame_x: FrameX = "centre"
    depth: Depth | None = None
    contacts: tuple[Contact, ...] = ()

    @property
    def has_pose(self) -> bool:
        """Whether anything about the body itself (not just its place) is known."""
        return (
            self.posture is not None
            or self.facing is not None
            or self.lean is not None
            or any(a.known for a in self.arms)
            or any(leg.known for leg in self.legs)
        )


def _bend(angle: float, straight_min: float, bent_max: float) -> Bend:
    if angle >= straight_min:
        return "straight"
    if angle >= bent_max:
        return "slightly_bent"
    return "bent"


def _segment_ok(body: Body, a: Joint, b: Joint) -> bool:
    length = _norm(_sub(_xy(a), _xy(b)))
    return length >= MIN_SEGMENT_PX and length >= MIN_SEGMENT * body.scale


def limb_angle(body: Body, a: Joint | None, b: Joint | None, c: Joint | None) -> float | None:
    """Angle at the middle joint, or None when a joint is missing or a segment too short."""
    if a is None or b is None or c is None:
        return None
    if not (_segment_ok(body, a, b) and _segment_ok(body, b, c)):
        return None
    return joint_angle(_xy(a), _xy(b), _xy(c))


def _head_top(body: Body, shoulder: Joint) -> float:
    """Height of the top of the head above the shoulder, scale units."""
    ref = _xy(shoulder)
    head = [body.j(n) for n in ("nose", "left eye", "right eye", "left ear", "right ear")]
    known = [h for h in head if h is not None]
    if known:
        return max(body.height_of(_xy(h), ref) for h in known) + HEAD_TOP_ABOVE_FACE
    sh = _mid(_pair(body.joints, "shoulder"))
    assert sh is not None
    return body.height_of(sh, ref) + HEAD_TOP_ABOVE_SHOULDERS


def facing_of(body: Body) -> Facing | None:
    """Which way the person faces, from shoulder order and the face.

    Facing the camera means the front of the body is towards the viewer: the person's left
    shoulder appears on the viewer's right. Facing away is the mirror. Side-on (shoulders
    nearly overlapping), the nose points the way: "left"/"right" are the picture's sides.
    A shoulder order that contradicts the face (a frontal face over a back view) is not
    called.
    """
    ls, rs = body.j("left shoulder"), body.j("right shoulder")
    nose = body.j("nose")
    eyes = [body.j("left eye"), body.j("right eye")]
    ears = [body.j("left ear"), body.j("right ear")]
    face_visible = (
        nose is not None and nose.v == 2 and all(e is not None and e.v == 2 for e in eyes)
    )
    face_hidden = (
        (nose is None or nose.v != 2)
        and all(e is None or e.v != 2 for e in eyes)
        and any(e is not None for e in ears)
    )

    def profile() -> Facing | None:
        ref = _mid(ears) or _mid([ls, rs])
        if nose is not None and ref is not None:
            off = body.across(_xy(nose), ref)
            if abs(off) >= PROFILE_NOSE_MIN:
                return "right" if off > 0 else "left"
            return None
        le, re_ = ears
        # Only one ear seen: that side of the head is towards the camera. Showing the left
        # ear means the person has turned to their right, the viewer's left.
        if le is not None and le.v == 2 and (re_ is None or re_.v != 2):
            return "left"
        if re_ is not None and re_.v == 2 and (le is None or le.v != 2):
            return "right"
        return None

    if ls is not None and rs is not None:
        sep = body.across(_xy(ls), _xy(rs))
        if sep >= SHOULDER_ORDER_MIN:
            return None if face_hidden else "camera"
        if sep <= -SHOULDER_ORDER_MIN:
            return None if face_visible else "away"
        return profile()
    # No shoulder pair: the face alone.
    if face_visible:
        assert nose is not None
        eye_mid = _mid(eyes)
        assert eye_mid is not None
        off = body.across(_xy(nose), eye_mid)
        if abs(off) < PROFILE_NOSE_MIN:
            return "camera"
        return None
    if nose is None and all(e is None for e in eyes) and all(e is not None for e in ears):
        return "away"
    if nose is not None and nose.v == 2:
        return profile()
    return None


def arm_facts(body: Body, side: Side, facing: Facing | None, lying: bool) -> ArmFacts:
    sh, el, wr = (body.j(f"{side} {p}") for p in ("shoulder", "elbow", "wrist"))
    used = [j for j in (sh, el, wr) if j is not None]
    occluded = any(j.occluded for j in used)
    angle = limb_angle(body, sh, el, wr)
    elbow = _bend(angle, ELBOW_STRAIGHT_MIN, ELBOW_BENT_MAX) if angle is not None else None
    height: ArmHeight | None = None
    hanging: bool | None = None
    reach: Reach | None = None
    if sh is not None and wr is not None:
        rise = body.height_of(_xy(wr), _xy(sh))
        if rise > _head_top(body, sh):
            height = "above_head"
        elif rise > RAISE_MARGIN:
            height = "above_shoulder"
        else:
            height = "below_shoulder"
        d = _sub(_xy(wr), _xy(sh))
        length = _norm(d) / body.scale
        down = (-body.up[0], -body.up[1])
        if angle is not None and length > 0:
            from_down = _angle_between(d, down)
            if not lying:
                hanging = (
                    from_down <= HANG_MAX_DEG
                    and angle >= HANG_ELBOW_MIN
                    and length >= HANG_MIN_LENGTH
                )
            from_horizontal = abs(90.0 - from_down)
            if (
                not lying
                and angle >= REACH_ELBOW_MIN
                and from_horizontal <= REACH_MAX_DEG
                and length >= REACH_MIN_LENGTH
            ):
                towards = body.across(_xy(wr), _xy(sh))
                if facing in ("left", "right"):
                    ahead = (towards > 0) == (facing == "right")
                    reach = "forward" if ahead else "backward"
                elif facing in ("camera", "away"):
                    reach = "sideways"
                else:
                    reach = "out"
    if elbow is None and height is None:
        occluded = False
    return ArmFacts(side, height, elbow, angle, hanging, reach, occluded)


def _leg_joints(body: Body, side: Side) -> tuple[Joint | None, Joint | None, Joint | None]:
    return body.j(f"{side} hip"), body.j(f"{side} knee"), body.j(f"{side} ankle")


def _dir_from_vertical(a: Joint, b: Joint) -> float:
    """Angle of a->b from straight down in the image, degrees (0 = b directly below a)."""
    return _angle_between(_sub(_xy(b), _xy(a)), (0.0, 1.0))


def _thigh(body: Body, hip: Joint, knee: Joint) -> float:
    """Thigh length in the image, in scale units (short: it points at the camera)."""
    return _norm(_sub(_xy(knee), _xy(hip))) / body.scale


def _knee_angles(
    body: Body, legs: Sequence[tuple[Joint | None, Joint | None, Joint | None]]
) -> list[float | None]:
    return [limb_angle(body, hip, knee, ankle) for hip, knee, ankle in legs]


def posture_of(body: Body) -> tuple[Posture | None, bool]:
    """Standing/sitting/crouching/kneeling/lying/bending, conservatively; and if occluded.

    Judged in image space (gravity is down in nearly every COCO photo). Each rule needs the
    joints it looks at; with none of them the posture is unknown.
    """
    tilt = body.torso_tilt
    if tilt is None:
        return None, False
    legs = [_leg_joints(body, s) for s in ("left", "right")]  # type: ignore[arg-type]
    occluded = any(
        j is not None and j.occluded
        for j in (*_pair(body.joints, "shoulder"), *_pair(body.joints, "hip"))
    )
    leg_occluded = any(j is not None and j.occluded for leg in legs for j in leg)
    # Direction of each leg: hip->ankle, else hip->knee.
    leg_dirs: list[float] = []
    for hip, knee, ankle in legs:
        end = ankle or knee
        if hip is not None and end is not None and _segment_ok(body, hip, end):
            leg_dirs.append(_dir_from_vertical(hip, end))
    if tilt >= INVERTED_TILT:
        return None, False
    if tilt >= LYING_TILT:
        if not leg_dirs:
            return ("lying", occluded) if tilt >= LYING_TILT_NO_LEGS else (None, False)
        if all(d >= LEGS_HORIZONTAL_MIN for d in leg_dirs):
            return "lying", occluded or leg_occluded
        if all(d <= LEGS_VERTICAL_MAX for d in leg_dirs):
            return "bending", occluded or leg_occluded
        return None, False
    occluded = occluded or leg_occluded
    knee_angles = _knee_angles(body, legs)
    knees = [k for k in knee_angles if k is not None]
    # A straight leg planted under the hip carries the weight: whatever the other leg does
    # (a kick, a pitcher's wind-up, a knee raised mid-run), the person is not down on a knee
    # or seated. Only a thigh seen at length shows a straight knee: a foreshortened one (a
    # seated person facing the camera) looks straight whatever the knee does.
    planted = any(
        k is not None
        and k >= STANDING_KNEE_MIN
        and hip is not None
        and knee is not None
        and ankle is not None
        and _thigh(body, hip, knee) >= STANDING_THIGH_MIN
        and _dir_from_vertical(hip, ankle) <= STANDING_LEG_MAX_DEG
        for k, (hip, knee, ankle) in zip(knee_angles, legs, strict=True)
    )
    # The ground is at the lowest labelled knee or ankle; a kneeling knee rests on it.
    low = [j.y for _, knee, ankle in legs for j in (knee, ankle) if j is not None]
    ground = max(low) if low else None
    for k, (hip, knee, ankle) in zip(knee_angles, legs, strict=True):
        if k is None or planted or ground is None:
            continue
        assert hip is not None and knee is not None and ankle is not None
        if (
            k <= KNEEL_KNEE_MAX
            and _dir_from_vertical(knee, ankle) >= KNEEL_SHIN_MIN_DEG
            and _dir_from_vertical(hip, knee) <= KNEEL_THIGH_MAX_DEG
            and (ground - knee.y) / body.scale <= KNEEL_KNEE_ABOVE_GROUND_MAX
        ):
            return "kneeling", occluded
    # Crouching: every known knee sharply bent and the hips down at the feet.
    drops = [
        (ankle.y - hip.y) / body.scale
        for hip, _, ankle in legs
        if hip is not None and ankle is not None
    ]
    if (
        knees
        and all(k <= CROUCH_KNEE_MAX for k in knees)
        and drops
        and max(drops) <= CROUCH_HIP_DROP_MAX
    ):
        return "crouching", occluded
    if tilt <= SIT_TILT_MAX and not planted:
        for k, (hip, knee, ankle) in zip(knee_angles, legs, strict=True):
            if hip is None or knee is None:
                continue
            thigh = _norm(_sub(_xy(knee), _xy(hip))) / body.scale
            thigh_dir = _dir_from_vertical(hip, knee)
            if thigh < SIT_THIGH_MIN_LENGTH or thigh_dir < SIT_THIGH_MIN_DEG:
                continue
            if thigh_dir > 90 + (90 - SIT_THIGH_MIN_DEG):
                continue  # knee far above the hip: a kick or a climb, not a seat
            if k is None and knee.occluded and tilt > SIT_FRONT_TILT_MAX:
                continue  # leaning over one thigh that ends at a guessed knee: a crouch too
            if k is not None and ankle is not None:
                # On a seat the shin drops from a clearly bent knee; sitting on the ground the
                # whole leg lies flat. A half-bent knee under a sloping thigh is a ski tuck or
                # a lunge, not a seat.
                legs_flat = (
                    k >= SIT_FLAT_KNEE_MIN and _dir_from_vertical(knee, ankle) >= SIT_THIGH_MIN_DEG
                )
                if not (k <= SIT_KNEE_MAX or legs_flat):
                    continue
            return "sitting", occluded
        # Seen from the front: short (foreshortened) thighs over long, hanging shins, on
        # every leg whose three joints are known.
        front = []
        for hip, knee, ankle in legs:
            if hip is None or knee is None or ankle is None:
                continue
            thigh = _norm(_sub(_xy(knee), _xy(hip))) / body.scale
            shin = _norm(_sub(_xy(ankle), _xy(knee))) / body.scale
            front.append(
                thigh <= SIT_FRONT_THIGH_MAX
                and knee.y >= hip.y
                and shin >= SIT_FRONT_SHIN_MIN
                and _dir_from_vertical(knee, ankle) <= STANDING_LEG_MAX_DEG
            )
        if front and all(front) and tilt <= SIT_FRONT_TILT_MAX:
            return "sitting", occluded
    if tilt <= STANDING_TILT_MAX:
        standing_legs = 0
        for hip, knee, ankle in legs:
            angle = limb_angle(body, hip, knee, ankle)
            if angle is None:
                continue
            assert hip is not None and knee is not None and ankle is not None
            if (
                angle < STANDING_KNEE_MIN
                or _dir_from_vertical(hip, ankle) > STANDING_LEG_MAX_DEG
                or _thigh(body, hip, knee) < STANDING_THIGH_MIN
            ):
                return None, False  # a leg that does not stand: no claim rather than a wrong one
            standing_legs += 1
        if standing_legs:
            return "standing", occluded
    return None, False


def lean_of(body: Body, facing: Facing | None, posture: Posture | None) -> Lean | None:
    """Upright, or which way the torso leans: forward/back when side-on, else image side."""
    tilt = body.torso_tilt
    if tilt is None or tilt >= LYING_TILT or posture in ("lying", "bending"):
        return None
    if tilt < UPRIGHT_MAX:
        return "upright"
    sh = _mid(_pair(body.joints, "shoulder"))
    hp = _mid(_pair(body.joints, "hip"))
    assert sh is not None and hp is not None
    to_right = sh[0] > hp[0]
    if facing in ("left", "right"):
        return "forward" if to_right == (facing == "right") else "back"
    return "right" if to_right else "left"


def leg_facts(body: Body, side: Side, posture: Posture | None) -> LegFacts:
    hip, knee, ankle = _leg_joints(body, side)
    angle = limb_angle(body, hip, knee, ankle)
    knee_bend = _bend(angle, KNEE_STRAIGHT_MIN, KNEE_BENT_MAX) if angle is not None else None
    lifted: bool | None = None
    other = body.j(f"{'right' if side == 'left' else 'left'} ankle")
    if (
        ankle is not None
        and other is not None
        and posture in ("standing", None)
        and body.torso_tilt is not None
        and body.torso_tilt < LYING_TILT
    ):
        lifted = (other.y - ankle.y) / body.scale >= LIFT_MIN
    used = [j for j in (hip, knee, ankle) if j is not None] if angle is not None else []
    if lifted is not None:
        used += [j for j in (ankle, other) if j is not None]
    occluded = any(j.occluded for j in used)
    return LegFacts(side, knee_bend, angle, lifted, occluded)


def stride_of(body: Body, posture: Posture | None) -> bool | None:
    la, ra = body.j("left ankle"), body.j("right ankle")
    if la is None or ra is None or posture not in ("standing", None):
        return None
    if body.torso_tilt is None or body.torso_tilt >= LYING_TILT:
        return None
    return abs(la.x - ra.x) / body.scale >= STRIDE_MIN


def leg_length(body: Body) -> float:
    """A leg's length (hip-knee-ankle) in pixels: the longest labelled leg or LEG_PER_SCALE
    body scales, whichever is longer (a leg pointing at the camera only shortens)."""
    lengths = [
        _norm(_sub(_xy(hip), _xy(knee))) + _norm(_sub(_xy(knee), _xy(ankle)))
        for hip, knee, ankle in (_leg_joints(body, "left"), _leg_joints(body, "right"))
        if hip is not None and knee is not None and ankle is not None
    ]
    return max([*lengths, LEG_PER_SCALE * body.scale])


def feet_planted(body: Body, posture: Posture | None) -> bool | None:
    """Whether a standing person has both feet down: both ankles labelled at about one height.

    None when it cannot be told (an ankle unlabelled, not standing: a rider's or a surfer's
    feet rest on something, not the ground). A raised foot is never planted.
    """
    la, ra = body.j("left ankle"), body.j("right ankle")
    if la is None or ra is None or posture != "standing":
        return None
    return abs(la.y - ra.y) / leg_length(body) <= PLANTED_MAX


def frame_position(person: Person) -> tuple[FrameX, Depth | None]:
    """Left/centre/right third by box centre; foreground/background by box size."""
    x1, y1, x2, y2 = person.box
    cx = (x1 + x2) / 2
    frame_x: FrameX = "left" if cx < THIRD else "right" if cx > 1 - THIRD else "centre"
    size = max(x2 - x1, y2 - y1)
    depth: Depth | None = (
        "foreground" if size >= FOREGROUND_MIN else "background" if size < BACKGROUND_MAX else None
    )
    return frame_x, depth


@functools.cache
def object_roles() -> dict[str, frozenset[str]]:
    """Which object categories are held, stood on or ridden (package data)."""
    text = resources.files("llava_pose").joinpath("data/pose/objects.yaml").read_text("utf-8")
    data: dict[str, list[str]] = yaml.safe_load(text)
    return {k: frozenset(v) for k, v in data.items()}


def _in_box(p: Vec, box: tuple[float, float, float, float], margin: float) -> bool:
    x1, y1, x2, y2 = box
    return x1 - margin <= p[0] <= x2 + margin and y1 - margin <= p[1] <= y2 + margin


_HAND_RANK = {"holding": 0, "touching": 1, "near": 2}


def contacts_of(
    body: Body, objects: Sequence[Obj], width: int, height: int, posture: Posture | None = None
) -> tuple[Contact, ...]:
    """Hands in/near object boxes, feet on boards, hips on seats and on ridden things.

    Boxes overlap in a photo without touching, so only small handheld things are "held";
    anything else under a wrist is only "at" the hand.
    """
    roles = object_roles()
    out: list[Contact] = []
    seen: set[tuple[str, str, str | None]] = set()

    def add(kind: ContactKind, category: str, side: Side | None = None) -> None:
        if (kind, category, side) not in seen:
            seen.add((kind, category, side))
            out.append(Contact(kind, category, side))

    px = [
        (o.category, (o.box[0] * width, o.box[1] * height, o.box[2] * width, o.box[3] * height))
        for o in objects
        if o.category != "person"
    ]
    hip = _mid(_pair(body.joints, "hip"))
    ankles = [a for a in _pair(body.joints, "ankle") if a is not None]
    underfoot: set[str] = set()
    for category, box in px:
        x1, y1, x2, y2 = box
        if (
            category in roles["ridden"]
            and hip is not None
            and ankles
            and posture not in ("standing", "lying")
        ):
            # In the saddle: hips at or above the top of the box, feet off the ground.
            raised_box = (x1, y1 - 0.3 * (y2 - y1), x2, y2)
            if _in_box(hip, raised_box, 0) and all(a.y < y2 - 0.1 * (y2 - y1) for a in ankles):
                add("riding", category)
                underfoot.add(category)
        if category in roles["boards"] and any(
            _in_box(_xy(a), box, FOOT_MARGIN * body.scale) for a in ankles
        ):
            add("on_feet", category)
            underfoot.add(category)
        if category in roles["seats"] and hip is not None and _in_box(hip, box, 0):
            if posture == "sitting":
                add("seated", category)
            elif posture == "lying":
                add("lying_on", category)
    for side in ("left", "right"):
        wrist = body.j(f"{side} wrist")
        if wrist is None:
            continue
        best: Contact | None = None
        for category, box in px:
            if category in underfoot:
                continue
            if _in_box(_xy(wrist), box, 0):
                kind: ContactKind = "holding" if category in roles["handheld"] else "touching"
            elif _in_box(_xy(wrist), box, NEAR_MARGIN * body.scale):
                kind = "near"
            else:
                continue
            if best is None or _HAND_RANK[kind] < _HAND_RANK[best.kind]:
                best = Contact(kind, category, side)  # type: ignore[arg-type]
        if best is not None:
            add(best.kind, best.category, best.side)
    return tuple(out)


def pose_facts(
    person: Person, width: int, height: int, objects: Sequence[Obj] = (), index: int = 0
) -> PoseFacts:
    """All facts about one person, each None/absent when its joints are not labelled."""
    frame_x, depth = frame_position(person)
    if person.num_labelled == 0:
        return PoseFacts(index, 0, frame_x=frame_x, depth=depth)
    body = make_body(person, width, height)
    facing = facing_of(body)
    posture, posture_occluded = posture_of(body)
    lying = posture == "lying"
    # Arms of a lying person are described along the body ("stretched above the head");
    # anyone else's against gravity, even bent over, so "raised" means raised in the picture.
    limbs = body if lying else replace(body, up=(0.0, -1.0), right=(1.0, 0.0))
    arms = (arm_facts(limbs, "left", facing, lying), arm_facts(limbs, "right", facing, lying))
    legs = (leg_facts(body, "left", posture), leg_facts(body, "right", posture))
    return PoseFacts(
        index=index,
        num_labelled=person.num_labelled,
        posture=posture,
        posture_occluded=posture_occluded,
        torso_tilt=body.torso_tilt,
        lean=lean_of(body, facing, posture),
        facing=facing,
        arms=arms,
        legs=legs,
        stride=stride_of(body, posture),
        planted=feet_planted(body, posture),
        frame_x=frame_x,
        depth=depth,
        contacts=contacts_of(body, objects, width, height, posture),
    )


@dataclass(frozen=True)
class SceneFacts:
    """Facts for every person of an image, plus their order across the frame."""

    persons: tuple[PoseFacts, ...]
    left_to_right: tuple[int, ...]  # indices into persons, by box centre

    @property
    def count(self) -> int:
        return len(self.persons)

    @property
    def labelled(self) -> tuple[PoseFacts, ...]:
        return tuple(p for p in self.persons if p.num_labelled > 0)


def left_to_right(persons: Sequence[Person]) -> tuple[int, ...]:
    """Indices of `persons` sorted by box centre from the picture's left to its right."""
    return tuple(
        sorted(range(len(persons)), key=lambda i: (persons[i].box[0] + persons[i].box[2], i))
    )


def relative_side(a: Person, b: Person) -> Literal["left", "right"] | None:
    """Where `a` is relative to `b` in the picture; None when side by side."""
    ca = (a.box[0] + a.box[2]) / 2
    cb = (b.box[0] + b.box[2]) / 2
    if abs(ca - cb) < SIDE_BY_SIDE:
        return None
    return "left" if ca < cb else "right"


def scene_facts(context: ImageContext) -> SceneFacts:
    """Pose facts for all persons of an image."""
    persons = tuple(
        pose_facts(p, context.width, context.height, context.objects, i)
        for i, p in enumerate(context.persons)
    )
    return SceneFacts(persons, left_to_right(context.persons))
