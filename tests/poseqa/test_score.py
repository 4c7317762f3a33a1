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
from llava_pose.poseqa.build import family_title
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


# -- a model that hedges, and models that answer a constant (issue 16) --------------------------

NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five"]


def other_letter(row: dict[str, Any]) -> str:
    return "B" if row["answer"] == "A" else "A"


def hedge(style: str, row: dict[str, Any]) -> str:
    """A reply that never commits to one answer, built around the right one so that a parser
    that guesses would credit it."""
    kind, answer = row["answer_type"], row["answer"]
    if style == "cut-off echo":
        return row["text"].rsplit(" ", 1)[0]  # "... Answer yes or"
    if style == "cannot tell":
        return "It is not possible to tell from one image."
    if kind == "yes/no":
        other = "no" if answer == "yes" else "yes"
        return {
            "both": f"{answer.capitalize()} and {other}.",
            "or": f"{answer}/{other}",
            "maybe": f"{answer.capitalize()}, or maybe {other}.",
            "list": f"{answer.capitalize()}. {other.capitalize()}.",
            "negated": f"I would not say {answer}.",
            "correction": f"{other.capitalize()}. Actually {answer}.",
        }[style]
    if kind == "choice":
        letters = "ABCD"[: len(row["choices"])]
        option = row["choices"][letters.index(answer)]
        return {
            "both": f"({answer}) or ({other_letter(row)})",
            "or": f"{answer}. or {other_letter(row)}.",
            "maybe": f"The answer is {answer}, or maybe {other_letter(row)}",
            "list": " ".join(f"({x})" for x in letters),
            "negated": f"not {option}",
            "correction": f"{other_letter(row)}. Actually, {answer}.",
        }[style]
    n = int(answer)
    return {
        "both": f"{NUMBER_WORDS[n]} or {NUMBER_WORDS[n + 1]}",
        "or": f"{n}-{n + 1}",
        "maybe": f"Between {n} and {n + 4}",
        "list": ", ".join(NUMBER_WORDS[: n + 4]),
        "negated": f"Not {n + 1}, not {n}.",
        "correction": f"{n + 1}. Actually {n}.",
    }[style]


HEDGES = ["both", "or", "maybe", "list", "negated", "correction", "cut-off echo", "cannot tell"]


def score_csv(report: Path) -> dict[tuple[str, str], dict[str, str]]:
    return {(r["model"], r["family"]): r for r in csv.DictReader((report / "scores.csv").open())}


