"""Render an `ImageContext` as the text a teacher reads, and parse that text back.

Two formats carry the same information:

``paper`` — the paper's annotation messages, one message per line of information, exactly as
LLaVA and the LLaVA-Pose scripts send them, but with coordinates normalized as the system
prompt promises::

    caption: A man riding a wave on top of a surfboard.
    surfboard: [0.412, 0.702, 0.598, 0.781]
    person: [0.399, 0.301, 0.64, 0.77]
    keypoints: [[0.512, 0.33, 2], [0.52, 0.321, 2], ..., [0.0, 0.0, 0]]

``compact`` — one message; values in thousandths (one token each in GPT tokenizers), the
17 points in a fixed order, unlabelled points as ``-`` and hidden ones marked ``?``::

    Captions:
    A man riding a wave on top of a surfboard.
    Objects:
    surfboard 412 702 598 781
    People:
    person 399 301 640 770: 512,330 520,321 - ... 530,400?

A person without any labelled keypoint is rendered with its box only, in both formats.
`parse_paper` and `parse_compact` invert the renderers to the same numbers (a test holds them
to it), so a compact prompt provably loses nothing.

With ``cues=True`` (``--cues``) each person with labelled keypoints gets one more line after
them, the facts `llava_pose.pose` computes, in plain words (wording: data/prompts/cues.yaml)::

    pose: sitting; facing the camera; left arm raised (elbow bent, 95 degrees); ...

so the teacher reads posture, limbs, facing and order instead of doing geometry from numbers.
Without it every rendering is byte-identical to what it was before cues existed.
"""

from __future__ import annotations

import ast
import functools
import re
from importlib import resources
from typing import Any

import yaml

from .records import (
    KEYPOINT_NAMES,
    NO_KEYPOINTS,
    UNLABELLED,
    Box,
    ImageContext,
    Keypoint,
    Obj,
    Person,
)

FORMATS = ("paper", "compact")


# -- paper ----------------------------------------------------------------------------------

# `records.UNLABELLED` and `records.NO_KEYPOINTS` render without a look at their numbers.
_UNLABELLED_TEXT = "[0.0, 0.0, 0]"
# Formatting caches: a split holds a few thousand distinct numbers (3-decimal values in
# [0, 1]), so 118k images format each once instead of millions of times. Zero is never a key
# (-0.0 == 0.0 in a dict, but `repr` tells them apart); bounded for absurd inputs.
_CACHE_MAX = 1 << 16
_NUMS: dict[float, str] = {}
_V_TEXT = {0: "0", 1: "1", 2: "2"}


def _num(v: float) -> str:
    text = _NUMS.get(v)
    if text is None:
        text = repr(round(float(v), 3))
        if v and len(_NUMS) < _CACHE_MAX:
            _NUMS[v] = text
    return text


def _box_paper(box: Box) -> str:
    get = _NUMS.get
    x1, y1, x2, y2 = box
    return (
        f"[{get(x1) or _num(x1)}, {get(y1) or _num(y1)}, "
        f"{get(x2) or _num(x2)}, {get(y2) or _num(y2)}]"
    )


def _points_paper(points: tuple[Keypoint, ...]) -> str | None:
    """``[[x, y, v], ...]``, each number as `_num` writes it; None when no point is labelled
    (v > 0, as `Person.num_labelled` counts)."""
    if points is NO_KEYPOINTS:
        return None
    get = _NUMS.get
    parts = []
    append = parts.append
    labelled = False
    for point in points:
        if point is UNLABELLED:
            append(_UNLABELLED_TEXT)
            continue
        x, y, v = point
        if v > 0:
            labelled = True
        append(f"[{get(x) or _num(x)}, {get(y) or _num(y)}, {_V_TEXT.get(v) or int(v)}]")
    return "[" + ", ".join(parts) + "]" if labelled else None


def _labelled(points: tuple[Keypoint, ...]) -> bool:
    """`Person.num_labelled` > 0, without counting them all."""
    return points is not NO_KEYPOINTS and any(v > 0 for _, _, v in points)


@functools.cache
def missing_captions() -> str:
    """What stands where the captions would be, for an image without any."""
    text = resources.files("llava_pose").joinpath("data/prompts/captions.yaml").read_text("utf-8")
    return str(data_yaml(text)["missing"])


def caption_lines(ctx: ImageContext) -> tuple[str, ...]:
    """The captions, or for an image without any (``prepare --images`` without
    ``--captions``) one line that says so: no prompt shows an empty section."""
    return ctx.captions or (missing_captions(),)


def paper_caption_messages(ctx: ImageContext) -> list[str]:
    return [f"caption: {c}" for c in caption_lines(ctx)]


def paper_annotation_messages(ctx: ImageContext, cues: bool = False) -> list[str]:
    """One message per object, then one per person (box, and keypoints when any is labelled,
    and their pose cue line with `cues`)."""
    messages = [f"{o.category}: {_box_paper(o.box)}" for o in ctx.objects]
    lines = pose_cues(ctx) if cues else [None] * len(ctx.persons)
    for p, cue in zip(ctx.persons, lines, strict=True):
        text = f"person: {_box_paper(p.box)}"
        points = _points_paper(p.keypoints)
        if points is not None:
            text += f"\nkeypoints: {points}"
        if cue:
            text += f"\n{cue}"
        messages.append(text)
    return messages


