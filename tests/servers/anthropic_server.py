"""A loopback server speaking Anthropic's messages API (what the anthropic SDK expects).

with AnthropicServer(latency=0.05, api_key="sk-ant-test-SECRET-123456") as server:
    client = anthropic.Anthropic(base_url=server.url, api_key="sk-ant-test-SECRET-123456")

python -m tests.servers.anthropic_server --port 0 --latency 1   # prints the base URL
"""

from __future__ import annotations

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
}


class AnthropicServer(LoopbackServer):
    """POST /v1/messages, GET /v1/models (also without the /v1 prefix)."""

    provider = "anthropic"
    default_models = ("claude-sonnet-4-20250514", "claude-3-5-haiku-20241022")

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
        system = body.get("system") or ""
        if isinstance(system, list):
            system = "\n".join(b["text"] for b in system)
        total = count_tokens(system) if system else 0
        for m in body["messages"]:
            total += 3
            content = m["content"]
            if isinstance(content, str):
                total += count_tokens(content)
                continue
            for block in content:
                total += (
                    count_tokens(block["text"]) if block["type"] == "text" else self.image_tokens
                )
        return total

    def max_tokens(self, body: Body) -> int | None:
        return int(body["max_tokens"])

    def render_ok(self, rec: Recorded, text: str, finish: str, usage: tuple[int, int]) -> Any:
        return {
            "id": f"msg_loopback{rec.index:08d}",
            "type": "message",
            "role": "assistant",
            "model": rec.body["model"],
            "content": [{"type": "text", "text": text}],
            "stop_reason": _STOP.get(finish, finish),
            "stop_sequence": None,
            "usage": {
                "input_tokens": usage[0],
                "output_tokens": usage[1],
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
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


if __name__ == "__main__":
    serve_main(AnthropicServer)
