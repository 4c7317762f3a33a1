"""Images as the models see them: RGB, and padded to a square for the families trained that
way (LLaVA-1.5's ``pad``: `expand2square` with the image processor's mean colour)."""

from __future__ import annotations

from typing import Any


def expand2square(image: Any, background: tuple[int, int, int]) -> Any:
    """Pad a PIL image to a square, centred, as LLaVA's expand2square."""
    from PIL import Image

    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    result = Image.new(image.mode, (side, side), background)
    result.paste(image, ((side - width) // 2, (side - height) // 2))
    return result


def mean_colour(image_processor: Any) -> tuple[int, int, int]:
    """The padding colour LLaVA uses: the processor's mean, in 0-255 (CLIP: 122, 116, 104)."""
    mean = getattr(image_processor, "image_mean", None) or (0.5, 0.5, 0.5)
    r, g, b = (int(x * 255) for x in mean)
    return (r, g, b)


def load_image(path: str, pad_colour: tuple[int, int, int] | None) -> Any:
    """Open as RGB; pad to a square with `pad_colour` unless None."""
    from PIL import Image

    with Image.open(path) as im:
        image = im.convert("RGB")
    return expand2square(image, pad_colour) if pad_colour is not None else image
