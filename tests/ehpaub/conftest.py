"""Fixtures of the benchmark tests: loopback provider servers that play teacher, answerer and
judge, and a small benchmark folder made from real COCO-MINI val2017 images."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.ehpaub.helpers import KEY, write_jsonl
from tests.ehpaub.replies import respond
from tests.servers import AnthropicServer, OpenAIServer

from llava_pose.coco import read_split
from llava_pose.ehpaub.files import context_line


@pytest.fixture
def openai_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with OpenAIServer(latency=0.005, responder=respond, api_key=KEY) as server:
        yield server


@pytest.fixture
def anthropic_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[AnthropicServer]:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    with AnthropicServer(latency=0.005, responder=respond, api_key=KEY) as server:
        yield server


@pytest.fixture(scope="session")
def val_contexts(coco_mini: Path) -> list:
    """Real COCO-MINI val2017 images with persons (keypoints) and objects."""
    return read_split(coco_mini, "val2017", min_keypoints=10).contexts


@pytest.fixture
def small_bench(tmp_path: Path, coco_mini: Path, val_contexts: list) -> Path:
    """A hand-made 2-image, 6-question benchmark folder in our format (real COCO contexts)."""
    folder = tmp_path / "perf"
    contexts = val_contexts[:2]
    questions, refs = [], []
    for i, ctx in enumerate(contexts):
        for k, category in enumerate(("conv", "detail", "complex")):
            qid = 3 * i + k
            questions.append(
                {
                    "question_id": qid,
                    "image": ctx.image,
                    "text": f"Question {qid}?",
                    "category": category,
                }
            )
            refs.append(
                {"question_id": qid, "text": f"Reference answer {qid}.", "answer_id": f"ref-{qid}"}
            )
    write_jsonl(folder / "questions.jsonl", questions)
    write_jsonl(folder / "answers_ref.jsonl", refs)
    write_jsonl(folder / "context.jsonl", [context_line(c, c.image) for c in contexts])
    (folder / "manifest.json").write_text(
        json.dumps({"image_root": str(coco_mini), "images": 2, "split": "val2017", "seed": 0})
    )
    return folder
