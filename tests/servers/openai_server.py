"""A loopback server speaking OpenAI's chat-completions API (what the openai SDK expects), with
the Files and Batches endpoints of its Batch API.

with OpenAIServer(latency=0.05, api_key="sk-test-SECRET-123456") as server:
    client = openai.OpenAI(base_url=server.url, api_key="sk-test-SECRET-123456")

python -m tests.servers.openai_server --port 0 --latency 1   # prints the base URL
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Any

from .batches import BatchItem, BatchRecord, StoredFile
from .core import (
    CACHE_STEP,
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
from .vision import image_size, openai_image_tokens

_ROLES = ("system", "developer", "user", "assistant", "tool")
# OpenAI rejects max_tokens and a non-default temperature for its reasoning models.
_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")

_ERRORS: dict[str, tuple[int, str, str | None, str]] = {
    # kind: (status, type, code, default message)
    "rate_limit": (
        429,
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests per min (RPM): Limit 500. Please try again later.",
    ),
    "insufficient_quota": (
        429,
        "insufficient_quota",
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details.",
    ),
    "server_error": (
        500,
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    "overloaded": (
        503,
        "server_error",
        None,
        "The engine is currently overloaded, please try again later.",
    ),
    "unauthorized": (
        401,
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided.",
    ),
    "context_too_long": (
        400,
        "invalid_request_error",
        "context_length_exceeded",
        "This model's maximum context length is 128000 tokens. However, your messages "
        "resulted in 131072 tokens. Please reduce the length of the messages.",
    ),
    "bad_request": (400, "invalid_request_error", None, "Invalid request."),
    "not_found": (404, "invalid_request_error", "unknown_url", "Unknown request URL."),
    "no_such": (404, "invalid_request_error", None, "No such object."),
    "conflict": (409, "invalid_request_error", None, "Conflict."),
}

# Batch API: the documented limits per batch (file size in decimal megabytes, the stricter
# reading), the endpoint this server runs, and the purposes /files accepts.
BATCH_LIMITS = (50_000, 200_000_000)
BATCH_ENDPOINT = "/v1/chat/completions"
_BATCH_ENDPOINTS = (
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
)
_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
_ITEM_ERRORS = {
    "expired": (
        "batch_expired",
        "This request could not be executed before the completion window expired.",
    ),
    "canceled": (
        "batch_cancelled",
        "This request was not executed because the batch was cancelled.",
    ),
}


def _mask(key: str) -> str:
    """How OpenAI quotes a rejected key: a few leading characters and the last four."""
    return key[:3] + "*" * max(0, len(key) - 7) + key[-4:] if len(key) > 8 else "***"


class OpenAIServer(LoopbackServer):
    """POST /v1/chat/completions, GET /v1/models (also without the /v1 prefix), and the Batch
    API: /v1/files (upload, list, retrieve, content, delete) and /v1/batches (create, list,
    retrieve, cancel)."""

    provider = "openai"
    default_models = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "o3-mini")
    batch_limits = BATCH_LIMITS
    id_prefix = "batch_loopback"
    api_routes = (
        ("POST", r"(?:/v1)?/files", "file_upload"),
        ("GET", r"(?:/v1)?/files", "file_list"),
        ("GET", r"(?:/v1)?/files/(?P<file_id>[^/]+)", "file_retrieve"),
        ("GET", r"(?:/v1)?/files/(?P<file_id>[^/]+)/content", "file_content"),
        ("DELETE", r"(?:/v1)?/files/(?P<file_id>[^/]+)", "file_delete"),
        ("POST", r"(?:/v1)?/batches", "batch_create"),
        ("GET", r"(?:/v1)?/batches", "batch_list"),
        ("GET", r"(?:/v1)?/batches/(?P<batch_id>[^/]+)", "batch_retrieve"),
        ("POST", r"(?:/v1)?/batches/(?P<batch_id>[^/]+)/cancel", "batch_cancel"),
    )

    @property
    def url(self) -> str:
        return f"{self.root}/v1"

    def route(self, method: str, path: str) -> str | None:
        path = path.removeprefix("/v1")
        if method == "POST" and path == "/chat/completions":
            return "create"
        if method == "GET" and path == "/models":
            return "models"
        return None

    def auth_ok(self, headers: dict[str, str], expected: str) -> bool:
        return headers.get("authorization") == f"Bearer {expected}"

    def validate(self, body: Body) -> None:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise ClientError("you must provide a model parameter", param="model")
        if body.get("stream"):
            raise ClientError("the loopback server does not stream", param="stream")
        if body.get("n", 1) != 1:
            raise ClientError("the loopback server answers n=1 only", param="n")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ClientError("'messages' must be a non-empty array", param="messages")
        for i, m in enumerate(messages):
            where = f"messages[{i}]"
            if not isinstance(m, dict) or m.get("role") not in _ROLES:
                raise ClientError(f"{where}: invalid role", param=f"{where}.role")
            content = m.get("content")
            if isinstance(content, str):
                continue
            if not isinstance(content, list) or not content:
                raise ClientError(
                    f"{where}.content: expected a string or an array of parts", param=where
                )
            for j, part in enumerate(content):
                self._check_part(part, f"{where}.content[{j}]")
        reasoning = model.split("/")[-1].startswith(_REASONING_PREFIXES)
        if reasoning and "max_tokens" in body:
            raise ClientError(
                "Unsupported parameter: 'max_tokens' is not supported with this model. "
                "Use 'max_completion_tokens' instead.",
                code="unsupported_parameter",
                param="max_tokens",
            )
        temperature = body.get("temperature")
        if temperature is not None:
            if reasoning and temperature != 1:
                raise ClientError(
                    "Unsupported value: 'temperature' does not support this value with this "
                    "model. Only the default (1) value is supported.",
                    code="unsupported_value",
                    param="temperature",
                )
            if not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
                raise ClientError(
                    "temperature: expected a number between 0 and 2", param="temperature"
                )
        for name in ("max_tokens", "max_completion_tokens"):
            value = body.get(name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ClientError(f"{name}: expected an integer >= 1", param=name)

    @staticmethod
    def _check_part(part: Any, where: str) -> None:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            return
        if kind == "image_url":
            url = (part.get("image_url") or {}).get("url")
            if not isinstance(url, str):
                raise ClientError(f"{where}.image_url.url: missing", param=where)
            if url.startswith(("http://", "https://")):
                return
            head, sep, data = url.partition(";base64,")
            if not sep or not head.startswith("data:image/"):
                raise ClientError(f"{where}: expected a data:image/...;base64, URL", param=where)
            check_base64_image(data, where)
            return
        raise ClientError(f"{where}: unsupported content part", param=where)

    def prompt_tokens(self, body: Body) -> int:
        total = 3
        for m in body["messages"]:
            total += self._message_tokens(m, body["model"])
        return total

    def _message_tokens(self, m: Any, model: str) -> int:
        total = 3 + count_tokens(m["role"])
        content = m.get("content")
        if isinstance(content, str):
            return total + count_tokens(content)
        for part in content:
            if part["type"] == "text":
                total += count_tokens(part["text"])
            elif isinstance(self.image_tokens, int):
                total += self.image_tokens
            else:
                image = part["image_url"]
                width, height = image_size(image["url"].partition(";base64,")[2])
                detail = image.get("detail", "auto")
                total += openai_image_tokens(model, width, height, detail)
        return total

    def cache_prefixes(self, body: Body) -> list[tuple[str, int]]:
        """OpenAI caches any prompt's leading tokens from 1,024 on, in steps of 128: here,
        leading whole messages (what a request shares with another), rounded down to 128."""
        out, digest, tokens = [], hashlib.sha256(str(body["model"]).encode()), 3
        for m in body["messages"]:
            digest.update(json.dumps(m, sort_keys=True).encode())
            tokens += self._message_tokens(m, body["model"])
            out.append((digest.hexdigest(), tokens - tokens % CACHE_STEP))
        return out[:-1]  # the last message is the request's own

    def max_tokens(self, body: Body) -> int | None:
        value = body.get("max_completion_tokens", body.get("max_tokens"))
        return value if isinstance(value, int) else None

    def render_ok(
        self,
        rec: Recorded,
        text: str,
        finish: str,
        usage: tuple[int, int],
        cache: tuple[int, int] = (0, 0),
    ) -> Any:
        prompt, completion = usage
        return {
            "id": f"chatcmpl-loopback{rec.index:08d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": rec.body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": text,
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": finish,
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion
                if isinstance(prompt, int) and isinstance(completion, int)
                else None,
                "prompt_tokens_details": {"cached_tokens": cache[0], "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
            },
            "service_tier": "default",
            "system_fingerprint": "fp_loopback",
        }

    def render_no_choices(self, rec: Recorded) -> Any:
        return {
            "id": f"chatcmpl-loopback{rec.index:08d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": rec.body.get("model"),
        }

    def render_error(
        self, kind: str, message: str | None, code: str | None = None, param: str | None = None
    ) -> tuple[int, Any]:
        status, etype, default_code, default_message = _ERRORS[kind]
        error = {
            "message": message or default_message,
            "type": etype,
            "param": param,
            "code": code or default_code,
        }
        return status, {"error": error}

    def unauthorized_message(self, headers: dict[str, str]) -> str:
        received = headers.get("authorization", "").removeprefix("Bearer ").strip()
        shown = f": {_mask(received)}" if received else ""
        return (
            f"Incorrect API key provided{shown}. You can find your API key at "
            "https://platform.openai.com/account/api-keys."
        )

    def render_models(self) -> Any:
        return {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "loopback"}
                for m in self.models
            ],
        }

    # -- Batch API ---------------------------------------------------------------------------

    def handle_api(self, call: ApiCall) -> Reply | None:
        handler = getattr(self, f"_api_{call.name}")
        return handler(call)  # type: ignore[no-any-return]

    def _api_file_upload(self, call: ApiCall) -> Reply | None:
        form = parse_multipart(call.headers.get("content-type", ""), call.raw)
        purpose = form.get("purpose", (None, b""))[1].decode("utf-8", "replace")
        if "file" not in form:
            raise ClientError("Missing required parameter: 'file'.", param="file")
        filename, data = form["file"]
        filename = filename or "upload"
        call.rec.body = {"purpose": purpose, "filename": filename, "bytes": len(data)}
        if purpose not in _PURPOSES:
            raise ClientError(
                f"'{purpose}' is not one of {list(_PURPOSES)} - 'purpose'", param="purpose"
            )
        if call.hang("file_upload"):
            return None
        lines = self._check_batch_file(filename, data) if purpose == "batch" else None
        stored = self._store_file(filename, purpose, data, lines)
        if call.hang("after_file_upload"):
            return None
        return Reply(200, self._render_file(stored))

    def _check_batch_file(self, filename: str, data: bytes) -> list[tuple[str, Body]]:
        """Validate a batch input file as OpenAI does; its (custom_id, body) lines."""
        if not filename.endswith(".jsonl"):
            raise ClientError("Invalid file format for Batch API. Must be .jsonl", param="file")
        if len(data) > self.max_bytes:
            raise ClientError("File is too large.", param="file")
        try:
            rows = data.decode("utf-8").splitlines()
        except UnicodeDecodeError:
            raise ClientError("The batch input file is not UTF-8 text.", param="file") from None
        if not rows:
            raise ClientError("The batch input file is empty.", param="file")
        self._check_count(len(rows))
        seen: dict[str, int] = {}
        lines: list[tuple[str, Body]] = []
        for k, row in enumerate(rows, 1):
            where = f"Line {k}"
            try:
                obj = json.loads(row)
            except ValueError:
                raise ClientError(f"{where}: not a JSON object.", param="file") from None
            if not isinstance(obj, dict):
                raise ClientError(f"{where}: not a JSON object.", param="file")
            cid = obj.get("custom_id")
            if not isinstance(cid, str) or not cid:
                raise ClientError(
                    f"{where}: 'custom_id' must be a non-empty string.", param="custom_id"
                )
            if cid in seen:
                raise ClientError(
                    f"{where}: duplicate custom_id {cid!r} (first on line {seen[cid]}); "
                    "custom_id must be unique in a batch.",
                    code="duplicate_custom_id",
                    param="custom_id",
                )
            seen[cid] = k
            if obj.get("method") != "POST":
                raise ClientError(f"{where}: 'method' must be 'POST'.", param="method")
            if obj.get("url") != BATCH_ENDPOINT:
                raise ClientError(
                    f"{where}: 'url' must be '{BATCH_ENDPOINT}' (the loopback server runs chat "
                    "completion batches only).",
                    param="url",
                )
            body = obj.get("body")
            if not isinstance(body, dict):
                raise ClientError(f"{where}: 'body' must be a JSON object.", param="body")
            try:
                self.validate(body)
            except ClientError as e:
                raise ClientError(
                    f"{where}: body: {e}",
                    code=e.code,
                    param=f"body.{e.param}" if e.param else "body",
                ) from None
            lines.append((cid, body))
        return lines

    def _check_count(self, n: int) -> None:
        if n > self.max_requests:
            raise ClientError(
                f"The batch input file has {n} requests; a batch may hold at most "
                f"{self.max_requests}.",
                param="file",
            )

    def _api_file_list(self, call: ApiCall) -> Reply:
        purpose = call.query.get("purpose")
        files = [f for f in self.files if not f.deleted and purpose in (None, f.purpose)]
        if call.query.get("order", "desc") == "desc":
            files.reverse()
        limit = _limit(call.query, 10_000, 10_000)
        return Reply(200, _cursor_page([self._render_file(f) for f in files], call, limit))

    def _stored(self, call: ApiCall) -> StoredFile:
        f = self._file(call.params["file_id"])
        if f is None:
            raise ApiError("no_such", f"No such File object: {call.params['file_id']}", param="id")
        return f

    def _api_file_retrieve(self, call: ApiCall) -> Reply:
        return Reply(200, self._render_file(self._stored(call)))

    def _api_file_content(self, call: ApiCall) -> Reply | None:
        if call.hang("results"):
            return None
        return Reply(200, raw=self._stored(call).data, content_type="application/octet-stream")

    def _api_file_delete(self, call: ApiCall) -> Reply:
        f = self._stored(call)
        f.deleted = True
        return Reply(200, {"id": f.id, "object": "file", "deleted": True})

    def _api_batch_create(self, call: ApiCall) -> Reply | None:
        body = call.json()
        for name in ("input_file_id", "endpoint", "completion_window"):
            if not isinstance(body.get(name), str):
                raise ClientError(
                    f"Missing required parameter: '{name}'.",
                    code="missing_required_parameter",
                    param=name,
                )
        endpoint = body["endpoint"]
        if endpoint not in _BATCH_ENDPOINTS:
            raise ClientError(
                f"Invalid value: '{endpoint}'. Supported values are: {list(_BATCH_ENDPOINTS)}.",
                code="invalid_value",
                param="endpoint",
            )
        if endpoint != BATCH_ENDPOINT:
            raise ClientError(
                f"The loopback server runs '{BATCH_ENDPOINT}' batches only.", param="endpoint"
            )
        if body["completion_window"] != "24h":
            raise ClientError(
                f"Invalid value: '{body['completion_window']}'. Supported values are: '24h'.",
                code="invalid_value",
                param="completion_window",
            )
        metadata = body.get("metadata")
        _check_metadata(metadata)
        f = self._file(body["input_file_id"])
        if f is None:
            raise ClientError(
                f"Cannot find file {body['input_file_id']}, or project proj_loopback does not "
                "have access to it.",
                param="input_file_id",
            )
        if f.purpose != "batch":
            raise ClientError(
                f"File {f.id} has purpose '{f.purpose}'; a batch needs a file uploaded with "
                "purpose 'batch'.",
                param="input_file_id",
            )
        if len(f.data) > self.max_bytes:
            raise ClientError("File is too large.", param="input_file_id")
        self._check_count(len(f.lines))
        if call.hang("batch_create"):
            return None
        info = {
            "input_file_id": f.id,
            "endpoint": endpoint,
            "completion_window": "24h",
            "metadata": metadata,
        }
        b = self._create_batch([(cid, body, canonical(body)) for cid, body in f.lines], info)
        if call.hang("after_batch_create"):
            return None
        return Reply(200, self._render_batch(b, validating=True))

    def _found(self, call: ApiCall) -> BatchRecord:
        b = self._batch(call.params["batch_id"])
        if b is None:
            raise ApiError("no_such", f"No batch found with id '{call.params['batch_id']}'.")
        return b

    def _api_batch_retrieve(self, call: ApiCall) -> Reply | None:
        if call.hang("batch_retrieve"):
            return None
        return Reply(200, self._render_batch(self._found(call)))

    def _api_batch_list(self, call: ApiCall) -> Reply:
        limit = _limit(call.query, 20, 100)
        data = [self._render_batch(b) for b in self._listed()]
        return Reply(200, _cursor_page(data, call, limit))

    def _api_batch_cancel(self, call: ApiCall) -> Reply:
        b = self._found(call)
        if not self._cancel(b) and b.state == "ended":
            status = self._render_batch(b)["status"]
            raise ApiError(
                "conflict", f"Cannot cancel a batch with status '{status}'.", param="batch_id"
            )
        return Reply(200, self._render_batch(b))

    def _on_batch_end(self, b: BatchRecord) -> None:
        """Write the output file (succeeded items) and the error file (the rest), each in the
        shuffled result order; a file only when it has lines, as OpenAI does."""
        out: list[str] = []
        err: list[str] = []
        for it in b.results:
            line = json.dumps(self._result_line(b, it))
            (out if it.outcome == "succeeded" else err).append(line)
        for kind, rows in (("output", out), ("error", err)):
            if rows:
                data = ("\n".join(rows) + "\n").encode()
                stored = self._store_file(f"{b.id}_{kind}.jsonl", "batch_output", data)
                b.files[kind] = stored.id
            else:
                b.files[kind] = None

    @staticmethod
    def _result_line(b: BatchRecord, it: BatchItem) -> dict[str, Any]:
        line_id = f"batch_req_{b.id.removeprefix('batch_')}_{it.line:06d}"
        if it.outcome in _ITEM_ERRORS:
            code, message = _ITEM_ERRORS[it.outcome]
            error = {"code": code, "message": message}
            return {"id": line_id, "custom_id": it.custom_id, "response": None, "error": error}
        response = {
            "status_code": it.status,
            "request_id": f"req_loopback_{b.id}_{it.line:06d}",
            "body": it.payload,
        }
        return {"id": line_id, "custom_id": it.custom_id, "response": response, "error": None}

    @staticmethod
    def _render_file(f: StoredFile) -> dict[str, Any]:
        return {
            "id": f.id,
            "object": "file",
            "bytes": len(f.data),
            "created_at": f.created,
            "filename": f.filename,
            "purpose": f.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }

    def _render_batch(self, b: BatchRecord, *, validating: bool = False) -> dict[str, Any]:
        counts = b.counts()
        ended = int(b.ended) if b.ended is not None else None
        if validating:
            status = "validating"
        elif b.state == "in_progress":
            status = "in_progress"
        elif b.state == "canceling":
            status = "cancelling"
        elif b.cancel_at is not None:
            status = "cancelled"
        elif counts["expired"]:
            status = "expired"
        else:
            status = "completed"
        succeeded = [it.usage for it in b.items if it.usage is not None]
        tokens_in = sum(u[0] for u in succeeded)
        tokens_out = sum(u[1] for u in succeeded)
        created = int(b.created)
        return {
            "id": b.id,
            "object": "batch",
            "endpoint": b.info["endpoint"],
            "model": b.items[0].body.get("model") if b.items else None,
            "errors": None,
            "input_file_id": b.info["input_file_id"],
            "completion_window": b.info["completion_window"],
            "status": status,
            "output_file_id": b.files.get("output"),
            "error_file_id": b.files.get("error"),
            "created_at": created,
            "in_progress_at": None if validating else created,
            "expires_at": created + 24 * 3600,
            "finalizing_at": ended,
            "completed_at": ended if status == "completed" else None,
            "failed_at": None,
            "expired_at": ended if status == "expired" else None,
            "cancelling_at": int(b.cancel_at) if b.cancel_at is not None else None,
            "cancelled_at": ended if status == "cancelled" else None,
            "request_counts": {
                "total": len(b.items),
                "completed": counts["succeeded"],
                "failed": counts["errored"] + counts["expired"] + counts["canceled"],
            },
            "usage": {
                "input_tokens": tokens_in,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": tokens_out,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": tokens_in + tokens_out,
            },
            "metadata": b.info["metadata"],
        }


def parse_multipart(content_type: str, raw: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Fields of a multipart/form-data body: name -> (filename or None, content)."""
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.startswith("multipart/form-data") or m is None:
        raise ClientError("Expected a multipart/form-data body with a file and a purpose.")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in raw.split(b"--" + m.group(1).encode())[1:]:
        if part.startswith(b"--"):
            break
        head, sep, content = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        disposition = next(
            (
                line
                for line in head.decode("utf-8", "replace").split("\r\n")
                if line.lower().startswith("content-disposition:")
            ),
            "",
        )
        name = re.search(r'\bname="([^"]*)"', disposition)
        if not sep or name is None:
            continue
        filename = re.search(r'\bfilename="([^"]*)"', disposition)
        fields[name.group(1)] = (
            filename.group(1) if filename else None,
            content.removesuffix(b"\r\n"),
        )
    return fields


def _limit(query: dict[str, str], default: int, most: int) -> int:
    try:
        limit = int(query.get("limit", default))
    except ValueError:
        limit = -1
    if not 1 <= limit <= most:
        raise ClientError(f"limit: expected an integer from 1 to {most}.", param="limit")
    return limit


def _cursor_page(data: list[dict[str, Any]], call: ApiCall, limit: int) -> dict[str, Any]:
    """OpenAI's list shape: the `limit` objects after the `after` cursor, and `has_more`."""
    after = call.query.get("after")
    start = 0
    if after is not None:
        ids = [d["id"] for d in data]
        start = ids.index(after) + 1 if after in ids else len(ids)
    page = data[start : start + limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": start + limit < len(data),
    }


def _check_metadata(metadata: Any) -> None:
    if metadata is None:
        return
    ok = (
        isinstance(metadata, dict)
        and len(metadata) <= 16
        and all(
            isinstance(k, str) and len(k) <= 64 and isinstance(v, str) and len(v) <= 512
            for k, v in metadata.items()
        )
    )
    if not ok:
        raise ClientError(
            "metadata: at most 16 string pairs, keys up to 64 and values up to 512 characters.",
            param="metadata",
        )


if __name__ == "__main__":
    serve_main(OpenAIServer)
