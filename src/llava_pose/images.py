"""Image files that leave the machine or get decoded: sniffed, bounded, decoded before use.

A path from data (a benchmark's ``questions.jsonl``, a record's ``image``) may name any file.
Before its bytes go to a paid API, or its pixels into memory, the file must be an image in a
format the providers take (JPEG, PNG, WebP, GIF; told by its first bytes, never by its name),
its header must declare a size within `MAX_IMAGE_SIDE` and `MAX_PIXELS` (a 370-byte PNG can
declare 30000 x 30000 pixels: 3.6 GB decoded), and its pixels must decode. Anything else is an
`InputError` naming the file, so ``~/.ssh/id_rsa`` or a decompression bomb is never sent or
unpacked, whatever a data file says.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import InputError

if TYPE_CHECKING:
    from PIL import Image

# Largest width or height taken as real: JPEG (COCO's format) stops at 65,535 px per side and no
# camera comes near; beyond it a size is corrupt or crafted.
MAX_IMAGE_SIDE = 100_000
# Most pixels decoded from one file: 64 MP (8000 x 8000, Anthropic's largest accepted image).
MAX_PIXELS = 64_000_000
# Largest file read whole: no provider takes more than 50 MB of images in one request.
MAX_BYTES = 50_000_000

# Format -> media type, for the formats both providers accept.
MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}


@dataclass(frozen=True)
class ImageInfo:
    """What the header of an accepted image says."""

    format: str  # a key of MEDIA_TYPES
    width: int
    height: int

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format]


def media_type(head: bytes) -> str | None:
    """The media type of an image by its first bytes, or None. Pure."""
    fmt = sniff(head)
    return MEDIA_TYPES[fmt] if fmt else None


def sniff(head: bytes) -> str | None:
    """The image format that `head` (a file's first 12 bytes or more) starts with. Pure."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    return None


def size_problem(width: int, height: int) -> str | None:
    """Why an image of this size is refused, or None. Pure."""
    if not (0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE):
        return f"declares {width:,} x {height:,} px, beyond any real image"
    if width * height > MAX_PIXELS:
        return (
            f"declares {width:,} x {height:,} px, more than the {MAX_PIXELS:,} pixels "
            "llava-pose decodes"
        )
    return None


@contextlib.contextmanager
def open_header(
    source: bytes | Path, where: Path, *, any_format: bool = False
) -> Iterator[Image.Image]:
    """The image in `source` (a file, or its bytes) opened with only its header read, once
    its size passes `size_problem`: the one gate before pixels are decoded. A file that is
    not an image is an `InputError` naming `where`. Only `MEDIA_TYPES`' formats, told by the
    first bytes, unless `any_format` (a local figure may be drawn from a TIFF; nothing that
    leaves the machine may)."""
    from PIL import Image, UnidentifiedImageError

    head = source[:16] if isinstance(source, bytes) else _head(source)
    fmt = sniff(head)
    if fmt is None and not any_format:
        raise InputError(where, "not an image (JPEG, PNG, WebP or GIF, told by its first bytes)")
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(stream, formats=[fmt] if fmt and not any_format else None)
    except Image.DecompressionBombError:  # over twice Pillow's own limit, so over ours
        raise InputError(
            where, f"declares more than {MAX_PIXELS:,} pixels: refused as a decompression bomb"
        ) from None
    except UnidentifiedImageError:
        raise InputError(where, "not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:  # a corrupt header
        raise InputError(where, f"cannot read the image ({e})") from None
    with im:
        problem = size_problem(im.width, im.height)
        if problem is not None:
            raise InputError(where, problem)
        yield im


def decode(im: Image.Image, where: Path) -> None:
    """Decode the pixels of an image `open_header` gave; truncated data is an `InputError`,
    even where another library set Pillow's process-wide ``LOAD_TRUNCATED_IMAGES`` (lmms-eval
    does, at import)."""
    from PIL import ImageFile

    lenient, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
    try:
        im.load()
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise InputError(where, f"not a readable {im.format} image ({e})") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = lenient


def _head(path: Path, size: int = 16) -> bytes:
    """The first `size` bytes of the file at `path`; a missing file or a folder is one line."""
    try:
        with open(path, "rb") as f:
            return f.read(size)
    except FileNotFoundError:
        raise InputError(path, "image file not found") from None
    except IsADirectoryError:
        raise InputError(path, "is a directory, expected an image file") from None


def _image_bytes(path: Path) -> bytes:
    """The whole file, within MAX_BYTES."""
    data = _head(path, MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise InputError(path, f"image file larger than {MAX_BYTES // 1_000_000} MB")
    return data


def probe(path: str | Path) -> ImageInfo:
    """The header of the image at `path` (nothing decoded): format and size, checked."""
    path = Path(path)
    with open_header(path, path) as im:
        return ImageInfo(str(im.format), im.width, im.height)


def read_image(path: str | Path) -> tuple[bytes, ImageInfo]:
    """The bytes of the image at `path`, after checking that they are an accepted image of a
    sane size and that their pixels decode: what may be sent to a provider."""
    return upload_bytes(path)


@functools.lru_cache(maxsize=65536)
def _size(path: str, mtime_ns: int) -> tuple[int, int]:
    info = probe(path)
    return info.width, info.height


def size_of(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file's header, remembered per path and modification time:
    the estimate, the reservation and the usage check all ask, per request."""
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        raise InputError(path, "image file not found") from None
    return _size(str(path), mtime)


def scaled(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """The size an image is sent at when its longest side is brought down to `max_side`
    (never up). Pure."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def upload_bytes(path: str | Path, max_side: int | None = None) -> tuple[bytes, ImageInfo]:
    """`read_image`, then scaled down to `max_side` (`scaled`) and encoded again in its own
    format when larger: what a backend sends. The file is read and decoded once."""
    path = Path(path)
    data = _image_bytes(path)
    with open_header(data, path) as im:
        decode(im, path)
        info = ImageInfo(str(im.format), im.width, im.height)
        width, height = scaled(info.width, info.height, max_side)
        if (width, height) == (info.width, info.height):
            return data, info
        from PIL import Image

        small = im.resize((width, height), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if info.format == "JPEG":
        small.convert("RGB").save(out, "JPEG", quality=95)
    else:
        small.save(out, info.format)
    return out.getvalue(), ImageInfo(info.format, width, height)
