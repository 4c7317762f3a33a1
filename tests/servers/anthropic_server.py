"""A loopback server speaking Anthropic's messages API (what the anthropic SDK expects), with
its Message Batches endpoints.

with AnthropicServer(latency=0.05, api_key="sk-ant-test-SECRET-123456") as server:
    client = anthropic.Anthropic(base_url=server.url, api_key="sk-ant-test-SECRET-123456")

python -m tests.servers.anthropic_server --port 0 --latency 1   # prints the base URL
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from typing import Any

from .batches import BatchItem, BatchRecord
from .core import (
    ApiCall,
    ApiError,
    Body,
    ClientError,
    LoopbackServer,
    Recorded,
    Reply,
    canonical,
    check_base64_image,
    count_tokens,
    serve_main,
)
from .vision import anthropic_image_tokens, image_size

_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
# Finish reasons in OpenAI's words (what the knob takes) -> Anthropic's stop_reason.
_STOP = {"stop": "end_turn", "length": "max_tokens", "content_filter": "refusal"}

_ERRORS: dict[str, tuple[int, str, str]] = {
    # kind: (status, error type, default message)
    "rate_limit": (
        429,
        "rate_limit_error",
        "This request would exceed the rate limit for your organization of 50 requests per minute.",
    ),
    # Anthropic has no 429 for an empty account: it answers 400 with this text.
    "insufficient_quota": (
        400,
        "invalid_request_error",
        "Your credit balance is too low to access the Anthropic API. Please go to Plans & "
        "Billing to upgrade or purchase credits.",
    ),
    "server_error": (500, "api_error", "Internal server error"),
    "overloaded": (529, "overloaded_error", "Overloaded"),
    "unauthorized": (401, "authentication_error", "invalid x-api-key"),
    "context_too_long": (
        400,
        "invalid_request_error",
        "prompt is too long: 210000 tokens > 200000 maximum",
    ),
    "bad_request": (400, "invalid_request_error", "Invalid request."),
    "not_found": (404, "not_found_error", "Not found"),
    "no_such": (404, "not_found_error", "Not found"),
    "request_too_large": (
        413,
        "request_too_large",
        "Request exceeds the maximum allowed number of bytes.",
    ),
}

# Message Batches: the documented limits per batch (size in decimal megabytes, the stricter
# reading) and the custom_id rule.
BATCH_LIMITS = (100_000, 256_000_000)
_CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_BATCHES = r"(?:/v1)?/messages/batches"


class AnthropicServer(LoopbackServer):
    """POST /v1/messages, GET /v1/models (also without the /v1 prefix), and Message Batches:
    /v1/messages/batches (create, list, retrieve, cancel, results, delete)."""

    provider = "anthropic"
    default_models = ("claude-sonnet-4-20250514", "claude-3-5-haiku-20241022")
    batch_limits = BATCH_LIMITS
    id_prefix = "msgbatch_loopback"
    api_routes = (
        ("POST", _BATCHES, "batch_create"),
        ("GET", _BATCHES, "batch_list"),
        ("GET", _BATCHES + r"/(?P<batch_id>[^/]+)", "batch_retrieve"),
        ("DELETE", _BATCHES + r"/(?P<batch_id>[^/]+)", "batch_delete"),
        ("POST", _BATCHES + r"/(?P<batch_id>[^/]+)/cancel", "batch_cancel"),
        ("GET", _BATCHES + r"/(?P<batch_id>[^/]+)/results", "results"),
    )

    def route(self, method: str, path: str) -> str | None:
        path = path.removeprefix("/v1")
        if method == "POST" and path == "/messages":
            return "create"
        if method == "GET" and path == "/models":
            return "models"
        return None

    def auth_ok(self, headers: dict[str, str], expected: str) -> bool:
        return (
            headers.get("x-api-key") == expected
            or headers.get("authorization") == f"Bearer {expected}"
        )

    def validate(self, body: Body) -> None:
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise ClientError("model: Field required")
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            raise ClientError("max_tokens: Field required")
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise ClientError("max_tokens: must be an integer >= 1")
        if body.get("stream"):
            raise ClientError("the loopback server does not stream")
        temperature = body.get("temperature")
        if temperature is not None and (
            not isinstance(temperature, (int, float)) or not 0 <= temperature <= 1
        ):
            raise ClientError("temperature: range: 0..1")
        system = body.get("system")
        if (
            system is not None
            and not isinstance(system, str)
            and (
                not isinstance(system, list)
                or any(not isinstance(b, dict) or b.get("type") != "text" for b in system)
            )
        ):
            raise ClientError("system: expected a string or a list of text blocks")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ClientError("messages: at least one message is required")
        for i, m in enumerate(messages):
            where = f"messages.{i}"
            if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
                raise ClientError(f"{where}.role: Input should be 'user' or 'assistant'")
            content = m.get("content")
            if isinstance(content, str):
                continue
            if not isinstance(content, list) or not content:
                raise ClientError(f"{where}.content: expected a string or a list of blocks")
            for j, block in enumerate(content):
                self._check_block(block, f"{where}.content.{j}")
        marks = [b for b, _, marked in self._blocks(body) if marked]
        for b in marks:
            control = b["cache_control"]
            if (
                not isinstance(control, dict)
                or control.get("type") != "ephemeral"
                or (set(control) - {"type", "ttl"})
            ):
                raise ClientError("cache_control: expected {'type': 'ephemeral'}")
        if len(marks) > 4:
            raise ClientError(
                f"A maximum of 4 blocks with cache_control may be provided. Found {len(marks)}."
            )

    @staticmethod
    def _check_block(block: Any, where: str) -> None:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            return
        if kind == "image":
            source = block.get("source") or {}
            if source.get("type") != "base64" or source.get("media_type") not in _MEDIA_TYPES:
                raise ClientError(
                    f"{where}.source: expected base64 data of {', '.join(_MEDIA_TYPES)}"
                )
            check_base64_image(str(source.get("data", "")), where)
            return
        raise ClientError(f"{where}: unsupported block type {kind!r}")

    def prompt_tokens(self, body: Body) -> int:
        return sum(n for _, n, _ in self._blocks(body))

    def _blocks(self, body: Body) -> list[tuple[Any, int, bool]]:
        """(block, tokens, marked with cache_control) of the prompt in order: the system's
        blocks, then each message's (3 tokens a message go with its first block)."""
        out: list[tuple[Any, int, bool]] = []
        system = body.get("system") or ""
        blocks = system if isinstance(system, list) else [{"type": "text", "text": system}]
        for b in blocks:
            if b.get("text"):
                out.append((b, count_tokens(b["text"]), "cache_control" in b))
        for m in body["messages"]:
            content = m["content"]
            blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
            for k, b in enumerate(blocks):
                n = 3 if k == 0 else 0
                if b["type"] == "text":
                    n += count_tokens(b["text"])
                elif isinstance(self.image_tokens, int):
                    n += self.image_tokens
                else:
                    n += anthropic_image_tokens(*image_size(str(b["source"]["data"])))
                out.append(({"role": m["role"], **b}, n, "cache_control" in b))
        return out

    def cache_prefixes(self, body: Body) -> list[tuple[str, int]]:
        """Anthropic caches what cache_control marks: the prompt up to each marked block."""
        out, digest, tokens = [], hashlib.sha256(str(body["model"]).encode()), 0
        for block, n, marked in self._blocks(body):
            digest.update(json.dumps(block, sort_keys=True).encode())
            tokens += n
            if marked:
                out.append((digest.hexdigest(), tokens))
        return out

    writes_cache = True

    def max_tokens(self, body: Body) -> int | None:
        return int(body["max_tokens"])

    def render_ok(
        self,
        rec: Recorded,
        text: str,
        finish: str,
        usage: tuple[int, int],
        cache: tuple[int, int] = (0, 0),
    ) -> Any:
        prompt = usage[0] - sum(cache) if isinstance(usage[0], int) else usage[0]
        return {
            "id": f"msg_loopback{rec.index:08d}",
            "type": "message",
            "role": "assistant",
            "model": rec.body["model"],
            "content": [{"type": "text", "text": text}],
            "stop_reason": _STOP.get(finish, finish),
            "stop_sequence": None,
            "usage": {
                "input_tokens": prompt,
                "output_tokens": usage[1],
                "cache_creation_input_tokens": cache[1],
                "cache_read_input_tokens": cache[0],
            },
        }

    def render_no_choices(self, rec: Recorded) -> Any:
        return {"id": f"msg_loopback{rec.index:08d}", "type": "message", "role": "assistant"}

    def render_error(
        self, kind: str, message: str | None, code: str | None = None, param: str | None = None
    ) -> tuple[int, Any]:
        status, etype, default_message = _ERRORS[kind]
        return status, {
            "type": "error",
            "error": {"type": etype, "message": message or default_message},
            "request_id": "req_loopback",
        }

    def context_error(self, prompt: int, limit: int) -> ClientError:
        return ClientError(f"prompt is too long: {prompt} tokens > {limit} maximum")

    def render_models(self) -> Any:
        data = [
            {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
            for m in self.models
        ]
        return {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }

    # -- Message Batches ---------------------------------------------------------------------

    def handle_api(self, call: ApiCall) -> Reply | None:
        handler = getattr(self, f"_api_{call.name}")
        return handler(call)  # type: ignore[no-any-return]

    def _api_batch_create(self, call: ApiCall) -> Reply | None:
        if len(call.raw) > self.max_bytes:
            raise ApiError(
                "request_too_large",
                f"Request exceeds the maximum allowed number of bytes ({self.max_bytes}) for a "
                "message batch.",
            )
        body = call.json()
        requests = body.get("requests")
        if not isinstance(requests, list):
            raise ClientError("requests: Field required")
        if not requests:
            raise ClientError("requests: List should have at least 1 item after validation, not 0")
        if len(requests) > self.max_requests:
            raise ClientError(
                f"requests: List should have at most {self.max_requests} items after "
                f"validation, not {len(requests)}"
            )
        seen: dict[str, int] = {}
        for i, r in enumerate(requests):
            where = f"requests.{i}"
            if not isinstance(r, dict):
                raise ClientError(f"{where}: Input should be a valid dictionary")
            cid = r.get("custom_id")
            if not isinstance(cid, str) or not _CUSTOM_ID.fullmatch(cid):
                raise ClientError(
                    f"{where}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
                )
            if cid in seen:
                raise ClientError(
                    f"{where}.custom_id: duplicate custom_id {cid!r} (also requests.{seen[cid]}); "
                    "each custom_id must be unique within a batch"
                )
            seen[cid] = i
            params = r.get("params")
            if not isinstance(params, dict):
                raise ClientError(f"{where}.params: Field required")
            try:
                self.validate(params)
            except ClientError as e:
                raise ClientError(f"{where}.params.{e}") from None
        if call.hang("batch_create"):
            return None
        b = self._create_batch(
            [(r["custom_id"], r["params"], canonical(r["params"])) for r in requests], {}
        )
        if call.hang("after_batch_create"):
            return None
        return Reply(200, self._render_batch(b))

    def _found(self, call: ApiCall) -> BatchRecord:
        b = self._batch(call.params["batch_id"])
        if b is None:
            raise ApiError("no_such", f"No message batch with id '{call.params['batch_id']}'.")
        return b

    def _api_batch_retrieve(self, call: ApiCall) -> Reply | None:
        if call.hang("batch_retrieve"):
            return None
        return Reply(200, self._render_batch(self._found(call)))

    def _api_batch_list(self, call: ApiCall) -> Reply:
        try:
            limit = int(call.query.get("limit", 20))
        except ValueError:
            limit = -1
        if not 1 <= limit <= 1000:
            raise ClientError("limit: Input should be between 1 and 1000")
        live = self._listed()
        ids = [b.id for b in live]
        after, before = call.query.get("after_id"), call.query.get("before_id")
        if before is not None:
            end = ids.index(before) if before in ids else 0
            start = max(0, end - limit)
            has_more = start > 0
        else:
            start = ids.index(after) + 1 if after is not None and after in ids else 0
            if after is not None and after not in ids:
                start = len(ids)
            end = start + limit
            has_more = end < len(ids)
        page = [self._render_batch(b) for b in live[start:end]]
        return Reply(
            200,
            {
                "data": page,
                "has_more": has_more,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
            },
        )

    def _api_batch_cancel(self, call: ApiCall) -> Reply:
        b = self._found(call)
        if not self._cancel(b) and b.state == "ended":
            raise ClientError(f"Message batch {b.id} has already ended; it cannot be canceled.")
        return Reply(200, self._render_batch(b))

    def _api_batch_delete(self, call: ApiCall) -> Reply:
        b = self._found(call)
        if b.state != "ended":
            raise ClientError(
                f"Message batch {b.id} is still processing: cancel it and wait for it to end "
                "before deleting it."
            )
        b.deleted = True
        return Reply(200, {"id": b.id, "type": "message_batch_deleted"})

    def _api_results(self, call: ApiCall) -> Reply | None:
        if call.hang("results"):
            return None
        b = self._found(call)
        if b.state != "ended":
            raise ClientError(
                f"Message batch {b.id} has not ended yet: results are available once its "
                "processing_status is 'ended'."
            )
        rows = [json.dumps({"custom_id": it.custom_id, "result": _result(it)}) for it in b.results]
        data = ("\n".join(rows) + "\n").encode()
        return Reply(200, raw=data, content_type="application/binary")

    def _render_batch(self, b: BatchRecord) -> dict[str, Any]:
        counts = b.counts()
        ended = b.state == "ended"
        return {
            "id": b.id,
            "type": "message_batch",
            "processing_status": b.state,
            "request_counts": {
                "processing": counts["processing"],
                "succeeded": counts["succeeded"],
                "errored": counts["errored"],
                "canceled": counts["canceled"],
                "expired": counts["expired"],
            },
            "ended_at": _iso(b.ended),
            "created_at": _iso(b.created),
            "expires_at": _iso(b.created + 24 * 3600),
            "archived_at": None,
            "cancel_initiated_at": _iso(b.cancel_at),
            "results_url": f"{self.root}/v1/messages/batches/{b.id}/results" if ended else None,
        }


def _result(it: BatchItem) -> dict[str, Any]:
    if it.outcome == "succeeded":
        return {"type": "succeeded", "message": it.payload}
    if it.outcome == "errored":
        return {"type": "errored", "error": it.payload}
    return {"type": it.outcome}


def _iso(t: float | None) -> str | None:
    """RFC 3339 in UTC, as Anthropic writes its timestamps."""
    if t is None:
        return None
    stamp = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    return stamp.isoformat().replace("+00:00", "Z")


if __name__ == "__main__":
    serve_main(AnthropicServer)
