"""bench build, answer and judge refuse an output another process holds (see tests/test_lock.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import find_coco_mini, one_line_error
from tests.ehpaub.helpers import model_answers
from tests.test_lock import holder

from llava_pose.cli import main


@pytest.mark.parametrize("step", ["build", "answer", "judge"])
def test_bench_steps_refuse_an_output_in_use(
    step: str, openai_server, small_bench: Path, tmp_path: Path, capsys
) -> None:
    if step == "answer":
        target, folder = tmp_path / "answers" / "m.jsonl", False
        args = ["--bench", small_bench, "--model", "openai:gpt-4o", "--out", target]
        args += ["--image-root", find_coco_mini()]
    elif step == "judge":
        target, folder = tmp_path / "reviews", True
        answers = model_answers(tmp_path / "answers" / "m.jsonl", small_bench, "good")
        args = ["--bench", small_bench, "--answers", answers, "--out", target]
    else:
        target, folder = tmp_path / "ehpaub", True
        args = ["--coco", find_coco_mini(), "--split", "val2017", "--images", 2]
        args += ["--teacher", "openai:gpt-4o", "--out", target]
    other = holder(target, folder=folder)
    try:
        rc = main(["-q", "bench", step, *map(str, args), "--base-url", openai_server.url])
        line = one_line_error(capsys, rc)
    finally:
        other.kill()
        other.wait()
    assert rc == 2 and f"pid {other.pid}" in line
    assert openai_server.requests == []
