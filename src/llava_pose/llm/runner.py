"""The one place that owns concurrency, rate limits, retries, timeouts, the cache and the budget.

Backends make the raw call; the runner decides when to make it, whether to make it at all
(cache hit, budget reached) and what to do when it fails:

* retryable (429, 5xx, timeout, malformed body): exponential backoff with jitter, honouring
  ``Retry-After``; a 429 also pauses every worker until the server's cooldown is over;
* permanent (400): recorded as a failure with its reason, the run goes on;
* fatal (401, unknown model, a server that cannot be reached before any call succeeded):
  the run stops at once with a message that names the fix.

Every finished call is committed to the cache before anything else happens to it, with any
secret the server echoed scrubbed from its text.

``--max-cost`` bounds the whole job, not one process: what this command's requests already
cost in the cache (paid by earlier runs, priced now) counts against it, so rerunning a
command after a crash continues under the same ceiling instead of getting a fresh one. Each
call in flight reserves its worst case (prompt + max tokens) until it returns. A reply whose
usage is impossible (negative, not a whole number, completion above the request's max tokens,
a prompt many times what was sent) is malformed: its true cost cannot be known, so with a
budget the run stops launching at once and says why; without one it is retried like any
malformed reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import option
from ..errors import BackendError, BudgetExceeded, ConfigError, redact
from ..lock import hold
from ..progress import progress_bar
from ..records import ChatRequest, Completion
from .base import Backend, ConnectionFailed, PermanentError, RetryableError, UsageError
from .cache import Cache, request_key
from .pricing import Price, PriceTable
from .results import Result, RunStats, scrub
from .usage import DEFAULT_MAX_OUTPUT, check_usage, prompt_tokens, worst_case

if TYPE_CHECKING:
    from .batch import BatchRunner

# Requests hashed and looked up in the cache per step, a step ahead of the workers (`arun`).
FEED_CHUNK = 256
# Workers started one by one, a turn of the event loop apart, before the rest (`arun`).
RAMP_ONE_BY_ONE = 8
# Tries of a request that cannot connect, before any call of the run has succeeded, after which
# the server is taken to be unreachable (a wrong --base-url, a server not started).
CONNECT_TRIES = 3
CONNECT_BACKOFF = 0.5
log = logging.getLogger("llava_pose")


@dataclass
class RunnerOptions:
    """How hard and how long to push a backend. Shared by generate and bench build/answer/judge."""

    concurrency: int = option(16, "requests in flight at once", at_least=1)
    rpm: float | None = option(
        None, "requests-per-minute limit (your provider tier's); smooth, no bursts", more_than=0
    )
    tpm: float | None = option(
        None,
        "tokens-per-minute limit; a request counts as its prompt plus its max tokens",
        more_than=0,
    )
    max_retries: int = option(
        6,
        "retries of a retryable failure (429, 5xx, timeout, malformed reply) before it counts as failed",
        at_least=0,
    )
    timeout: float = option(120.0, "seconds before a call is abandoned (and retried)", more_than=0)
    max_cost: float | None = option(
        None,
        "USD ceiling of the whole job: what this command's calls already cost in the cache "
        "counts, so a rerun continues under it; each call reserves its worst case "
        "(prompt + max tokens) until it returns",
        at_least=0,
    )
    backoff_base: float = option(1.0, "first retry delay in seconds, doubled each retry", cli=False)
    backoff_max: float = option(60.0, "longest retry delay in seconds", cli=False)


@dataclass
class ModelOptions(RunnerOptions):
    """Where the model is and how its calls are kept and priced: every command that calls one."""

    base_url: str | None = option(
        None,
        "API base URL: an OpenAI-compatible server (vLLM, SGLang, Ollama, llama.cpp, Azure v1) or "
        "an Anthropic proxy (default: the provider's, or $OPENAI_BASE_URL / $ANTHROPIC_BASE_URL)",
    )
    api_key_env: str | None = option(
        None,
        "environment variable that holds the API key (default OPENAI_API_KEY or ANTHROPIC_API_KEY); "
        "keys are never taken on the command line",
    )
    prices: str | None = option(
        None, "YAML file of USD per 1M tokens per model, overriding the built-in table"
    )
    cache: str | None = option(
        None,
        "SQLite file of finished calls (default: in the output folder); reuse it and no call is paid twice",
    )
    batch: bool = option(
        False,
        "send the calls through the provider's batch API (OpenAI Batch, Anthropic Message "
        "Batches: half price, done within 24 h): submit, exit with code 75, rerun to collect",
    )
    wait: bool = option(
        False, "with --batch: poll until every batch has ended, then write the outputs"
    )
    batch_retries: int = option(
        2,
        "with --batch: resubmissions of a failed, expired or cancelled request before it "
        "counts as failed",
        at_least=0,
    )
    poll_interval: float = option(
        30.0,
        "with --batch --wait: seconds before the first poll (then 1.5x, up to 10 min)",
        more_than=0,
    )

    @contextlib.contextmanager
    def open_runner(
        self,
        backend: Backend,
        default_cache: str | Path,
        progress: str,
        prices: PriceTable | None = None,
    ) -> Iterator[Runner | BatchRunner]:
        """A Runner with these options and its cache (`--cache`, else `default_cache`), closed
        on the way out: the online one, or with --batch the provider's batch API behind the
        same interface. The same for every command that calls a model."""
        api = None
        if self.batch:
            from .batch import batch_api

            api = batch_api(backend)  # a backend without one fails before the lock is taken
        cache_path = Path(self.cache or default_cache)
        if backend.cached:
            hold(cache_path, progress, what="--cache")
        cache = Cache(cache_path) if backend.cached else None
        table = prices or PriceTable.load(self.prices)
        try:
            if api is not None:
                from .batch import BatchRunner, options_from

                assert cache is not None
                batch = BatchRunner(
                    backend,  # type: ignore[arg-type]
                    cache=cache,
                    price=table.for_backend(backend),
                    options=options_from(self, table.batch_discount(backend.provider)),
                    max_cost=self.max_cost,
                    progress=progress,
                    api=api,
                )
                try:
                    yield batch
                finally:
                    batch.close()
            else:
                yield Runner(
                    backend,
                    cache=cache,
                    options=self.runner_options(),
                    prices=table,
                    progress=progress,
                )
        finally:
            if cache is not None:
                cache.close()

    def runner_options(self) -> RunnerOptions:
        return RunnerOptions(
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(RunnerOptions)}
        )

    def backend_options(self) -> dict[str, object]:
        if self.wait and not self.batch:
            raise ConfigError("--wait: only with --batch")
        key = None
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ConfigError(
                    f"--api-key-env {self.api_key_env}: that environment variable is not set"
                )
        return {
            "base_url": self.base_url,
            "api_key": key,
            "key_env": self.api_key_env,
            "timeout": self.timeout,
        }


class RateLimiter:
    """A token bucket refilled continuously at `per_minute`/60 per second.

    Capacity is one second's worth, so the rate is smooth (no burst of a whole minute's
    quota at start). A request larger than the capacity may take the bucket into debt, which
    later requests wait out; waiters are served in order.
    """

    def __init__(self, per_minute: float) -> None:
        if per_minute <= 0:
            raise ConfigError("rate limits must be positive")
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self.stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self, amount: float = 1.0) -> None:
        async with self._lock:
            need = min(amount, self.capacity)
            while True:
                now = time.monotonic()
                self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.level >= need:
                    self.level -= amount
                    return
                await asyncio.sleep((need - self.level) / self.rate)


class Runner:
    """Runs many `ChatRequest`s through one backend."""

    def __init__(
        self,
        backend: Backend,
        *,
        cache: Cache | None = None,
        options: RunnerOptions | None = None,
        prices: PriceTable | None = None,
        progress: str | None = None,
    ) -> None:
        self.backend = backend
        self.cache = cache if backend.cached else None
        self.options = options or RunnerOptions()
        self.price: Price | None = (prices or PriceTable.load()).for_backend(backend)
        self.progress = progress
        if self.options.max_cost is not None and self.price is None:
            raise ConfigError(
                f"--max-cost needs a price for {backend.model!r}: add it to a prices file "
                "and pass --prices FILE (see llava_pose/data/prices.yaml for the shape)"
            )
        self.stats = RunStats()
        self._cooldown_until = 0.0
        self._reserved = 0.0
        self._prompt_tokens: dict[str, int] = {}  # request id -> offline estimate, while in flight
        # Largest seen (billed prompt tokens / offline estimate): scales later reservations when
        # the provider's tokenizer counts more than o200k_base does.
        self._prompt_ratio = 1.0
        self._any_success = False
        self._usage_said = False

    # -- public -----------------------------------------------------------------------------

    def run(
        self,
        requests: Sequence[ChatRequest],
        on_result: Callable[[ChatRequest, Result], None] | None = None,
    ) -> list[Result]:
        """Synchronous entry point for CLI code."""
        return asyncio.run(self.arun(requests, on_result))

    async def arun(
        self,
        requests: Sequence[ChatRequest],
        on_result: Callable[[ChatRequest, Result], None] | None = None,
    ) -> list[Result]:
        """Run all requests; results come back in input order.

        `on_result` is called for each request as it finishes (after the cache commit), e.g.
        to append failures to a log that must survive a crash.
        """
        started = time.monotonic()
        ids = [r.id for r in requests]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise ConfigError(f"duplicate request id {dup!r}")
        self.stats.requests += len(requests)
        spec = self.backend.spec
        results: dict[str, Result] = {}
        bar = progress_bar(len(requests), self.progress, unit="req")

        def finish(request: ChatRequest, result: Result) -> None:
            results[request.id] = result
            if on_result:
                on_result(request, result)
            if bar is not None:
                bar.update(1)
                if self.price is not None and not self.backend.free:
                    bar.set_postfix(
                        cost=f"${self.stats.cost:.2f}", failed=self.stats.failed, refresh=False
                    )

        rpm = RateLimiter(self.options.rpm) if self.options.rpm else None
        tpm = RateLimiter(self.options.tpm) if self.options.tpm else None
        n_workers = max(1, min(self.options.concurrency, len(requests)))
        queue: asyncio.Queue[tuple[ChatRequest, str] | None] = asyncio.Queue(
            2 * max(FEED_CHUNK, n_workers)
        )

        async def feed() -> None:
            """Keys and cache lookups a chunk at a time, as the workers need them (the queue
            is bounded): at 160k requests, hashing them all first would hold the first call
            back by seconds, and even a few thousand at a time stall every call in flight."""
            for start in range(0, len(requests), FEED_CHUNK):
                chunk = requests[start : start + FEED_CHUNK]
                keys = (
                    [request_key(spec, r) for r in chunk]
                    if self.cache is not None
                    else [""] * len(chunk)
                )
                hits = self.cache.get_many(keys) if self.cache is not None else {}
                for request, key in zip(chunk, keys, strict=True):
                    hit = hits.get(key)
                    if hit is None:
                        await queue.put((request, key))
                        continue
                    self.stats.cached += 1
                    if self.price:
                        self.stats.cached_cost += self.price.of(hit)
                    finish(request, Result(request.id, completion=hit))
                await asyncio.sleep(0)
            for _ in range(n_workers):
                await queue.put(None)

        async def worker() -> None:
            while True:
                item = await queue.get()
                if item is None:
                    return
                request, key = item
                if self.stats.stop_reason is not None:
                    self.stats.skipped_budget += 1
                    finish(request, Result(request.id, error=self.stats.stop_reason, kind="budget"))
                    continue
                finish(request, await self._one(request, key, rpm, tpm))

        tasks = [asyncio.create_task(feed())]
        try:
            # Workers start one a turn of the loop for the first RAMP_ONE_BY_ONE turns, then
            # doubling: each prepares its call (~3 ms in the SDK) before any is sent, and the
            # first call needs ~5 turns to connect and send, so 64 at once would hold it back
            # by 64 preparations.
            while (running := len(tasks) - 1) < n_workers:
                more = 1 if running < RAMP_ONE_BY_ONE else running
                tasks += [
                    asyncio.create_task(worker()) for _ in range(min(more, n_workers - running))
                ]
                await asyncio.sleep(0)
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if bar is not None:
                bar.close()
            self.stats.elapsed += time.monotonic() - started
            await self.backend.aclose()
        return [results[r.id] for r in requests]

    # -- one request ------------------------------------------------------------------------

    def _prompt_estimate(self, request: ChatRequest) -> int:
        """Offline prompt tokens, counted once per request: the budget, the TPM limiter (on
        every attempt) and the billed/estimated ratio all ask, and counting costs ~1 ms."""
        if self.backend.free:
            return 0
        tokens = self._prompt_tokens.get(request.id)
        if tokens is None:
            tokens = prompt_tokens(request, self.backend.model, self.backend.provider)
            self._prompt_tokens[request.id] = tokens
        return tokens

    def _estimate(self, request: ChatRequest) -> tuple[int, int]:
        return worst_case(self._prompt_estimate(request) * self._prompt_ratio, request)

    def spent(self) -> float:
        """What counts against --max-cost: this run's calls plus this job's cached ones."""
        return self.stats.cost + self.stats.cached_cost

    def _stop(self, reason: str) -> None:
        if self.stats.stop_reason is None:
            self.stats.stop_reason = reason
            log.warning("%s", reason)

    def _reserve(self, request: ChatRequest) -> float:
        """Set aside the most this request can cost; refuse if that would pass --max-cost."""
        if self.options.max_cost is None or self.price is None:
            return 0.0
        worst = self.price.cost(*self._estimate(request))
        if self.spent() + self._reserved + worst > self.options.max_cost:
            if self.stats.stop_reason is None:
                self.stats.stop_reason = (
                    f"budget reached (--max-cost {self.options.max_cost:g}): "
                    f"${self.spent():.4f} spent on this job so far "
                    f"(${self.stats.cached_cost:.4f} of it by earlier runs)"
                )
            raise BudgetExceeded(self.stats.stop_reason)
        self._reserved += worst
        return worst

    async def _one(
        self, request: ChatRequest, key: str, rpm: RateLimiter | None, tpm: RateLimiter | None
    ) -> Result:
        try:
            reserved = self._reserve(request)
        except BudgetExceeded as e:
            self._prompt_tokens.pop(request.id, None)
            self.stats.skipped_budget += 1
            return Result(request.id, error=str(e), kind="budget")
        try:
            completion = await self._call_with_retries(request, rpm, tpm, reserved)
        except PermanentError as e:
            return self._failure(request, str(e))
        except RetryableError as e:
            return self._failure(request, f"gave up after {self.options.max_retries} retries: {e}")
        finally:
            self._reserved -= reserved
            estimated = self._prompt_tokens.pop(request.id, 0)
        cost = self.price.of(completion) if self.price else 0.0
        if self.cache is not None:
            self.cache.put(key, self.backend.spec, request.id, completion, cost)
        self._any_success = True
        if estimated and completion.input_tokens > estimated:
            self._prompt_ratio = max(self._prompt_ratio, completion.input_tokens / estimated)
        self.stats.add_call(completion, self.price)
        if self.options.max_cost is not None and self.spent() > self.options.max_cost:
            self._stop(
                f"budget passed (--max-cost {self.options.max_cost:g}): a reply reported "
                f"{completion.input_tokens:,} prompt and {completion.output_tokens:,} completion "
                f"tokens (${cost:.4f}), far above what was reserved for it; stopping"
            )
        return Result(request.id, completion=completion)

    def _failure(self, request: ChatRequest, reason: str) -> Result:
        reason = redact(reason)
        self.stats.failed += 1
        label = reason.split(":")[0][:60]
        self.stats.failures_by_reason[label] = self.stats.failures_by_reason.get(label, 0) + 1
        return Result(request.id, error=reason, kind="failed")

    async def _call_with_retries(
        self,
        request: ChatRequest,
        rpm: RateLimiter | None,
        tpm: RateLimiter | None,
        reserved: float = 0.0,
    ) -> Completion:
        attempt = 0
        connect_tries = 0
        while True:
            if rpm:
                await rpm.acquire(1)
            if tpm:
                await tpm.acquire(sum(self._estimate(request)))
            # After the limiters: a call that got its token before a 429 still waits out the
            # server's cooldown instead of hitting it again.
            wait = self._cooldown_until - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                completion = await asyncio.wait_for(
                    self.backend.complete(request), self.options.timeout
                )
                completion = scrub(completion)
                check_usage(request, completion, self.backend.provider, self.backend.model)
                return completion
            except BackendError:
                raise
            except (RetryableError, asyncio.TimeoutError) as e:
                if isinstance(e, asyncio.TimeoutError):
                    e = self._timed_out(request)
                elif isinstance(e, UsageError):
                    self._unknowable_cost(e, reserved)
                    if self.options.max_cost is not None:
                        raise PermanentError(str(e)) from None
                elif isinstance(e, ConnectionFailed) and not self._any_success:
                    connect_tries += 1
                    if connect_tries >= CONNECT_TRIES:
                        raise BackendError(self._unreachable(e)) from None
                    await asyncio.sleep(CONNECT_BACKOFF * connect_tries)
                    continue
                if attempt >= self.options.max_retries:
                    raise e from None
                delay = self._backoff(attempt, e.retry_after)
                if e.retry_after is not None:
                    self._cooldown_until = max(self._cooldown_until, time.monotonic() + delay)
                attempt += 1
                self.stats.retries += 1
                await asyncio.sleep(delay)

    def _timed_out(self, request: ChatRequest) -> RetryableError:
        """A call abandoned at --timeout: said once, with the numbers, since a slow local
        server otherwise sits on a frozen progress bar retrying until something kills it."""
        self.stats.timeouts += 1
        if self.stats.timeouts == 1:
            tokens = request.max_tokens or DEFAULT_MAX_OUTPUT
            log.warning(
                "a call to %s timed out after %gs and is retried; a reply of up to %d tokens from "
                "a slow server (5 tokens/s takes %ds) needs a higher --timeout, e.g. --timeout %d",
                self.backend.describe(),
                self.options.timeout,
                tokens,
                tokens // 5,
                max(2 * self.options.timeout, tokens // 5 * 1.5),
            )
        return RetryableError(f"timed out after {self.options.timeout:g}s (raise --timeout)")

    def _unknowable_cost(self, error: UsageError, reserved: float) -> None:
        """A reply whose usage is impossible was billed an unknown amount: count its worst
        case, and under --max-cost stop launching, since the budget can no longer be held."""
        self.stats.cost += reserved
        if self.options.max_cost is not None and not self._usage_said:
            self._usage_said = True
            reason = (
                f"stopping: {self.backend.describe()} reported impossible usage ({error}); "
                "its cost cannot be known, so --max-cost cannot be held. Check the server"
            )
            log.warning("%s", reason)
            self.stats.stop_reason = reason

    def _unreachable(self, error: ConnectionFailed) -> str:
        return (
            f"cannot reach {self.backend.describe()} ({error}) after {CONNECT_TRIES} tries: "
            "is the server running, and is --base-url right?"
        )

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.options.backoff_max * 10)
        ceiling = min(self.options.backoff_max, self.options.backoff_base * 2**attempt)
        return random.uniform(ceiling / 2, ceiling)
