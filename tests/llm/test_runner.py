"""The Runner against the loopback OpenAI server: concurrency, order, rate limits, 429
cooldown, budget and stats, all observed from the server's side of the wire."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.servers import Fault, OpenAIServer

from llava_pose.errors import ConfigError
from llava_pose.llm.openai_api import OpenAIBackend
from llava_pose.llm.pricing import Price, PriceTable
from llava_pose.llm.results import Result
from llava_pose.llm.runner import RateLimiter, Runner, RunnerOptions
from llava_pose.records import ChatRequest, Message

KEY = "sk-test-SECRET-123456"
FAST = {"backoff_base": 0.01, "backoff_max": 0.05, "timeout": 5.0}
PRICES = PriceTable({"gpt-4o": Price(input=2.5, output=10.0)})


def chat(i: int, model: str = "gpt-4o", **kw: object) -> ChatRequest:
    messages = (
        Message("system", "You are an AI visual assistant that can analyze a single image."),
        Message("user", f"Request {i}: describe the pose of the person in the image."),
    )
    return ChatRequest(id=f"r{i}", model=model, messages=messages, **kw)  # type: ignore[arg-type]


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer(latency=0.02) as s:
        yield s


def runner_for(
    server: OpenAIServer, model: str = "gpt-4o", prices: PriceTable = PRICES, **options: object
) -> Runner:
    backend = OpenAIBackend(model, base_url=server.url, api_key=KEY, timeout=30)
    opts = RunnerOptions(**{**FAST, **options})  # type: ignore[arg-type]
    return Runner(backend, options=opts, prices=prices)


def test_concurrency_bound_is_respected_and_used(server: OpenAIServer) -> None:
    server.latency = 0.15
    results = runner_for(server, concurrency=4).run([chat(i) for i in range(20)])
    assert all(r.ok for r in results)
    assert server.max_in_flight == 4
    # 20 requests, 4 at a time, 0.15 s each: ~0.75 s, far from the 3 s of one at a time.
    seen = server.requests
    assert max(r.finished or 0 for r in seen) - min(r.arrived for r in seen) < 20 * 0.15 / 2


def test_results_come_back_in_input_order(server: OpenAIServer) -> None:
    def slow_for_early_ones(body: dict) -> str:
        text = body["messages"][1]["content"]
        i = int(text.split(":")[0].split()[1])
        time.sleep((7 - i % 8) * 0.02)
        return f"answer {i}"

    server.responder = slow_for_early_ones
    finished: list[str] = []
    requests = [chat(i) for i in range(16)]
    results = runner_for(server, concurrency=8).run(
        requests, on_result=lambda req, res: finished.append(req.id)
    )
    assert [r.request_id for r in results] == [r.id for r in requests]
    assert [r.completion.text for r in results if r.completion] == [
        f"answer {i}" for i in range(16)
    ]
    # The calls really did finish out of order; the runner put them back.
    assert finished != [r.id for r in requests] and sorted(finished) == sorted(
        r.id for r in requests
    )


def test_duplicate_ids_are_rejected_before_any_call(server: OpenAIServer) -> None:
    requests = [
        chat(1),
        chat(2),
        ChatRequest(id="r1", model="gpt-4o", messages=(Message("user", "x"),)),
    ]
    with pytest.raises(ConfigError, match="duplicate request id 'r1'"):
        runner_for(server).run(requests)
    assert server.requests == []


def fits_bucket(
    events: list[tuple[float, float]], rate: float, burst: float, slack: float = 0.0
) -> bool:
    """(time, amount) events obey a token bucket of `burst` refilled at `rate` per second:
    any run of them spends at most the bucket plus the refill meanwhile (the last one may
    overdraw by what it asks beyond the bucket, as RateLimiter allows)."""
    events = sorted(events)
    for i in range(len(events)):
        spent = 0.0
        for j in range(i, len(events)):
            spent += events[j][1]
            overdraw = max(0.0, events[j][1] - burst)
            allowed = burst + rate * (events[j][0] - events[i][0] + slack)
            if spent - overdraw > allowed + 1e-9:
                return False
    return True


@pytest.mark.parametrize(
    ("per_minute", "amounts"),
    [
        (600, [1] * 25),  # an RPM limit: 10/s, bucket of 10
        (60_000, [97] * 24),  # a TPM limit: 1,000 tokens/s
        (60_000, [400, 1200, 100, 300]),  # a request bigger than the bucket goes into debt
    ],
)
def test_rate_limiter_is_a_token_bucket_and_wastes_nothing(
    per_minute: float, amounts: list[int]
) -> None:
    async def take_all() -> tuple[float, list[tuple[float, float]]]:
        limiter = RateLimiter(per_minute)
        taken: list[tuple[float, float]] = []

        async def one(amount: int) -> None:
            await limiter.acquire(amount)
            taken.append((time.monotonic(), amount))  # no await in between: exact

        start = time.monotonic()
        await asyncio.gather(*(one(a) for a in amounts))
        return start, taken

    start, taken = asyncio.run(take_all())
    rate = burst = per_minute / 60
    assert fits_bucket(taken, rate, burst)
    # Served in order, and the last one goes as soon as the bucket allows (20 ms leeway).
    assert [a for _, a in taken] == amounts
    ideal = max(0.0, (sum(amounts[:-1]) + min(amounts[-1], burst) - burst) / rate)
    assert taken[-1][0] - start <= ideal + 0.02


def test_rpm_limit_end_to_end(server: OpenAIServer) -> None:
    rpm, n = 600.0, 30  # 10 per second; the bucket holds one second's worth
    rate = burst = rpm / 60
    start = time.monotonic()
    runner_for(server, concurrency=16, rpm=rpm).run([chat(i) for i in range(n)])
    arrivals = sorted(r.arrived for r in server.requests)
    assert len(arrivals) == n
    # Never faster than the limit as the server sees it. The limiter is exact (see above);
    # the first burst reaches the server late, by the client's start-up (new connections),
    # and bunches with what follows: that delay, plus 50 ms, is the slack.
    lag = arrivals[int(burst) - 1] - start + 0.05
    assert fits_bucket([(t, 1) for t in arrivals], rate, burst, slack=lag)
    # ...and nearly all of it is used: after the first second's burst, the rest arrive at
    # >= 90% of the allowed rate.
    span = max(arrivals) - min(arrivals)
    assert (n - burst) / (rate * span) >= 0.9


def test_tpm_limit_end_to_end_counts_prompt_plus_max_tokens(server: OpenAIServer) -> None:
    tpm = 60_000.0  # 1,000 tokens a second, and a bucket of one second's worth
    requests = [chat(i, max_tokens=50) for i in range(10, 34)]
    runner = runner_for(server, concurrency=16, tpm=tpm)
    amounts = [sum(runner._estimate(r)) for r in requests]
    assert min(amounts) > 80 and max(amounts) < 120  # prompt ~40 + 50: ~10 fit a second
    start = time.monotonic()
    runner.run(requests)
    by_text = {r.messages[1].content: a for r, a in zip(requests, amounts, strict=True)}
    events = [(r.arrived, by_text[r.body["messages"][1]["content"]]) for r in server.requests]
    lag = sorted(t for t, _ in events)[9] - start + 0.05  # as for RPM: the burst's late arrival
    assert fits_bucket(events, 1000, 1000, slack=lag)
    # The limit is what paces the run: 24 calls of ~97 tokens need ~1.3 s past the burst.
    span = max(t for t, _ in events) - min(t for t, _ in events)
    assert span >= (sum(amounts) - max(amounts) - 1000) / 1000 * 0.9


def test_429_retry_after_pauses_every_worker(server: OpenAIServer) -> None:
    server.latency = 0.1
    server.add_fault(Fault("rate_limit", retry_after=0.5), at=[0])
    results = runner_for(server, concurrency=3).run([chat(i) for i in range(9)])
    assert all(r.ok for r in results)
    limited = server.requests[0]
    assert limited.status == 429 and limited.finished is not None
    # The first three were sent together; every later send (the retry and the six not yet
    # started) waits out the Retry-After, whichever worker makes it.
    later = server.requests[3:]
    assert len(later) == 7
    assert all(r.arrived - limited.finished >= 0.5 for r in later)


def test_retries_exhausted_is_a_failure_with_a_reason(server: OpenAIServer) -> None:
    server.add_fault("server_error", when=lambda body: "Request 2:" in str(body))
    runner = runner_for(server, max_retries=3)
    results = runner.run([chat(i) for i in range(4)])
    assert [r.kind for r in results] == ["ok", "ok", "failed", "ok"]
    assert results[2].error is not None and results[2].error.startswith("gave up after 3 retries")
    assert sum(1 for r in server.requests if "Request 2:" in str(r.body)) == 4
    assert runner.stats.failed == 1 and runner.stats.retries == 3
    assert runner.stats.failures_by_reason == {"gave up after 3 retries": 1}


def test_backoff_is_jittered_exponential_and_honours_retry_after(server: OpenAIServer) -> None:
    runner = runner_for(server, backoff_base=1.0, backoff_max=8.0)
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (6, 8.0)]:
        delays = [runner._backoff(attempt, None) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1
    assert runner._backoff(0, 7.5) == 7.5
    assert runner._backoff(0, 10_000) == 80.0  # an absurd Retry-After is capped


def test_stats_count_tokens_and_cost_from_the_server_usage(server: OpenAIServer) -> None:
    runner = runner_for(server)
    started = time.monotonic()
    results = runner.run([chat(i) for i in range(6)])
    took = time.monotonic() - started
    assert all(r.ok for r in results)
    usage = [r.usage for r in server.completed]
    input_tokens = sum(u[0] for u in usage if u)
    output_tokens = sum(u[1] for u in usage if u)
    stats = runner.stats
    assert (stats.requests, stats.called, stats.cached, stats.failed) == (6, 6, 0, 0)
    assert (stats.input_tokens, stats.output_tokens) == (input_tokens, output_tokens)
    assert stats.cost == pytest.approx((input_tokens * 2.5 + output_tokens * 10.0) / 1e6)
    assert not stats.unpriced and 0 < stats.elapsed <= took
    assert stats.as_dict()["called"] == 6


def test_unknown_price_with_max_cost_is_a_config_error(server: OpenAIServer) -> None:
    with pytest.raises(ConfigError, match=r"--max-cost needs a price for 'my-local-llm'"):
        runner_for(server, model="my-local-llm", max_cost=1.0)


def test_unknown_price_without_max_cost_runs_unpriced(server: OpenAIServer) -> None:
    runner = runner_for(server, model="my-local-llm")
    assert all(r.ok for r in runner.run([chat(i, model="my-local-llm") for i in range(2)]))
    assert runner.stats.unpriced and runner.stats.cost == 0.0


def budget_run(
    server: OpenAIServer, max_cost: float, n: int, **options: object
) -> tuple[Runner, list[Result]]:
    runner = runner_for(server, max_cost=max_cost, **options)
    return runner, runner.run([chat(i, max_tokens=50) for i in range(n)])


def test_max_cost_stops_before_the_budget_is_passed(server: OpenAIServer) -> None:
    max_cost = 0.002
    runner, results = budget_run(server, max_cost, 20, concurrency=1)
    kinds = [r.kind for r in results]
    done = kinds.count("ok")
    assert 0 < done < 20
    assert kinds == ["ok"] * done + ["budget"] * (20 - done)
    assert all(r.error.startswith("budget reached (--max-cost 0.002)") for r in results[done:])
    assert runner.stats.skipped_budget == 20 - done
    # Never passed, by the server's own accounting; nothing past the stop was sent.
    billed = sum(PRICES.prices["gpt-4o"].cost(*r.usage) for r in server.completed if r.usage)
    assert billed == pytest.approx(runner.stats.cost) and billed <= max_cost
    assert len(server.requests) == done
    # And it stopped only when the next call's worst case would have passed the budget.
    worst_next = PRICES.prices["gpt-4o"].cost(*runner._estimate(chat(done, max_tokens=50)))
    assert runner.stats.cost + worst_next > max_cost


def test_max_cost_holds_with_many_calls_in_flight(server: OpenAIServer) -> None:
    server.latency = 0.05
    runner, results = budget_run(server, 0.004, 60, concurrency=8)
    assert 0 < sum(r.ok for r in results) < 60
    assert runner.stats.cost <= 0.004
    assert sum(r.kind == "budget" for r in results) == runner.stats.skipped_budget


@pytest.mark.parametrize(
    ("image_tokens", "concurrency", "max_cost"),
    [
        (1500, 4, 0.03),  # a text-only reservation would pass the budget by far
        (5000, 1, 0.05),  # more than the per-image reserve: later calls reserve what was billed
    ],
)
def test_max_cost_counts_images(
    server: OpenAIServer, coco_mini: Path, image_tokens: int, concurrency: int, max_cost: float
) -> None:
    server.image_tokens = image_tokens
    image = str(next((coco_mini / "val2017").glob("*.jpg")))
    requests = [chat(i, max_tokens=20) for i in range(20)]
    requests = [ChatRequest(**{**_fields(r), "images": (image,)}) for r in requests]
    runner = runner_for(server, max_cost=max_cost, concurrency=concurrency)
    results = runner.run(requests)
    assert any(r.ok for r in results) and any(r.kind == "budget" for r in results)
    billed = sum(PRICES.prices["gpt-4o"].cost(*r.usage) for r in server.completed if r.usage)
    assert billed <= max_cost


def test_server_sees_what_the_runner_reports_under_load(server: OpenAIServer) -> None:
    """64 slow calls at once: the servers and the runner keep up (no lost or doubled call)."""
    server.latency = 0.3
    runner = runner_for(server, concurrency=64)
    results = runner.run([chat(i) for i in range(128)])
    assert all(r.ok for r in results)
    assert server.max_in_flight == 64
    assert max(server.paid_counts().values()) == 1 and len(server.completed) == 128


def test_on_result_sees_each_result_once_as_it_finishes(server: OpenAIServer) -> None:
    seen: list[tuple[str, str]] = []
    lock = threading.Lock()

    def record(request: ChatRequest, result: Result) -> None:
        with lock:
            seen.append((request.id, result.kind))

    server.context_limit = 40
    long = ChatRequest(id="long", model="gpt-4o", messages=(Message("user", "word " * 100),))
    runner_for(server, concurrency=3).run([chat(0), long, chat(2)], on_result=record)
    assert sorted(seen) == [("long", "failed"), ("r0", "ok"), ("r2", "ok")]


def _fields(request: ChatRequest) -> dict[str, object]:
    return {f: getattr(request, f) for f in request.__struct_fields__}


# -- what a server reports is checked, not trusted ------------------------------------------


@pytest.mark.parametrize(
    ("usage", "why"),
    [
        (lambda p, c: (p, 10**9), "completion_tokens 1000000000 above the request's max tokens 50"),
        (lambda p, c: (-5, c), "usage.prompt_tokens is -5"),
        (lambda p, c: (p, 3.5), "usage.completion_tokens is 3.5"),
        (lambda p, c: ("12", c), "usage.prompt_tokens is '12'"),
        (lambda p, c: (True, c), "usage.prompt_tokens is True"),
        (lambda p, c: (10**9, c), "prompt_tokens 1000000000 for a prompt of"),
    ],
)
def test_impossible_usage_is_a_malformed_reply_retried_then_failed(
    server: OpenAIServer, usage: object, why: str
) -> None:
    server.report_usage = usage  # type: ignore[assignment]
    runner = runner_for(server, max_retries=2)
    [result] = runner.run([chat(1, max_tokens=50)])
    assert result.kind == "failed" and why in (result.error or "")
    assert len(server.requests) == 3  # retried like any malformed reply
    assert runner.stats.cost >= 0 and runner.stats.called == 0


def test_impossible_usage_under_a_budget_stops_after_the_first_reply(server: OpenAIServer) -> None:
    server.latency = 0.05
    server.report_usage = lambda p, c: (p, 10**9)
    runner = runner_for(server, max_cost=0.05, concurrency=16)
    results = runner.run([chat(i, max_tokens=50) for i in range(40)])
    # Calls in flight when the first reply came back may finish; nothing new is sent after it.
    first_reply = min(r.finished for r in server.requests if r.finished)
    assert all(r.arrived <= first_reply for r in server.requests)
    assert {r.kind for r in results} == {"failed", "budget"}
    assert "impossible usage" in (runner.stats.stop_reason or "")
    assert 0 <= runner.stats.cost <= 0.05


def test_a_reply_billed_above_its_reservation_stops_the_budgeted_run(
    server: OpenAIServer,
) -> None:
    # A legal-looking bill (4k prompt tokens for ~40 sent) far above what was reserved: the
    # reply is kept (it was paid), and nothing more is sent once the budget is passed.
    server.report_usage = lambda p, c: (p + 4000, c)
    runner = runner_for(server, max_cost=0.005, concurrency=1)
    results = runner.run([chat(i, max_tokens=50) for i in range(10)])
    assert results[0].ok and all(r.kind == "budget" for r in results[1:])
    assert "budget passed" in (runner.stats.stop_reason or "")
    assert len(server.requests) == 1


def test_max_cost_counts_what_the_job_already_paid(server: OpenAIServer, tmp_path: Path) -> None:
    from llava_pose.llm.cache import Cache

    def run_once() -> Runner:
        with Cache(tmp_path / "cache.sqlite") as cache:
            backend = OpenAIBackend("gpt-4o", base_url=server.url, api_key=KEY, timeout=30)
            opts = RunnerOptions(**{**FAST, "max_cost": 0.002, "concurrency": 1})  # type: ignore[arg-type]
            runner = Runner(backend, cache=cache, options=opts, prices=PRICES)
            runner.run([chat(i, max_tokens=50) for i in range(20)])
            return runner

    first = run_once()
    assert 0 < first.stats.called < 20
    second = run_once()  # the same command again: the ceiling is the job's, not the process's
    assert second.stats.called == 0 and second.stats.cached == first.stats.called
    assert second.stats.stop_reason and "by earlier runs" in second.stats.stop_reason
    billed = sum(PRICES.prices["gpt-4o"].cost(*r.usage) for r in server.completed if r.usage)
    assert billed <= 0.002


def test_a_key_echoed_in_a_reply_never_reaches_the_cache(
    server: OpenAIServer, tmp_path: Path
) -> None:
    from llava_pose.llm.cache import Cache

    server.responder = lambda body: f"your key is {KEY}, or {KEY[:12]}...{KEY[-4:]} for short"
    with Cache(tmp_path / "cache.sqlite") as cache:
        backend = OpenAIBackend("gpt-4o", base_url=server.url, api_key=KEY, timeout=30)
        [result] = Runner(backend, cache=cache, options=RunnerOptions(**FAST)).run([chat(1)])  # type: ignore[arg-type]
    assert result.completion and result.completion.text == "your key is ***, or *** for short"
    raw = (tmp_path / "cache.sqlite").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("cache.sqlite-*")
    )
    assert KEY[:8].encode() not in raw and KEY[-8:].encode() not in raw


def test_timeouts_are_said_once_with_the_fix(server: OpenAIServer, caplog) -> None:
    server.latency = 1.0
    runner = runner_for(server, timeout=0.2, max_retries=1, concurrency=3)
    with caplog.at_level("WARNING", logger="llava_pose"):
        results = runner.run([chat(i, max_tokens=1024) for i in range(3)])
    assert all(r.kind == "failed" and "raise --timeout" in (r.error or "") for r in results)
    said = [r.getMessage() for r in caplog.records if "timed out" in r.getMessage()]
    assert len(said) == 1 and "--timeout" in said[0] and "1024 tokens" in said[0]
    assert runner.stats.timeouts == 6
