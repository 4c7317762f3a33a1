"""OpenAI backend: pure request building / reply parsing, then end to end through the real
openai SDK and the real Runner against the loopback OpenAI server."""

from __future__ import annotations

import base64
import email.utils
import importlib.util
import logging
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.servers import Fault, OpenAIServer

from llava_pose.errors import BackendError, ConfigError, InputError
from llava_pose.llm.base import (
    PermanentError,
    RetryableError,
    classify_http_error,
    parse_retry_after,
)
from llava_pose.llm.openai_api import (
    OpenAIBackend,
    build_messages,
    build_params,
    image_data_url,
    parse_response,
)
from llava_pose.llm.runner import Runner, RunnerOptions
from llava_pose.records import ChatRequest, Completion, Message

KEY = "sk-test-SECRET-123456"
FAST = {"backoff_base": 0.01, "backoff_max": 0.05, "timeout": 5.0}


def chat(i: int = 0, model: str = "gpt-4o", **kw: object) -> ChatRequest:
    messages = (
        Message("system", "You are an AI visual assistant."),
        Message("user", f"Describe person {i} in the image."),
    )
    return ChatRequest(id=f"r{i}", model=model, messages=messages, **kw)  # type: ignore[arg-type]


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer(latency=0.02, api_key=KEY) as s:
        yield s


def run(
    server: OpenAIServer,
    requests: list[ChatRequest],
    model: str = "gpt-4o",
    key: str = KEY,
    base_url: str | None = None,
    **options: object,
) -> tuple[Runner, list]:
    backend = OpenAIBackend(model, base_url=base_url or server.url, api_key=key, timeout=30)
    runner = Runner(backend, options=RunnerOptions(**{**FAST, **options}))  # type: ignore[arg-type]
    return runner, runner.run(requests)


# -- pure: building and parsing ------------------------------------------------------------


def test_build_messages_plain() -> None:
    request = chat(1)
    assert build_messages(request) == [
        {"role": "system", "content": "You are an AI visual assistant."},
        {"role": "user", "content": "Describe person 1 in the image."},
    ]


def test_build_messages_puts_images_before_the_text_of_the_first_user_message() -> None:
    request = ChatRequest(
        id="v",
        model="gpt-4o",
        messages=(
            Message("system", "sys"),
            Message("user", "first"),
            Message("assistant", "ok"),
            Message("user", "second"),
        ),
    )
    urls = ["data:image/jpeg;base64,AAAA", "data:image/png;base64,BBBB"]
    assert build_messages(request, urls) == [
        {"role": "system", "content": "sys"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": urls[0]}},
                {"type": "image_url", "image_url": {"url": urls[1]}},
                {"type": "text", "text": "first"},
            ],
        },
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second"},
    ]


def test_build_params_chat_model() -> None:
    request = chat(2, temperature=0.7, max_tokens=300, seed=42)
    assert build_params(request, "gpt-4o") == {
        "model": "gpt-4o",
        "messages": build_messages(request),
        "max_tokens": 300,
        "temperature": 0.7,
        "seed": 42,
    }
    # Unset options are left out, so the provider's defaults apply.
    assert build_params(chat(2), "gpt-4o") == {
        "model": "gpt-4o",
        "messages": build_messages(chat(2)),
    }


@pytest.mark.parametrize("model", ["o1", "o3-mini", "o4-mini-2025-04-16", "gpt-5", "azure/o3"])
def test_build_params_reasoning_model(model: str) -> None:
    request = chat(3, temperature=0.7, max_tokens=300, seed=1)
    assert build_params(request, model) == {
        "model": model,
        "messages": build_messages(request),
        "max_completion_tokens": 300,
        "seed": 1,
    }


def test_parse_response_full_body() -> None:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-2024-08-06",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hi"},
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
    }
    assert parse_response(body, "gpt-4o") == Completion(
        text="hi",
        finish_reason="length",
        input_tokens=12,
        output_tokens=3,
        model="gpt-4o-2024-08-06",
    )


def test_parse_response_defaults_and_refusals() -> None:
    bare = {"choices": [{"message": {"content": "x"}}]}
    assert parse_response(bare, "gpt-4o") == Completion(text="x", model="gpt-4o")
    empty = {"choices": [{"message": {"content": None}, "finish_reason": "stop"}]}
    assert parse_response(empty, "m").text == ""
    filtered = {"choices": [{"message": {"content": None}, "finish_reason": "content_filter"}]}
    with pytest.raises(PermanentError, match="content filter"):
        parse_response(filtered, "m")


