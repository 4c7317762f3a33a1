"""Teacher text -> question/answer pairs. Pure functions, no I/O.

Real teachers, without few-shot guidance, write Q/A pairs in many shapes; all of these parse:

    Question:\\n...\\n===\\nAnswer:\\n...        (LLaVA's few-shot format)
    Q: ...\\nA: ...                            Q1: ... / A1: ...
    **Question 1:** ...\\n**Answer:** ...      1. **Q:** ... - **A:** ...
    ### Question 2\\n...\\n### Answer\\n...      User: ... / Assistant: ...

Labels are recognised only at the start of a line (after optional list numbering, bullets,
heading marks and bold/italic markers), so "A:" inside a sentence is left alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_Q_LABELS = r"question|q|user|human"
_A_LABELS = r"answer|a|assistant|ai|gpt|response"
_DECOR = r"[\s>*_#`|\-+•]*"  # bullets, heading marks, emphasis, blockquotes
_NUMBER = r"(?:\(?\d+[.)]\s*)?"
_LABEL = re.compile(
    rf"^{_DECOR}{_NUMBER}{_DECOR}(?P<label>{_Q_LABELS}|{_A_LABELS})"
    rf"(?:\s*#?\s*\d+)?{_DECOR}(?:[:：.)\-–—]|(?=\s*$)){_DECOR}(?P<rest>.*)$",
    re.IGNORECASE,
)
_SEPARATOR = re.compile(r"^\s*(?:={3,}|-{3,}|\*{3,}|_{3,})\s*$")
_TRAILING_DECOR = re.compile(r"[\s*_`]+$")
_LEADING_DECOR = re.compile(r"^[\s*_`]+")


@dataclass(frozen=True)
class QAPair:
    question: str
    answer: str


@dataclass(frozen=True)
class Parsed:
    """Pairs found in a reply; `problem` says why the reply (or its tail) is malformed."""

    pairs: tuple[QAPair, ...]
    problem: str | None = None


def _clean(lines: list[str]) -> str:
    text = "\n".join(lines).strip()
    text = _LEADING_DECOR.sub("", text)
    text = _TRAILING_DECOR.sub("", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _kind(label: str) -> str:
    return "q" if re.fullmatch(_Q_LABELS, label, re.IGNORECASE) else "a"


def segments(text: str) -> list[tuple[str, str]]:
    """Split a reply into labelled segments [("q"|"a"|"", text)]; "" is text before any label."""
    out: list[tuple[str, list[str]]] = [("", [])]
    for line in text.replace("\r\n", "\n").split("\n"):
        if _SEPARATOR.match(line):
            continue
        m = _LABEL.match(line)
        if m:
            out.append((_kind(m.group("label")), [m.group("rest")]))
        else:
            out[-1][1].append(line)
    return [(kind, _clean(lines)) for kind, lines in out]


def parse_qa(text: str) -> Parsed:
    """Question/answer pairs in order. Leading prose is ignored; problems are reported:
    no pairs at all, an answer without a question, a question left without an answer."""
    pairs: list[QAPair] = []
    problem: str | None = None
    question: str | None = None
    for kind, body in segments(text):
        if kind == "q":
            if question is not None:
                problem = problem or "question without an answer"
            question = body
        elif kind == "a":
            if question is None:
                problem = problem or "answer without a question"
                continue
            pairs.append(QAPair(question, body))
            question = None
    if question is not None:
        problem = problem or "last question has no answer"
    if not pairs:
        problem = "no question/answer pairs found"
    return Parsed(tuple(pairs), problem)


def parse_description(text: str) -> str:
    """A detailed description is the reply itself, trimmed of separators and stray labels."""
    kinds = segments(text)
    if len(kinds) == 1:
        return kinds[0][1]
    # A teacher sometimes prefixes "Answer:" or "Description:"; keep all the prose.
    return _clean([body for _, body in kinds if body])
