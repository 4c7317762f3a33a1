"""Anthropic's messages API through the official SDK (Claude as teacher, answerer or judge)."""

from __future__ import annotations

import base64
import mimetypes
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputError, register_secret
from ..records import ChatRequest, Completion
from .base import Backend, PermanentError, RetryableError, classify_http_error, sdk_error_message

# The messages API requires max_tokens; used when a request sets none.
DEFAULT_MAX_TOKENS = 2048

_STOP = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "refusal": "content_filter",
}


def image_block(path: str | Path) -> dict[str, Any]:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(path, "image file not found") from None
    mime = mimetypes.guess_type(str(path))[0] or "image/jpeg"
    return {
        "type": "image",
        "source": {"type": "base64", "media_type": mime, "data": base64.b64encode(data).decode()},
    }


def build_params(
    request: ChatRequest, model: str, image_blocks: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Keyword arguments of `messages.create`.

    System messages become the `system` parameter; consecutive messages of one role become
    one message of several text blocks (what the API would do anyway, made explicit); images
    go first in the first user message. Anthropic has no seed parameter. The SDK (1.0+) no
    longer takes `temperature` as an argument, but the API still does: it goes in `extra_body`.
    """
    system = "\n\n".join(m.content for m in request.messages if m.role == "system")
    messages: list[dict[str, Any]] = []
    pending = list(image_blocks or [])
    for m in request.messages:
        if m.role == "system":
            continue
        blocks: list[dict[str, Any]] = []
        if m.role == "user" and pending:
            blocks, pending = pending, []
        blocks.append({"type": "text", "text": m.content})
        if messages and messages[-1]["role"] == m.role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": m.role, "content": blocks})
    params: dict[str, Any] = {
        "model": model,
        "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
        "messages": messages,
    }
    if system:
        params["system"] = system
    if request.temperature is not None:
        params["extra_body"] = {"temperature": request.temperature}
    return params


def parse_response(body: Any, model: str) -> Completion:
    data = body.model_dump() if hasattr(body, "model_dump") else body
    try:
        blocks = data["content"]
        text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
    except (KeyError, TypeError, AttributeError):
        raise RetryableError("malformed response: no content blocks") from None
    stop = data.get("stop_reason") or "end_turn"
    if stop == "refusal" and not text:
        raise PermanentError("the model refused to answer")
    usage = data.get("usage") or {}
    return Completion(
        text=text,
        finish_reason=_STOP.get(stop, str(stop)),
        input_tokens=int(usage.get("input_tokens") or 0),
        output_tokens=int(usage.get("output_tokens") or 0),
        model=str(data.get("model") or model),
    )


class AnthropicBackend(Backend):
    provider = "anthropic"
    options = ("base_url", "api_key", "timeout")

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
    ) -> None:
        super().__init__(model)
        import anthropic

        key = api_key or os.environ.get("ANTHROPIC_API_KEY")
        self.base_url = base_url or os.environ.get("ANTHROPIC_BASE_URL") or None
        if not key:
            raise ConfigError("anthropic: no API key: set ANTHROPIC_API_KEY")
        register_secret(key)
        self._anthropic = anthropic
        self._client_args = {
            "api_key": key,
            "base_url": self.base_url,
            "timeout": timeout,
            "max_retries": 0,
        }
        self._client: Any = None

    def describe(self) -> str:
        return f"{self.spec} at {self.base_url or 'api.anthropic.com'}"

    async def complete(self, request: ChatRequest) -> Completion:
        anthropic = self._anthropic
        blocks = [image_block(p) for p in request.images]
        try:
            if self._client is None:
                self._client = anthropic.AsyncAnthropic(**self._client_args)
            body = await self._client.messages.create(**build_params(request, self.model, blocks))
        except anthropic.APIStatusError as e:
            raise classify_http_error(
                e.status_code,
                sdk_error_message(e),
                e.response.headers,
                model=self.model,
                key_env="ANTHROPIC_API_KEY",
            ) from None
        except (anthropic.APITimeoutError, anthropic.APIConnectionError) as e:
            raise RetryableError(f"connection problem: {type(e).__name__}") from None
        except (anthropic.APIResponseValidationError, ValueError) as e:
            raise RetryableError(f"malformed response: {type(e).__name__}") from None
        if isinstance(body, str):
            raise RetryableError("malformed response: body is not JSON")
        return parse_response(body, self.model)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
