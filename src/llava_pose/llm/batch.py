"""Provider batch APIs: the same requests as online, at half the price, done within 24 hours.

`BatchRunner` has the online `Runner`'s interface (``run(requests) -> results``, ``stats``) and
shares its cache, so a command switches between ``--batch`` and online without paying twice.
One ``run``:

1. serves what the cache holds;
2. collects every open submission of this backend that has ended (results stored in the cache
   in one transaction with the items' outcomes) and finishes any submission a killed process
   left half-way;
3. submits the rest: written as the provider's JSONL with ``custom_id`` = the cache key (64
   hex characters: allowed by both providers), split by the documented limits (OpenAI: 50,000
   requests and 200 MB per input file; Anthropic: 100,000 requests and 256 MB per batch), the
   intent and its keys committed to SQLite before the upload, the file id after it, the batch
   id after the create;
4. with ``--wait`` polls with backoff until everything ended, resubmitting failed, expired and
   cancelled requests (``--batch-retries`` times); without it, returns requests still running
   as ``pending`` results, and the command exits with `EXIT_PENDING`.

A process killed at any step loses nothing and sends nothing twice: a submission still
``preparing`` on the next run is finished, not repeated. Its upload is found again by its file
name (OpenAI), its batch by its input file (OpenAI) or, for Anthropic, whose batches carry no
name, by the one unknown batch of the same size created since the intent.
"""

from __future__ import annotations

import abc
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from ..config import option
from ..errors import EXIT_PENDING, BackendError, ConfigError, redact
from ..lock import hold
from ..progress import progress_bar
from ..records import ChatRequest, Completion
from .base import PermanentError, RetryableError, SDKBackend, classify_http_error, sdk_error_message
from .cache import Cache, request_key
from .pricing import Price
from .results import Result, RunStats, scrub
from .usage import check_usage, worst_tokens

__all__ = [
    "BATCH_PROVIDERS",
    "EXIT_PENDING",
    "BatchOptions",
    "BatchRunner",
    "Limits",
    "batch_api",
    "split_batches",
]

log = logging.getLogger("llava_pose")

K = TypeVar("K")

# Longest wait between polls with --wait.
MAX_POLL = 600.0
# Anthropic recovery: a batch created this many seconds before the recorded intent still counts
# (clocks of client and provider differ).
CLOCK_SKEW = 300.0


@dataclass(frozen=True)
class Limits:
    """What one batch may hold, as the provider documents it."""

    requests: int
    bytes: int


@dataclass
class BatchOptions:
    """How a batch run behaves (from the command's options)."""

    wait: bool = False
    retries: int = 2
    poll_interval: float = 30.0
    discount: float = 0.5
    limits: Limits | None = None  # override the provider's (tests, a proxy with lower limits)


class ItemResult(msgspec.Struct, frozen=True):
    """One request's outcome in a finished batch."""

    custom_id: str
    outcome: str  # ok | failed | expired | canceled
    completion: Completion | None = None
    reason: str | None = None


@dataclass
class Status:
    """A batch as the provider reports it."""

    ended: bool
    status: str
    done: int
    total: int


def split_batches(
    items: Iterable[tuple[K, bytes]], limits: Limits
) -> Iterator[list[tuple[K, bytes]]]:
    """Consecutive groups of (key, line) items, each within `limits`, yielded as soon as one is
    full: a submission of 200k requests never holds more than one batch's lines. Pure.

    An item alone above the byte limit still gets a batch of its own: the provider then says
    what is wrong with it, which is clearer than a silent drop here."""
    group: list[tuple[K, bytes]] = []
    size = 0
    for key, line in items:
        if group and (len(group) >= limits.requests or size + len(line) > limits.bytes):
            yield group
            group, size = [], 0
        group.append((key, line))
        size += len(line)
    if group:
        yield group


