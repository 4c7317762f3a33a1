"""A loopback server speaking OpenAI's chat-completions API (what the openai SDK expects).

with OpenAIServer(latency=0.05, api_key="sk-test-SECRET-123456") as server:
    client = openai.OpenAI(base_url=server.url, api_key="sk-test-SECRET-123456")

python -m tests.servers.openai_server --port 0 --latency 1   # prints the base URL
"""

from __future__ import annotations

import time
from typing import Any

from .core import (
    Body,
    ClientError,
    LoopbackServer,
    Recorded,
    check_base64_image,
    count_tokens,
    serve_main,
)

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
}


def _mask(key: str) -> str:
    """How OpenAI quotes a rejected key: a few leading characters and the last four."""
    return key[:3] + "*" * max(0, len(key) - 7) + key[-4:] if len(key) > 8 else "***"


class OpenAIServer(LoopbackServer):
    """POST /v1/chat/completions, GET /v1/models (also without the /v1 prefix)."""

    provider = "openai"
    default_models = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "o3-mini")

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
            total += 3 + count_tokens(m["role"])
            content = m.get("content")
            if isinstance(content, str):
                total += count_tokens(content)
                continue
            for part in content:
                if part["type"] == "text":
                    total += count_tokens(part["text"])
                else:
                    total += self.image_tokens
        return total

    def max_tokens(self, body: Body) -> int | None:
        value = body.get("max_completion_tokens", body.get("max_tokens"))
        return value if isinstance(value, int) else None

    def render_ok(self, rec: Recorded, text: str, finish: str, usage: tuple[int, int]) -> Any:
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


if __name__ == "__main__":
    serve_main(OpenAIServer)
