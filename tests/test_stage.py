"""The stage skeleton: estimate lines (online and batch side by side), the one re-ask loop
(`ask` with a settle hook) over a real runner and loopback server, and exit-code precedence."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path

import pytest
from tests.conftest import KEY
from tests.servers import OpenAIServer

from llava_pose import stage as stage_module
from llava_pose.errors import EXIT_BUDGET, EXIT_OK, EXIT_PENDING, EXIT_SOME_FAILED
from llava_pose.forked import Forked
from llava_pose.llm.cache import Cache
from llava_pose.llm.openai_api import OpenAIBackend
from llava_pose.llm.pricing import Price
from llava_pose.llm.runner import Runner
from llava_pose.records import ChatRequest, Message
from llava_pose.stage import Stage


def req(i: int, attempt: int = 0) -> ChatRequest:
    return ChatRequest(
        id=f"q{i}-{attempt}",
        model="gpt-4o",
        messages=(Message("user", f"item {i} attempt {attempt}"),),
        max_tokens=100,
        seed=attempt,
    )


def test_estimate_shows_batch_cost_beside_online() -> None:
    requests = [req(i) for i in range(3)]
    online = Stage("generate", "gpt-4o", Price(2.5, 10.0), discount=0.5)
    lines = online.estimate(requests, lambda _: 50)
    assert lines[3].startswith("cost: ~$")
    assert lines[4].startswith("cost with --batch: ~$") and "50% of online" in lines[4]
    batch = Stage("generate", "gpt-4o", Price(2.5, 10.0), discount=0.5, batch=True)
    assert batch.estimate(requests, lambda _: 50)[4].startswith("cost this run (--batch)")
    local = Stage("generate", "llama", Price(0.0, 0.0))  # no batch API: no batch line
    assert len(local.estimate(requests, lambda _: 50)) == 4


def test_ask_reasks_until_settled(tmp_path: Path) -> None:
    def responder(body: dict) -> str:
        text = json.dumps(body)
        return "bad" if "item 1 attempt 0" in text or "item 2 attempt" in text else "good"

    with OpenAIServer(api_key=KEY, responder=responder) as server, Cache(tmp_path / "c") as cache:
        backend = OpenAIBackend("gpt-4o", base_url=server.url, api_key=KEY)
        stage = Stage("test", "gpt-4o", Price(2.5, 10.0))
        stage.runner = Runner(backend, cache=cache)

        def settle(item: tuple[int, int], _: ChatRequest, result) -> list[tuple[int, int]]:
            i, attempt = item
            bad = result.completion is not None and result.completion.text == "bad"
            return [(i, attempt + 1)] if bad and attempt < 2 else []

        done = stage.ask([(i, 0) for i in range(3)], lambda it: req(*it), settle)
        assert stage.asked == [3, 2, 1]  # item 1 fixed on its 2nd try, item 2 gives up on its 3rd
        assert [(it, r.completion.text) for it, _, r in done if r.completion] == [
            ((0, 0), "good"),
            ((1, 0), "bad"),
            ((2, 0), "bad"),
            ((1, 1), "good"),
            ((2, 1), "bad"),
            ((2, 2), "bad"),
        ]
        assert stage.exit_code() == EXIT_OK
        stage.stats.failed = 1
        assert stage.exit_code(1, "one failed") == EXIT_SOME_FAILED
        stage.waiting = 2  # batches still running come before failures ...
        assert stage.exit_code(1, "one failed") == EXIT_PENDING
        stage.stats.skipped_budget = 1  # ... and the budget before both
        assert stage.exit_code(1, "one failed") == EXIT_BUDGET


def test_a_big_estimate_is_counted_in_a_child_while_the_run_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From `BACKGROUND_ESTIMATE` requests the estimate is counted in a forked child and said
    when ready: `log_estimate` returns at once, and `open` waits for it, so the lines are
    said once before the command ends. Below it, or without fork, it is counted here and said
    at once."""
    requests = [req(i) for i in range(5)]
    stage = Stage("generate", "gpt-4o", Price(2.5, 10.0), discount=0.5)
    counted_in = tmp_path / "pids"

    def expected(_: ChatRequest) -> int:
        with counted_in.open("a") as f:
            f.write(f"{os.getpid()}\n")
        if os.getpid() != parent:
            time.sleep(0.2)  # a slow count: the run does not wait for it
        return 50

    parent = os.getpid()
    lines = ["estimate before the run:", *stage.estimate(requests, lambda _: 50)]
    caplog.set_level(logging.INFO, logger="llava_pose")
    said = lambda: [r.getMessage().strip() for r in caplog.records]  # noqa: E731

    stage.log_estimate(requests, expected)  # few requests: here, at once
    assert said() == lines
    assert {int(p) for p in counted_in.read_text().split()} == {parent}

    monkeypatch.setattr(stage_module, "BACKGROUND_ESTIMATE", 5)
    for forks in (True, False):
        counted_in.unlink()
        caplog.clear()
        if not forks:
            monkeypatch.setattr(Forked, "start", lambda *a, **k: None)
        started = time.monotonic()
        stage.log_estimate(requests, expected)
        if forks:
            assert time.monotonic() - started < 0.2 and said() == []
        with stage.open(contextlib.nullcontext(object())):  # type: ignore[arg-type]
            pass
        assert said() == lines
        counted = {int(p) for p in counted_in.read_text().split()}
        assert (parent not in counted) if forks else counted == {parent}