class BatchAPI(abc.ABC):
    """One provider's batch endpoints through its official (synchronous) SDK client."""

    limits: Limits

    def __init__(self, backend: SDKBackend) -> None:
        self.backend = backend
        args = dict(backend._client_args)
        sdk = backend._sdk
        self.client = getattr(sdk, self.client_class)(**args)

    client_class = ""

    @abc.abstractmethod
    def item(self, custom_id: str, request: ChatRequest) -> dict[str, Any]:
        """One request as the provider's batch item."""

    @abc.abstractmethod
    def submit(
        self,
        sub: dict[str, Any],
        items: list[bytes] | None,
        record: Callable[..., None],
        known: set[str],
        recovering: bool = False,
    ) -> str | None:
        """Send one submission, recording each step with `record(field=value)`; return the
        batch id. When `recovering` a killed process's submission, first look for what it
        already sent (`sub` may hold its file id; `known` are batch ids this cache tracks,
        never adopted). None: not found, and `items` (None when they cannot be rebuilt) are
        needed to send it."""

    @abc.abstractmethod
    def status(self, batch_id: str) -> Status: ...

    @abc.abstractmethod
    def results(self, batch_id: str, status: str) -> Iterator[ItemResult]: ...

    @abc.abstractmethod
    def cancel(self, batch_id: str) -> str: ...

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """An SDK call with the provider's errors sorted as online calls are: fatal ones stop
        the command with their fix, others say which step failed (a rerun resumes there)."""
        sdk = self.backend._sdk
        try:
            return fn(*args, **kwargs)
        except sdk.APIStatusError as e:
            err = classify_http_error(
                e.status_code,
                sdk_error_message(e),
                e.response.headers,
                model=self.backend.model,
                key_env=self.backend.key_env,
            )
            if isinstance(err, BackendError):
                raise err from None
            raise BackendError(
                f"{self.backend.describe()}: {what} failed ({err}); rerun to resume"
            ) from None
        except (sdk.APIConnectionError, sdk.APITimeoutError) as e:
            raise BackendError(
                f"{self.backend.describe()}: {what} failed (cannot connect: "
                f"{type(e).__name__}); rerun to resume"
            ) from None

    def close(self) -> None:
        self.client.close()


def _parse_item(custom_id: str, parse: Callable[[Any], Completion], body: Any) -> ItemResult:
    try:
        completion = scrub(parse(body))
    except (RetryableError, PermanentError) as e:
        return ItemResult(custom_id, "failed", reason=redact(str(e)))
    return ItemResult(custom_id, "ok", completion=completion)


