"""Named quality filters for teacher answers; every drop is counted under its name in stats.json.

* ``truncated``       the reply hit max tokens (finish_reason == "length"): its last answer is cut
* ``empty``           an empty question or answer
* ``malformed``       no question/answer structure where one is required
* ``mentions_source`` talks about the prompt instead of the image: "keypoint", "bounding box",
                      "caption", "coordinates" (the system prompts forbid it)
* ``quotes_numbers``  copies coordinates from the context: decimals such as 0.42, bracketed
                      tuples, or a 3-digit value that occurs in the context (compact format)
* ``contradicts_pose`` says something about a body that the keypoints clearly contradict
                      (`llava_pose.verify`; on for LLM teachers, see `generate --pose-filter`)
"""

from __future__ import annotations

import re

from .records import ImageContext

FILTERS = (
    "truncated",
    "empty",
    "malformed",
    "mentions_source",
    "quotes_numbers",
    "contradicts_pose",
)

_SOURCE_WORDS = re.compile(
    r"\b(key[\s-]?points?|bounding[\s-]?box(?:es)?|captions?|coordinates?)\b", re.IGNORECASE
)
_DECIMAL = re.compile(r"(?<![\w.])\d*\.\d{2,}\b")
_TUPLE = re.compile(r"[\[(]\s*-?\d+(?:\.\d+)?\s*,\s*-?\d+(?:\.\d+)?")
_INTEGER = re.compile(r"(?<![\w.,])\d{3,4}(?![\w.,]\d)")


def context_numbers(ctx: ImageContext) -> frozenset[str]:
    """The 3-digit values the compact format shows (thousandths) for this image."""
    values: set[float] = set()
    for o in ctx.objects:
        values.update(o.box)
    for p in ctx.persons:
        values.update(p.box)
        for x, y, v in p.keypoints:
            if v:
                values.update((x, y))
    return frozenset(str(round(v * 1000)) for v in values if round(v * 1000) >= 100)


def check_text(text: str, numbers: frozenset[str] = frozenset()) -> str | None:
    """The first filter `text` fails, or None."""
    if not text.strip():
        return "empty"
    if _SOURCE_WORDS.search(text):
        return "mentions_source"
    if _DECIMAL.search(text) or _TUPLE.search(text):
        return "quotes_numbers"
    if numbers and any(m.group(0) in numbers for m in _INTEGER.finditer(text)):
        return "quotes_numbers"
    return None
