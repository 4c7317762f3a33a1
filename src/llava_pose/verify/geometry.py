"""What the keypoints say about one predicate for one person: clearly true, probably true,
clearly false, or nothing, with `pose.py`'s geometry plus the margins below."""

from __future__ import annotations

from dataclasses import replace

from .. import pose
from .predicates import SIDES, Found
from .subjects import Scene, centre, rank
from .text import Truth, Verdict, vocab

# -- margins on top of pose.py's thresholds (scale units / degrees / image fractions) ---------

# A standing posture contradicts "sitting" only with both legs fully seen, knees locked and
# thighs long in the picture (a seated person facing the camera has short, straight-looking
# thighs: the pose.py posture bug of COCO train2017 463557).
STRONG_STAND_KNEE = 160.0
STRONG_STAND_THIGH = 0.55
STRONG_STAND_TILT = 20.0
# A body that cannot be seated, whatever posture_of makes of it: an upright torso (tilt as
# above) going on into both thighs (hip angle at least this), both knees locked (as above),
# thighs at full length in the picture (as above) and not short beside the shins (a thigh
# pointing at the camera from a seat is short). Shoulders, hips and knees must be seen; an
# ankle may be hidden (v=1): the seat question is the hip's, the ankle only straightens the
# knee further. Like a locked knee under a full thigh rules out crouching.
UNSEATED_HIP = 160.0
UNSEATED_THIGH_SHIN = 0.7
# "bending over" is contradicted by an upright torso that is not foreshortened.
UPRIGHT_TORSO_MIN = 0.8
# An arm is clearly not raised when the wrist AND the elbow are this far below the shoulder.
NOT_RAISED = 0.3
# A wrist clearly above the shoulder is not hanging.
NOT_HANGING = 0.3
# A limb angle this sharp, with both segments this long, is bent in 3-D too; this straight,
# with both segments long, is not clearly bent.
CLEARLY_BENT_MAX = 90.0
CLEARLY_BENT_SEGMENT = 0.3
CLEARLY_STRAIGHT_MIN = 172.0
CLEARLY_STRAIGHT_SEGMENT = 0.5
KNEE_CLEARLY_BENT_MAX = 110.0
# Feet this close sideways, seen from the front or back: legs together.
FEET_TOGETHER = 0.15
# Facing front/back is contradicted only with the shoulders this far apart and the face agreeing;
# a profile only with the nose this far in front of the ears.
FACING_SHOULDERS = 0.35
FACING_PROFILE_NOSE = 0.2
# One wrist/ankle higher than the other (scale units): said / contradicted.
HIGHER_SAID = 0.15
HIGHER_CONTRADICTED = 0.3
FOOT_CONTRADICTED = 0.4
# Placement in the picture (box centre as a fraction of the width).
PLACE_OPPOSITE = 0.6
PLACE_CENTRE_OFF = 0.2
ORDER_CONTRADICTED = 0.1


def _seg(body: pose.Body, a: pose.Joint, b: pose.Joint) -> float:
    return float(((a.x - b.x) ** 2 + (a.y - b.y) ** 2) ** 0.5) / body.scale


def _seen(*joints: pose.Joint | None) -> bool:
    return all(j is not None and j.v == 2 for j in joints)


def _strong_standing(body: pose.Body) -> bool:
    if body.torso_tilt is None or body.torso_tilt > STRONG_STAND_TILT:
        return False
    for side in SIDES:
        hip, knee, ankle = (body.j(f"{side} {p}") for p in ("hip", "knee", "ankle"))
        if not _seen(hip, knee, ankle):
            return False
        assert hip is not None and knee is not None and ankle is not None
        angle = pose.limb_angle(body, hip, knee, ankle)
        if angle is None or angle < STRONG_STAND_KNEE or _seg(body, hip, knee) < STRONG_STAND_THIGH:
            return False
    return True


def _cannot_sit(body: pose.Body) -> str | None:
    """Why this body clearly is not seated, or None (see UNSEATED_HIP)."""
    tilt = body.torso_tilt
    if tilt is None or tilt > STRONG_STAND_TILT:
        return None
    angles = []
    for side in SIDES:
        sh, hip, knee, ankle = (body.j(f"{side} {p}") for p in ("shoulder", "hip", "knee", "ankle"))
        if not _seen(sh, hip, knee) or ankle is None:
            return None
        assert sh is not None and hip is not None and knee is not None
        at_hip = pose.limb_angle(body, sh, hip, knee)
        at_knee = pose.limb_angle(body, hip, knee, ankle)
        thigh, shin = _seg(body, hip, knee), _seg(body, knee, ankle)
        if (
            at_hip is None
            or at_knee is None
            or at_hip < UNSEATED_HIP
            or at_knee < STRONG_STAND_KNEE
            or thigh < STRONG_STAND_THIGH
            or thigh < UNSEATED_THIGH_SHIN * shin
        ):
            return None
        angles.append(f"{side} hip {at_hip:.0f}, knee {at_knee:.0f} deg")
    return f"hips and knees straight, thighs at full length ({'; '.join(angles)})"


