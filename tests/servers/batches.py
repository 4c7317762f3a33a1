"""What the loopback batch APIs share: stored files, batches and their items, the batch knobs.

Both providers' batch endpoints sit on the same server as their online endpoint, so an item is
answered by the same responder (or default echo) with the same validation, text and usage as
the online call with that body. A batch advances lazily: whenever a client retrieves, lists or
reads results, it is brought up to "now" (hold, latency, expiry and failure predicates), which
keeps the server free of background threads and the tests deterministic.

Outcomes are provider-neutral here (`succeeded`, `errored`, `expired`, `canceled`); each
provider module renders them in its own shapes (OpenAI output/error files, Anthropic results).
"""

from __future__ import annotations

import collections
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

Body = dict[str, Any]
Predicate = Callable[[Body], bool]

# Where `hang_at` can stop the server from answering (see README.md here).
HANG_POINTS = (
    "file_upload",  # OpenAI POST /files, before the file is stored
    "after_file_upload",  # the file is stored, the reply never sent
    "batch_create",  # before the batch is created
    "after_batch_create",  # the batch exists, the reply never sent
    "batch_retrieve",  # GET one batch
    "results",  # OpenAI GET /files/{id}/content, Anthropic GET .../results
)
OUTCOMES = ("succeeded", "errored", "expired", "canceled")
HANG_SECONDS = 600.0  # a hung request waits this long at most (or until the client leaves)


@dataclass
class BatchItem:
    """One request of a batch and, once decided, what became of it."""

    custom_id: str
    body: Body  # the chat/messages request body, as the online endpoint would get it
    key: str  # canonical JSON of `body`: the same key as `paid_counts()`
    line: int  # 1-based position in the submitted file / requests list
    outcome: str | None = None  # one of OUTCOMES; None while processing
    status: int | None = None  # HTTP status the item got (200 succeeded, 400 errored)
    payload: Any = None  # the reply JSON (chat.completion / Message) or the error JSON
    text: str | None = None  # reply text of a succeeded item
    usage: tuple[int, int] | None = None  # (input, output) tokens of a succeeded item
    finished: float | None = None  # time.time() when decided


@dataclass
class BatchRecord:
    """One batch as the server keeps it (live object; read it, do not change it)."""

    id: str
    provider: str
    created: float  # time.time()
    created_mono: float
    items: list[BatchItem]
    info: dict[str, Any]  # provider fields: input_file_id, endpoint, metadata...
    state: str = "in_progress"  # in_progress | canceling | ended
    released: bool = False
    cancel_at: float | None = None  # time.time() of the cancel request
    cancel_mono: float | None = None
    ended: float | None = None  # time.time()
    deleted: bool = False
    order: list[int] = field(default_factory=list)  # item positions in result order (at end)
    files: dict[str, str | None] = field(default_factory=dict)  # output/error file ids

    def counts(self) -> collections.Counter[str]:
        """Items per outcome ("processing" for those not decided yet)."""
        return collections.Counter(it.outcome or "processing" for it in self.items)

    @property
    def results(self) -> list[BatchItem]:
        """Decided items in the order the provider returns them (shuffled unless told not)."""
        return [self.items[i] for i in self.order]


@dataclass
class StoredFile:
    """An uploaded (OpenAI) file or a batch's output/error file."""

    id: str
    filename: str
    purpose: str
    data: bytes
    created: int
    lines: list[tuple[str, Body]] = field(default_factory=list)  # (custom_id, body) for "batch"
    deleted: bool = False


class Knob:
    """A server attribute read and written under the server's lock (changeable while running)."""

    def __init__(self, convert: Callable[[Any], Any] | None = None) -> None:
        self.convert = convert

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr = f"_knob_{name}"

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        with obj._lock:
            return getattr(obj, self.attr)

    def __set__(self, obj: Any, value: Any) -> None:
        value = self.convert(value) if self.convert is not None else value
        with obj._lock:
            setattr(obj, self.attr, value)


def _hang_points(value: Iterable[str] | str | None) -> frozenset[str]:
    points = frozenset([value] if isinstance(value, str) else value or ())
    unknown = sorted(points - set(HANG_POINTS))
    if unknown:
        raise ValueError(f"hang_at: unknown point(s) {unknown}: expected some of {HANG_POINTS}")
    return points


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def contains_predicate(text: str | None) -> Predicate | None:
    """For /_control and the command line: items whose canonical body contains `text`."""
    if text is None:
        return None
    import json

    return lambda body: text in json.dumps(body, sort_keys=True, ensure_ascii=False)


