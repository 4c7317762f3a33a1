"""Anthropic backend: pure request building / reply parsing, then end to end through the real
anthropic SDK and the real Runner against the loopback Anthropic server."""

from __future__ import annotations

import base64
import logging
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.servers import AnthropicServer, Fault

from llava_pose.errors import BackendError, ConfigError, InputError
from llava_pose.llm.anthropic_api import (
    DEFAULT_MAX_TOKENS,
    AnthropicBackend,
    build_params,
    image_block,
    parse_response,
)
from llava_pose.llm.base import PermanentError, RetryableError
from llava_pose.llm.runner import Runner, RunnerOptions
from llava_pose.records import ChatRequest, Completion, Message

KEY = "sk-ant-test-SECRET-123456"
MODEL = "claude-sonnet-4-20250514"
FAST = {"backoff_base": 0.01, "backoff_max": 0.05, "timeout": 5.0}


def chat(i: int = 0, **kw: object) -> ChatRequest:
    messages = (
        Message("system", "You are an AI visual assistant."),
        Message("user", f"Describe person {i} in the image."),
    )
    return ChatRequest(id=f"r{i}", model=MODEL, messages=messages, **kw)  # type: ignore[arg-type]


@pytest.fixture
def server() -> Iterator[AnthropicServer]:
    with AnthropicServer(latency=0.02, api_key=KEY) as s:
        yield s


def run(
    server: AnthropicServer, requests: list[ChatRequest], key: str = KEY, **options: object
) -> tuple[Runner, list]:
    backend = AnthropicBackend(MODEL, base_url=server.url, api_key=key, timeout=30)
    runner = Runner(backend, options=RunnerOptions(**{**FAST, **options}))  # type: ignore[arg-type]
    return runner, runner.run(requests)


# -- pure: building and parsing ------------------------------------------------------------


def test_build_params_extracts_system_and_merges_consecutive_roles() -> None:
    request = ChatRequest(
        id="x",
        model=MODEL,
        messages=(
            Message("system", "rule one"),
            Message("user", "example question"),
            Message("assistant", "example answer"),
            Message("system", "rule two"),
            Message("user", "context"),
            Message("user", "real question"),
        ),
        temperature=0.2,
        max_tokens=500,
        seed=3,
    )
    assert build_params(request, MODEL) == {
        "model": MODEL,
        "max_tokens": 500,
        "system": "rule one\n\nrule two",
        "temperature": 0.2,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "example question"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "example answer"}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "context"},
                    {"type": "text", "text": "real question"},
                ],
            },
        ],
    }


def test_build_params_defaults_no_system_no_seed() -> None:
    request = ChatRequest(id="x", model=MODEL, messages=(Message("user", "hi"),), seed=5)
    assert build_params(request, MODEL) == {
        "model": MODEL,
        "max_tokens": DEFAULT_MAX_TOKENS,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }


def test_build_params_images_first_in_first_user_message() -> None:
    request = ChatRequest(
        id="x",
        model=MODEL,
        messages=(Message("user", "look"), Message("assistant", "ok"), Message("user", "more")),
    )
    img = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"},
    }
    assert build_params(request, MODEL, [img])["messages"] == [
        {"role": "user", "content": [img, {"type": "text", "text": "look"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
        {"role": "user", "content": [{"type": "text", "text": "more"}]},
    ]


def test_image_block_is_the_file_in_base64(coco_mini: Path) -> None:
    image = next((coco_mini / "val2017").glob("*.jpg"))
    block = image_block(image)
    assert block["type"] == "image"
    assert block["source"]["type"] == "base64" and block["source"]["media_type"] == "image/jpeg"
    assert base64.b64decode(block["source"]["data"]) == image.read_bytes()
    with pytest.raises(InputError, match="image file not found"):
        image_block(image.parent / "missing.jpg")


def test_parse_response_full_body() -> None:
    body = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [
            {"type": "text", "text": "Two people "},
            {"type": "text", "text": "play tennis."},
        ],
        "stop_reason": "max_tokens",
        "usage": {"input_tokens": 40, "output_tokens": 5},
    }
    assert parse_response(body, "m") == Completion(
        text="Two people play tennis.",
        finish_reason="length",
        input_tokens=40,
        output_tokens=5,
        model=MODEL,
    )
    assert parse_response({**body, "stop_reason": "end_turn"}, "m").finish_reason == "stop"


def test_parse_response_refusal_is_permanent_and_missing_content_retryable() -> None:
    with pytest.raises(PermanentError, match="refused"):
        parse_response({"content": [], "stop_reason": "refusal"}, MODEL)
    for bad in ({}, {"content": None}, "<html>"):
        with pytest.raises(RetryableError, match="malformed"):
            parse_response(bad, MODEL)


# -- end to end: real SDK, real HTTP -------------------------------------------------------


def test_what_is_sent_is_what_the_request_says(server: AnthropicServer) -> None:
    runner, [result] = run(server, [chat(4, temperature=0.5, max_tokens=99, seed=1)])
    assert result.ok, result.error
    [seen] = server.requests
    assert seen.path == "/v1/messages"
    assert KEY in (seen.headers.get("x-api-key"), seen.headers.get("authorization", "")[7:])
    assert seen.body == {
        "model": MODEL,
        "max_tokens": 99,
        "system": "You are an AI visual assistant.",
        "temperature": 0.5,
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "Describe person 4 in the image."}],
            }
        ],
    }
    assert result.completion == Completion(
        text=seen.reply or "",
        finish_reason="stop",
        input_tokens=seen.usage[0],  # type: ignore[index]
        output_tokens=seen.usage[1],  # type: ignore[index]
        model=MODEL,
    )
    assert runner.stats.input_tokens == seen.usage[0]  # type: ignore[index]


