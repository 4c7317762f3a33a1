"""`bench answer` through the real SDKs against the loopback servers, on real COCO-MINI images."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

from tests.conftest import find_coco_mini
from tests.ehpaub.helpers import read_jsonl
from tests.servers import Fault

from llava_pose.cli import main


def answer(bench: Path, out: Path, server, *extra: str, root: Path | None = None) -> int:
    """`bench answer` on `bench`, reading images under `root` (default COCO-MINI; a root given
    in `extra` instead when `root` is None and `extra` names one)."""
    named = ["--image-root", str(root or find_coco_mini())]
    if root is None and "--image-root" in extra:
        named = []
    return main(
        [
            *("-q", "bench", "answer", "--bench", str(bench), "--out", str(out)),
            *("--base-url", server.url, *named, *extra),
        ]
    )


def test_answers_every_question_with_its_image(
    openai_server, small_bench, coco_mini, tmp_path
) -> None:
    out = tmp_path / "answers" / "mini.jsonl"
    assert answer(small_bench, out, openai_server, "--model", "openai:gpt-4o-mini") == 0
    questions = read_jsonl(small_bench / "questions.jsonl")
    requests = openai_server.requests
    assert len(requests) == 6
    for r in requests:
        body = r.body
        assert (
            body["model"] == "gpt-4o-mini"
            and body["temperature"] == 0
            and body["max_tokens"] == 1024
        )
        assert body["seed"] == 0
        (message,) = body["messages"]
        image, text = message["content"]
        q = next(q for q in questions if q["text"] == text["text"])
        head, data = image["image_url"]["url"].split(",", 1)
        assert head == "data:image/jpeg;base64"
        assert base64.b64decode(data) == (coco_mini / q["image"]).read_bytes()
    rows = read_jsonl(out)
    assert [r["question_id"] for r in rows] == [q["question_id"] for q in questions]
    first = rows[0]
    assert first["prompt"] == "Question 0?" and first["text"].startswith("WEAK: the person")
    assert first["model_id"] == "gpt-4o-mini" and first["category"] == "conv"
    assert len(first["answer_id"]) == 22
    meta = first["metadata"]
    assert meta["model"] == "openai:gpt-4o-mini" and meta["temperature"] == 0.0
    assert meta["finish_reason"] == "stop" and meta["input_tokens"] > 85  # text + one image
    assert not out.with_name("mini.jsonl.partial").exists()


def test_rerun_and_partial_resume(openai_server, small_bench, tmp_path) -> None:
    out = tmp_path / "mini.jsonl"
    args = ("--model", "openai:gpt-4o-mini", "--cache", str(tmp_path / "other-cache.sqlite"))
    assert answer(small_bench, out, openai_server, *args) == 0
    full = out.read_bytes()
    assert answer(small_bench, out, openai_server, *args) == 0
    assert len(openai_server.requests) == 6 and out.read_bytes() == full
    # a crash after two answers left only the partial file; a fresh cache cannot help
    lines = full.decode().splitlines(keepends=True)
    out.unlink()
    out.with_name("mini.jsonl.partial").write_text("".join(lines[:2]) + '{"question_id": 2, "te')
    fresh = ("--model", "openai:gpt-4o-mini", "--cache", str(tmp_path / "fresh.sqlite"))
    assert answer(small_bench, out, openai_server, *fresh) == 0
    assert len(openai_server.requests) == 6 + 4
    assert out.read_bytes() == full
    # other settings: nothing is reused
    assert answer(small_bench, out, openai_server, *fresh, "--temperature", "0.7") == 0
    assert len(openai_server.requests) == 16
    assert all(r["metadata"]["temperature"] == 0.7 for r in read_jsonl(out))


def test_failed_questions_are_listed_and_retried(
    openai_server, small_bench, tmp_path, capsys
) -> None:
    openai_server.add_fault(
        Fault("context_too_long"), when=lambda body: "Question 3?" in json.dumps(body)
    )
    out = tmp_path / "mini.jsonl"
    assert answer(small_bench, out, openai_server, "--model", "openai:gpt-4o-mini") == 1
    assert [r["question_id"] for r in read_jsonl(out)] == [0, 1, 2, 4, 5]
    failed = read_jsonl(tmp_path / "mini.failed.jsonl")
    assert [f["question_id"] for f in failed] == [3] and "context_length_exceeded" in failed[0][
        "reason"
    ]
    assert "1 questions failed" in capsys.readouterr().err
    openai_server.clear_faults()
    assert answer(small_bench, out, openai_server, "--model", "openai:gpt-4o-mini") == 0
    assert [r["question_id"] for r in read_jsonl(out)] == [0, 1, 2, 3, 4, 5]
    assert not (tmp_path / "mini.failed.jsonl").exists()


def test_claude_answers_with_a_base64_image_block(
    anthropic_server, small_bench, coco_mini, tmp_path
) -> None:
    out = tmp_path / "claude.jsonl"
    rc = answer(
        small_bench,
        out,
        anthropic_server,
        "--model",
        "anthropic:claude-sonnet-4-20250514",
        "--system",
        "Answer briefly.",
        "--model-id",
        "claude-sonnet-4",
    )
    assert rc == 0
    body = anthropic_server.requests[0].body
    assert body["system"] == "Answer briefly." and body["temperature"] == 0
    image, text = body["messages"][0]["content"]
    assert image["type"] == "image" and image["source"]["media_type"] == "image/jpeg"
    assert text["type"] == "text"
    texts = {r.body["messages"][0]["content"][1]["text"] for r in anthropic_server.requests}
    assert texts == {f"Question {i}?" for i in range(6)}
    assert all(r["model_id"] == "claude-sonnet-4" for r in read_jsonl(out))


def test_missing_image_is_an_input_error_before_any_call(
    openai_server, small_bench, coco_mini, tmp_path, capsys
) -> None:
    root = tmp_path / "coco"
    shutil.copytree(coco_mini / "val2017", root / "val2017")
    questions = read_jsonl(small_bench / "questions.jsonl")
    (root / questions[3]["image"]).unlink()
    out = tmp_path / "a.jsonl"
    rc = answer(
        small_bench, out, openai_server, "--model", "openai:gpt-4o-mini", "--image-root", str(root)
    )
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert (
        f"questions.jsonl: question_id 3: image: image file not found: {root / questions[3]['image']}"
        in err
    )
    assert "(and 2 more)" in err  # the image's other two questions
    assert openai_server.requests == [] and not out.exists()
    (small_bench / "manifest.json").write_text("{}")
    args = ["bench", "answer", "--bench", str(small_bench), "--out", str(out)]
    assert main([*args, "--model", "openai:gpt-4o-mini", "--base-url", openai_server.url]) == 2
    assert "--image-root: required" in capsys.readouterr().err
