"""PoseQA end to end: build on COCO-MINI, answer through `bench answer` (unchanged) against
the loopback OpenAI server, score by exact match; and the pure scoring pieces."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import one_line_error

from llava_pose.cli import main
from llava_pose.poseqa.score import PoseQuestion, best_constant, score_model, wilson


def test_wilson_interval() -> None:
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson(5, 10)
    assert (lo, hi) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    assert wilson(10, 10)[1] == pytest.approx(1.0) and wilson(0, 0) == (0.0, 1.0)


def q(
    qid: str, answer: str, kind: str = "yes/no", choices: list[str] | None = None
) -> PoseQuestion:
    return PoseQuestion(qid, "val2017/x.jpg", "?", "posture", answer, kind, choices)


def test_score_counts_correct_unparseable_and_missing() -> None:
    questions = [q("1", "yes"), q("2", "no"), q("3", "yes"), q("4", "no")]
    s = score_model("m", "m.jsonl", questions, {"1": "Yes, he is.", "2": "Yes.", "3": "Hmm."})
    f = s.families["posture"]
    assert (f.n, f.correct, f.unparseable, f.missing) == (4, 1, 1, 1)
    assert s.unparsed == [{"question_id": "3", "category": "posture", "text": "Hmm."}]
    assert best_constant(questions) == ("no", 0.5)  # a tie goes to the first in order


def last_text(body: dict[str, Any]) -> str:
    content = body["messages"][-1]["content"]
    return next(part["text"] for part in content if part.get("type") == "text")


def answer_from_text(body: dict[str, Any]) -> str:
    """A model that reads only the question: yes to yes/no, A to choices, "two" to counts,
    and rambles about which way anyone faces."""
    text = last_text(body)
    if "facing" in text:
        return "Hard to say from here."
    if text.endswith("Answer yes or no."):
        return "Yes, that's right."
    if text.endswith("letter."):
        return "The answer is (A)."
    return "two"


def expected(row: dict[str, Any]) -> str | None:
    if row["category"] == "facing":
        return None
    return {"yes/no": "yes", "choice": "A", "number": "2"}[row["answer_type"]]


def test_answer_and_score_through_the_loopback_server(
    coco_mini: Path, tmp_path: Path, server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = tmp_path / "poseqa"
    assert main(["-q", "poseqa", "build", "--coco", str(coco_mini), "--split", "val2017",
                 "--out", str(bench)]) == 0  # fmt: skip
    server.responder = answer_from_text
    answers = tmp_path / "answers" / "mini.jsonl"
    rc = main(["-q", "bench", "answer", "--bench", str(bench), "--model", "openai:gpt-4o-mini",
               "--base-url", server.url, "--out", str(answers),
               "--image-root", str(coco_mini)])  # fmt: skip
    assert rc == 0
    rows = [json.loads(line) for line in (bench / "questions.jsonl").open()]
    assert len(server.requests) == len(rows)
    report = tmp_path / "report"
    rc = main(["-q", "poseqa", "score", "--bench", str(bench), "--answers", str(answers),
               "--out", str(report)])  # fmt: skip
    assert rc == 0
    scores = list(csv.DictReader((report / "scores.csv").open()))
    for family in {r["category"] for r in rows}:
        mine = [r for r in rows if r["category"] == family]
        (line,) = [s for s in scores if s["family"] == family]
        assert line["model"] == "gpt-4o-mini" and int(line["questions"]) == len(mine)
        want = sum(1 for r in mine if expected(r) == r["answer"])
        assert int(line["correct"]) == want
        unparseable = len(mine) if family == "facing" else 0
        assert int(line["unparseable"]) == unparseable
        lo, hi = float(line["ci95_low"]), float(line["ci95_high"])
        assert lo <= float(line["accuracy"]) <= hi
    index = (report / "index.md").read_text()
    assert "Hard to say from here." in index and "Baselines" in index
    assert "main persons agree where the captions decide" in index
    unparsed = list(csv.DictReader((report / "unparseable.csv").open()))
    assert len(unparsed) == sum(1 for r in rows if r["category"] == "facing")


def test_answers_of_another_benchmark(
    coco_mini: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = tmp_path / "poseqa"
    assert main(["-q", "poseqa", "build", "--coco", str(coco_mini), "--split", "val2017",
                 "--out", str(bench)]) == 0  # fmt: skip
    bad = tmp_path / "other.jsonl"
    bad.write_text('{"question_id": 7, "text": "Yes."}\n')
    rc = main(["poseqa", "score", "--bench", str(bench), "--answers", str(bad),
               "--out", str(tmp_path / "r")])  # fmt: skip
    one_line_error(capsys, rc, "other.jsonl", "question_id 7")
    assert not (tmp_path / "r").exists()
