"""OpenAI chat completions through the official SDK: OpenAI, Azure's v1 endpoint, and any
OpenAI-compatible server (vLLM, SGLang, Ollama, llama.cpp) via ``--base-url`` or
``OPENAI_BASE_URL``."""

from __future__ import annotations

import base64
import mimetypes
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputError, register_secret
from ..records import ChatRequest, Completion
from .base import Backend, PermanentError, RetryableError, classify_http_error, sdk_error_message

# Reasoning models take max_completion_tokens and no temperature.
_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")


def image_data_url(path: str | Path) -> str:
    """Read an image into a base64 data URL, the form every OpenAI-compatible server accepts."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(path, "image file not found") from None
    mime = mimetypes.guess_type(str(path))[0] or "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def build_messages(
    request: ChatRequest, image_urls: list[str] | None = None
) -> list[dict[str, Any]]:
    """Chat messages for the API; images go with the first user message, before its text."""
    out: list[dict[str, Any]] = []
    pending = list(image_urls or [])
    for m in request.messages:
        if m.role == "user" and pending:
            parts: list[dict[str, Any]] = [
                {"type": "image_url", "image_url": {"url": u}} for u in pending
            ]
            parts.append({"type": "text", "text": m.content})
            out.append({"role": "user", "content": parts})
            pending = []
        else:
            out.append({"role": m.role, "content": m.content})
    return out


def build_params(
    request: ChatRequest, model: str, image_urls: list[str] | None = None
) -> dict[str, Any]:
    """Keyword arguments of `chat.completions.create` for this request."""
    params: dict[str, Any] = {"model": model, "messages": build_messages(request, image_urls)}
    reasoning = model.split("/")[-1].startswith(_REASONING_PREFIXES)
    if request.max_tokens is not None:
        params["max_completion_tokens" if reasoning else "max_tokens"] = request.max_tokens
    if request.temperature is not None and not reasoning:
        params["temperature"] = request.temperature
    if request.seed is not None:
        params["seed"] = request.seed
    return params


def parse_response(body: Any, model: str) -> Completion:
    """Turn a chat-completion body (SDK object or dict) into a Completion; malformed -> retry."""
    data = body.model_dump() if hasattr(body, "model_dump") else body
    try:
        choice = data["choices"][0]
        text = choice["message"]["content"]
        finish = choice.get("finish_reason") or "stop"
    except (KeyError, IndexError, TypeError):
        raise RetryableError("malformed response: no choices[0].message.content") from None
    if text is None:
        if finish == "content_filter":
            raise PermanentError("refused by the provider's content filter")
        text = ""
    if not isinstance(text, str):
        raise RetryableError("malformed response: content is not text")
    usage = data.get("usage") or {}
    return Completion(
        text=text,
        finish_reason=str(finish),
        input_tokens=int(usage.get("prompt_tokens") or 0),
        output_tokens=int(usage.get("completion_tokens") or 0),
        model=str(data.get("model") or model),
    )


class OpenAIBackend(Backend):
    provider = "openai"
    options = ("base_url", "api_key", "timeout", "organization")

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        organization: str | None = None,
    ) -> None:
        super().__init__(model)
        import openai

        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            if not self.base_url:
                raise ConfigError(
                    "openai: no API key: set OPENAI_API_KEY (or pass --base-url for a local "
                    "OpenAI-compatible server, which needs none)"
                )
            key = "not-needed"  # local servers ignore it, the SDK insists on one
        register_secret(key)
        self._openai = openai
        # The runner owns retries and timeouts; the SDK must not retry behind its back.
        self._client_args = {
            "api_key": key,
            "base_url": self.base_url,
            "timeout": timeout,
            "max_retries": 0,
            "organization": organization,
        }
        self._client: Any = None  # made per event loop, closed by the runner at the end of a run

    def describe(self) -> str:
        return f"{self.spec} at {self.base_url or 'api.openai.com'}"

    async def complete(self, request: ChatRequest) -> Completion:
        openai = self._openai
        urls = [image_data_url(p) for p in request.images]
        try:
            if self._client is None:
                self._client = openai.AsyncOpenAI(**self._client_args)
            # The SDK's low-level post sends our plain JSON as is. `chat.completions.create`
            # would first walk it against the SDK's TypedDicts (~5 ms of CPU per paper-format
            # prompt), which with 64 calls in flight delays each wave of sends by ~0.3 s.
            body = await self._client.post(
                "/chat/completions",
                body=build_params(request, self.model, urls),
                cast_to=openai.types.chat.ChatCompletion,
            )
        except openai.APIStatusError as e:
            raise classify_http_error(
                e.status_code,
                sdk_error_message(e),
                e.response.headers,
                model=self.model,
                key_env="OPENAI_API_KEY",
            ) from None
        except (openai.APITimeoutError, openai.APIConnectionError) as e:
            raise RetryableError(f"connection problem: {type(e).__name__}") from None
        except (openai.APIResponseValidationError, ValueError) as e:
            raise RetryableError(f"malformed response: {type(e).__name__}") from None
        if isinstance(body, str):  # some SDK versions hand back non-JSON bodies as text
            raise RetryableError("malformed response: body is not JSON")
        return parse_response(body, self.model)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
