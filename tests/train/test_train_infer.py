"""Generation shared by chat and the hf: answerer: batching, templates, and the Runner."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from llava_pose.errors import BackendError
from llava_pose.llm import make_backend
from llava_pose.llm.cache import Cache
from llava_pose.llm.hf import HFBackend, fingerprint
from llava_pose.llm.runner import Runner, RunnerOptions
from llava_pose.records import ChatRequest, Message
from llava_pose.vlm.generate import Conversation, generate, load, render_prompt

pytestmark = [pytest.mark.train, pytest.mark.slow]

SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)


@pytest.fixture(scope="module")
def images(coco_mini: Path) -> list[str]:
    return [str(p) for p in sorted((coco_mini / "val2017").iterdir())[:6]]


@pytest.fixture(scope="module")
def loaded(full_run: Path):
    return load(str(full_run), device="cpu")


def _questions(images: list[str]) -> list[Conversation]:
    asks = [
        "What is happening?",
        "Describe the people.",
        "What are they holding?",
        "Where is this?",
    ]
    conversations = [
        Conversation([("user", q)], image) for q, image in zip(asks, images, strict=False)
    ]
    conversations.append(Conversation([("user", "Which joints bend in a squat?")]))  # no image
    return conversations


def test_vicuna_prompt_is_the_training_template(loaded, images: list[str]) -> None:
    conversation = Conversation(
        [("user", "Who?"), ("assistant", "A man."), ("user", "Doing what?")], images[0]
    )
    assert (
        render_prompt(loaded, conversation)
        == f"<s> {SYSTEM} USER: <image>\nWho? ASSISTANT: A man.</s>USER: Doing what? ASSISTANT:"
    )
    custom = Conversation([("user", "Hi")], None, system="Be brief.")
    assert render_prompt(loaded, custom) == "<s> Be brief. USER: Hi ASSISTANT:"
    # the run saved the template it trained with as its own: every choice asks the same way
    assert loaded.processor.chat_template == loaded.template
    assert (
        load(str(full_run_path(loaded)), device="cpu", template="chat").template == loaded.template
    )


def test_batched_generation_equals_one_at_a_time(loaded, images: list[str]) -> None:
    conversations = _questions(images)
    batched = generate(loaded, conversations, max_new_tokens=10)
    single = [generate(loaded, [c], max_new_tokens=10)[0] for c in conversations]
    assert [g.text for g in batched] == [g.text for g in single]
    assert [g.output_tokens for g in batched] == [g.output_tokens for g in single]
    assert [g.input_tokens for g in batched] == [
        g.input_tokens for g in single
    ]  # padding not counted
    assert all(g.finish_reason in ("stop", "length") for g in batched)
    limited = generate(loaded, conversations[:1], max_new_tokens=1)[0]
    assert limited.output_tokens == 1 and (limited.finish_reason == "length" or limited.text == "")


def full_run_path(loaded) -> Path:
    return Path(loaded.name)


def test_generic_chat_template_path(full_run: Path, images: list[str]) -> None:
    """A checkpoint from elsewhere (the preset's untrained start) asked with its own template."""
    generic = load(str(full_run / "base-model"), device="cpu", template="chat")
    conversation = Conversation([("user", "What is happening?")], images[0])
    prompt = render_prompt(generic, conversation)
    assert prompt == "USER: <image>\nWhat is happening? ASSISTANT:"  # the processor's own template
    (result,) = generate(generic, [conversation], max_new_tokens=5)
    assert result.output_tokens >= 1


def test_hf_backend_answers_through_the_runner_in_batches(
    full_run: Path, images: list[str], tmp_path: Path
) -> None:
    backend = make_backend(
        f"hf:{full_run}", "answerer", "--model", batch_size=4, device="cpu", max_new_tokens=8
    )
    assert (
        isinstance(backend, HFBackend) and backend.batch_size == 4 and backend.max_new_tokens == 8
    )
    requests = [
        ChatRequest(
            id=f"q{i}",
            model=str(full_run),
            messages=(Message("user", f"Question {i}: what is the person doing?"),),
            images=(image,),
            max_tokens=6,
        )
        for i, image in enumerate(images)
    ]
    requests.append(
        ChatRequest(
            id="text", model=str(full_run), messages=(Message("user", "Hello?"),), max_tokens=6
        )
    )
    requests.append(
        ChatRequest(
            id="lost",
            model=str(full_run),
            messages=(Message("user", "?"),),
            images=(str(tmp_path / "no.jpg"),),
        )
    )
    cache = Cache(tmp_path / "cache.sqlite")
    results = Runner(backend, cache=cache, options=RunnerOptions(concurrency=8)).run(requests)
    by_id = {r.request_id: r for r in results}
    assert not by_id["lost"].ok and "image not found" in (by_id["lost"].error or "")
    answered = [r for r in results if r.ok]
    assert len(answered) == len(images) + 1
    assert max(backend.batches) > 1 and sum(backend.batches) == len(answered)  # micro-batched
    assert all(size <= 4 for size in backend.batches)
    # the same answers as the shared generate function gives, one by one
    loaded = backend.loaded()
    for request in requests[:2]:
        direct = generate(
            loaded,
            [Conversation([("user", request.messages[0].content)], request.images[0])],
            max_new_tokens=6,
        )[0]
        assert by_id[request.id].completion.text == direct.text
    # a rerun is served from the cache: nothing is generated again
    calls = len(backend.batches)
    again = Runner(backend, cache=cache, options=RunnerOptions(concurrency=8)).run(requests[:-1])
    assert all(r.ok and r.completion.cached for r in again) and len(backend.batches) == calls


def test_retrained_weights_get_a_new_cache_key(full_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(full_run, copy, ignore=shutil.ignore_patterns("checkpoint-*"))
    before = fingerprint(str(copy))
    assert before == fingerprint(str(copy))
    weights = copy / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert fingerprint(str(copy)) != before
    assert HFBackend(str(copy)).spec == f"hf:{copy}@{fingerprint(str(copy))}"


def test_unloadable_model_stops_the_run(tmp_path: Path) -> None:
    backend = HFBackend(str(tmp_path / "missing-run"), device="cpu")
    request = ChatRequest(id="a", model="m", messages=(Message("user", "Hi"),))
    with pytest.raises(BackendError, match="missing-run"):
        Runner(backend, options=RunnerOptions(max_retries=0)).run([request])


def test_lora_run_loads_directly_and_matches_its_export(
    lora_run: Path, tmp_path: Path, images: list[str]
) -> None:
    from llava_pose.train.model import export_merged

    direct = load(str(lora_run), device="cpu")
    merged_dir = export_merged(str(lora_run), str(tmp_path / "merged"))
    assert (merged_dir / "model.safetensors").is_file() and not (
        merged_dir / "adapter_config.json"
    ).exists()
    merged = load(str(merged_dir), device="cpu")
    conversation = [Conversation([("user", "What is happening?")], images[1])]
    assert generate(direct, conversation, max_new_tokens=8) == generate(
        merged, conversation, max_new_tokens=8
    )


def test_backend_event_loops_do_not_leak(full_run: Path) -> None:
    backend = HFBackend(str(full_run), device="cpu", max_new_tokens=3)
    request = ChatRequest(id="a", model="m", messages=(Message("user", "Hi"),))

    async def twice() -> None:
        first = await backend.complete(request)
        await backend.aclose()
        second = await backend.complete(request)
        await backend.aclose()
        assert first.text == second.text

    asyncio.run(twice())
    asyncio.run(twice())  # a new loop (a second Runner.run) starts a new batcher
