"""The stages hand off to each other through their real files: generate -> train -> chat ->
bench build/answer/judge/report, on COCO-MINI, all through the CLI as a user runs it."""

from __future__ import annotations

import json

import pytest
from tests.conftest import cli
from tests.servers import OpenAIServer

pytestmark = [pytest.mark.train, pytest.mark.slow]
KEY = "sk-test-e2e-123456"


def judge_reply(body: dict) -> str:
    return "8 6\nAssistant 1 is more precise about the poses; Assistant 2 is vaguer."


def test_generated_data_trains_a_model_that_answers_the_benchmark(
    coco_mini, tmp_path, capsys, monkeypatch
) -> None:
    pytest.importorskip("transformers")
    data = tmp_path / "out"
    assert (
        cli(
            "generate",
            "--coco",
            coco_mini,
            "--split",
            "train2017",
            "--max-images",
            "6",
            "--out",
            data,
        )
        == 0
    )
    records = json.loads((data / "llava_pose_all.json").read_text())
    assert len(records) == 18 and all((coco_mini / r["image"]).is_file() for r in records)

    run = tmp_path / "runs" / "tiny"
    assert (
        cli(
            "train",
            "--model",
            "tiny",
            "--data",
            data / "llava_pose_all.json",
            "--image-root",
            coco_mini,
            "--output",
            run,
            "--max-steps",
            "4",
            "--batch-size",
            "2",
            "--grad-accum",
            "1",
            "--lr",
            "1e-3",
            "--save-steps",
            "100",
        )
        == 0
    )
    capsys.readouterr()
    image = coco_mini / records[0]["image"]
    assert (
        cli(
            "chat",
            "--model",
            run,
            "--image",
            image,
            "--max-new-tokens",
            "5",
            "What is the person doing?",
        )
        == 0
    )
    assert "ASSISTANT:" in capsys.readouterr().out

    # the benchmark, built by the offline teacher on val, answered by the model just trained,
    # judged by a loopback OpenAI-compatible judge
    bench = tmp_path / "ehpaub"
    assert (
        cli(
            "bench",
            "build",
            "--coco",
            coco_mini,
            "--split",
            "val2017",
            "--images",
            "3",
            "--teacher",
            "rules",
            "--out",
            bench,
        )
        == 0
    )
    answers = tmp_path / "answers" / "tiny.jsonl"
    assert (
        cli(
            "bench",
            "answer",
            "--bench",
            bench,
            "--model",
            f"hf:{run}",
            "--image-root",
            coco_mini,
            "--out",
            answers,
            "--max-tokens",
            "8",
        )
        == 0
    )
    assert len(answers.read_text().splitlines()) == 9
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with OpenAIServer(responder=judge_reply, api_key=KEY) as server:
        assert (
            cli(
                "bench",
                "judge",
                "--bench",
                bench,
                "--answers",
                answers,
                "--judge",
                "openai:gpt-4o",
                "--base-url",
                server.url,
                "--out",
                tmp_path / "reviews",
            )
            == 0
        )
    report = tmp_path / "report"
    assert (
        cli("bench", "report", "--bench", bench, "--reviews", tmp_path / "reviews", "--out", report)
        == 0
    )
    index = (report / "index.md").read_text()
    assert "75.0" in index  # 6 / 8 x 100, the relative score of every answer
    assert not any(
        KEY in p.read_text(errors="ignore")
        for p in tmp_path.rglob("*")
        if p.is_file() and p.suffix in (".json", ".jsonl", ".md", ".csv")
    )
