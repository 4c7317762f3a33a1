"""The tolerant answer parser: a model's free text -> "yes"/"no", an option letter or a number.

Models rarely answer with the bare token asked for ("Yes, he is.", "B) the man on the left",
"The answer is B.", "two"). Exact match after this parser is the whole score, so the parser
is strict where a guess would be wrong: an answer that names two different options, or says
both yes and no up front, is unparseable (None), counted and shown, never guessed. Pure.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from typing import Any

NUMBER_WORDS = {
    "zero": 0,
    "none": 0,
    "nobody": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
}
# Dropped before matching an option's text: articles, possessives, and the filler of
# "is facing towards ...", so "his right arm" matches "their own right arm".
_FILLER_WORDS = "the a an his her their its own is are was to towards toward of from in picture"
_FILLER_WORDS += " image photo side facing faces face he she they it person's"
FILLER = frozenset(_FILLER_WORDS.split(" "))
# An answer of at most this many words may name an option by part of its text.
SHORT_ANSWER = 3
_LEAD = re.compile(
    r"^(?:(?:the\s+)?(?:correct\s+)?(?:answer|option|choice)(?:\s+is)?\s*[:\-]?\s*)", re.I
)
_MARKUP = re.compile(r"[*_`#>]")


def _clean(text: str) -> str:
    return _MARKUP.sub("", text).strip()


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def parse_yes_no(text: str) -> str | None:
    """The first word decides ("No, she is standing"); else a lone yes or no in the text."""
    words = _words(_LEAD.sub("", _clean(text)))
    if not words:
        return None
    if words[0] in ("yes", "no"):
        return words[0]
    said = {w for w in words if w in ("yes", "no")}
    return said.pop() if len(said) == 1 else None


def _letter_forms(text: str, letters: str) -> str | None:
    """A letter written as a letter: "B", "(B)", "B)", "B.", "B: ...", "answer is B"."""
    body = _LEAD.sub("", text).strip()
    m = re.fullmatch(rf"\(?([{letters}])\)?[.:)]?", body, re.I)
    if m:
        return m.group(1).upper()
    m = re.match(rf"\(([{letters}])\)|([{letters}])\)|([{letters}])[.:](?:\s|$)", body)
    if m:
        return next(g for g in m.groups() if g).upper()
    m = re.search(rf"\b(?i:answer|option|choice)\s*(?i:is\s*)?:?\s*\(?([{letters}])\b\)?", text)
    if m:
        return m.group(1).upper()
    found = set(re.findall(rf"\(([{letters}])\)", text))
    return found.pop() if len(found) == 1 else None


def _core(text: str) -> tuple[str, ...]:
    return tuple(w for w in _words(text) if w not in FILLER)


def _contains(hay: tuple[str, ...], needle: tuple[str, ...]) -> bool:
    n = len(needle)
    return n > 0 and any(hay[i : i + n] == needle for i in range(len(hay) - n + 1))


def _by_text(text: str, choices: Sequence[str]) -> int | None:
    """The one option whose words the answer contains (an option inside another one, as
    "camera" in "away camera", counts only when the longer one is absent)."""
    said = _core(text)
    cores = [_core(c) for c in choices]
    hits = [k for k, c in enumerate(cores) if _contains(said, c)]
    hits = [k for k in hits if not any(h != k and _contains(cores[h], cores[k]) for h in hits)]
    if not hits and 0 < len(said) <= SHORT_ANSWER:  # "Left." for "their own left hand"
        hits = [k for k, c in enumerate(cores) if _contains(c, said)]
    return hits[0] if len(hits) == 1 else None


def parse_choice(text: str, choices: Sequence[str]) -> str | None:
    letters = string.ascii_uppercase[: len(choices)]
    clean = _clean(text)
    if not clean or not letters:
        return None
    letter = _letter_forms(clean, letters)
    if letter is not None:
        return letter
    k = _by_text(clean, choices)
    return None if k is None else letters[k]


def parse_number(text: str) -> str | None:
    """The first number, as digits or a word ("No one", "none" are 0)."""
    clean = _clean(text).lower()
    clean = re.sub(r"\bno\s+(?:one|people|person|body)\b", " zero ", clean)
    for token in re.findall(r"\d+|[a-z]+", clean):
        if token.isdigit():
            return str(int(token))
        if token in NUMBER_WORDS:
            return str(NUMBER_WORDS[token])
    return None


def parse_answer(text: str, question: Mapping[str, Any]) -> str | None:
    """A model's answer to one PoseQA question, normalized as ``question["answer"]`` is
    written, or None when it cannot be read without guessing."""
    kind = question["answer_type"]
    if kind == "yes/no":
        return parse_yes_no(text)
    if kind == "choice":
        return parse_choice(text, question["choices"])
    if kind == "number":
        return parse_number(text)
    raise ValueError(f"unknown answer_type {kind!r}")