class OpenAIBatches(BatchAPI):
    """Files + Batches: upload a JSONL file, create a batch on it, read its output and error
    files."""

    limits = Limits(50_000, 200_000_000)  # "200 MB": read as 10^6 bytes, the stricter
    client_class = "OpenAI"
    endpoint = "/v1/chat/completions"

    def item(self, custom_id: str, request: ChatRequest) -> dict[str, Any]:
        body = self.backend.request_body(request)
        return {"custom_id": custom_id, "method": "POST", "url": self.endpoint, "body": body}

    @staticmethod
    def file_name(sub_id: str) -> str:
        return f"llava-pose-{sub_id}.jsonl"

    def submit(
        self,
        sub: dict[str, Any],
        items: list[bytes] | None,
        record: Callable[..., None],
        known: set[str],
        recovering: bool = False,
    ) -> str | None:
        name = self.file_name(sub["sub_id"])
        file_id = sub.get("file_id")
        if file_id is None and recovering:
            files = self.call("listing files", self.client.files.list, purpose="batch")
            file_id = next((f.id for f in files if f.filename == name), None)
            if file_id:
                record(file_id=file_id)
        if file_id is None:
            if items is None:
                return None
            data = b"".join(items)
            uploaded = self.call(
                "uploading the batch file",
                self.client.files.create,
                file=(name, data),
                purpose="batch",
            )
            file_id = uploaded.id
            record(file_id=file_id)
        if recovering:
            for b in self.call("listing batches", self.client.batches.list, limit=100):
                if b.input_file_id == file_id and b.id not in known:
                    return str(b.id)
                if b.created_at < sub["created"] - CLOCK_SKEW:
                    break
        batch = self.call(
            "creating the batch",
            self.client.batches.create,
            input_file_id=file_id,
            endpoint=self.endpoint,
            completion_window="24h",
            metadata={"llava_pose_submission": sub["sub_id"]},
        )
        return str(batch.id)

    def status(self, batch_id: str) -> Status:
        b = self.call("polling the batch", self.client.batches.retrieve, batch_id)
        counts = b.request_counts
        done = (counts.completed + counts.failed) if counts else 0
        total = counts.total if counts else 0
        ended = b.status in ("completed", "failed", "expired", "cancelled")
        return Status(ended, str(b.status), done, total)

    def _lines(self, file_id: str | None) -> Iterator[dict[str, Any]]:
        if not file_id:
            return
        content = self.call("downloading results", self.client.files.content, file_id)
        for raw in content.text.splitlines():
            if raw.strip():
                yield msgspec.json.decode(raw)

    def results(self, batch_id: str, status: str) -> Iterator[ItemResult]:
        from .openai_api import parse_response

        b = self.call("reading the batch", self.client.batches.retrieve, batch_id)
        for line in self._lines(b.output_file_id):
            cid = str(line.get("custom_id"))
            response = line.get("response") or {}
            if response.get("status_code") == 200:
                yield _parse_item(
                    cid, lambda body: parse_response(body, self.backend.model), response.get("body")
                )
            else:
                yield self._error(cid, line)
        for line in self._lines(b.error_file_id):
            yield self._error(str(line.get("custom_id")), line)

    @staticmethod
    def _error(cid: str, line: dict[str, Any]) -> ItemResult:
        error = line.get("error") or {}
        response = line.get("response") or {}
        body = response.get("body") if isinstance(response, dict) else None
        if not error and isinstance(body, dict):
            error = body.get("error") or {}
        code = str(error.get("code") or "")
        message = str(error.get("message") or "")
        status = response.get("status_code") if isinstance(response, dict) else None
        if code == "batch_expired":
            return ItemResult(cid, "expired", reason="expired before the batch ran it")
        if code == "batch_cancelled":
            return ItemResult(cid, "canceled", reason="the batch was cancelled")
        where = f"({status}) " if status else ""
        return ItemResult(cid, "failed", reason=redact(f"rejected {where}{code} {message}".strip()))

    def cancel(self, batch_id: str) -> str:
        return str(self.call("cancelling the batch", self.client.batches.cancel, batch_id).status)


class AnthropicBatches(BatchAPI):
    """Message Batches: the requests go in the create call; results stream as JSONL."""

    limits = Limits(100_000, 256_000_000)
    client_class = "Anthropic"

    def item(self, custom_id: str, request: ChatRequest) -> dict[str, Any]:
        return {"custom_id": custom_id, "params": self.backend.request_body(request)}

    def submit(
        self,
        sub: dict[str, Any],
        items: list[bytes] | None,
        record: Callable[..., None],
        known: set[str],
        recovering: bool = False,
    ) -> str | None:
        batches = self.client.messages.batches
        if recovering:
            for b in self.call("listing batches", batches.list, limit=100):
                created = b.created_at.timestamp()
                if created < sub["created"] - CLOCK_SKEW:
                    break
                c = b.request_counts
                total = c.processing + c.succeeded + c.errored + c.canceled + c.expired
                if b.id not in known and total == sub["requests"]:
                    return str(b.id)
        if items is None:
            return None
        requests = [msgspec.json.decode(x) for x in items]
        # Posted as plain JSON, as the online calls are: the SDK would walk 100k typed dicts.
        batch = self.call(
            "creating the batch",
            self.client.post,
            "/v1/messages/batches",
            body={"requests": requests},
            cast_to=object,
        )
        return str(batch["id"])

    def status(self, batch_id: str) -> Status:
        b = self.call("polling the batch", self.client.messages.batches.retrieve, batch_id)
        c = b.request_counts
        total = c.processing + c.succeeded + c.errored + c.canceled + c.expired
        return Status(
            b.processing_status == "ended", str(b.processing_status), total - c.processing, total
        )

    def results(self, batch_id: str, status: str) -> Iterator[ItemResult]:
        from .anthropic_api import parse_response

        stream = self.call("downloading results", self.client.messages.batches.results, batch_id)
        for entry in stream:
            data = entry.model_dump() if hasattr(entry, "model_dump") else entry
            cid = str(data.get("custom_id"))
            result = data.get("result") or {}
            kind = result.get("type")
            if kind == "succeeded":
                yield _parse_item(
                    cid,
                    lambda body: parse_response(body, self.backend.model),
                    result.get("message"),
                )
            elif kind == "expired":
                yield ItemResult(cid, "expired", reason="expired before the batch ran it")
            elif kind == "canceled":
                yield ItemResult(cid, "canceled", reason="the batch was cancelled")
            else:
                err = (result.get("error") or {}).get("error") or result.get("error") or {}
                message = f"{err.get('type', 'error')} {err.get('message', '')}".strip()
                yield ItemResult(cid, "failed", reason=redact(f"errored: {message}"))

    def cancel(self, batch_id: str) -> str:
        batches = self.client.messages.batches
        return str(self.call("cancelling the batch", batches.cancel, batch_id).processing_status)


