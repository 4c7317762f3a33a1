"""Prompt tokens an image costs, by the providers' documented rules (``data/image_tokens.yaml``).

Billing is per model family, and the families differ by orders of magnitude: ``gpt-4o-mini``
bills an image at 2,833 + 5,667 tokens a 512 px tile (the same dollars as ``gpt-4o``'s 85 +
170 at 1/17 the price), so a 640 x 480 COCO photo reports 14,167 prompt tokens, where a flat
allowance of ~1,600 called that reply impossible and retried a paid call seven times. The
estimate, the worst case reserved under ``--max-cost`` and the check of a reported usage all
count images here. Pure functions of the image's size.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

from ..errors import ConfigError
from .pricing import _data_yaml, model_key

Detail = Literal["auto", "low", "high"]
DETAILS: tuple[str, ...] = ("auto", "low", "high")


def check_detail(flag: str, provider: str, detail: str | None) -> None:
    """A `detail` is OpenAI's alone: given for another provider's model, one line naming the
    command's flag."""
    if detail and provider != "openai":
        raise ConfigError(f"{flag}: {provider}: models do not take it (openai: only)")


@dataclass(frozen=True)
class Rule:
    """How one model bills an image."""

    kind: Literal["tiles", "patches", "area"]
    base: int = 0  # tiles: tokens every image costs (all of a `low` one)
    tile: int = 0  # tiles: tokens a 512 px square
    multiplier: float = 1.0  # patches: tokens a 32 px patch
    max_patches: int = 1536
    max_long_edge: int = 1568  # area
    max_tokens: int = 1600  # area
    pixels_per_token: float = 750.0  # area


@functools.cache
def _table() -> dict[str, Any]:
    text = resources.files("llava_pose").joinpath("data/image_tokens.yaml").read_text("utf-8")
    return _data_yaml(text)


@functools.cache
def rule_for(provider: str, model: str) -> Rule:
    """The rule `model` of `provider` bills images by; a model not listed takes the
    provider's documented default (OpenAI-compatible servers: gpt-4o's)."""
    data = _table()
    if provider == "anthropic":
        a = data["anthropic"]
        return Rule(
            "area",
            max_long_edge=int(a["max_long_edge"]),
            max_tokens=int(a["max_tokens"]),
            pixels_per_token=float(a["pixels_per_token"]),
        )
    o = data["openai"]
    tiles, patches = o["tiles"], o["patches"]["multipliers"]
    best = model_key(model, [*tiles, *patches])
    if best in patches:
        return Rule(
            "patches",
            multiplier=float(patches[best]),
            max_patches=int(o["patches"]["max_patches"]),
        )
    entry = tiles[best] if best is not None else tiles[o["default"]]
    return Rule("tiles", base=int(entry["base"]), tile=int(entry["tile"]))


def tile_tokens(width: float, height: float, rule: Rule, detail: str = "auto") -> int:
    """OpenAI's tile rule: fit in 2048 x 2048, shortest side down to 768, 512 px tiles."""
    if detail == "low":
        return rule.base
    scale = min(1.0, 2048 / max(width, height))
    width, height = width * scale, height * scale
    scale = min(1.0, 768 / min(width, height))
    width, height = width * scale, height * scale
    return rule.base + rule.tile * math.ceil(width / 512) * math.ceil(height / 512)


def patch_tokens(width: float, height: float, rule: Rule) -> int:
    """OpenAI's patch rule: 32 px patches, scaled down past `max_patches`, times the model's
    multiplier."""
    patches = math.ceil(width / 32) * math.ceil(height / 32)
    if patches > rule.max_patches:
        shrink = math.sqrt(rule.max_patches * 32 * 32 / (width * height))
        fit_w, fit_h = width * shrink / 32, height * shrink / 32
        shrink *= min(math.floor(fit_w) / fit_w, math.floor(fit_h) / fit_h)
        patches = math.ceil(int(width * shrink) / 32) * math.ceil(int(height * shrink) / 32)
    return math.ceil(min(patches, rule.max_patches) * rule.multiplier)


def area_tokens(width: float, height: float, rule: Rule) -> int:
    """Anthropic's rule: scaled down to the long-edge and token limits, then area / 750."""
    scale = min(
        1.0,
        rule.max_long_edge / max(width, height),
        math.sqrt(rule.max_tokens * rule.pixels_per_token / (width * height)),
    )
    return math.ceil(width * scale * height * scale / rule.pixels_per_token)


def image_tokens(provider: str, model: str, width: int, height: int, detail: str = "auto") -> int:
    """Prompt tokens one `width` x `height` image costs `model` of `provider` (``auto``
    detail counted as ``high``: the provider's choice, and the larger)."""
    if width <= 0 or height <= 0:
        return 0
    rule = rule_for(provider, model)
    if rule.kind == "tiles":
        return tile_tokens(width, height, rule, detail)
    if rule.kind == "patches":
        return patch_tokens(width, height, rule)
    return area_tokens(width, height, rule)