@pytest.mark.parametrize(
    "body",
    [{}, {"choices": []}, {"choices": None}, {"choices": [{"message": None}]}, "<html>", None],
)
def test_parse_response_malformed_is_retryable(body: object) -> None:
    with pytest.raises(RetryableError, match="malformed"):
        parse_response(body, "gpt-4o")


def test_parse_response_non_text_content_is_retryable() -> None:
    with pytest.raises(RetryableError, match="not text"):
        parse_response({"choices": [{"message": {"content": ["a"]}}]}, "m")


def test_image_data_url_is_the_file_in_base64(coco_mini: Path) -> None:
    image = next((coco_mini / "val2017").glob("*.jpg"))
    url = image_data_url(image)
    head, data = url.split(",", 1)
    assert head == "data:image/jpeg;base64"
    assert base64.b64decode(data) == image.read_bytes()


def test_image_data_url_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.jpg: image file not found"):
        image_data_url(tmp_path / "nope.jpg")


# -- end to end: real SDK, real HTTP -------------------------------------------------------


def test_what_is_sent_is_what_the_request_says(server: OpenAIServer) -> None:
    request = chat(5, temperature=0.3, max_tokens=64, seed=7)
    runner, [result] = run(server, [request])
    assert result.ok and result.kind == "ok"
    [seen] = server.requests
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert seen.body == {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are an AI visual assistant."},
            {"role": "user", "content": "Describe person 5 in the image."},
        ],
        "temperature": 0.3,
        "max_tokens": 64,
        "seed": 7,
    }
    # The completion is what the server sent, tokens as it reported them.
    assert result.completion == Completion(
        text=seen.reply or "",
        finish_reason="stop",
        input_tokens=seen.usage[0],  # type: ignore[index]
        output_tokens=seen.usage[1],  # type: ignore[index]
        model="gpt-4o",
    )
    assert runner.stats.called == 1 and runner.stats.retries == 0


def test_base_url_without_v1(server: OpenAIServer) -> None:
    _, [result] = run(server, [chat(1)], base_url=server.root)
    assert result.ok
    assert server.requests[0].path == "/chat/completions"


def test_reasoning_model_end_to_end(server: OpenAIServer) -> None:
    # The server rejects max_tokens and temperature for o-series models, as OpenAI does.
    _, [result] = run(
        server, [chat(1, model="o3-mini", temperature=0.2, max_tokens=50)], model="o3-mini"
    )
    assert result.ok, result.error
    assert server.requests[0].body["max_completion_tokens"] == 50
    assert "temperature" not in server.requests[0].body


