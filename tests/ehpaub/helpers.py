"""Plain helpers of the benchmark tests (files in and out), shared by the test modules."""

from __future__ import annotations

import json
from pathlib import Path

KEY = "sk-test-SECRET-123456"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def model_answers(path: Path, bench: Path, marker: str, skip: tuple[int, ...] = ()) -> Path:
    """An answers file whose texts carry `marker` (the scripted judge scores by it)."""
    questions = read_jsonl(bench / "questions.jsonl")
    rows = [
        {
            "question_id": q["question_id"],
            "text": f"{marker} answer to {q['question_id']}.",
            "model_id": path.stem,
        }
        for q in questions
        if q["question_id"] not in skip
    ]
    return write_jsonl(path, rows)
