"""Prompt caching, as the providers bill it: the shared prefix (system prompt, few-shot
examples) comes first and, for Claude, ends with a cache_control mark; the cached tokens each
reply reports are priced at the cached rates; the estimate says what caching should save and
stats.json what it saved. Real CLI, loopback servers that cache as the providers document."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.conftest import KEY
from tests.servers import AnthropicServer, OpenAIServer
from tests.test_generate import teacher_reply

from llava_pose.cli import main
from llava_pose.llm.pricing import Price, PriceTable, cacheable, expected_caching
from llava_pose.prompts import build_request, load_prompts
from llava_pose.records import ChatRequest, Message


def generate(coco: Path, out: Path, server, teacher: str, *extra: object) -> int:
    args = ["-q", "generate", "--coco", coco, "--split", "val2017", "--max-images", 4]
    args += ["--teacher", teacher, "--base-url", server.url, "--out", out, "--fewshot"]
    return main(list(map(str, [*args, "--concurrency", 1, *extra])))


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_cached_prompt_tokens_are_read_priced_and_reported(
    provider: str, coco_mini: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY" if provider == "openai" else "ANTHROPIC_API_KEY", KEY)
    teacher = "openai:gpt-4o" if provider == "openai" else "anthropic:claude-sonnet-4"
    server_class = OpenAIServer if provider == "openai" else AnthropicServer
    with server_class(responder=teacher_reply, api_key=KEY) as server:
        assert generate(coco_mini, tmp_path, server, teacher) == 0
        bodies = [r.body for r in server.requests]
    stats = json.loads((tmp_path / "stats.json").read_text())
    tokens, usd = stats["tokens"], stats["cost_usd"]
    assert tokens["cache_read"] > 0  # the later requests of each task read their prefix
    price = PriceTable.load().get(teacher.split(":")[1])
    assert price is not None
    assert usd["this_run"] == pytest.approx(
        price.cost(tokens["input"], tokens["output"], tokens["cache_read"], tokens["cache_write"]),
        abs=1e-4,
    )
    uncached = price.cost(tokens["input"], tokens["output"])
    assert usd["saved_by_prompt_cache"] == pytest.approx(uncached - usd["this_run"], abs=1e-4)
    assert usd["saved_by_prompt_cache"] > 0
    if provider == "anthropic":
        assert tokens["cache_write"] > 0  # each task's prefix written once
        marked = [b for b in bodies if "cache_control" in json.dumps(b)]
        assert len(marked) == len(bodies)  # every request marks the end of its prefix
    else:
        assert tokens["cache_write"] == 0  # OpenAI caches silently, at no extra charge


def test_the_estimate_says_what_caching_should_save(
    coco_mini: Path, tmp_path: Path, capsys
) -> None:
    args = ["generate", "--coco", coco_mini, "--split", "val2017", "--dry-run", "--out", tmp_path]
    assert main(list(map(str, [*args, "--teacher", "anthropic:claude-sonnet-4", "--fewshot"]))) == 0
    out = capsys.readouterr().out
    assert "prompt caching: ~" in out and "saved" in out
    assert main(list(map(str, [*args, "--teacher", "openai:gpt-4o"]))) == 0
    out = capsys.readouterr().out
    assert "prompt caching: nothing expected" in out  # paper prompts alone: under 1,024 tokens


def test_the_shared_prefix_is_the_system_prompt_and_the_examples(coco_mini: Path) -> None:
    from llava_pose.coco import read_split

    ctx = read_split(coco_mini, "val2017").contexts[0]
    prompts = load_prompts("paper")
    plain = build_request(ctx, "detail", model="gpt-4o", prompts=prompts)
    assert plain.prefix == 1 and plain.messages[0].role == "system"
    shots = build_request(ctx, "detail", model="gpt-4o", prompts=prompts, fewshot=True)
    assert shots.prefix > 1 and shots.messages[shots.prefix - 1].role == "assistant"
    assert shots.messages[shots.prefix].role == "user"  # the image's own messages follow


def test_cacheable_follows_each_provider_s_minimum_and_step() -> None:
    assert cacheable("openai", "gpt-4o", 1023) == 0
    assert cacheable("openai", "gpt-4o", 1300) == 1280  # steps of 128
    assert cacheable("anthropic", "claude-sonnet-4-20250514", 1300) == 1300
    assert cacheable("anthropic", "claude-3-5-haiku", 1300) == 0  # its minimum is 2,048
    assert cacheable("hf", "anything", 5000) == 0


def test_expected_caching_counts_every_request_of_a_kind_but_the_first() -> None:
    system = Message("system", "word " * 1500)

    def request(i: int, task: str) -> ChatRequest:
        messages = (system, Message("user", f"image {i}"))
        return ChatRequest(id=str(i), model="m", messages=messages, meta={"task": task}, prefix=1)

    requests = [request(i, "detail") for i in range(5)] + [request(9, "reasoning")]
    read, write, prefixes = expected_caching(requests, "anthropic", "claude-sonnet-4")
    [tokens] = prefixes
    assert read == 4 * tokens and write == 2 * tokens  # one write per kind
    assert expected_caching(requests, "openai", "gpt-4o")[1] == 0
    price = Price(3.0, 15.0, cached_input=0.3, cache_write=3.75)
    assert price.cost(10 * tokens, 0, read, write) < price.cost(10 * tokens, 0)