def test_vision_request_sends_the_image(server: AnthropicServer, coco_mini: Path) -> None:
    image = next((coco_mini / "train2017").glob("*.jpg"))
    request = ChatRequest(
        id="img", model=MODEL, messages=(Message("user", "What pose?"),), images=(str(image),)
    )
    _, [result] = run(server, [request])
    assert result.ok, result.error
    first = server.requests[0].body["messages"][0]["content"][0]
    assert base64.b64decode(first["source"]["data"]) == image.read_bytes()


def test_max_tokens_stop_becomes_length(server: AnthropicServer) -> None:
    server.responder = ["alpha beta gamma delta epsilon zeta eta theta"]
    _, [result] = run(server, [chat(1, max_tokens=2)])
    assert result.completion is not None
    assert (result.completion.finish_reason, result.completion.output_tokens) == ("length", 2)


def test_429_retry_after_is_honoured(server: AnthropicServer) -> None:
    server.add_fault(Fault("rate_limit", retry_after=0.4), times=1)
    _, [result] = run(server, [chat(1)])
    assert result.ok
    first, second = server.requests
    assert (first.status, second.status) == (429, 200)
    assert second.arrived - first.finished >= 0.4  # type: ignore[operator]


def test_529_overloaded_and_500_are_retried(server: AnthropicServer) -> None:
    server.add_fault("overloaded", times=2)
    server.add_fault("server_error", times=1)
    runner, [result] = run(server, [chat(1)])
    assert result.ok
    assert [r.status for r in server.requests] == [529, 529, 500, 200]
    assert runner.stats.retries == 3


@pytest.mark.parametrize("kind", ["not_json", "no_choices", "drop"])
def test_malformed_reply_is_retried(server: AnthropicServer, kind: str) -> None:
    server.add_fault(kind, times=1)
    _, [result] = run(server, [chat(1)])
    assert result.ok
    assert len(server.requests) == 2


def test_hang_hits_the_runner_timeout_and_is_retried(server: AnthropicServer) -> None:
    server.add_fault("hang", times=1)
    _, [result] = run(server, [chat(1)], timeout=0.3)
    assert result.ok
    assert [r.completed for r in server.requests] == [False, True]


def test_401_stops_the_run_and_never_shows_the_key(
    server: AnthropicServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.api_key = "sk-ant-another-key-000"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(BackendError) as info:
        run(server, [chat(i) for i in range(20)], concurrency=2)
    assert "ANTHROPIC_API_KEY" in str(info.value)
    shown = "".join(traceback.format_exception(info.value)) + repr(info.value) + caplog.text
    assert KEY not in shown
    assert len(server.requests) <= 4


def test_400_prompt_too_long_fails_that_request_only(server: AnthropicServer) -> None:
    server.context_limit = 50
    long = ChatRequest(id="long", model=MODEL, messages=(Message("user", "keypoint " * 100),))
    runner, results = run(server, [chat(0), long, chat(2)])
    assert [r.kind for r in results] == ["ok", "failed", "ok"]
    assert results[1].error is not None and "prompt is too long" in results[1].error
    assert runner.stats.retries == 0


def test_empty_credit_balance_is_fatal(server: AnthropicServer) -> None:
    server.add_fault("insufficient_quota", when=lambda body: True)
    with pytest.raises(BackendError, match="credit"):
        run(server, [chat(i) for i in range(10)], concurrency=1)
    assert len(server.requests) == 1


def test_no_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        AnthropicBackend(MODEL)
