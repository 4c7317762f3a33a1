"""PoseQA's questions file, read and checked in one place for every command that reads it
(`poseqa score`, `view`, the lmms-eval export): each used to hold its own copy of the line's
shape and its own subset of the checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from ..errors import InputError
from ..io import read_jsonl
from ..paths import path_problem

ANSWER_TYPES = ("yes/no", "choice", "number")


class PoseQuestion(msgspec.Struct, frozen=True):
    """One line of ``questions.jsonl``: LLaVA-Bench's shape plus the gold answer."""

    question_id: str
    image: str
    text: str
    category: str
    answer: str
    answer_type: str
    choices: list[str] | None = None
    fact: dict[str, Any] = {}
    persons: list[int] = []


def read_questions(path: Path) -> list[PoseQuestion]:
    """The questions of `path`; an empty file, a repeated id, an image path that leaves the
    image root, an unknown answer type or a choice without options is an input error naming
    the question."""
    questions = read_jsonl(path, Any)  # decoded as given: an id may be written as a number
    if not questions:
        raise InputError(path, "no questions in the file")
    out: list[PoseQuestion] = []
    seen: set[str] = set()
    for n, row in enumerate(questions, 1):
        if isinstance(row, dict) and isinstance(row.get("question_id"), int):
            row = {**row, "question_id": str(row["question_id"])}
        try:
            q = msgspec.convert(row, PoseQuestion)
        except msgspec.ValidationError as e:
            raise InputError(path, str(e).replace(" - at `$", " at `"), f"question {n}") from None
        where = f"question_id {q.question_id!r}"
        if q.question_id in seen:
            raise InputError(path, f"duplicate question_id {q.question_id!r}", field=where)
        seen.add(q.question_id)
        problem = path_problem(q.image)
        if problem is not None:
            raise InputError(
                path, f"{problem}; refusing to read outside the image root", f"{where}: image"
            )
        if q.answer_type not in ANSWER_TYPES:
            raise InputError(
                path,
                f"must be one of {', '.join(ANSWER_TYPES)}, got {q.answer_type!r}",
                field=f"{where}: answer_type",
            )
        if q.answer_type == "choice" and not q.choices:
            raise InputError(path, "a choice question needs its options", f"{where}: choices")
        out.append(q)
    return out
