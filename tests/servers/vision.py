"""How the providers bill an image, as their documentation states it, for the loopback servers.

Written from the documents, apart from `llava_pose.llm.image_tokens`, so the tool is tested
against the rule and not against itself: OpenAI's "Calculating costs" (images-vision guide)
and Anthropic's "Evaluate image size" (vision guide). The documents' own worked examples are
checked in tests/servers' tests (1024 x 1024 on gpt-4o: 765; 2048 x 4096: 1105; 1800 x 2400
on a patch model at 1x: 1452; 1000 x 1000 on Claude: 1334).
"""

from __future__ import annotations

import base64
import io
import math

from PIL import Image

# OpenAI tile models: (base tokens, tokens per 512 px tile); detail low costs the base alone.
TILES = {
    "gpt-5": (70, 140),
    "gpt-4o": (85, 170),
    "gpt-4.1": (85, 170),
    "gpt-4.5": (85, 170),
    "gpt-4o-mini": (2833, 5667),
    "o1": (75, 150),
    "o3": (75, 150),
}
# OpenAI patch models: 32 px patches (at most 1536) times a multiplier; detail changes nothing.
PATCHES = {"gpt-5-mini": 1.62, "gpt-5-nano": 2.46, "gpt-4.1-mini": 1.62, "gpt-4.1-nano": 2.46,
           "o4-mini": 1.72}  # fmt: skip


def image_size(data: str) -> tuple[int, int]:
    """(width, height) of a base64 image, as the provider reads it."""
    with Image.open(io.BytesIO(base64.b64decode(data))) as im:
        return im.size


def _family(model: str, table: dict) -> str | None:
    """The documented family a model name belongs to: the longest listed name it starts with,
    followed by nothing or a dated snapshot ("gpt-4o-mini-2024-07-18")."""
    name = model.lower()
    found = [
        k
        for k in table
        if name == k or (name.startswith(k + "-") and name[len(k) + 1 : len(k) + 2].isdigit())
    ]
    return max(found, key=len) if found else None


def openai_image_tokens(model: str, width: int, height: int, detail: str = "auto") -> int:
    tile_family, patch_family = _family(model, TILES), _family(model, PATCHES)
    if patch_family and (not tile_family or len(patch_family) > len(tile_family)):
        patches = math.ceil(width / 32) * math.ceil(height / 32)
        if patches > 1536:
            shrink = math.sqrt(1536 * 32**2 / (width * height))
            w_patches, h_patches = width * shrink / 32, height * shrink / 32
            shrink *= min(math.floor(w_patches) / w_patches, math.floor(h_patches) / h_patches)
            patches = math.ceil(int(width * shrink) / 32) * math.ceil(int(height * shrink) / 32)
        return math.ceil(min(patches, 1536) * PATCHES[patch_family])
    base, tile = TILES[tile_family or "gpt-4o"]
    if detail == "low":
        return base
    if max(width, height) > 2048:
        f = 2048 / max(width, height)
        width, height = width * f, height * f
    if min(width, height) > 768:
        f = 768 / min(width, height)
        width, height = width * f, height * f
    return base + tile * math.ceil(width / 512) * math.ceil(height / 512)


def anthropic_image_tokens(width: int, height: int) -> int:
    """Long edge to at most 1568 px and at most ~1600 tokens, aspect kept; then w * h / 750."""
    f = min(1.0, 1568 / max(width, height), math.sqrt(1600 * 750 / (width * height)))
    return math.ceil(width * f * height * f / 750)
