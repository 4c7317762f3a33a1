"""Anthropic's messages API through the official SDK (Claude as teacher, answerer or judge)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from ..images import upload_bytes
from ..records import ChatRequest, Completion
from .base import PermanentError, RetryableError, SDKBackend, UsageError, usage_count

# Anthropic's prompt-cache mark (5 minutes, refreshed by every hit).
EPHEMERAL = {"type": "ephemeral"}
# The messages API requires max_tokens; used when a request sets none.
DEFAULT_MAX_TOKENS = 2048

_STOP = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "refusal": "content_filter",
}


def image_block(path: str | Path, max_side: int | None = None) -> dict[str, Any]:
    """An image as a base64 block (only a checked image, scaled down to `max_side`:
    `images.upload_bytes`)."""
    data, info = upload_bytes(path, max_side)
    encoded = base64.b64encode(data).decode()
    return {
        "type": "image",
        "source": {"type": "base64", "media_type": info.media_type, "data": encoded},
    }


def build_params(
    request: ChatRequest, model: str, image_blocks: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Keyword arguments of `messages.create`.

    System messages become the `system` parameter; consecutive messages of one role become
    one message of several text blocks (what the API would do anyway, made explicit); images
    go first in the first user message after the shared prefix (system, few-shot examples).
    Anthropic has no seed parameter. The body is posted as is (see `AnthropicBackend._call`),
    so `temperature` goes in it directly.

    The prefix every request of its kind shares (`ChatRequest.prefix`: system prompt, few-shot
    examples) ends with a ``cache_control`` mark, so Anthropic caches it: later requests read
    it at a tenth of the input price (a prefix under the model's minimum is not cached, and
    the mark costs nothing).
    """
    system = "\n\n".join(m.content for m in request.messages if m.role == "system")
    messages: list[dict[str, Any]] = []
    pending = list(image_blocks or [])
    mark: dict[str, Any] | None = None  # the block that ends the shared prefix
    for i, m in enumerate(request.messages):
        if m.role == "system":
            continue
        blocks: list[dict[str, Any]] = []
        if m.role == "user" and pending and i >= request.prefix:
            blocks, pending = pending, []
        blocks.append({"type": "text", "text": m.content})
        if i == request.prefix - 1:
            mark = blocks[-1]
        if messages and messages[-1]["role"] == m.role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": m.role, "content": blocks})
    params: dict[str, Any] = {
        "model": model,
        "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
        "messages": messages,
    }
    if mark is not None:
        mark["cache_control"] = dict(EPHEMERAL)
    if system and request.prefix and mark is None:  # the prefix is the system prompt alone
        params["system"] = [{"type": "text", "text": system, "cache_control": dict(EPHEMERAL)}]
    elif system:
        params["system"] = system
    if request.temperature is not None:
        params["temperature"] = request.temperature
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
    if not isinstance(usage, dict):
        raise UsageError(f"malformed response: usage is {usage!r}, not an object")
    # Anthropic's input_tokens leaves out what the cache served or took: the prompt is the sum.
    read = usage_count(usage, "cache_read_input_tokens")
    written = usage_count(usage, "cache_creation_input_tokens")
    return Completion(
        text=text,
        finish_reason=_STOP.get(stop, str(stop)),
        input_tokens=usage_count(usage, "input_tokens") + read + written,
        output_tokens=usage_count(usage, "output_tokens"),
        model=str(data.get("model") or model),
        cache_read_tokens=read,
        cache_write_tokens=written,
    )


class AnthropicBackend(SDKBackend):
    provider = "anthropic"
    sdk = "anthropic"
    client_class = "AsyncAnthropic"
    key_var = "ANTHROPIC_API_KEY"
    url_var = "ANTHROPIC_BASE_URL"
    default_host = "api.anthropic.com"
    key_header = "x-api-key"

    def request_body(self, request: ChatRequest, image_urls: list[str] | None = None) -> Any:
        if image_urls is None:
            blocks = [image_block(p, request.image_max_side) for p in request.images]
        else:
            blocks = [
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/jpeg", "data": u},
                }
                for u in image_urls
            ]
        return build_params(request, self.model, blocks)

    async def _call(self, client: Any, request: ChatRequest) -> Any:
        # Posted as plain JSON and read back as plain JSON: the SDK's models would coerce a
        # malformed usage (true -> 1) before it could be checked.
        return await client.post("/v1/messages", body=self.request_body(request), cast_to=object)

    def _parse(self, body: Any) -> Completion:
        return parse_response(body, self.model)