def _posture_truth(body: pose.Body, claimed: str) -> tuple[Truth, str]:
    v = vocab()
    if claimed == "sitting":
        why = _cannot_sit(body)
        if why is not None:
            return "no", why
    got, hidden = pose.posture_of(body)
    tilt = body.torso_tilt
    if claimed == "bending":
        if got == "bending":
            return ("likely" if hidden else "yes"), "torso horizontal over straight legs"
        sh = [body.j("left shoulder"), body.j("right shoulder")]
        hp = [body.j("left hip"), body.j("right hip")]
        if tilt is not None and tilt <= pose.UPRIGHT_MAX and _seen(*sh, *hp):
            assert sh[0] and sh[1] and hp[0] and hp[1]
            mid_s = pose.Joint((sh[0].x + sh[1].x) / 2, (sh[0].y + sh[1].y) / 2, 2)
            mid_h = pose.Joint((hp[0].x + hp[1].x) / 2, (hp[0].y + hp[1].y) / 2, 2)
            if _seg(body, mid_s, mid_h) >= UPRIGHT_TORSO_MIN:
                return "no", f"torso upright ({tilt:.0f} deg from vertical) at full length"
        return None, "torso angle inside the margin" if tilt is not None else "no torso"
    if got is None:
        return None, "posture not clear from the keypoints"
    if got == claimed:
        if claimed == "standing" and not _strong_standing(body):
            return "likely", "standing (legs not fully seen)"
        return ("likely" if hidden else "yes"), f"keypoints say {got}"
    if got in v.posture_contradicted_by.get(claimed, frozenset()):
        if hidden:
            return None, f"keypoints say {got}, but through hidden joints"
        if got == "standing" and not _strong_standing(body):
            return None, "keypoints say standing, but not by the margin"
        return "no", f"keypoints say {got}"
    return None, f"keypoints say {got}, too close to {claimed} to call"


def _limbs(body: pose.Body, facts: pose.PoseFacts) -> pose.Body:
    """The frame pose_facts judges limbs in: the body's own when lying, else the picture's."""
    if facts.posture == "lying":
        return body
    return replace(body, up=(0.0, -1.0), right=(1.0, 0.0))


def _arm_truth(body: pose.Body, facts: pose.PoseFacts, side: str, state: str) -> tuple[Truth, str]:
    limbs = _limbs(body, facts)
    arm = facts.arms[0 if side == "left" else 1]
    sh, el, wr = (body.j(f"{side} {p}") for p in ("shoulder", "elbow", "wrist"))
    if sh is None or wr is None:
        return None, f"{side} shoulder or wrist not labelled"
    hidden = not _seen(sh, wr, el) if el is not None else not _seen(sh, wr)
    rise = limbs.height_of((wr.x, wr.y), (sh.x, sh.y))
    rise_el = limbs.height_of((el.x, el.y), (sh.x, sh.y)) if el is not None else None
    hint = f"{side} wrist {rise:+.2f} torso above the shoulder"
    if state in ("raised", "above_head"):
        want = ("above_head",) if state == "above_head" else ("above_head", "above_shoulder")
        if arm.height in want:
            return ("likely" if hidden else "yes"), hint
        low = -NOT_RAISED if state == "raised" else 0.0
        if rise < low and (rise_el is None or rise_el < 0) and not hidden:
            return "no", hint
        return None, hint + " (inside the margin)"
    if state == "hanging":
        if arm.hanging:
            return ("likely" if hidden else "yes"), f"{side} arm hangs straight down"
        if rise > NOT_HANGING and not hidden:
            return "no", hint
        return None, f"{side} arm neither clearly hanging nor raised"
    angle = arm.elbow_angle
    if angle is None or el is None:
        return None, f"{side} elbow angle unknown"
    segs = min(_seg(body, sh, el), _seg(body, el, wr))
    if state == "extended":
        if arm.reach is not None or (
            angle >= pose.ELBOW_STRAIGHT_MIN and arm.height != "below_shoulder"
        ):
            return ("likely" if hidden else "yes"), f"{side} elbow {angle:.0f} deg"
        if angle <= CLEARLY_BENT_MAX and segs >= CLEARLY_BENT_SEGMENT and not hidden:
            return "no", f"{side} elbow bent to {angle:.0f} deg"
        return None, f"{side} elbow {angle:.0f} deg (inside the margin)"
    return _bend_truth(state, f"{side} elbow", angle, segs, hidden, 0.0, pose.ELBOW_BENT_MAX, 0.0)


