"""What a request may cost, and whether a reported usage can be true: the rules the online
runner and the batch runner share (both import them from here, not from each other)."""

from __future__ import annotations

from ..images import scaled, size_of
from ..records import ChatRequest, Completion
from .base import UsageError
from .image_tokens import image_tokens
from .pricing import count_message_tokens

# Completion budget assumed for requests that set no max_tokens, when reserving budget/TPM.
DEFAULT_MAX_OUTPUT = 1024
# Reported prompt tokens above this many times the prompt's characters (plus its images'
# documented tokens and some slack) are not a tokenizer difference but a broken or lying
# server.
PROMPT_SANITY_FACTOR = 4
PROMPT_SANITY_SLACK = 4096
# A provider's count of an image may differ from the documented rule by its rounding and
# undocumented framing tokens (tens); a reply far beyond is not an image.
IMAGE_SANITY_FACTOR = 1.25
IMAGE_SANITY_SLACK = 256


def request_image_tokens(request: ChatRequest, provider: str, model: str) -> int:
    """Prompt tokens of the request's images by `provider`'s documented rule for `model`, at
    the size they are sent (`ChatRequest.image_max_side`) and detail."""
    total = 0
    for path in request.images:
        width, height = scaled(*size_of(path), request.image_max_side)
        total += image_tokens(provider, model, width, height, request.image_detail or "auto")
    return total


def prompt_tokens(request: ChatRequest, model: str, provider: str) -> int:
    """Offline prompt tokens of a request: its text (o200k_base) and its images."""
    text = count_message_tokens(request.messages, model)
    return text + (request_image_tokens(request, provider, model) if request.images else 0)


def worst_case(prompt: float, request: ChatRequest) -> tuple[int, int]:
    """(prompt, completion) tokens a request can cost at most, from its offline prompt count:
    that count with margin, and its max tokens."""
    return int(prompt * 1.05) + 8, request.max_tokens or DEFAULT_MAX_OUTPUT


def worst_tokens(request: ChatRequest, model: str, provider: str) -> tuple[int, int]:
    """`worst_case` of a request, counted now."""
    return worst_case(prompt_tokens(request, model, provider), request)


def check_usage(request: ChatRequest, completion: Completion, provider: str, model: str) -> None:
    """Raise UsageError when the reported usage cannot be true of this request."""
    limit = request.max_tokens
    if limit is not None and completion.output_tokens > limit:
        raise UsageError(
            f"completion_tokens {completion.output_tokens} above the request's max tokens {limit}"
        )
    cached = completion.cache_read_tokens + completion.cache_write_tokens
    if cached > completion.input_tokens:
        raise UsageError(
            f"cached prompt tokens {cached} above the prompt's {completion.input_tokens}"
        )
    # No tokenizer makes more tokens than bytes; chars bound that within a factor of 4.
    chars = sum(len(m.content) + 16 for m in request.messages)
    images = request_image_tokens(request, provider, model)
    ceiling = PROMPT_SANITY_FACTOR * chars + PROMPT_SANITY_SLACK
    ceiling += int(IMAGE_SANITY_FACTOR * images) + IMAGE_SANITY_SLACK * len(request.images)
    if completion.input_tokens > ceiling:
        shown = f" and {len(request.images)} image(s) of ~{images:,} tokens" if images else ""
        raise UsageError(
            f"prompt_tokens {completion.input_tokens} for a prompt of {chars} characters{shown}"
        )