def test_vision_request_sends_the_image(server: OpenAIServer, coco_mini: Path) -> None:
    image = next((coco_mini / "val2017").glob("*.jpg"))
    request = ChatRequest(
        id="img",
        model="gpt-4o",
        messages=(Message("user", "What is the person doing?"),),
        images=(str(image),),
    )
    _, [result] = run(server, [request])
    assert result.ok, result.error
    parts = server.requests[0].body["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["image_url", "text"]
    data = parts[0]["image_url"]["url"].split(",", 1)[1]
    assert base64.b64decode(data) == image.read_bytes()


def test_finish_reason_length_passes_through(server: OpenAIServer) -> None:
    server.finish_reason = "length"
    _, [forced] = run(server, [chat(1)])
    assert forced.completion is not None and forced.completion.finish_reason == "length"
    server.finish_reason = None
    server.responder = lambda body: "one two three four five six seven eight nine ten"
    _, [cut] = run(server, [chat(2, max_tokens=3)])
    assert cut.completion is not None
    assert (cut.completion.finish_reason, cut.completion.output_tokens) == ("length", 3)


def test_429_retry_after_is_honoured(server: OpenAIServer, transport: str) -> None:
    server.add_fault(Fault("rate_limit", retry_after=0.4), times=1)
    runner, [result] = run(server, [chat(1)])
    assert result.ok
    first, second = server.requests
    assert (first.status, second.status) == (429, 200)
    assert first.body == second.body
    assert first.finished is not None
    assert second.arrived - first.finished >= 0.4
    assert runner.stats.retries == 1


def test_retry_after_ms_header_wins(server: OpenAIServer) -> None:
    # OpenAI may send both headers; the finer retry-after-ms is the one to follow.
    server.add_fault(Fault("overloaded", retry_after=30, retry_after_ms=300), times=1)
    _, [result] = run(server, [chat(1)])
    assert result.ok
    first, second = server.requests
    assert first.status == 503 and first.finished is not None
    assert 0.3 <= second.arrived - first.finished < 5


def test_500s_are_retried_then_succeed(server: OpenAIServer) -> None:
    server.add_fault("server_error", times=2)
    runner, [result] = run(server, [chat(1)])
    assert result.ok
    assert [r.status for r in server.requests] == [500, 500, 200]
    assert runner.stats.retries == 2 and runner.stats.failed == 0


def test_dropped_connection_is_retried(server: OpenAIServer, transport: str) -> None:
    server.add_fault("drop", times=1)
    _, [result] = run(server, [chat(1)])
    assert result.ok
    assert len(server.requests) == 2


def test_hang_hits_the_runner_timeout_and_is_retried(server: OpenAIServer) -> None:
    server.add_fault("hang", times=1)
    runner, [result] = run(server, [chat(1)], timeout=0.3)
    assert result.ok
    hung, retried = server.requests
    assert hung.fault == "hang" and not hung.completed
    # The runner's 0.3 s timeout cut it (not the SDK's 30 s, not the server's 600 s hang),
    # and the server saw the client go.
    assert hung.finished is not None and hung.finished - hung.arrived < 3
    assert retried.completed
    assert runner.stats.retries == 1


@pytest.mark.parametrize(
    "fault",
    [
        Fault("not_json"),  # an HTML error page from a proxy
        Fault("not_json", content_type="application/json"),  # garbage labelled JSON
        Fault("no_choices"),  # JSON without choices
    ],
    ids=["html", "bad-json", "no-choices"],
)
def test_malformed_body_is_retried(server: OpenAIServer, fault: Fault, transport: str) -> None:
    server.add_fault(fault, times=1)
    _, [result] = run(server, [chat(1)])
    assert result.ok
    assert len(server.requests) == 2


def test_persistent_malformed_body_ends_as_failure_with_reason(server: OpenAIServer) -> None:
    server.add_fault("no_choices", when=lambda body: "person 1 " in str(body))
    runner, results = run(server, [chat(0), chat(1), chat(2)], max_retries=2)
    assert [r.kind for r in results] == ["ok", "failed", "ok"]
    assert results[1].error is not None
    assert "gave up after 2 retries" in results[1].error and "malformed" in results[1].error
    assert sum(1 for r in server.requests if "person 1 " in str(r.body)) == 3
    assert runner.stats.failed == 1


def test_401_stops_the_run_and_never_shows_the_key(
    server: OpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.api_key = "sk-test-the-right-one-999"
    caplog.set_level(logging.DEBUG)
    requests = [chat(i) for i in range(30)]
    with pytest.raises(BackendError) as info:
        run(server, requests, key=KEY, concurrency=2)
    text = str(info.value)
    assert "OPENAI_API_KEY" in text and "401" in text
    # The key was sent (the server saw it) but appears in no exception text or log.
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    shown = "".join(traceback.format_exception(info.value)) + repr(info.value) + caplog.text
    assert KEY not in shown
    assert all(KEY not in r.getMessage() for r in caplog.records)
    # The whole run stopped: nowhere near all 30 requests were tried.
    assert len(server.requests) <= 4


def test_key_echoed_in_a_400_is_redacted_from_the_failure(server: OpenAIServer) -> None:
    server.add_fault(Fault("context_too_long", message=f"bad request from key {KEY}"), times=1)
    _, [result] = run(server, [chat(1)])
    assert result.kind == "failed"
    assert result.error is not None and KEY not in result.error and "***" in result.error


def test_400_context_too_long_fails_that_request_only(server: OpenAIServer) -> None:
    server.context_limit = 60
    long = ChatRequest(id="long", model="gpt-4o", messages=(Message("user", "pose " * 200),))
    runner, results = run(server, [chat(0), long, chat(2)])
    assert [r.kind for r in results] == ["ok", "failed", "ok"]
    assert results[1].error is not None and "maximum context length" in results[1].error
    # Permanent: sent once, never retried.
    assert (
        sum(1 for r in server.requests if r.body["messages"][0]["content"].startswith("pose")) == 1
    )
    assert runner.stats.failed == 1 and runner.stats.retries == 0


def test_insufficient_quota_is_fatal(server: OpenAIServer) -> None:
    server.add_fault("insufficient_quota", when=lambda body: True)
    with pytest.raises(BackendError, match="quota"):
        run(server, [chat(i) for i in range(10)], concurrency=1)
    assert len(server.requests) == 1


def test_no_key_and_no_base_url_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIBackend("gpt-4o")


@pytest.fixture(params=["aiohttp", "httpx"])
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both transports the SDK client can use: aiohttp where installed (the default), httpx."""
    if request.param == "aiohttp" and importlib.util.find_spec("aiohttp") is None:
        pytest.skip("aiohttp is not installed: the httpx transport is the only one")
    monkeypatch.setenv("LLAVA_POSE_HTTP", request.param)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    return request.param


def test_warm_loads_the_sdk_and_its_client_on_the_transport(
    server: OpenAIServer, transport: str
) -> None:
    backend = OpenAIBackend("gpt-4o", base_url=server.url, api_key=KEY, timeout=5)
    backend.warm()
    client = backend._client
    assert client is not None
    assert ("Aio" in type(client._client).__name__) == (transport == "aiohttp")
    assert client._platform is not None  # found now, not in a thread at the first call
    [result] = Runner(backend, options=RunnerOptions(**FAST)).run([chat(1)])  # type: ignore[arg-type]
    assert result.ok and backend._client is None  # closed with the run's event loop
    [sent] = server.requests
    assert sent.headers["x-stainless-os"] == str(client._platform)  # the SDK's own header


def test_a_proxy_or_a_password_in_the_url_keeps_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiohttp ignores HTTP(S)_PROXY and rejects user:password in the URL; httpx obeys the
    one and sends the other as basic auth: either keeps httpx."""
    import openai

    from llava_pose.llm.base import aiohttp_usable

    monkeypatch.delenv("LLAVA_POSE_HTTP", raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    assert not aiohttp_usable(openai)
    monkeypatch.delenv("HTTPS_PROXY")
    for var in ("HTTP_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    assert aiohttp_usable(openai) == (importlib.util.find_spec("aiohttp") is not None)
    assert not aiohttp_usable(openai, "http://alice:pw@127.0.0.1:8000/v1")  # basic auth
    monkeypatch.setenv("LLAVA_POSE_HTTP", "httpx")
    assert not aiohttp_usable(openai)


def test_a_server_that_cannot_be_reached_stops_the_run_in_seconds(
    server: OpenAIServer, transport: str
) -> None:
    url = server.url
    server.stop()  # nothing listens on that port any more
    backend = OpenAIBackend("gpt-4o", base_url=url, api_key=KEY, timeout=5)
    runner = Runner(backend, options=RunnerOptions(max_retries=6, concurrency=4))
    started = time.monotonic()
    with pytest.raises(BackendError) as e:
        runner.run([chat(i) for i in range(8)])
    assert time.monotonic() - started < 5
    assert url in str(e.value) and "connection refused" in str(e.value)
    assert "--base-url" in str(e.value)


def test_a_server_lost_after_a_success_is_retried_then_a_failure(
    server: OpenAIServer, transport: str
) -> None:
    backend = OpenAIBackend("gpt-4o", base_url=server.url, api_key=KEY, timeout=5)
    runner = Runner(backend, options=RunnerOptions(max_retries=1, **FAST))  # type: ignore[arg-type]
    [first] = runner.run([chat(1)])
    assert first.ok
    server.stop()
    [result] = runner.run([chat(2)])
    assert result.kind == "failed"
    assert result.error == "gave up after 1 retries: connection refused"


# -- error classification (shared by every SDK backend) -------------------------------------


@pytest.mark.parametrize(
    ("status", "message", "kind"),
    [
        (429, "rate_limit_exceeded Rate limit reached", RetryableError),
        (429, "insufficient_quota You exceeded your current quota", BackendError),
        (
            400,
            "invalid_request_error Your credit balance is too low to access the API",
            BackendError,
        ),
        (402, "billing_error", BackendError),
        (500, "server_error", RetryableError),
        (503, "overloaded", RetryableError),
        (529, "overloaded_error Overloaded", RetryableError),
        (408, "timeout", RetryableError),
        (401, "invalid_api_key", BackendError),
        (403, "permission_error", BackendError),
        (404, "model_not_found", BackendError),
        (400, "context_length_exceeded too long", PermanentError),
        (413, "request_too_large", PermanentError),
        (422, "unprocessable", PermanentError),
    ],
)
def test_classify_http_error(status: int, message: str, kind: type) -> None:
    error = classify_http_error(status, message, {}, model="gpt-4o", key_env="OPENAI_API_KEY")
    assert type(error) is kind
    if status == 401:
        assert "OPENAI_API_KEY" in str(error)


def test_parse_retry_after() -> None:
    assert parse_retry_after({"Retry-After": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "-3"}) == 0.0
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= (parse_retry_after({"Retry-After": when}) or 0) <= 30
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None and parse_retry_after(None) is None