class _Recent:
    """The last few renderings, by context identity: detail and reasoning show the same
    messages, and requests are built one image at a time. Identity, not equality: hashing a
    context would walk every number in it. An entry holds its context, so no other object
    can take its id while it is here."""

    SIZE = 8

    def __init__(self) -> None:
        self.entries: dict[tuple[object, ...], tuple[ImageContext, Any]] = {}

    def get(self, ctx: ImageContext, *options: object) -> Any:
        hit = self.entries.get((id(ctx), *options))
        return hit[1] if hit is not None and hit[0] is ctx else None

    def put(self, ctx: ImageContext, value: Any, *options: object) -> None:
        entries = self.entries
        if len(entries) >= self.SIZE:
            try:
                del entries[next(iter(entries))]
            except (KeyError, RuntimeError, StopIteration):  # another thread got there first
                entries.clear()
        entries[(id(ctx), *options)] = (ctx, value)


_recent_paper = _Recent()


def render_paper(ctx: ImageContext, cues: bool = False) -> list[str]:
    """The paper's annotation messages for detailed description and complex reasoning."""
    hit = _recent_paper.get(ctx, cues)
    if hit is None:
        hit = tuple(paper_caption_messages(ctx) + paper_annotation_messages(ctx, cues))
        _recent_paper.put(ctx, hit, cues)
    return list(hit)


def parse_paper(messages: list[str]) -> tuple[list[str], list[Obj], list[Person]]:
    """Invert `render_paper`: captions, objects and persons with the same numbers."""
    captions: list[str] = []
    objects: list[Obj] = []
    persons: list[Person] = []
    for message in messages:
        if message.startswith("caption: "):
            if message[len("caption: ") :] != missing_captions():
                captions.append(message[len("caption: ") :])
            continue
        head, _, rest = message.partition("\n")
        rest = rest.split("\n" + _cue_words()["prefix"])[0]  # a pose cue line carries no numbers
        category, _, box_text = head.rpartition(": ")
        box = tuple(float(v) for v in ast.literal_eval(box_text))
        if category == "person":
            if rest.startswith("keypoints: "):
                raw = ast.literal_eval(rest[len("keypoints: ") :])
                keypoints = tuple((float(x), float(y), int(v)) for x, y, v in raw)
            else:
                keypoints = NO_KEYPOINTS
            persons.append(Person(box=box, keypoints=keypoints))  # type: ignore[arg-type]
        else:
            objects.append(Obj(category=category, box=box))  # type: ignore[arg-type]
    return captions, objects, persons


# -- compact --------------------------------------------------------------------------------


_MILLI: dict[float, str] = {}


def _milli(v: float) -> str:
    text = _MILLI.get(v)
    if text is None:
        text = str(round(float(v) * 1000))
        if len(_MILLI) < _CACHE_MAX:
            _MILLI[v] = text
    return text


def _box_compact(box: Box) -> str:
    x1, y1, x2, y2 = box
    return f"{_milli(x1)} {_milli(y1)} {_milli(x2)} {_milli(y2)}"


def _point_compact(kp: Keypoint) -> str:
    x, y, v = kp
    if v == 0:
        return "-"
    return f"{_milli(x)},{_milli(y)}" + ("?" if v == 1 else "")


_recent_compact = _Recent()


def render_compact(
    ctx: ImageContext, *, captions: bool = True, annotations: bool = True, cues: bool = False
) -> str:
    """The whole context as one message, in far fewer tokens than the paper format."""
    text = _recent_compact.get(ctx, captions, annotations, cues)
    if text is None:
        text = _render_compact(ctx, captions, annotations, cues)
        _recent_compact.put(ctx, text, captions, annotations, cues)
    return text


def _render_compact(ctx: ImageContext, captions: bool, annotations: bool, cues: bool) -> str:
    lines: list[str] = []
    if captions:
        lines.append("Captions:")
        lines.extend(caption_lines(ctx))
    if annotations and ctx.objects:
        lines.append("Objects:")
        lines.extend(f"{o.category} {_box_compact(o.box)}" for o in ctx.objects)
    if annotations and ctx.persons:
        lines.append("People:")
        cue_lines = pose_cues(ctx) if cues else [None] * len(ctx.persons)
        for p, cue in zip(ctx.persons, cue_lines, strict=True):
            line = f"person {_box_compact(p.box)}"
            if _labelled(p.keypoints):
                line += ": " + " ".join(_point_compact(k) for k in p.keypoints)
            lines.append(line)
            if cue:
                lines.append(cue)
    return "\n".join(lines)


_SECTION = re.compile(r"^(Captions|Objects|People):$")


