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
"""

from __future__ import annotations

import ast
import re

from .records import NUM_KEYPOINTS, Box, ImageContext, Keypoint, Obj, Person

FORMATS = ("paper", "compact")


# -- paper ----------------------------------------------------------------------------------


def _num(v: float) -> str:
    return repr(round(float(v), 3))


def _box_paper(box: Box) -> str:
    return "[" + ", ".join(_num(v) for v in box) + "]"


def paper_caption_messages(ctx: ImageContext) -> list[str]:
    return [f"caption: {c}" for c in ctx.captions]


def paper_annotation_messages(ctx: ImageContext) -> list[str]:
    """One message per object, then one per person (box, and keypoints when any is labelled)."""
    messages = [f"{o.category}: {_box_paper(o.box)}" for o in ctx.objects]
    for p in ctx.persons:
        text = f"person: {_box_paper(p.box)}"
        if p.num_labelled:
            points = ", ".join(f"[{_num(x)}, {_num(y)}, {int(v)}]" for x, y, v in p.keypoints)
            text += f"\nkeypoints: [{points}]"
        messages.append(text)
    return messages


def render_paper(ctx: ImageContext) -> list[str]:
    """The paper's annotation messages for detailed description and complex reasoning."""
    return paper_caption_messages(ctx) + paper_annotation_messages(ctx)


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


def render_compact(ctx: ImageContext, *, captions: bool = True, annotations: bool = True) -> str:
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
        for p in ctx.persons:
            line = f"person {_box_compact(p.box)}"
            if p.num_labelled:
                line += ": " + " ".join(_point_compact(k) for k in p.keypoints)
            lines.append(line)
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