_APIS: dict[str, type[BatchAPI]] = {"openai": OpenAIBatches, "anthropic": AnthropicBatches}
BATCH_PROVIDERS = frozenset(_APIS)


def batch_api(backend: Any, flag: str = "--batch") -> BatchAPI:
    """The batch API of `backend`'s provider; one without (local hf: models) is an error."""
    cls = _APIS.get(getattr(backend, "provider", ""))
    if cls is None or not isinstance(backend, SDKBackend):
        raise ConfigError(
            f"{flag}: {backend.spec} has no batch API (use openai:MODEL or anthropic:MODEL)"
        )
    return cls(backend)


@dataclass
class _Todo:
    request: ChatRequest
    key: str


class BatchRunner:
    """Runs requests through a provider's batch API; see the module docstring."""

    def __init__(
        self,
        backend: SDKBackend,
        *,
        cache: Cache,
        price: Price | None,
        options: BatchOptions,
        max_cost: float | None = None,
        progress: str | None = None,
        api: BatchAPI | None = None,
    ) -> None:
        self.backend = backend
        self.cache = cache
        self.options = options
        self.api = api or batch_api(backend)
        self.limits = options.limits or self.api.limits
        self.price = price.scaled(options.discount) if price is not None else None
        self.max_cost = max_cost
        if max_cost is not None and self.price is None:
            raise ConfigError(
                f"--max-cost needs a price for {backend.model!r}: add it to a prices file "
                "and pass --prices FILE (see llava_pose/data/prices.yaml for the shape)"
            )
        self.progress = progress
        self.stats = RunStats()
        self.submitted = 0  # requests sent this run
        self.batches_submitted = 0
        self.waiting_batches = 0
        self._bounds: dict[str, ChatRequest] = {}  # key -> request, for usage checks
        self._fresh: set[str] = set()  # keys collected by this process: paid now, not cached

    # -- public -----------------------------------------------------------------------------

    def run(
        self,
        requests: Sequence[ChatRequest],
        on_result: Callable[[ChatRequest, Result], None] | None = None,
    ) -> list[Result]:
        started = time.monotonic()
        self.stats.requests += len(requests)
        spec = self.backend.spec
        keys = [request_key(spec, r) for r in requests]
        for r, k in zip(requests, keys, strict=True):
            self._bounds[k] = r
        results: dict[str, Result] = {}
        bar = progress_bar(len(requests), self.progress, unit="req") if self.options.wait else None

        def finish(request: ChatRequest, result: Result) -> None:
            results[request.id] = result
            if on_result and result.kind != "pending":
                on_result(request, result)
            if bar is not None and result.kind != "pending":
                bar.update(1)

        open_todo = [_Todo(r, k) for r, k in zip(requests, keys, strict=True)]
        first, delay = True, self.options.poll_interval
        try:
            while True:
                if not first:
                    time.sleep(delay)
                    delay = min(MAX_POLL, delay * 1.5)
                self._collect()
                open_todo = self._settle(open_todo, finish, count_cached=first)
                first = False
                waiting = self._waiting_keys()
                submit = [t for t in open_todo if t.key not in waiting]
                if submit:
                    self._submit(submit, finish)
                    open_todo = [t for t in open_todo if t.request.id not in results]
                if not open_todo or not self.options.wait:
                    break
                if bar is not None:
                    bar.set_postfix(batches=self._open_count(), refresh=True)
        finally:
            if bar is not None:
                bar.close()
            self.stats.elapsed += time.monotonic() - started
        for t in open_todo:
            if t.request.id not in results:
                results[t.request.id] = Result(t.request.id, error="batch running", kind="pending")
        self.waiting_batches = self._open_count()
        return [results[r.id] for r in requests]

    def close(self) -> None:
        """Release the SDK client (`ModelOptions.open_runner` calls it on the way out)."""
        self.api.close()

    # -- steps ------------------------------------------------------------------------------

    def _running(self) -> list[dict[str, Any]]:
        """This backend's submissions not collected yet (preparing or open)."""
        spec = self.backend.spec
        return [
            s for s in self.cache.batch_submissions(("preparing", "open")) if s["backend"] == spec
        ]

    def _open_count(self) -> int:
        return len(self._running())

    def _waiting_keys(self) -> set[str]:
        return {
            key
            for sub in self._running()
            for key, _, _, _ in self.cache.batch_items(str(sub["sub_id"]))
        }

    def _collect(self) -> None:
        """Finish half-made submissions, then store every ended batch of this backend."""
        known = {str(s["batch_id"]) for s in self.cache.batch_submissions() if s["batch_id"]}
        for sub in self.cache.batch_submissions(("preparing",)):
            if sub["backend"] == self.backend.spec:
                self._resume(sub, known)
        for sub in self.cache.batch_submissions(("open",)):
            if sub["backend"] != self.backend.spec:
                continue
            status = self.api.status(str(sub["batch_id"]))
            self.cache.batch_update(str(sub["sub_id"]), status=status.status)
            if status.ended:
                self._store(sub, status.status)

    def _resume(self, sub: dict[str, Any], known: set[str]) -> None:
        """A submission a killed process left `preparing`: finish it from the step it reached.
        Its lines are rebuilt from this run's requests; one holding requests this call does not
        make (a later re-ask round) waits for the call that does, unless what it sent can be
        found without them."""
        sub_id = str(sub["sub_id"])
        keys = [key for key, _, _, _ in self.cache.batch_items(sub_id)]
        requests = [self._bounds.get(key) for key in keys]
        lines = (
            None
            if any(r is None for r in requests)
            else [self._line(k, r) for k, r in zip(keys, requests, strict=True) if r is not None]
        )
        batch_id = self.api.submit(
            sub, lines, lambda **f: self.cache.batch_update(sub_id, **f), known, recovering=True
        )
        if batch_id is None:
            return
        self.cache.batch_update(sub_id, batch_id=batch_id, state="open")
        known.add(batch_id)
        log.info("batch submission %s resumed: batch %s", sub_id, batch_id)

    def _store(self, sub: dict[str, Any], status: str) -> None:
        sub_id = str(sub["sub_id"])
        items = {key: rid for key, rid, _, _ in self.cache.batch_items(sub_id)}
        done: list[tuple[str, str, Completion, float]] = []
        outcomes: dict[str, tuple[str, str | None]] = {}
        for item in self.api.results(str(sub["batch_id"]), status):
            key = item.custom_id
            if key not in items or key in outcomes:
                continue
            if item.outcome == "ok" and item.completion is not None:
                completion = item.completion
                request = self._bounds.get(key)
                try:
                    if request is not None:
                        check_usage(request, completion, self.backend.provider, self.backend.model)
                except RetryableError as e:
                    outcomes[key] = ("failed", redact(str(e)))
                    continue
                cost = self.stats.add_call(completion, self.price)
                done.append((key, items[key], completion, cost))
                self._fresh.add(key)
                outcomes[key] = ("ok", None)
            else:
                outcomes[key] = (item.outcome, item.reason)
        why = {"expired": "expired", "cancelled": "canceled", "failed": "failed"}.get(
            status, "failed"
        )
        for key in items:
            if key not in outcomes:  # a batch that failed validation, or ended without a line
                outcomes[key] = (why, f"no result: the batch ended {status}")
        self.cache.batch_collect(sub_id, self.backend.spec, done, outcomes, status)
        bad = sum(1 for o, _ in outcomes.values() if o != "ok")
        log.info(
            "batch %s %s: %d results stored, %d to resubmit or fail",
            sub["batch_id"],
            status,
            len(done),
            bad,
        )

    def _settle(
        self,
        todo: list[_Todo],
        finish: Callable[[ChatRequest, Result], None],
        *,
        count_cached: bool,
    ) -> list[_Todo]:
        """Finish what the cache now holds and what has no tries left; return the rest."""
        hits = self.cache.get_many(t.key for t in todo)
        history = self.cache.batch_history(t.key for t in todo if t.key not in hits)
        rest = []
        for t in todo:
            hit = hits.get(t.key)
            if hit is not None:
                if count_cached and t.key not in self._fresh:
                    self.stats.cached += 1
                    if self.price:
                        self.stats.cached_cost += self.price.of(hit)
                finish(t.request, Result(t.request.id, completion=hit))
                continue
            tries = [
                (o, r)
                for state, o, r in history.get(t.key, [])
                if state == "collected" and o != "ok"
            ]
            if len(tries) > self.options.retries:
                self.stats.failed += 1
                outcome, reason = tries[-1]
                error = f"{outcome} in {len(tries)} batches: {reason}"
                label = error.split(":")[0][:60]
                self.stats.failures_by_reason[label] = (
                    self.stats.failures_by_reason.get(label, 0) + 1
                )
                finish(t.request, Result(t.request.id, error=error, kind="failed"))
                continue
            rest.append(t)
        return rest

    def _line(self, key: str, request: ChatRequest) -> bytes:
        return msgspec.json.encode(self.api.item(key, request)) + b"\n"

    def _submit(self, todo: list[_Todo], finish: Callable[[ChatRequest, Result], None]) -> None:
        unique: dict[str, ChatRequest] = {}
        for t in todo:
            unique.setdefault(t.key, t.request)
        keys = self._within_budget(list(unique), unique, todo, finish)
        lines = ((k, self._line(k, unique[k])) for k in keys)
        for group in split_batches(lines, self.limits):
            sub_id = uuid.uuid4().hex
            chunk = [line for _, line in group]
            self.cache.batch_intent(
                sub_id,
                self.backend.spec,
                _plain_url(getattr(self.backend, "base_url", None)),
                [(k, unique[k].id) for k, _ in group],
                sum(len(x) for x in chunk),
            )
            sub = {
                "sub_id": sub_id,
                "state": "preparing",
                "created": time.time(),
                "requests": len(group),
            }
            batch_id = self.api.submit(
                sub, chunk, lambda _s=sub_id, **f: self.cache.batch_update(_s, **f), set()
            )
            assert batch_id is not None  # a fresh submission with its lines is always sent
            self.cache.batch_update(sub_id, batch_id=batch_id, state="open")
            self.submitted += len(group)
            self.batches_submitted += 1
            log.info("submitted batch %s: %d requests", batch_id, len(group))

    def _within_budget(
        self,
        keys: list[str],
        unique: dict[str, ChatRequest],
        todo: list[_Todo],
        finish: Callable[[ChatRequest, Result], None],
    ) -> list[str]:
        """The prefix of `keys` whose worst case fits --max-cost (at batch prices) beside what
        this job already spent and what its running batches may still cost; the rest is
        reported as skipped by the budget."""
        if self.max_cost is None or self.price is None:
            return keys
        model = self.backend.model
        waiting = self._waiting_keys()
        running = sum(
            self.price.cost(*worst_tokens(r, model, self.backend.provider))
            for k, r in self._bounds.items()
            if k in waiting
        )
        room = self.max_cost - self.stats.cost - self.stats.cached_cost - running
        fit: list[str] = []
        for k in keys:
            worst = self.price.cost(*worst_tokens(unique[k], model, self.backend.provider))
            if worst > room:
                break
            room -= worst
            fit.append(k)
        if len(fit) < len(keys):
            left = set(keys[len(fit) :])
            self.stats.stop_reason = (
                f"budget reached (--max-cost {self.max_cost:g}, at batch prices): "
                f"{len(left)} requests not submitted"
            )
            log.warning("%s", self.stats.stop_reason)
            for t in todo:
                if t.key in left:
                    self.stats.skipped_budget += 1
                    finish(
                        t.request, Result(t.request.id, error=self.stats.stop_reason, kind="budget")
                    )
        return fit


