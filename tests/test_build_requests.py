"""`prompts.build_requests`, the fast way to build a whole split's requests: the very requests
of one `build_request` call each (both prompt formats, cues, few-shot), whether a forked
second process renders chunks of the images or not (or dies halfway)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec
import pytest

from llava_pose import coco, forked, prompts
from llava_pose.llm.pricing import prompt_chars
from llava_pose.records import ImageContext
from llava_pose.tasks import TASKS

OPTIONS = {"model": "gpt-4o", "seed": 3, "temperature": 0.7, "max_tokens": 512}


@pytest.fixture(scope="module")
def contexts(coco_mini: Path) -> list[ImageContext]:
    return [
        c
        for split in ("train2017", "val2017")
        for c in coco.load_split(coco_mini, split, human_only=False)
    ]


def one_by_one(contexts: list[ImageContext], tasks: tuple[str, ...], **options: Any) -> list[bytes]:
    return [
        msgspec.json.encode(prompts.build_request(c, t, **options))
        for c in contexts
        for t in TASKS
        if t in tasks
    ]


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("fewshot", [False, True])
@pytest.mark.parametrize("cues", [False, True])
@pytest.mark.parametrize("fmt", ["paper", "compact"])
def test_the_same_requests_as_one_call_each(
    monkeypatch: pytest.MonkeyPatch,
    contexts: list[ImageContext],
    fmt: str,
    cues: bool,
    fewshot: bool,
    parallel: bool,
) -> None:
    shared: list[int] = []
    share = forked.share
    monkeypatch.setattr(
        prompts, "share", lambda n, chunk, *a: shared.append(chunk) or share(n, chunk, *a)
    )
    monkeypatch.setattr(prompts, "_PARALLEL_REQUESTS", 0 if parallel else 1 << 40)
    monkeypatch.setattr(prompts, "_CHUNK", 3)  # many chunks, some rendered in the child
    options = {**OPTIONS, "prompts": prompts.load_prompts(fmt, cues), "fewshot": fewshot}
    tasks = ("reasoning", "conversation", "detail")  # built in registry order all the same
    shown = options["prompts"].fewshot
    if fewshot:  # an example's own image too: its example is left out of its requests
        contexts = contexts + [e.context for t in TASKS for e in shown[t]]
    built, chars = prompts.build_requests(contexts, tasks, **options)
    assert [msgspec.json.encode(r) for r in built] == one_by_one(contexts, tasks, **options)
    assert shared == [3 if parallel else len(contexts)]
    assert chars == prompt_chars(built)  # summed from the parts, as a walk over them counts


def test_detail_and_reasoning_share_one_rendering(contexts: list[ImageContext]) -> None:
    built = prompts.build_requests(
        contexts[:5], ("detail", "reasoning"), prompts=prompts.load_prompts("paper"), **OPTIONS
    ).requests
    for detail, reasoning in zip(built[0::2], built[1::2], strict=True):
        shown = detail.messages[1:-1]  # between the system prompt and the instruction
        assert shown and all(a is b for a, b in zip(shown, reasoning.messages[1:], strict=True))
        assert detail.messages[0] is built[0].messages[0]  # one system message for all


def test_a_failed_second_process_leaves_the_work_here(
    monkeypatch: pytest.MonkeyPatch, contexts: list[ImageContext]
) -> None:
    parent, encode = os.getpid(), prompts._render_encoded
    sent: list[int] = []

    def broken(*args: Any) -> bytes:
        if os.getpid() != parent and sent:  # the child's second chunk
            raise MemoryError("as if the child ran out of memory")
        sent.append(1)
        return encode(*args)

    monkeypatch.setattr(prompts, "_render_encoded", broken)
    monkeypatch.setattr(prompts, "_PARALLEL_REQUESTS", 0)
    monkeypatch.setattr(prompts, "_CHUNK", 2)
    options = {**OPTIONS, "prompts": prompts.load_prompts("compact", True)}
    built = prompts.build_requests(contexts, TASKS, **options).requests
    assert [msgspec.json.encode(r) for r in built] == one_by_one(contexts, TASKS, **options)