def _leg_truth(body: pose.Body, facts: pose.PoseFacts, side: str, state: str) -> tuple[Truth, str]:
    if state == "apart":
        la, ra = body.j("left ankle"), body.j("right ankle")
        if la is None or ra is None:
            return None, "ankles not labelled"
        if facts.stride:
            return "yes", "feet well apart"
        gap = abs(la.x - ra.x) / body.scale
        if gap < FEET_TOGETHER and facts.facing in ("camera", "away") and _seen(la, ra):
            return (
                "no",
                f"feet {gap:.2f} torso apart, seen from the {'front' if facts.facing == 'camera' else 'back'}",
            )
        return None, "feet spacing inside the margin"
    hip, knee, ankle = (body.j(f"{side} {p}") for p in ("hip", "knee", "ankle"))
    angle = pose.limb_angle(body, hip, knee, ankle)
    if angle is None or hip is None or knee is None or ankle is None:
        return None, f"{side} knee angle unknown"
    hidden = not _seen(hip, knee, ankle)
    segs = min(_seg(body, hip, knee), _seg(body, knee, ankle))
    return _bend_truth(
        state,
        f"{side} knee",
        angle,
        segs,
        hidden,
        pose.KNEE_STRAIGHT_MIN,
        pose.KNEE_BENT_MAX,
        KNEE_CLEARLY_BENT_MAX,
    )


def _bend_truth(
    state: str,
    joint: str,
    angle: float,
    segs: float,
    hidden: bool,
    straight_min: float,
    bent_max: float,
    clearly_bent_max: float,
) -> tuple[Truth, str]:
    """Whether a limb is "straight" or "bent": said at pose.py's thresholds, contradicted only
    past the clear margins with both segments long and every joint seen."""
    if state == "straight":
        if angle >= straight_min:
            return ("likely" if hidden else "yes"), f"{joint} {angle:.0f} deg"
        if angle <= clearly_bent_max and segs >= CLEARLY_BENT_SEGMENT and not hidden:
            return "no", f"{joint} bent to {angle:.0f} deg"
        return None, f"{joint} {angle:.0f} deg (inside the margin)"
    if angle < bent_max:
        return ("likely" if hidden else "yes"), f"{joint} {angle:.0f} deg"
    if angle >= CLEARLY_STRAIGHT_MIN and segs >= CLEARLY_STRAIGHT_SEGMENT and not hidden:
        return "no", f"{joint} straight ({angle:.0f} deg) at full length"
    return None, f"{joint} {angle:.0f} deg (inside the margin)"


def _facing_truth(body: pose.Body, facts: pose.PoseFacts, claimed: str) -> tuple[Truth, str]:
    got = facts.facing
    if got is None:
        return None, "facing not clear from the keypoints"
    if got == claimed:
        return "yes", f"keypoints say facing {got}"
    if got not in vocab().facing_contradicted_by.get(claimed, frozenset()):
        return None, f"keypoints say facing {got}, too close to {claimed} to call"
    ls, rs, nose = body.j("left shoulder"), body.j("right shoulder"), body.j("nose")
    eyes = [body.j("left eye"), body.j("right eye")]
    if got in ("camera", "away"):
        if ls is None or rs is None:
            return None, "facing from the face alone"
        sep = body.across((ls.x, ls.y), (rs.x, rs.y))
        face = _seen(nose, *eyes)
        no_face = all(j is None or j.v != 2 for j in (nose, *eyes))
        clear = (got == "camera" and sep >= FACING_SHOULDERS and face) or (
            got == "away" and sep <= -FACING_SHOULDERS and no_face
        )
        if clear and _seen(ls, rs):
            return "no", f"keypoints say facing {got} (shoulders {sep:+.2f} torso apart)"
        return None, f"keypoints say facing {got}, inside the margin"
    ears = [e for e in (body.j("left ear"), body.j("right ear")) if e is not None]
    if nose is None or not ears or nose.v != 2:
        return None, f"keypoints say facing {got}, inside the margin"
    ref = (sum(e.x for e in ears) / len(ears), sum(e.y for e in ears) / len(ears))
    off = body.across((nose.x, nose.y), ref)
    if abs(off) >= FACING_PROFILE_NOSE:
        return "no", f"nose {abs(off):.2f} torso to the picture's {got} of the ears"
    return None, f"keypoints say facing {got}, inside the margin"


def _placement_truth(scene: Scene, i: int, side: str, picture: bool) -> tuple[Truth, str]:
    cx = centre(scene.context, i)
    where = f"box centre at {cx:.2f} of the width"
    if side == "centre":
        if 1 / 3 <= cx <= 2 / 3:
            return "yes", where
        if cx < PLACE_CENTRE_OFF or cx > 1 - PLACE_CENTRE_OFF:
            return "no", where
        return None, where
    on_side = cx < 1 / 3 if side == "left" else cx > 2 / 3
    opposite = cx > PLACE_OPPOSITE if side == "left" else cx < 1 - PLACE_OPPOSITE
    extreme = rank(scene, side, 1) == i
    if on_side or (not picture and extreme):
        return "yes", where
    if opposite:
        other = "right" if side == "left" else "left"
        if picture or scene.n == 1 or rank(scene, other, 1) == i:
            return "no", where
    return None, where