def test_a_hedging_model_scores_as_answering_nothing(
    coco_mini: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = tmp_path / "poseqa"
    assert main(["-q", "poseqa", "build", "--coco", str(coco_mini), "--split", "val2017",
                 "--out", str(bench)]) == 0  # fmt: skip
    rows = [json.loads(line) for line in (bench / "questions.jsonl").open()]
    assert {r["answer_type"] for r in rows} == {"yes/no", "choice", "number"}
    files = []
    for style in HEDGES:
        path = tmp_path / "answers" / f"{style}.jsonl"
        path.parent.mkdir(exist_ok=True)
        lines = [
            {"question_id": r["question_id"], "text": hedge(style, r), "model_id": style}
            for r in rows
        ]
        path.write_text("".join(json.dumps(x) + "\n" for x in lines))
        files.append(str(path))
    silent = tmp_path / "answers" / "silent.jsonl"
    silent.write_text("")
    report = tmp_path / "report"
    rc = main(["-q", "poseqa", "score", "--bench", str(bench), "--answers", *files,
               str(silent), "--out", str(report)])  # fmt: skip
    assert rc == 0
    scores = score_csv(report)
    families = {r["category"] for r in rows}
    for family in families:
        nothing = scores[("silent", family)]
        assert int(nothing["missing"]) == int(nothing["questions"])
        for style in HEDGES:
            line = scores[(style, family)]
            assert float(line["accuracy"]) == float(nothing["accuracy"]) == 0.0, (style, line)
            assert int(line["unparseable"]) == int(line["questions"]), (style, line)
    unparsed = list(csv.DictReader((report / "unparseable.csv").open()))
    assert len(unparsed) == len(HEDGES) * len(rows)
    out = capsys.readouterr().out
    assert f"  both: 0/{len(rows)} correct, {len(rows)} unparseable" in out


def constants(rows: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Per family, every constant reply a blind model could give: "yes"/"no", each letter and
    each option's text of a choice, each count up to the number of people."""
    out: dict[str, set[str]] = {}
    for r in rows:
        mine = out.setdefault(r["category"], set())
        if r["answer_type"] == "yes/no":
            mine |= {"yes", "no"}
        elif r["answer_type"] == "choice":
            mine |= set("ABCD"[: len(r["choices"])]) | set(r["choices"])
        else:
            mine |= {str(n) for n in range(r["fact"]["people"] + 1)}
    return out


def uniform(r: dict[str, Any]) -> list[str]:
    """The answers a uniform guess draws from for one question."""
    if r["answer_type"] == "yes/no":
        return ["yes", "no"]
    if r["answer_type"] == "choice":
        return list("ABCD"[: len(r["choices"])])
    return [str(n) for n in range(r["fact"]["people"] + 1)]


def test_baselines_are_what_a_constant_answer_really_scores(
    coco_mini: Path, tmp_path: Path
) -> None:
    """Every constant reply is scored through the CLI; the report's baseline of each family
    is at least what the best of them really scores, chance is the mean a uniform guess
    really scores, and a family that a constant wins (counting: always 0) is flagged."""
    bench = tmp_path / "poseqa"
    assert main(["-q", "poseqa", "build", "--coco", str(coco_mini), "--split", "val2017",
                 "--out", str(bench)]) == 0  # fmt: skip
    rows = [json.loads(line) for line in (bench / "questions.jsonl").open()]
    manifest = json.loads((bench / "manifest.json").read_text())
    replies = constants(rows)
    files = []
    for n, reply in enumerate(sorted(set().union(*replies.values()))):
        path = tmp_path / "answers" / f"{n}.jsonl"
        path.parent.mkdir(exist_ok=True)
        lines = [{"question_id": r["question_id"], "text": reply, "model_id": reply} for r in rows]
        path.write_text("".join(json.dumps(x) + "\n" for x in lines))
        files.append(str(path))
    report = tmp_path / "report"
    rc = main(["-q", "poseqa", "score", "--bench", str(bench), "--answers", *files,
               "--out", str(report)])  # fmt: skip
    assert rc == 0
    scores = score_csv(report)
    index = (report / "index.md").read_text()
    flagged = set()
    for family, mine in replies.items():
        questions = [r for r in rows if r["category"] == family]
        real = {c: float(scores[(c, family)]["accuracy"]) for c in mine}
        best = max(real.values())
        line = scores[(sorted(mine)[0], family)]
        assert float(line["best_constant_accuracy"]) == best
        assert real[line["best_constant"]] == best
        # chance: what a uniform guess really scores (each family of COCO-MINI draws from one
        # set of answers, so that is the mean score of the constants of that set)
        (drawn,) = {tuple(uniform(r)) for r in questions}
        truth = sum(real[c] for c in drawn) / len(drawn)
        assert float(line["chance"]) == pytest.approx(truth, abs=1e-4)
        assert float(line["baseline"]) == max(best, float(line["chance"]))
        assert float(line["baseline"]) >= max(real.values())
        unbalanced = line["unbalanced"] == "True"
        assert unbalanced == (best > float(line["chance"]) + 0.05)
        if unbalanced:
            flagged.add(family)
        m = manifest["families"][family]
        assert m["baseline"] == pytest.approx(float(line["baseline"]), abs=1e-4)
        assert m["unbalanced"] == unbalanced and m["questions"] == len(questions)
        assert sum(m["answers"].values()) == len(questions)
    # every count of COCO-MINI is 0: always "0" wins, and the family says so
    assert {r["answer"] for r in rows if r["category"] == "count"} == {"0"}
    assert "count" in flagged and scores[("0", "count")]["accuracy"] == "1.0"
    (count_row,) = [x for x in index.splitlines() if x.startswith("| Counting (arms raised) |")]
    assert count_row.endswith("| 100.0 | unbalanced |")
    assert "Counting (arms raised) (unbalanced)" in index
    # posture is balanced by the build: its constant scores chance, and it is not flagged
    assert "posture" in replies and "posture" not in flagged
    # the families the build balanced, and what it dropped for it, are in the manifest
    for family in ("posture", "arm_raised", "which_arm", "higher_hand"):
        m = manifest["families"].get(family)
        if m and m["questions"]:
            options = m.get("correct_options", m["answers"])
            assert len(set(options.values())) == 1 and len(options) == 2, (family, m)
    dropped = {f: m["dropped_for_balance"] for f, m in manifest["families"].items()}
    assert any(dropped.values())
    (note,) = [x for x in index.splitlines() if x.startswith("Dropped by `poseqa build`")]
    for family, n in dropped.items():
        assert (f"{family_title(family)} {n}" in note) == (n > 0)
