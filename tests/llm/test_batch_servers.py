"""The loopback servers' batch endpoints, driven through the real `openai` and `anthropic` SDKs:
what the batch client (llava_pose.llm.batch) and its kill -9 tests rely on."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from tests.servers import AnthropicServer, OpenAIServer, canonical
from tests.servers.core import serve_main

KEY = "sk-test-SECRET-123456"
GPT = "gpt-4o"
CLAUDE = "claude-sonnet-4-20250514"
REPO = Path(__file__).resolve().parents[2]


def chat_body(i: int) -> dict[str, Any]:
    return {
        "model": GPT,
        "messages": [
            {"role": "system", "content": "You are an AI visual assistant."},
            {"role": "user", "content": f"Describe person {i} in the image."},
        ],
        "max_tokens": 200,
    }


def claude_params(i: int) -> dict[str, Any]:
    return {
        "model": CLAUDE,
        "max_tokens": 200,
        "system": "You are an AI visual assistant.",
        "messages": [{"role": "user", "content": f"Describe person {i} in the image."}],
    }


def jsonl(n: int, start: int = 0, **override: Any) -> bytes:
    rows = [
        {"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions"}
        | {"body": chat_body(i)}
        | override
        for i in range(start, start + n)
    ]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def claude_requests(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"custom_id": f"req-{i}", "params": claude_params(i)} for i in range(start, start + n)]


@pytest.fixture
def oai() -> Iterator[OpenAIServer]:
    with OpenAIServer(api_key=KEY) as s:
        yield s


@pytest.fixture
def ant() -> Iterator[AnthropicServer]:
    with AnthropicServer(api_key=KEY) as s:
        yield s


def oclient(server: OpenAIServer, **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0, **kw)


def aclient(server: AnthropicServer, **kw: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key=KEY, max_retries=0, **kw)


def submit(client: openai.OpenAI, data: bytes, **kw: Any) -> Any:
    f = client.files.create(file=("batch.jsonl", data), purpose="batch")
    return client.batches.create(
        input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h", **kw
    )


def file_lines(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    return [json.loads(x) for x in client.files.content(file_id).text.splitlines()]


# -- OpenAI: Files + Batches -----------------------------------------------------------------


def test_openai_upload_create_retrieve_results(oai: OpenAIServer) -> None:
    client = oclient(oai)
    f = client.files.create(file=("batch.jsonl", jsonl(6)), purpose="batch")
    assert (f.object, f.purpose, f.bytes, f.filename) == (
        "file",
        "batch",
        len(jsonl(6)),
        "batch.jsonl",
    )
    batch = client.batches.create(
        input_file_id=f.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"run": "t1"},
    )
    assert batch.status == "validating"  # as OpenAI answers the create
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed) == (6, 6)
    assert batch.metadata == {"run": "t1"}
    assert batch.error_file_id is None
    assert batch.usage is not None and batch.usage.output_tokens > 0
    rows = file_lines(client, batch.output_file_id)
    assert sorted(r["custom_id"] for r in rows) == [f"req-{i}" for i in range(6)]
    assert [r["custom_id"] for r in rows] != [f"req-{i}" for i in range(6)]  # shuffled
    for row in rows:
        assert row["error"] is None and row["response"]["status_code"] == 200
        assert row["response"]["body"]["object"] == "chat.completion"
    # Every item recorded once, per body key, as paid_counts() keys them.
    key = canonical(chat_body(3))
    assert oai.batch_submissions()[key] == 1 and oai.batch_completions()[key] == 1
    assert oai.paid_counts()[key] == 0
    assert [it.custom_id for it in oai.batches[0].results] == [r["custom_id"] for r in rows]
    out = client.files.retrieve(batch.output_file_id or "")
    assert out.purpose == "batch_output"


def test_the_same_body_gets_the_same_completion_online_and_in_a_batch(oai: OpenAIServer) -> None:
    client = oclient(oai)
    batch = client.batches.retrieve(submit(client, jsonl(3)).id)
    online = client.chat.completions.create(**chat_body(1))
    row = next(r for r in file_lines(client, batch.output_file_id) if r["custom_id"] == "req-1")
    body = row["response"]["body"]
    assert body["choices"][0]["message"]["content"] == online.choices[0].message.content
    assert online.usage is not None
    assert body["usage"]["prompt_tokens"] == online.usage.prompt_tokens
    assert body["usage"]["completion_tokens"] == online.usage.completion_tokens
    # A scripted responder serves both the same way.
    oai.responder = lambda body: "scripted " + body["messages"][-1]["content"]
    batch = client.batches.retrieve(submit(client, jsonl(1, start=7)).id)
    [row] = file_lines(client, batch.output_file_id)
    text = row["response"]["body"]["choices"][0]["message"]["content"]
    assert text == "scripted Describe person 7 in the image."


def test_openai_upload_validation(oai: OpenAIServer) -> None:
    client = oclient(oai)
    lines = jsonl(3).splitlines()
    cases = {
        b"\n".join([lines[0], lines[0]]): "Line 2: duplicate custom_id 'req-0'",
        jsonl(2, method="GET"): "Line 1: 'method' must be 'POST'",
        jsonl(2, url="/v1/embeddings"): "Line 1: 'url' must be",
        jsonl(1, body={"model": GPT, "messages": []}): "Line 1: body: 'messages'",
        b"not json\n": "Line 1: not a JSON object",
    }
    for data, message in cases.items():
        with pytest.raises(openai.BadRequestError, match=message):
            client.files.create(file=("batch.jsonl", data), purpose="batch")
    with pytest.raises(openai.BadRequestError, match=r"Must be \.jsonl"):
        client.files.create(file=("batch.json", jsonl(1)), purpose="batch")
    with pytest.raises(openai.BadRequestError, match="Cannot find file"):
        client.batches.create(
            input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert oai.files == []


def test_openai_limits_reject_with_400_and_are_lowerable(oai: OpenAIServer) -> None:
    client = oclient(oai)
    assert (oai.max_requests, oai.max_bytes) == (50_000, 200_000_000)
    oai.batch_max_requests = 3
    with pytest.raises(openai.BadRequestError, match="has 4 requests; a batch may hold at most 3"):
        client.files.create(file=("batch.jsonl", jsonl(4)), purpose="batch")
    submit(client, jsonl(3))  # at the limit: fine
    oai.batch_max_bytes = len(jsonl(2))
    with pytest.raises(openai.BadRequestError, match="File is too large"):
        client.files.create(file=("batch.jsonl", jsonl(3)), purpose="batch")
    f = client.files.create(file=("batch.jsonl", jsonl(2)), purpose="batch")
    oai.batch_max_requests = 1  # lowered after the upload: the create checks again
    with pytest.raises(openai.BadRequestError, match="at most 1"):
        client.batches.create(
            input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
        )


def test_openai_hold_release_and_latency(oai: OpenAIServer) -> None:
    client = oclient(oai)
    oai.batch_hold = True
    batch = submit(client, jsonl(2))
    assert client.batches.retrieve(batch.id).status == "in_progress"
    assert client.batches.retrieve(batch.id).output_file_id is None
    assert oai.release_batches() == 1
    assert client.batches.retrieve(batch.id).status == "completed"
    later = submit(client, jsonl(1, start=5))  # hold still on: new batches wait again
    assert client.batches.retrieve(later.id).status == "in_progress"
    oai.batch_latency = 0.6
    oai.batch_hold = False  # releases it, but it ends only 0.6 s after its creation
    assert client.batches.retrieve(later.id).status == "in_progress"
    time.sleep(0.65)
    assert client.batches.retrieve(later.id).status == "completed"


def test_openai_expired_and_failed_items(oai: OpenAIServer) -> None:
    client = oclient(oai)
    oai.batch_expire_when = lambda body: "person 1 " in body["messages"][-1]["content"]
    oai.batch_fail_when = lambda body: "person 2 " in body["messages"][-1]["content"]
    batch = client.batches.retrieve(submit(client, jsonl(4)).id)
    assert batch.status == "expired"  # as OpenAI reports a batch with expired requests
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (2, 2)
    assert sorted(r["custom_id"] for r in file_lines(client, batch.output_file_id)) == [
        "req-0",
        "req-3",
    ]
    errors = {r["custom_id"]: r for r in file_lines(client, batch.error_file_id)}
    assert errors["req-1"]["response"] is None
    assert errors["req-1"]["error"]["code"] == "batch_expired"
    failed = errors["req-2"]["response"]
    assert failed["status_code"] == 400
    assert failed["body"]["error"]["type"] == "invalid_request_error"
    assert oai.batch_completions()[canonical(chat_body(1))] == 0
    assert oai.batch_submissions()[canonical(chat_body(1))] == 1
    # Over the context limit: the item fails as the online call would (400), others succeed.
    oai.batch_expire_when = oai.batch_fail_when = None
    oai.context_limit = 5
    batch = client.batches.retrieve(submit(client, jsonl(1, start=9)).id)
    assert batch.status == "completed"
    [row] = file_lines(client, batch.error_file_id)
    assert row["response"]["body"]["error"]["code"] == "context_length_exceeded"


def test_openai_cancel_keeps_done_items(oai: OpenAIServer) -> None:
    client = oclient(oai)
    oai.batch_hold = lambda body: "person 1 " in body["messages"][-1]["content"]
    batch = submit(client, jsonl(3))
    running = client.batches.retrieve(batch.id)
    assert running.status == "in_progress" and running.request_counts is not None
    assert running.request_counts.completed == 2
    assert client.batches.cancel(batch.id).status == "cancelling"
    done = client.batches.retrieve(batch.id)
    assert done.status == "cancelled" and done.cancelled_at is not None
    assert sorted(r["custom_id"] for r in file_lines(client, done.output_file_id)) == [
        "req-0",
        "req-2",
    ]
    [row] = file_lines(client, done.error_file_id)
    assert (row["custom_id"], row["error"]["code"]) == ("req-1", "batch_cancelled")
    with pytest.raises(openai.ConflictError, match="Cannot cancel a batch with status 'cancelled'"):
        client.batches.cancel(batch.id)


def test_openai_lists_paginate_and_files_delete(oai: OpenAIServer) -> None:
    client = oclient(oai)
    ids = [submit(client, jsonl(1, start=i)).id for i in range(5)]
    page = client.batches.list(limit=2)
    assert [b.id for b in page.data] == ids[::-1][:2] and page.has_more
    assert [b.id for b in client.batches.list(limit=2)] == ids[::-1]  # auto-paging
    last = client.batches.list(limit=2, after=ids[1])
    assert [b.id for b in last.data] == [ids[0]] and not last.has_more
    inputs = list(client.files.list(purpose="batch"))
    assert len(inputs) == 5 and all(f.purpose == "batch" for f in inputs)
    # Listing brought every batch up to now: each ended and wrote its output file.
    outputs = list(client.files.list(purpose="batch_output"))
    assert sorted(f.filename for f in outputs) == sorted(f"{i}_output.jsonl" for i in ids)
    assert client.files.delete(inputs[0].id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.content(inputs[0].id)
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")


def test_api_key_is_checked_on_batch_endpoints(oai: OpenAIServer, ant: AnthropicServer) -> None:
    bad = openai.OpenAI(base_url=oai.url, api_key="sk-wrong-key-000000", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.files.create(file=("batch.jsonl", jsonl(1)), purpose="batch")
    assert oai.files == []
    wrong = anthropic.Anthropic(base_url=ant.url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        wrong.messages.batches.create(requests=claude_requests(1))  # type: ignore[arg-type]
    assert ant.batches == []


def test_faults_can_target_batch_routes(oai: OpenAIServer) -> None:
    client = oclient(oai)
    batch = submit(client, jsonl(1))
    oai.add_fault("server_error", times=1, routes="batch_retrieve")
    with pytest.raises(openai.InternalServerError):
        client.batches.retrieve(batch.id)
    assert client.batches.retrieve(batch.id).status == "completed"
    assert [c.status for c in oai.api_calls if c.path.endswith(batch.id)] == [500, 200]
    assert oai.requests == []  # the online endpoint's records stay apart


# -- Anthropic: Message Batches ---------------------------------------------------------------


def test_anthropic_create_retrieve_results(ant: AnthropicServer) -> None:
    client = aclient(ant)
    batch = client.messages.batches.create(requests=claude_requests(5))  # type: ignore[arg-type]
    assert batch.processing_status == "in_progress" and batch.results_url is None
    assert batch.request_counts.processing == 5
    batch = client.messages.batches.retrieve(batch.id)
    assert batch.processing_status == "ended" and batch.ended_at is not None
    assert batch.request_counts.succeeded == 5
    results = list(client.messages.batches.results(batch.id))
    assert sorted(r.custom_id for r in results) == [f"req-{i}" for i in range(5)]
    assert [r.custom_id for r in results] != [f"req-{i}" for i in range(5)]  # shuffled
    online = client.messages.create(**claude_params(2))
    [two] = [r for r in results if r.custom_id == "req-2"]
    assert two.result.type == "succeeded"
    assert two.result.message.content == online.content
    assert two.result.message.usage.input_tokens == online.usage.input_tokens
    assert two.result.message.usage.output_tokens == online.usage.output_tokens
    key = canonical(claude_params(2))
    assert (ant.batch_submissions()[key], ant.batch_completions()[key], ant.paid_counts()[key]) == (
        1,
        1,
        1,
    )


def test_anthropic_validation_and_limits(ant: AnthropicServer) -> None:
    client = aclient(ant)
    create = client.messages.batches.create
    bad_id = [{"custom_id": "has space", "params": claude_params(0)}]
    with pytest.raises(
        anthropic.BadRequestError, match=r"requests\.0\.custom_id: String should match"
    ):
        create(requests=bad_id)  # type: ignore[arg-type]
    dup = claude_requests(2)
    dup[1]["custom_id"] = "req-0"
    with pytest.raises(anthropic.BadRequestError, match="duplicate custom_id 'req-0'"):
        create(requests=dup)  # type: ignore[arg-type]
    no_max = [
        {
            "custom_id": "a",
            "params": {"model": CLAUDE, "messages": [{"role": "user", "content": "x"}]},
        }
    ]
    with pytest.raises(
        anthropic.BadRequestError, match=r"requests.0.params.max_tokens: Field required"
    ):
        create(requests=no_max)  # type: ignore[arg-type]
    assert (ant.max_requests, ant.max_bytes) == (100_000, 256_000_000)
    ant.batch_max_requests = 2
    with pytest.raises(anthropic.BadRequestError, match="at most 2 items"):
        create(requests=claude_requests(3))  # type: ignore[arg-type]
    ant.batch_max_requests = None
    ant.batch_max_bytes = len(json.dumps({"requests": claude_requests(1)})) + 10
    with pytest.raises(anthropic.APIStatusError, match="maximum allowed number of bytes") as e:
        create(requests=claude_requests(2))  # type: ignore[arg-type]
    assert e.value.status_code == 413
    assert ant.batches == []
    create(requests=claude_requests(1))  # type: ignore[arg-type]
    assert len(ant.batches) == 1


def test_anthropic_hold_expire_fail_cancel(ant: AnthropicServer) -> None:
    client = aclient(ant)
    ant.batch_hold = True
    held = client.messages.batches.create(requests=claude_requests(2))  # type: ignore[arg-type]
    assert client.messages.batches.retrieve(held.id).processing_status == "in_progress"
    with pytest.raises(anthropic.AnthropicError, match="results_url"):
        client.messages.batches.results(held.id)
    ant.batch_hold = False  # releases it too
    assert client.messages.batches.retrieve(held.id).processing_status == "ended"

    def about(n: int) -> Callable[[dict[str, Any]], bool]:
        return lambda body: f"person {n} " in body["messages"][-1]["content"]

    ant.batch_expire_when, ant.batch_fail_when = about(1), about(2)
    batch = client.messages.batches.create(requests=claude_requests(4))  # type: ignore[arg-type]
    counts = client.messages.batches.retrieve(batch.id).request_counts
    assert (counts.succeeded, counts.expired, counts.errored) == (2, 1, 1)
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert results["req-1"].type == "expired"
    errored = results["req-2"]
    assert errored.type == "errored"
    assert errored.error.error.type == "invalid_request_error"

    ant.batch_expire_when = ant.batch_fail_when = None
    ant.batch_hold = about(6)  # item 6 stays processing: the others finish
    batch = client.messages.batches.create(requests=claude_requests(3, start=5))  # type: ignore[arg-type]
    assert client.messages.batches.retrieve(batch.id).request_counts.succeeded == 2
    canceling = client.messages.batches.cancel(batch.id)
    assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at
    ended = client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended"
    assert (ended.request_counts.succeeded, ended.request_counts.canceled) == (2, 1)
    types = {r.custom_id: r.result.type for r in client.messages.batches.results(batch.id)}
    assert types == {"req-5": "succeeded", "req-6": "canceled", "req-7": "succeeded"}
    with pytest.raises(anthropic.BadRequestError, match="already ended"):
        client.messages.batches.cancel(batch.id)
    assert client.messages.batches.delete(batch.id).type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(batch.id)


def test_anthropic_list_pagination(ant: AnthropicServer) -> None:
    client = aclient(ant)
    ids = [
        client.messages.batches.create(requests=claude_requests(1, start=i)).id  # type: ignore[arg-type]
        for i in range(5)
    ]
    page = client.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == ids[::-1][:2] and page.has_more
    assert (page.first_id, page.last_id) == (ids[4], ids[3])
    assert [b.id for b in client.messages.batches.list(limit=2)] == ids[::-1]  # auto-paging
    before = client.messages.batches.list(limit=2, before_id=ids[1])
    assert [b.id for b in before.data] == [ids[3], ids[2]] and before.has_more


def test_shuffle_is_deterministic_and_can_be_off(ant: AnthropicServer) -> None:
    client = aclient(ant)
    first = client.messages.batches.create(requests=claude_requests(8))  # type: ignore[arg-type]
    order = [r.custom_id for r in client.messages.batches.results(first.id)]
    again = [r.custom_id for r in client.messages.batches.results(first.id)]
    assert order == again != sorted(order, key=lambda c: int(c.split("-")[1]))
    ant.batch_shuffle = False
    plain = client.messages.batches.create(requests=claude_requests(8))  # type: ignore[arg-type]
    assert [r.custom_id for r in client.messages.batches.results(plain.id)] == [
        f"req-{i}" for i in range(8)
    ]


# -- hang_at: where a kill -9 test stops the client --------------------------------------------


@pytest.mark.parametrize(
    ("point", "stored", "created"),
    [
        ("file_upload", 0, 0),
        ("after_file_upload", 1, 0),
        ("batch_create", 1, 0),
        ("after_batch_create", 1, 1),
    ],
)
def test_openai_hang_at_submit_points(
    oai: OpenAIServer, point: str, stored: int, created: int
) -> None:
    oai.hang_at = {point}
    client = oclient(oai, timeout=0.5)
    with pytest.raises(openai.APITimeoutError):
        submit(client, jsonl(2))
    assert oai.wait_hung(point, timeout=0) and oai.hung_counts()[point] == 1
    assert (len(oai.files), len(oai.batches)) == (stored, created)


def test_hang_at_retrieve_and_results(oai: OpenAIServer, ant: AnthropicServer) -> None:
    client = oclient(oai, timeout=0.5)
    batch = submit(client, jsonl(1))
    oai.hang_at = ["batch_retrieve"]
    with pytest.raises(openai.APITimeoutError):
        client.batches.retrieve(batch.id)
    oai.hang_at = "results"
    done = client.batches.retrieve(batch.id)
    with pytest.raises(openai.APITimeoutError):
        client.files.content(done.output_file_id or "")
    assert oai.hung_counts() == {"batch_retrieve": 1, "results": 1}

    ant.hang_at = {"results"}
    aclient_ = aclient(ant, timeout=0.5)
    ab = aclient_.messages.batches.create(requests=claude_requests(1))  # type: ignore[arg-type]
    with pytest.raises(anthropic.APITimeoutError):
        list(aclient_.messages.batches.results(ab.id))
    assert ant.wait_hung("results", timeout=0)
    with pytest.raises(ValueError, match="unknown point"):
        ant.hang_at = {"upload"}


def test_hang_at_lets_a_test_kill_the_client_there(oai: OpenAIServer) -> None:
    """The kill -9 pattern: the client process hangs right after the batch was created."""
    oai.hang_at = {"after_batch_create"}
    script = (
        "import openai, sys\n"
        "c = openai.OpenAI(base_url=sys.argv[1], api_key=sys.argv[2])\n"
        "f = c.files.create(file=('b.jsonl', sys.stdin.buffer.read()), purpose='batch')\n"
        "c.batches.create(input_file_id=f.id, endpoint='/v1/chat/completions',"
        " completion_window='24h')\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, oai.url, KEY], stdin=subprocess.PIPE, cwd=REPO
    )
    assert proc.stdin is not None
    proc.stdin.write(jsonl(3))
    proc.stdin.close()
    try:
        assert oai.wait_hung("after_batch_create", timeout=15)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
    finally:
        if proc.poll() is None:
            proc.kill()
    [batch] = oai.batches
    assert len(batch.items) == 3  # created, although the client never heard of it
    # The hung request notices the disconnect and ends without a reply.
    wait_until(lambda: oai.api_calls[-1].finished is not None)
    assert oai.api_calls[-1].status is None


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


# -- subprocess mode: /_control, /_stats and the log ----------------------------------------------


def control(server: OpenAIServer | AnthropicServer, **knobs: Any) -> dict[str, Any]:
    req = urllib.request.Request(
        f"{server.root}/_control",
        data=json.dumps(knobs).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def test_control_and_stats_drive_batch_knobs(tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    with AnthropicServer(api_key=KEY, log_path=log) as ant:
        client = aclient(ant, timeout=0.5)
        stats = control(
            ant, batch_hold=True, batch_expire_when="person 1 ", batch_fail_when="person 2 "
        )
        assert stats["batches"] == 0
        batch = client.messages.batches.create(requests=claude_requests(4))  # type: ignore[arg-type]
        assert client.messages.batches.retrieve(batch.id).processing_status == "in_progress"
        stats = control(ant, release_batches=True, hang_at=["batch_retrieve"])
        assert stats["batches_running"] == 1

        def retrieve() -> None:
            with contextlib.suppress(anthropic.APIError):
                client.messages.batches.retrieve(batch.id)  # hangs, then times out

        threading.Thread(target=retrieve, daemon=True).start()
        assert ant.wait_hung("batch_retrieve", timeout=5)
        stats = control(ant, hang_at=[])
        assert stats["hung"] == {"batch_retrieve": 1}
        ant.advance_batches()
        stats = control(ant)
        assert (stats["batch_items"], stats["batch_items_succeeded"]) == (4, 2)
        assert stats["max_billed_per_body"] == 1
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    assert sorted(r["custom_id"] for r in rows) == ["req-0", "req-3"]
    assert all(r["batch_id"] == batch.id and r["completed"] for r in rows)


def test_command_line_takes_batch_knobs(monkeypatch: pytest.MonkeyPatch) -> None:
    """serve_main builds the server from the flags (stopped at once by a patched start)."""
    built: list[OpenAIServer] = []

    def start(self: OpenAIServer) -> OpenAIServer:
        built.append(self)
        raise SystemExit(0)

    monkeypatch.setattr(OpenAIServer, "start", start)
    argv = ["--batch-hold", "--batch-latency", "2", "--batch-max-requests", "7"]
    argv += ["--batch-fail-when", "person 2 ", "--no-batch-shuffle", "--hang-at", "results"]
    with pytest.raises(SystemExit):
        serve_main(OpenAIServer, argv)
    [s] = built
    assert (s.batch_hold, s.batch_latency, s.max_requests, s.batch_shuffle) == (True, 2.0, 7, False)
    assert s.hang_at == {"results"}
    assert s.batch_fail_when is not None and s.batch_fail_when(chat_body(2))
    assert not s.batch_fail_when(chat_body(3))