def _plain_url(url: str | None) -> str | None:
    """The base URL to poll from later (`batch status`), unless it carries a password."""
    if not url or "@" in url.split("//", 1)[-1].split("/", 1)[0]:
        return None
    return url


def options_from(cfg: Any, discount: float) -> BatchOptions:
    """BatchOptions from a command's ModelOptions and the provider's batch discount."""
    return BatchOptions(
        wait=bool(cfg.wait),
        retries=int(cfg.batch_retries),
        poll_interval=float(cfg.poll_interval),
        discount=discount,
    )


# -- `llava-pose batch status|cancel` ------------------------------------------------------------


@dataclass
class BatchControlConfig:
    """Options of `llava-pose batch status` and `batch cancel`."""

    out: str = option(
        "",
        "output of the command that submitted: its folder (generate, bench build, bench "
        "judge) or its answers file (bench answer); the cache next to it is read",
        metavar="PATH",
    )
    cache: str | None = option(None, "the cache file itself, instead of --out", metavar="FILE")
    base_url: str | None = option(
        None, "API base URL to reach the provider at (default: the one the batches went to)"
    )
    api_key_env: str | None = option(
        None, "environment variable holding the API key (default: the provider's)"
    )
    local: bool = option(False, "status: show what the cache knows, without asking the provider")


