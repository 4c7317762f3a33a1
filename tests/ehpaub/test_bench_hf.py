"""`bench answer --model hf:PATH`: the real transformers generate path on CPU, with the train
package's tiny randomly initialised LLaVA (no hub downloads here)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from tests.conftest import find_coco_mini
from tests.ehpaub.helpers import read_jsonl

from llava_pose.cli import main

pytestmark = pytest.mark.train


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    from llava_pose.train.model import build_tiny

    model, processor = build_tiny(seed=0)
    path = tmp_path_factory.mktemp("tiny-llava")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def answer(bench: Path, model: Path, out: Path) -> int:
    return main(
        [
            "-q",
            "bench",
            "answer",
            "--bench",
            str(bench),
            "--model",
            f"hf:{model}",
            "--image-root",
            str(find_coco_mini()),
            "--out",
            str(out),
            "--max-tokens",
            "8",
        ]
    )


def test_a_local_hf_model_answers_every_question(tiny_model, small_bench, tmp_path) -> None:
    out = tmp_path / "answers" / "tiny.jsonl"
    assert answer(small_bench, tiny_model, out) == 0
    rows = read_jsonl(out)
    assert [r["question_id"] for r in rows] == list(range(6))
    assert all(r["text"] and r["model_id"] == "tiny-llava0" for r in rows)
    meta = rows[0]["metadata"]
    assert meta["model"].startswith(f"hf:{tiny_model}@")  # weights fingerprint: retrained != cached
    assert meta["temperature"] == 0.0 and meta["max_tokens"] == 8
    assert meta["output_tokens"] <= 8 and meta["input_tokens"] > 0
    cache = out.with_name("tiny.cache.sqlite")
    with sqlite3.connect(cache) as db:
        assert db.execute("SELECT COUNT(*) FROM completions").fetchone()[0] == 6
    # greedy decoding: another run from scratch gives the same answers
    again = tmp_path / "again" / "tiny.jsonl"
    assert answer(small_bench, tiny_model, again) == 0
    assert [r["text"] for r in read_jsonl(again)] == [r["text"] for r in rows]


def test_hf_options_are_set_from_bench_answer(tiny_model, small_bench, tmp_path) -> None:
    out = tmp_path / "answers" / "tiny.jsonl"
    args = ["-q", "bench", "answer", "--bench", str(small_bench), "--model", f"hf:{tiny_model}"]
    args += ["--out", str(out), "--max-tokens", "4", "--device", "cpu", "--dtype", "fp32"]
    args += ["--image-root", str(find_coco_mini())]
    assert main([*args, "--batch-size", "3", "--template", "vicuna_v1"]) == 0
    assert len(read_jsonl(out)) == 6


def test_hf_options_given_to_an_api_model_are_an_error(small_bench, tmp_path, capsys) -> None:
    args = ["bench", "answer", "--bench", str(small_bench), "--model", "openai:gpt-4o"]
    rc = main([*args, "--out", str(tmp_path / "a.jsonl"), "--device", "cuda"])
    assert rc == 2 and "--device: openai: models do not take it" in capsys.readouterr().err
