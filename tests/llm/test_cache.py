"""The SQLite cache: what its key depends on, that paid calls are committed the moment they
arrive, and that a rerun (even after kill -9) pays for nothing twice."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from tests.servers import OpenAIServer

from llava_pose.llm.cache import Cache, request_key
from llava_pose.llm.openai_api import OpenAIBackend
from llava_pose.llm.results import Result
from llava_pose.llm.runner import Runner, RunnerOptions
from llava_pose.records import ChatRequest, Completion, ImageContext, Message

KEY = "sk-test-SECRET-123456"
REPO = Path(__file__).resolve().parents[2]
FAST = {"backoff_base": 0.01, "backoff_max": 0.05, "timeout": 5.0}


def chat(i: int, **kw: object) -> ChatRequest:
    messages = (Message("system", "You are a pose expert."), Message("user", f"Question {i}?"))
    return ChatRequest(id=f"r{i}", model="gpt-4o", messages=messages, **kw)  # type: ignore[arg-type]


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer(latency=0.02) as s:
        yield s


def runner_for(
    server: OpenAIServer, cache: Cache, model: str = "gpt-4o", **options: object
) -> Runner:
    backend = OpenAIBackend(model, base_url=server.url, api_key=KEY, timeout=30)
    return Runner(backend, cache=cache, options=RunnerOptions(**{**FAST, **options}))  # type: ignore[arg-type]


# -- the key --------------------------------------------------------------------------------


def test_key_changes_with_everything_that_decides_the_answer() -> None:
    base = chat(1, temperature=0.2, max_tokens=100, seed=3)
    key = request_key("openai:gpt-4o", base)
    variants = {
        "model": request_key("openai:gpt-4o-mini", base),
        "provider": request_key("anthropic:gpt-4o", base),
        "message text": request_key(
            "openai:gpt-4o", msgspec.structs.replace(base, messages=chat(2).messages)
        ),
        "message role": request_key(
            "openai:gpt-4o",
            msgspec.structs.replace(
                base, messages=(Message("user", "You are a pose expert."), base.messages[1])
            ),
        ),
        "temperature": request_key("openai:gpt-4o", msgspec.structs.replace(base, temperature=0.3)),
        "no temperature": request_key(
            "openai:gpt-4o", msgspec.structs.replace(base, temperature=None)
        ),
        "max_tokens": request_key("openai:gpt-4o", msgspec.structs.replace(base, max_tokens=101)),
        "seed": request_key("openai:gpt-4o", msgspec.structs.replace(base, seed=4)),
        "images": request_key("openai:gpt-4o", msgspec.structs.replace(base, images=("a.jpg",))),
    }
    assert key not in variants.values()
    assert len(set(variants.values())) == len(variants)


def test_key_ignores_ids_and_metadata() -> None:
    base = chat(1, temperature=0.2)
    context = ImageContext(
        image_id=1, image="val2017/1.jpg", width=640, height=480, captions=("a",)
    )
    same = msgspec.structs.replace(base, id="other-id", meta={"task": "detail"}, context=context)
    assert request_key("openai:gpt-4o", same) == request_key("openai:gpt-4o", base)


def test_key_is_stable_across_int_and_float_temperature_and_json_round_trip() -> None:
    as_int = chat(1, temperature=1)
    round_trip = msgspec.json.decode(msgspec.json.encode(as_int), type=ChatRequest)
    assert isinstance(round_trip.temperature, float)
    assert request_key("openai:gpt-4o", as_int) == request_key("openai:gpt-4o", round_trip)


# -- the store ------------------------------------------------------------------------------


def test_store_round_trip_marks_hits_cached(tmp_path: Path) -> None:
    done = Completion(text="ok", input_tokens=10, output_tokens=2, model="gpt-4o")
    with Cache(tmp_path / "c.sqlite") as cache:
        cache.put("k1", "openai:gpt-4o", "r1", done, 0.5)
        assert cache.get("k1") == msgspec.structs.replace(done, cached=True)
        assert cache.get("missing") is None
        assert len(cache) == 1 and cache.total_cost() == 0.5
    with Cache(tmp_path / "c.sqlite") as again:  # reopened: still there
        assert again.get_many(["k1", "k2"]) == {"k1": msgspec.structs.replace(done, cached=True)}


def test_wal_mode_is_on(tmp_path: Path) -> None:
    with Cache(tmp_path / "c.sqlite"):
        other = sqlite3.connect(tmp_path / "c.sqlite")
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        other.close()


# -- with the runner ------------------------------------------------------------------------


def test_second_run_makes_no_calls_and_returns_the_same_completions(
    server: OpenAIServer, tmp_path: Path
) -> None:
    requests = [chat(i, temperature=0.7, max_tokens=40) for i in range(6)]
    with Cache(tmp_path / "c.sqlite") as cache:
        first_runner = runner_for(server, cache)
        first = first_runner.run(requests)
    assert all(r.ok for r in first) and len(server.requests) == 6
    with Cache(tmp_path / "c.sqlite") as cache:
        runner = runner_for(server, cache)
        # Ids and metadata differ; what is sent does not: every one is a hit.
        renamed = [
            msgspec.structs.replace(r, id=f"again-{r.id}", meta={"run": 2}) for r in requests
        ]
        second = runner.run(renamed)
    assert len(server.requests) == 6  # zero HTTP calls
    for a, b in zip(first, second, strict=True):
        assert a.completion is not None and b.completion is not None
        assert b.completion == msgspec.structs.replace(a.completion, cached=True)
        assert not a.completion.cached
    assert (runner.stats.cached, runner.stats.called, runner.stats.cost) == (6, 0, 0.0)
    assert runner.stats.cached_cost == pytest.approx(first_runner.stats.cost)


def test_other_model_misses_the_cache(server: OpenAIServer, tmp_path: Path) -> None:
    with Cache(tmp_path / "c.sqlite") as cache:
        runner_for(server, cache).run([chat(1)])
        runner = runner_for(server, cache, model="gpt-4o-mini")
        runner.run([chat(1)])
    assert runner.stats.called == 1
    assert [r.body["model"] for r in server.requests] == ["gpt-4o", "gpt-4o-mini"]


def test_rows_are_committed_as_each_call_finishes(server: OpenAIServer, tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    seen_by_other_connection: list[int] = []

    def count_from_outside(request: ChatRequest, result: Result) -> None:
        other = sqlite3.connect(path)  # a second connection sees only committed rows
        seen_by_other_connection.append(
            other.execute("SELECT COUNT(*) FROM completions").fetchone()[0]
        )
        other.close()

    server.latency = 0.05
    with Cache(path) as cache:
        runner_for(server, cache, concurrency=1).run(
            [chat(i) for i in range(5)], count_from_outside
        )
    assert seen_by_other_connection == [1, 2, 3, 4, 5]


def test_failures_are_not_cached_and_are_retried_next_run(
    server: OpenAIServer, tmp_path: Path
) -> None:
    server.context_limit = 40
    long = ChatRequest(id="long", model="gpt-4o", messages=(Message("user", "hand " * 60),))
    with Cache(tmp_path / "c.sqlite") as cache:
        first = runner_for(server, cache).run([chat(0), long])
        assert [r.kind for r in first] == ["ok", "failed"] and len(cache) == 1
        server.context_limit = None
        runner = runner_for(server, cache)
        second = runner.run([chat(0), long])
    assert [r.kind for r in second] == ["ok", "ok"]
    assert (runner.stats.cached, runner.stats.called) == (1, 1)
    assert Counter(r.body["messages"][0]["content"][:4] for r in server.requests) == {
        "You ": 1,
        "hand": 2,
    }


CHILD = """
import sys
from llava_pose.llm.cache import Cache
from llava_pose.llm.openai_api import OpenAIBackend
from llava_pose.llm.runner import Runner, RunnerOptions
from llava_pose.records import ChatRequest, Message

url, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
requests = [
    ChatRequest(id=f"r{i}", model="gpt-4o", messages=(Message("user", f"Question {i}?"),))
    for i in range(n)
]
backend = OpenAIBackend("gpt-4o", base_url=url, api_key="sk-test-SECRET-123456")
Runner(backend, cache=Cache(path), options=RunnerOptions(concurrency=2)).run(requests)
"""


@pytest.mark.slow
def test_kill_9_mid_run_loses_no_paid_call(tmp_path: Path) -> None:
    """Server and client in separate processes; the client is killed while calls are in
    flight; the rerun pays only for what was never answered, by the server's own log."""
    log = tmp_path / "server.jsonl"
    path = tmp_path / "c.sqlite"
    n = 12
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.servers.openai_server",
            "--port",
            "0",
            "--latency",
            "0.4",
            "--log",
            str(log),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        child = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(CHILD), url, str(path), str(n)], env=env
        )
        deadline = time.monotonic() + 60
        rows = 0
        while rows < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
            if path.exists():
                other = sqlite3.connect(path)
                try:
                    rows = other.execute("SELECT COUNT(*) FROM completions").fetchone()[0]
                except sqlite3.OperationalError:  # table not created yet
                    rows = 0
                finally:
                    other.close()
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert 4 <= rows < n
        # Rerun in this process against the same server and cache.
        requests = [
            ChatRequest(id=f"r{i}", model="gpt-4o", messages=(Message("user", f"Question {i}?"),))
            for i in range(n)
        ]
        with Cache(path) as cache:
            committed = len(cache)
            backend = OpenAIBackend("gpt-4o", base_url=url, api_key=KEY)
            runner = Runner(backend, cache=cache, options=RunnerOptions(concurrency=4))
            results = runner.run(requests)
        assert all(r.ok for r in results)
        assert runner.stats.cached == committed and runner.stats.called == n - committed
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(10)
    rows_logged = [json.loads(line) for line in log.read_text().splitlines()]
    paid = Counter(row["body_sha256"] for row in rows_logged if row["completed"])
    assert len(paid) == n and set(paid.values()) == {1}  # each request paid exactly once
    assert "authorization" not in log.read_text().lower()  # headers never reach the disk