def order_truth(scene: Scene, a: int, b: int, side: str) -> tuple[Truth, str]:
    if a == b:
        return None, "both sides name the same person"
    ctx = scene.context
    got = pose.relative_side(ctx.persons[a], ctx.persons[b])
    gap = abs(centre(ctx, a) - centre(ctx, b))
    why = f"person {a} at {centre(ctx, a):.2f}, person {b} at {centre(ctx, b):.2f} of the width"
    if got is None:
        return None, why
    if got == side:
        return "yes", why
    return ("no" if gap >= ORDER_CONTRADICTED else None), why


def _higher_truth(
    body: pose.Body, facts: pose.PoseFacts, part: str, side: str
) -> tuple[Truth, str]:
    if facts.posture == "lying" or (
        body.torso_tilt is not None and body.torso_tilt >= pose.LYING_TILT
    ):
        return None, "not upright: higher in the picture is not higher on the body"
    joint = "wrist" if part == "hand" else "ankle"
    other = "right" if side == "left" else "left"
    a, b = body.j(f"{side} {joint}"), body.j(f"{other} {joint}")
    if a is None or b is None:
        return None, f"{joint}s not both labelled"
    diff = (b.y - a.y) / body.scale
    said = pose.LIFT_MIN if part == "foot" else HIGHER_SAID
    against = FOOT_CONTRADICTED if part == "foot" else HIGHER_CONTRADICTED
    why = f"{side} {joint} {diff:+.2f} torso above the {other}"
    if diff >= said:
        return ("yes" if _seen(a, b) else "likely"), why
    if diff <= -against and _seen(a, b):
        return "no", why
    return None, why + " (inside the margin)"


def truth(scene: Scene, f: Found, i: int, negated: bool = False) -> tuple[Truth, str]:
    """What the geometry says about predicate `f` for person `i` (`negated`: the sentence
    denies it, which changes what a plain "his arms" means; see below). Remembered for the
    text: a long one says the same things many times."""
    key = (f.kind, f.predicate, tuple(sorted(f.args.items())), i, negated)
    got = scene.truths.get(key)
    if got is None:
        got = scene.truths[key] = _truth(scene, f, i, negated)
    return got


def _truth(scene: Scene, f: Found, i: int, negated: bool) -> tuple[Truth, str]:
    ctx = scene.context
    p = ctx.persons[i]
    if f.kind == "placement":
        return _placement_truth(scene, i, f.args["side"], f.args["picture"])
    if p.num_labelled == 0:
        return None, f"person {i} has no labelled keypoint"
    facts = scene.facts.persons[i]
    body = scene.body(i)
    if f.kind == "posture":
        return _posture_truth(body, f.args["posture"])
    if f.kind == "facing":
        return _facing_truth(body, facts, f.args["facing"])
    if f.kind == "higher":
        return _higher_truth(body, facts, f.args["part"], f.args["side"])
    side, state = f.args["side"], f.args["state"]
    judge = _arm_truth if f.kind == "arm" else _leg_truth
    if side in SIDES or state == "apart":
        return judge(body, facts, side if side in SIDES else "left", state)
    results = [judge(body, facts, s, state) for s in SIDES]
    truths = [t for t, _ in results]
    why = "; ".join(w for _, w in results)
    if side == "both" and negated and not f.args.get("said"):
        # "His arms are not raised" means neither is, or not both: it is false only if both
        # clearly are, and true only if neither is.
        if truths == ["yes", "yes"]:
            return "yes", why
        if truths == ["no", "no"]:
            return "no", why
        return None, why
    if side == "both":
        # Both limbs: false if either clearly is not; true only if both are.
        if "no" in truths:
            return "no", why
        if all(t in ("yes", "likely") for t in truths):
            return ("yes" if truths == ["yes", "yes"] else "likely"), why
        return None, why
    # One unnamed limb: true if either is; false only if both clearly are not.
    if "yes" in truths:
        return "yes", why
    if "likely" in truths:
        return "likely", why
    if truths == ["no", "no"]:
        return "no", why
    return None, why


def verdict_of(truth: Truth, negated: bool) -> Verdict:
    """A negated claim is contradicted only by a clear "yes" ("likely" is not enough)."""
    if truth is None:
        return "unverifiable"
    if negated:
        return (
            "contradicted" if truth == "yes" else "supported" if truth == "no" else "unverifiable"
        )
    return "supported" if truth in ("yes", "likely") else "contradicted"