def parse_compact(text: str) -> tuple[list[str], list[Obj], list[Person]]:
    """Invert `render_compact` to the same numbers as the rounded context."""
    captions: list[str] = []
    objects: list[Obj] = []
    persons: list[Person] = []
    section = ""
    for line in text.split("\n"):
        m = _SECTION.match(line)
        if m:
            section = m.group(1)
        elif section == "Captions":
            if line != missing_captions():
                captions.append(line)
        elif section == "Objects":
            *words, x1, y1, x2, y2 = line.split(" ")
            objects.append(Obj(category=" ".join(words), box=_unmilli_box((x1, y1, x2, y2))))
        elif section == "People" and line.startswith(_cue_words()["prefix"]):
            continue  # a pose cue line carries no numbers
        elif section == "People":
            head, _, points = line.partition(": ")
            box = _unmilli_box(tuple(head.split(" ")[1:]))
            if points:
                keypoints = tuple(_parse_point(t) for t in points.split(" "))
            else:
                keypoints = NO_KEYPOINTS
            persons.append(Person(box=box, keypoints=keypoints))
    return captions, objects, persons


def _unmilli_box(values: tuple[str, ...]) -> Box:
    x1, y1, x2, y2 = (int(v) / 1000 for v in values)
    return (x1, y1, x2, y2)


def _parse_point(token: str) -> Keypoint:
    if token == "-":
        return UNLABELLED
    v = 1 if token.endswith("?") else 2
    x, y = token.rstrip("?").split(",")
    return (int(x) / 1000, int(y) / 1000, v)


# -- pose cues (--cues) -----------------------------------------------------------------------


def data_yaml(text: str) -> Any:
    """Package data YAML, parsed by libyaml when PyYAML has it (7x faster than pure Python;
    prompts are loaded at every start), else by PyYAML's own safe loader."""
    try:
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:  # libyaml is stricter about a few spellings PyYAML accepts
        return yaml.safe_load(text)


@functools.cache
def _cue_words() -> dict[str, Any]:
    text = resources.files("llava_pose").joinpath("data/prompts/cues.yaml").read_text("utf-8")
    return data_yaml(text)


def cues_system_note() -> str:
    """The sentence added to the system prompt when cues are on."""
    return str(_cue_words()["system_note"]).strip()


def _ordinal(k: int) -> str:
    words = _cue_words()
    return (
        words["ordinals"][k - 1] if k <= len(words["ordinals"]) else f"{k}{words['ordinal_suffix']}"
    )


def _arm_cue(arm: Any, words: dict[str, Any]) -> str | None:
    if not arm.known:
        return None
    side = arm.side
    if arm.height in ("above_head", "above_shoulder"):
        text = words["arm"][arm.height].format(side=side)
    elif arm.hanging:
        text = words["arm"]["hanging"].format(side=side)
    elif arm.reach is not None:
        text = words["arm"]["reach"].format(side=side, reach=words["reach"][arm.reach])
    elif arm.height is not None:
        text = words["arm"]["down"].format(side=side)
    else:
        text = words["arm"]["elbow_only"].format(side=side)
    if arm.elbow is not None and arm.elbow_angle is not None:
        elbow = words["elbow"].format(bend=words["bend"][arm.elbow], angle=round(arm.elbow_angle))
        text += f" ({elbow})"
    return text


def _leg_cue(leg: Any, words: dict[str, Any]) -> str | None:
    parts = []
    if leg.knee is not None:
        text = words["leg"]["knee"].format(side=leg.side, bend=words["bend"][leg.knee])
        if leg.knee_angle is not None:
            text += f" ({words['knee'].format(angle=round(leg.knee_angle))})"
        parts.append(text)
    if leg.lifted:
        parts.append(words["leg"]["lifted"].format(side=leg.side))
    return ", ".join(parts) or None


def pose_cues(ctx: ImageContext) -> list[str | None]:
    """One cue line per person of `ctx` (None for a person without labelled keypoints): the
    pose facts in plain words, from confident joints only (`confidence.trusted`: a pose
    model's uncertain joint states nothing). Pure: a function of the context only."""
    from . import pose  # pose imports records only; kept local so context stays light to import
    from .confidence import trusted

    ctx = trusted(ctx)
    words = _cue_words()
    scene = pose.scene_facts(ctx)
    rank = {i: k for k, i in enumerate(scene.left_to_right, 1)}
    n = len(ctx.persons)
    out: list[str | None] = []
    for person, facts in zip(ctx.persons, scene.persons, strict=True):
        if not person.num_labelled:
            out.append(None)
            continue
        parts = []
        if facts.posture is not None:
            parts.append(words["posture"][facts.posture])
        if facts.facing is not None:
            parts.append(words["facing"][facts.facing])
        parts += [c for c in (_arm_cue(a, words) for a in facts.arms) if c]
        parts += [c for c in (_leg_cue(leg, words) for leg in facts.legs) if c]
        if n > 1:
            parts.append(words["order"].format(k=_ordinal(rank[facts.index]), n=n))
        else:
            parts.append(words["alone"])
        hidden = [KEYPOINT_NAMES[j] for j, (_, _, v) in enumerate(person.keypoints) if v == 1]
        if hidden:
            parts.append(words["hidden"].format(parts=", ".join(hidden)))
        out.append(words["prefix"] + words["separator"].join(parts))
    return out