class BatchMixin:
    """Batch state and knobs of a `LoopbackServer`. The host provides `_lock`, `_changed` (a
    Condition on it), `_batch_item(body)` and `_log_item(batch, item)`."""

    provider = ""
    # The provider's documented limits per batch: (requests, bytes); the knobs lower them.
    batch_limits: tuple[int, int] = (0, 0)
    id_prefix = "batch_loopback"

    _lock: threading.Lock
    _changed: threading.Condition
    _knob_hang_at: frozenset[str]

    batch_hold = Knob()
    batch_latency = Knob(float)
    batch_expire_when = Knob()
    batch_fail_when = Knob()
    batch_shuffle = Knob(bool)
    batch_max_requests = Knob(_optional_int)
    batch_max_bytes = Knob(_optional_int)
    hang_at = Knob(_hang_points)

    def _init_batches(
        self,
        *,
        batch_hold: bool | Predicate = False,
        batch_latency: float = 0.0,
        batch_expire_when: Predicate | None = None,
        batch_fail_when: Predicate | None = None,
        batch_shuffle: bool = True,
        batch_max_requests: int | None = None,
        batch_max_bytes: int | None = None,
        hang_at: Iterable[str] | str | None = None,
    ) -> None:
        # Re-entrant: a responder or predicate may read knobs; never taken inside `_lock`.
        self._batch_lock = threading.RLock()
        self._batches: list[BatchRecord] = []
        self._files: dict[str, StoredFile] = {}
        self._ids = collections.Counter[str]()
        self._hung: collections.Counter[str] = collections.Counter()
        self.batch_hold = batch_hold
        self.batch_latency = batch_latency
        self.batch_expire_when = batch_expire_when
        self.batch_fail_when = batch_fail_when
        self.batch_shuffle = batch_shuffle
        self.batch_max_requests = batch_max_requests
        self.batch_max_bytes = batch_max_bytes
        self.hang_at = hang_at

    # -- what tests read and do ----------------------------------------------------------------

    @property
    def max_requests(self) -> int:
        """The request limit per batch in force (the knob, else the provider's)."""
        knob = self.batch_max_requests
        return self.batch_limits[0] if knob is None else knob

    @property
    def max_bytes(self) -> int:
        """The size limit per batch in force (the knob, else the provider's)."""
        knob = self.batch_max_bytes
        return self.batch_limits[1] if knob is None else knob

    @property
    def batches(self) -> list[BatchRecord]:
        """Every batch created so far (deleted ones too), oldest first. Not advanced: a batch
        moves on only when a client looks at it (or `advance_batches()`)."""
        with self._batch_lock:
            return list(self._batches)

    @property
    def files(self) -> list[StoredFile]:
        """Every stored file (uploads and batch outputs, deleted ones too), oldest first."""
        with self._batch_lock:
            return list(self._files.values())

    def advance_batches(self) -> None:
        """Bring every batch up to now, as a client's retrieve would."""
        with self._batch_lock:
            for b in self._batches:
                self._advance(b)

    def release_batches(self) -> int:
        """Let every batch held by `batch_hold` proceed (new batches are held again while
        `batch_hold` is on). Returns how many were still running."""
        with self._batch_lock:
            running = [b for b in self._batches if b.state != "ended"]
            for b in self._batches:
                b.released = True
            return len(running)

    def batch_submissions(self) -> collections.Counter[str]:
        """How many times each body (canonical JSON, as `paid_counts()`) was put in a batch."""
        with self._batch_lock:
            return collections.Counter(it.key for b in self._batches for it in b.items)

    def batch_completions(self) -> collections.Counter[str]:
        """Succeeded (billed) batch items per body: add `paid_counts()` for the whole bill."""
        with self._batch_lock:
            return collections.Counter(
                it.key for b in self._batches for it in b.items if it.outcome == "succeeded"
            )

    def hung_counts(self) -> collections.Counter[str]:
        """How many requests each `hang_at` point has held so far."""
        with self._lock:
            return collections.Counter(self._hung)

    def wait_hung(self, point: str, timeout: float = 10.0, count: int = 1) -> bool:
        """Block until `count` requests have hung at `point` (since start); False on timeout."""
        _hang_points(point)
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._hung[point] < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    # -- engine (called by the provider handlers) ----------------------------------------------

    def _should_hang(self, point: str) -> bool:
        with self._changed:
            if point not in self._knob_hang_at:  # the lock is held: not through the knob
                return False
            self._hung[point] += 1
            self._changed.notify_all()
        return True

    def _new_id(self, prefix: str) -> str:
        with self._batch_lock:
            self._ids[prefix] += 1
            return f"{prefix}{self._ids[prefix]:06d}"

    def _store_file(
        self, filename: str, purpose: str, data: bytes, lines: list[tuple[str, Body]] | None = None
    ) -> StoredFile:
        f = StoredFile(
            self._new_id("file-loopback"), filename, purpose, data, int(time.time()), lines or []
        )
        with self._batch_lock:
            self._files[f.id] = f
        return f

    def _file(self, file_id: str) -> StoredFile | None:
        with self._batch_lock:
            f = self._files.get(file_id)
            return None if f is None or f.deleted else f

    def _create_batch(
        self, requests: list[tuple[str, Body, str]], info: dict[str, Any]
    ) -> BatchRecord:
        """`requests`: (custom_id, body, key) in submission order."""
        items = [BatchItem(cid, body, key, i + 1) for i, (cid, body, key) in enumerate(requests)]
        b = BatchRecord(
            self._new_id(self.id_prefix),
            self.provider,
            time.time(),
            time.monotonic(),
            items,
            info,
        )
        with self._batch_lock:
            self._batches.append(b)
        return b

    def _batch(self, batch_id: str) -> BatchRecord | None:
        """The batch (advanced to now), or None if unknown or deleted."""
        with self._batch_lock:
            for b in self._batches:
                if b.id == batch_id and not b.deleted:
                    self._advance(b)
                    return b
        return None

    def _listed(self) -> list[BatchRecord]:
        """Live batches, newest first, advanced to now."""
        with self._batch_lock:
            live = [b for b in reversed(self._batches) if not b.deleted]
            for b in live:
                self._advance(b)
            return live

    def _cancel(self, b: BatchRecord) -> bool:
        """Start cancelling; False if the batch has already ended or is cancelling."""
        with self._batch_lock:
            self._advance(b)
            if b.state != "in_progress":
                return False
            b.state = "canceling"
            b.cancel_at, b.cancel_mono = time.time(), time.monotonic()
            return True

    def _advance(self, b: BatchRecord) -> None:
        with self._batch_lock:
            if b.state == "ended":
                return
            now = time.monotonic()
            latency = self.batch_latency
            if b.state == "canceling":
                if b.cancel_mono is not None and now >= b.cancel_mono + latency:
                    for it in b.items:
                        if it.outcome is None:
                            it.outcome, it.finished = "canceled", time.time()
                    self._finish(b)
                return
            if now < b.created_mono + latency:
                return
            hold = self.batch_hold
            if hold is True and not b.released:
                return
            for it in b.items:
                if it.outcome is not None:
                    continue
                if callable(hold) and not b.released and hold(it.body):
                    continue
                self._decide(b, it)
            if all(it.outcome is not None for it in b.items):
                self._finish(b)

    def _decide(self, b: BatchRecord, it: BatchItem) -> None:
        expire, fail = self.batch_expire_when, self.batch_fail_when
        if expire is not None and expire(it.body):
            it.outcome = "expired"
        elif fail is not None and fail(it.body):
            it.outcome, it.status = "errored", 400
            it.payload = self._item_error(
                "The loopback server failed this request (batch_fail_when)."
            )
        else:
            status, payload, text, usage = self._batch_item(it.body)
            it.status, it.payload = status, payload
            it.outcome = "succeeded" if status == 200 else "errored"
            if it.outcome == "succeeded":
                it.text, it.usage = text, usage
        it.finished = time.time()
        if it.outcome == "succeeded":
            self._log_item(b, it)

    def _finish(self, b: BatchRecord) -> None:
        order = list(range(len(b.items)))
        if self.batch_shuffle and len(order) > 1:
            random.Random(f"loopback:{b.id}").shuffle(order)
            if order == sorted(order):
                order = order[1:] + order[:1]
        b.order = order
        b.state, b.ended = "ended", time.time()
        self._on_batch_end(b)

    # -- provider / host hooks -------------------------------------------------------------------

    def _on_batch_end(self, b: BatchRecord) -> None:
        """OpenAI writes its output and error files here."""

    def _item_error(self, message: str) -> Any:
        raise NotImplementedError

    def _batch_item(self, body: Body) -> tuple[int, Any, str | None, tuple[int, int] | None]:
        raise NotImplementedError

    def _log_item(self, b: BatchRecord, it: BatchItem) -> None:
        raise NotImplementedError
