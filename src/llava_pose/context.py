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

from .records import KEYPOINT_NAMES, NUM_KEYPOINTS, Box, ImageContext, Keypoint, Obj, Person

FORMATS = ("paper", "compact")


# -- paper ----------------------------------------------------------------------------------


def _num(v: float) -> str:
    return repr(round(float(v), 3))


def _box_paper(box: Box) -> str:
    return "[" + ", ".join(_num(v) for v in box) + "]"


def paper_caption_messages(ctx: ImageContext) -> list[str]:
    return [f"caption: {c}" for c in ctx.captions]


def paper_annotation_messages(ctx: ImageContext, cues: bool = False) -> list[str]:
    """One message per object, then one per person (box, and keypoints when any is labelled,
    and their pose cue line with `cues`)."""
    messages = [f"{o.category}: {_box_paper(o.box)}" for o in ctx.objects]
    lines = pose_cues(ctx) if cues else [None] * len(ctx.persons)
    for p, cue in zip(ctx.persons, lines, strict=True):
        text = f"person: {_box_paper(p.box)}"
        if p.num_labelled:
            points = ", ".join(f"[{_num(x)}, {_num(y)}, {int(v)}]" for x, y, v in p.keypoints)
            text += f"\nkeypoints: [{points}]"
        if cue:
            text += f"\n{cue}"
        messages.append(text)
    return messages


def render_paper(ctx: ImageContext, cues: bool = False) -> list[str]:
    """The paper's annotation messages for detailed description and complex reasoning."""
    return paper_caption_messages(ctx) + paper_annotation_messages(ctx, cues)


def parse_paper(messages: list[str]) -> tuple[list[str], list[Obj], list[Person]]:
    """Invert `render_paper`: captions, objects and persons with the same numbers."""
    captions: list[str] = []
    objects: list[Obj] = []
    persons: list[Person] = []
    for message in messages:
        if message.startswith("caption: "):
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
                keypoints = ((0.0, 0.0, 0),) * NUM_KEYPOINTS
            persons.append(Person(box=box, keypoints=keypoints))  # type: ignore[arg-type]
        else:
            objects.append(Obj(category=category, box=box))  # type: ignore[arg-type]
    return captions, objects, persons


# -- compact --------------------------------------------------------------------------------


def _milli(v: float) -> str:
    return str(round(float(v) * 1000))


def _box_compact(box: Box) -> str:
    return " ".join(_milli(v) for v in box)


def _point_compact(kp: Keypoint) -> str:
    x, y, v = kp
    if v == 0:
        return "-"
    return f"{_milli(x)},{_milli(y)}" + ("?" if v == 1 else "")


def render_compact(
    ctx: ImageContext, *, captions: bool = True, annotations: bool = True, cues: bool = False
) -> str:
    """The whole context as one message, in far fewer tokens than the paper format."""
    lines: list[str] = []
    if captions:
        lines.append("Captions:")
        lines.extend(ctx.captions)
    if annotations and ctx.objects:
        lines.append("Objects:")
        lines.extend(f"{o.category} {_box_compact(o.box)}" for o in ctx.objects)
    if annotations and ctx.persons:
        lines.append("People:")
        cue_lines = pose_cues(ctx) if cues else [None] * len(ctx.persons)
        for p, cue in zip(ctx.persons, cue_lines, strict=True):
            line = f"person {_box_compact(p.box)}"
            if p.num_labelled:
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
                keypoints = ((0.0, 0.0, 0),) * NUM_KEYPOINTS
            persons.append(Person(box=box, keypoints=keypoints))
    return captions, objects, persons


def _unmilli_box(values: tuple[str, ...]) -> Box:
    x1, y1, x2, y2 = (int(v) / 1000 for v in values)
    return (x1, y1, x2, y2)


def _parse_point(token: str) -> Keypoint:
    if token == "-":
        return (0.0, 0.0, 0)
    v = 1 if token.endswith("?") else 2
    x, y = token.rstrip("?").split(",")
    return (int(x) / 1000, int(y) / 1000, v)


# -- pose cues (--cues) -----------------------------------------------------------------------


@functools.cache
def _cue_words() -> dict[str, Any]:
    text = resources.files("llava_pose").joinpath("data/prompts/cues.yaml").read_text("utf-8")
    return yaml.safe_load(text)


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
    pose facts in plain words. Pure: a function of the context only."""
    from . import pose  # pose imports records only; kept local so context stays light to import

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