def control_cache(cfg: BatchControlConfig) -> Path:
    """The cache file `cfg` names: --cache, or the one its command keeps beside --out."""
    if cfg.cache:
        path = Path(cfg.cache)
    elif not cfg.out:
        raise ConfigError(
            "--out: required (the folder or answers file a --batch run wrote), or --cache FILE"
        )
    else:
        out = Path(cfg.out)
        path = (
            out.with_name(out.stem + ".cache.sqlite")
            if out.suffix == ".jsonl"
            else out / "cache.sqlite"
        )
    if not path.is_file():
        raise ConfigError(f"{path}: no cache file here: {_why_no_cache(cfg)}")
    return path


def _why_no_cache(cfg: BatchControlConfig) -> str:
    """Why an output has no cache: made by the offline teacher, never run, or another path."""
    out = Path(cfg.out) if cfg.out else None
    stats = out / "stats.json" if out is not None and out.is_dir() else None
    if stats is not None and stats.is_file():
        import json

        try:
            info = json.loads(stats.read_text("utf-8"))
        except (OSError, ValueError):
            info = {}
        if str(info.get("teacher", "")).startswith("rules"):
            return "it was made by the offline teacher (rules), which calls no API: no batches"
        if info.get("mode") == "online":
            return "it ran online, without --batch: no batches"
    if out is not None and not out.exists():
        return f"{out} does not exist: give the --out the --batch command was run with"
    return "was the --batch command run with this --out (or give its --cache)?"


