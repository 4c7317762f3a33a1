"""A newcomer's first hour on COCO-MINI, typed as a newcomer types it: each friction found by
trying the tool cold is one line that says what to do, or simply works."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.conftest import cli, one_line_error


def test_verify_on_the_wrong_split_says_which_split_the_images_are_in(
    generated: Path, coco_mini: Path, tmp_path: Path, capsys
) -> None:
    """It said '42 records (42 without a context), 0 pose claims' and exited 0."""
    data = generated / "llava_pose_all.json"
    rc = cli("verify", "--data", data, "--coco", coco_mini, "--out", tmp_path / "v")
    one_line_error(capsys, rc, "split train2017", "its images are in val2017/", "--split val2017")
    assert not (tmp_path / "v" / "summary.json").exists()
    args = ("--coco", coco_mini, "--split", "val2017", "--out", tmp_path / "v")
    assert cli("verify", "--data", data, *args) == 0


def test_a_missing_split_lists_the_splits_there(coco_mini: Path, tmp_path: Path, capsys) -> None:
    rc = cli("generate", "--coco", coco_mini, "--split", "val2014", "--out", tmp_path / "o")
    one_line_error(capsys, rc, "captions_val2014.json", "splits found there: train2017, val2017")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("generate", "--out", "result.json"), "result.json names a file"),
        (("bench", "answer", "--bench", "b", "--model", "openai:m", "--out", "ans-dir/"),
         "ans-dir/ is a folder"),
        (("poseqa", "build", "--coco", "c", "--out", "questions.jsonl"), "names a file"),
    ],
)  # fmt: skip
def test_an_output_of_the_wrong_kind_is_refused_before_any_work(
    args: tuple[str, ...], needle: str, tmp_path: Path, capsys, monkeypatch
) -> None:
    """`generate --out result.json` made a folder named result.json; `bench answer --out
    ans-dir/` wrote a file named ans-dir."""
    monkeypatch.chdir(tmp_path)
    one_line_error(capsys, cli(*args), "--out", needle)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_is_refused_where_one_file_is_written(
    coco_mini: Path, tmp_path: Path, capsys
) -> None:
    (tmp_path / "contexts").mkdir()
    rc = cli("prepare", "--coco", coco_mini, "--split", "val2017", "--out", tmp_path / "contexts")
    one_line_error(capsys, rc, "contexts is a folder")


def test_answers_folders_are_taken_wherever_answers_files_are(
    coco_mini: Path, tmp_path: Path
) -> None:
    """`--answers answers/` worked in view only; `bench answer`'s failed-questions file in
    the folder is not an answers file."""
    bench = tmp_path / "poseqa"
    assert cli("poseqa", "build", "--coco", coco_mini, "--split", "val2017", "--out", bench) == 0
    answers = tmp_path / "answers"
    answers.mkdir()
    questions = [json.loads(line) for line in (bench / "questions.jsonl").open()]
    for model, text in (("yes-man", "Yes."), ("no-man", "No.")):
        rows = [
            {"question_id": q["question_id"], "text": text, "model_id": model} for q in questions
        ]
        (answers / f"{model}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (answers / "yes-man.failed.jsonl").write_text('{"question_id": 1, "reason": "timeout"}\n')
    report = tmp_path / "report"
    assert cli("poseqa", "score", "--bench", bench, "--answers", answers, "--out", report) == 0
    text = (report / "index.md").read_text()
    assert "yes-man" in text and "no-man" in text and "failed" not in text


def test_a_dry_run_shows_the_requests_exactly_as_they_would_be_sent(
    coco_mini: Path, tmp_path: Path, capsys
) -> None:
    """A user could not see what the teacher reads: prompt options were refused with the
    default teacher, and a dry run showed only token counts."""
    args = ["generate", "--coco", coco_mini, "--split", "val2017", "--out", tmp_path / "o"]
    rc = cli(*args, "--dry-run", "--show", 3, "--format", "compact", "--fewshot")
    out = capsys.readouterr().out
    assert rc == 0 and "offline teacher (rules) reads no prompt" in out
    bodies = [json.loads(b) for b in _bodies(out)]
    assert len(bodies) == 3 and all(b["model"] == "gpt-4o" for b in bodies)
    assert bodies[0]["messages"][0]["role"] == "system"
    assert any(m["role"] == "assistant" for m in bodies[0]["messages"])  # the examples
    assert "requests:" in out  # the estimate follows
    rc = cli(*args, "--dry-run", "--show", 1, "--teacher", "anthropic:claude-sonnet-4")
    [body] = [json.loads(b) for b in _bodies(capsys.readouterr().out)]
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}  # as Claude gets it
    one_line_error(capsys, cli(*args, "--show", 2), "--show: only with --dry-run")
    assert not (tmp_path / "o").exists()


def _bodies(out: str) -> list[str]:
    """The JSON bodies `--show` printed, each after its `# request` line."""
    chunks = out.split("# request ")[1:]
    return [c.split("\n", 1)[1].split("\n}\n", 1)[0] + "\n}" for c in chunks]
