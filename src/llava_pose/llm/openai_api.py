"""OpenAI chat completions through the official SDK: OpenAI, Azure's v1 endpoint, and any
OpenAI-compatible server (vLLM, SGLang, Ollama, llama.cpp) via ``--base-url`` or
``OPENAI_BASE_URL``."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from ..images import upload_bytes
from ..records import ChatRequest, Completion
from .base import PermanentError, RetryableError, SDKBackend, UsageError, usage_count

# Reasoning models take max_completion_tokens and no temperature.
_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")


def image_data_url(path: str | Path, max_side: int | None = None) -> str:
    """Read an image into a base64 data URL, the form every OpenAI-compatible server accepts
    (only a checked image, scaled down to `max_side`: `images.upload_bytes`)."""
    data, info = upload_bytes(path, max_side)
    return f"data:{info.media_type};base64,{base64.b64encode(data).decode('ascii')}"


def build_messages(
    request: ChatRequest, image_urls: list[str] | None = None
) -> list[dict[str, Any]]:
    """Chat messages for the API; images go with the first user message after the shared
    prefix (`ChatRequest.prefix`: system, few-shot examples), before its text, with the
    request's `detail` when it sets one."""
    out: list[dict[str, Any]] = []
    pending = list(image_urls or [])
    detail = {"detail": request.image_detail} if request.image_detail else {}
    for i, m in enumerate(request.messages):
        if m.role == "user" and pending and i >= request.prefix:
            parts: list[dict[str, Any]] = [
                {"type": "image_url", "image_url": {"url": u, **detail}} for u in pending
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
    if not isinstance(usage, dict):
        raise UsageError(f"malformed response: usage is {usage!r}, not an object")
    details = usage.get("prompt_tokens_details") or {}
    if not isinstance(details, dict):
        raise UsageError(f"malformed response: prompt_tokens_details is {details!r}")
    return Completion(
        text=text,
        finish_reason=str(finish),
        input_tokens=usage_count(usage, "prompt_tokens"),
        output_tokens=usage_count(usage, "completion_tokens"),
        model=str(data.get("model") or model),
        # part of prompt_tokens, billed at the cached rate (automatic from 1,024 tokens)
        cache_read_tokens=usage_count(details, "cached_tokens"),
    )


class OpenAIBackend(SDKBackend):
    provider = "openai"
    options = (*SDKBackend.options, "organization")
    sdk = "openai"
    client_class = "AsyncOpenAI"
    key_var = "OPENAI_API_KEY"
    url_var = "OPENAI_BASE_URL"
    default_host = "api.openai.com"
    keyless_with_base_url = True

    def request_body(self, request: ChatRequest, image_urls: list[str] | None = None) -> Any:
        if image_urls is None:
            image_urls = [image_data_url(p, request.image_max_side) for p in request.images]
        return build_params(request, self.model, image_urls)

    async def _call(self, client: Any, request: ChatRequest) -> Any:
        # The SDK's low-level post sends our plain JSON as is. `chat.completions.create`
        # would first walk it against the SDK's TypedDicts (~5 ms of CPU per paper-format
        # prompt), which with 64 calls in flight delays each wave of sends by ~0.3 s. The reply
        # comes back as plain JSON too: the SDK's models would coerce a malformed usage.
        return await client.post(
            "/chat/completions", body=self.request_body(request), cast_to=object
        )

    def _parse(self, body: Any) -> Completion:
        return parse_response(body, self.model)