def _control_api(
    sub: dict[str, Any], cfg: BatchControlConfig, apis: dict[str, BatchAPI]
) -> BatchAPI:
    spec = str(sub["backend"])
    if spec not in apis:
        from . import make_backend

        key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
        if cfg.api_key_env and not key:
            raise ConfigError(
                f"--api-key-env {cfg.api_key_env}: that environment variable is not set"
            )
        backend = make_backend(
            spec,
            "judge",
            "batch",
            base_url=cfg.base_url or sub["base_url"],
            api_key=key,
            key_env=cfg.api_key_env,
        )
        apis[spec] = batch_api(backend)
    return apis[spec]


# What a submission's row says it is, in words a user acts on.
_PLAIN = {
    "preparing": "submitting (interrupted: rerun the command to finish it)",
    "abandoned": "never submitted",
    "collected": "collected",
}


def status_rows(cfg: BatchControlConfig) -> list[dict[str, Any]]:
    """Every submission in the cache, with the provider's live progress unless --local, and
    what it is, plainly: still running at the provider, finished there and waiting to be
    collected by a rerun of the command, or collected (its results in the cache)."""
    cache = Cache(control_cache(cfg))
    apis: dict[str, BatchAPI] = {}
    rows = []
    try:
        for sub in cache.batch_submissions():
            items = cache.batch_items(str(sub["sub_id"]))
            collected = sub["state"] == "collected"
            row = {
                "batch": sub["batch_id"] or "-",
                "model": sub["backend"],
                "requests": sub["requests"],
                "state": _PLAIN.get(str(sub["state"]), "running"),
                "provider": sub["status"] or "-",
                "done": "-",
                "ok": sum(1 for _, _, o, _ in items if o == "ok") if collected else "-",
                "failed": sum(1 for _, _, o, _ in items if o and o != "ok") if collected else "-",
                "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(float(sub["created"]))),
            }
            if sub["state"] == "open" and not cfg.local:
                live = _control_api(sub, cfg, apis).status(str(sub["batch_id"]))
                row["provider"], row["done"] = live.status, f"{live.done}/{live.total}"
                row["state"] = "ready to collect" if live.ended else "running"
                cache.batch_update(str(sub["sub_id"]), status=live.status)
            elif sub["state"] == "open":
                row["state"] = "open (--local: not asked)"
            rows.append(row)
    finally:
        for api in apis.values():
            api.close()
        cache.close()
    return rows


