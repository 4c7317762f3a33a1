"""An edited benchmark is never scored without a word: every command that reads a benchmark
folder checks its files against the sha256 in ``manifest.json``, refuses a mismatch with one
line, and under ``--allow-modified`` reads it and says so in what it writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.conftest import cli, one_line_error
from tests.ehpaub.helpers import model_answers, read_jsonl, write_jsonl


@pytest.fixture(scope="module")
def built_poseqa(coco_mini: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("poseqa")
    assert cli("poseqa", "build", "--coco", coco_mini, "--split", "val2017", "--out", out) == 0
    return out


@pytest.fixture(scope="module")
def built_ehpaub(coco_mini: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.ehpaub.replies import respond
    from tests.servers import OpenAIServer

    out = tmp_path_factory.mktemp("ehpaub")
    with OpenAIServer(latency=0.0, responder=respond) as server:
        args = ["bench", "build", "--coco", coco_mini, "--split", "val2017", "--images", 2]
        args += ["--teacher", "openai:gpt-4o", "--base-url", server.url, "--out", out]
        assert cli(*args) == 0
    return out


def edited(folder: Path, tmp_path: Path) -> Path:
    """A copy of `folder` with one question's answer flipped, or one question reworded."""
    copy = tmp_path / folder.name
    copy.mkdir()
    for f in folder.iterdir():
        if f.is_file() and not f.name.startswith(".") and f.suffix in (".json", ".jsonl"):
            (copy / f.name).write_bytes(f.read_bytes())
    rows = read_jsonl(copy / "questions.jsonl")
    if "answer" in rows[0]:
        rows[0]["answer"] = {"yes": "no", "no": "yes"}.get(rows[0]["answer"], "A")
    else:
        rows[0]["text"] += " Answer in one word."
    write_jsonl(copy / "questions.jsonl", rows)
    return copy


def answers_for(bench: Path, tmp_path: Path) -> Path:
    return model_answers(tmp_path / "answers" / "m.jsonl", bench, "good")


def test_poseqa_score_refuses_an_edited_benchmark(
    built_poseqa: Path, tmp_path: Path, capsys
) -> None:
    bench = edited(built_poseqa, tmp_path)
    answers = answers_for(bench, tmp_path)
    report = tmp_path / "report"
    rc = cli("poseqa", "score", "--bench", bench, "--answers", answers, "--out", report)
    one_line_error(capsys, rc, "manifest.json: files", "questions.jsonl", "--allow-modified")
    assert not (report / "index.md").exists()

    args = ["poseqa", "score", "--bench", bench, "--answers", answers, "--out", report]
    assert cli(*args, "--allow-modified") == 0
    assert "**Modified:** questions.jsonl" in (report / "index.md").read_text()

    answers = answers_for(built_poseqa, tmp_path)  # the benchmark as built is read as ever
    rc = cli("poseqa", "score", "--bench", built_poseqa, "--answers", answers, "--out", report)
    assert rc == 0 and "Modified" not in (report / "index.md").read_text()


def test_bench_answer_refuses_an_edited_benchmark(
    built_poseqa: Path, coco_mini: Path, tmp_path: Path, capsys
) -> None:
    bench = edited(built_poseqa, tmp_path)
    out = tmp_path / "a.jsonl"
    args = ["bench", "answer", "--bench", bench, "--model", "openai:m", "--out", out]
    rc = cli(*args, "--base-url", "http://127.0.0.1:9/v1", "--image-root", coco_mini)
    one_line_error(capsys, rc, "manifest.json: files", "questions.jsonl")
    assert not out.exists()


@pytest.mark.parametrize("benchmark", ["poseqa", "ehpaub"])
def test_the_lmms_eval_export_refuses_an_edited_benchmark(
    benchmark: str, request, coco_mini: Path, tmp_path: Path, capsys
) -> None:
    bench = edited(request.getfixturevalue(f"built_{benchmark}"), tmp_path)
    out = tmp_path / "tasks"
    args = ["bench", "export", "--bench", bench, "--out", out, "--image-root", coco_mini]
    one_line_error(capsys, cli(*args), "manifest.json: files", "questions.jsonl")
    assert not out.exists()
    assert cli(*args, "--allow-modified") == 0
    export = json.loads(next(out.glob("*/export.json")).read_text())
    assert export["modified"] == ["questions.jsonl"]


def test_bench_judge_and_report_refuse_an_edited_benchmark(
    built_ehpaub: Path, tmp_path: Path, capsys
) -> None:
    bench = edited(built_ehpaub, tmp_path)
    answers = answers_for(bench, tmp_path)
    reviews = tmp_path / "reviews"
    args = ["bench", "judge", "--bench", bench, "--answers", answers, "--out", reviews]
    rc = cli(*args, "--judge", "openai:gpt-4o", "--base-url", "http://127.0.0.1:9/v1")
    one_line_error(capsys, rc, "manifest.json: files", "questions.jsonl")
    assert not (reviews / "judge.json").exists()

    report = tmp_path / "report"
    reviews.mkdir()
    write_jsonl(reviews / "m.jsonl", [])
    rc = cli("bench", "report", "--bench", bench, "--reviews", reviews, "--out", report)
    one_line_error(capsys, rc, "manifest.json: files", "questions.jsonl")
    assert not (report / "index.md").exists()
    args = ["bench", "report", "--bench", bench, "--reviews", reviews, "--out", report]
    assert cli(*args, "--allow-modified") == 0
    assert "**Modified:** questions.jsonl" in (report / "index.md").read_text()


@pytest.mark.parametrize("benchmark", ["poseqa", "ehpaub"])
def test_view_refuses_an_edited_benchmark(
    benchmark: str, request, coco_mini: Path, tmp_path: Path, capsys
) -> None:
    bench = edited(request.getfixturevalue(f"built_{benchmark}"), tmp_path)
    site = tmp_path / "site"
    args = ["view", bench, "--coco", coco_mini, "--export", site]
    one_line_error(capsys, cli(*args), "manifest.json: files", "questions.jsonl")
    assert not site.exists()
    assert cli(*args, "--allow-modified") == 0
    shards = "".join(p.read_text() for p in site.rglob("*.js"))
    assert "modified: questions.jsonl differ from the benchmark as built" in shards