def status_summary(rows: list[dict[str, Any]]) -> str:
    """The line that says what to do. Pure."""
    running = sum(1 for r in rows if r["state"] == "running")
    ready = sum(1 for r in rows if r["state"] == "ready to collect")
    unknown = sum(1 for r in rows if r["state"].startswith("open"))
    interrupted = sum(1 for r in rows if r["state"].startswith("submitting"))
    said = []
    if running:
        said.append(f"{running} still running at the provider")
    if ready:
        said.append(f"{ready} finished there, not collected yet")
    if unknown:
        said.append(f"{unknown} open (run without --local to ask the provider)")
    if interrupted:
        said.append(f"{interrupted} interrupted while being submitted")
    if not said:
        return f"all {len(rows)} batches collected: their results are in the cache; nothing waits"
    what = "; ".join(said)
    return f"{what}: rerun the command that made them to collect (add --wait to wait for them)"


def run_status(cfg: BatchControlConfig) -> int:
    rows = status_rows(cfg)
    if not rows:
        print("no batches in this cache: the command ran online")
        return 0
    names = list(rows[0])
    widths = {n: max(len(n), *(len(str(r[n])) for r in rows)) for n in names}
    print("  ".join(n.ljust(widths[n]) for n in names))
    for r in rows:
        print("  ".join(str(r[n]).ljust(widths[n]) for n in names))
    print(status_summary(rows))
    return 0


def run_cancel(cfg: BatchControlConfig) -> int:
    """Cancel every open batch of the cache. What finished stays paid and is collected by the
    next run of the command; the cancelled requests count as one failed try each and are
    resubmitted by that run within --batch-retries."""
    path = control_cache(cfg)
    cache = Cache(path)
    hold(path, "batch cancel", what="--cache")
    apis: dict[str, BatchAPI] = {}
    n = 0
    try:
        for sub in cache.batch_submissions(("open",)):
            api = _control_api(sub, cfg, apis)
            live = api.status(str(sub["batch_id"]))
            if live.ended:  # ended but not collected yet: the next run of the command does
                print(f"{sub['batch_id']}: already {live.status}")
                continue
            status = api.cancel(str(sub["batch_id"]))
            cache.batch_update(str(sub["sub_id"]), status=status)
            print(f"{sub['batch_id']}: {status}")
            n += 1
    finally:
        for api in apis.values():
            api.close()
        cache.close()
    print(f"asked {n} open batches to cancel" if n else "no open batches")
    return 0
