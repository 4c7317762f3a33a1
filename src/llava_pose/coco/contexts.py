"""Contexts as data: seeded selection, the contexts JSONL (written, read back and checked),
the bundled sample."""

from __future__ import annotations

import gc
import hashlib
import itertools
import json
import math
import re
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from ..confidence import estimate_problem
from ..errors import ConfigError, InputError
from ..images import MAX_IMAGE_SIDE
from ..io import read_bytes, write_jsonl
from ..paths import path_problem
from ..records import NUM_KEYPOINTS, ImageContext, Keypoint
from ._constants import (
    _FREEZE_AFTER,
    _ZEROS,
)
from .columns import (
    _fmt,
)
from .decode import (
    _NOT_A_NUMBER,
    _json_problem,
    _split_validation,
)

# -- selection, files, the bundled sample ----------------------------------------------------

T = TypeVar("T", ImageContext, int)
T_Row = TypeVar("T_Row")


def selection_key(image_id: int, seed: int) -> bytes:
    """Where an image falls in the seeded order: the same on every machine and Python."""
    return hashlib.blake2b(f"{seed}:{image_id}".encode(), digest_size=8).digest()


def select_images(items: Sequence[T], n: int | None, seed: int = 0) -> list[T]:
    """The first `n` of `items` (contexts or image ids) in a seeded hash order of image id.

    Returned in that order, so a larger `n` with the same seed extends a smaller one: work
    already done on the first images is reused. `n=None` returns `items` unchanged.
    """
    if n is None:
        return list(items)
    if n < 0:
        raise ConfigError(f"--max-images: must be 0 or more, got {n}")

    def key(item: T) -> tuple[bytes, int]:
        image_id = item if isinstance(item, int) else item.image_id
        return selection_key(image_id, seed), image_id

    return sorted(items, key=key)[:n]


def write_contexts(path: str | Path, contexts: Iterable[ImageContext]) -> int:
    """Write contexts as JSONL, atomically (a failed run leaves no partial file)."""
    return write_jsonl(path, contexts)


def read_contexts(path: str | Path) -> list[ImageContext]:
    """Read a contexts JSONL (`llava-pose prepare`'s, perhaps edited by hand), each line checked
    as `prepare` checks COCO (`context_problem`); an error names the line and the field.

    As in `read_split`, the collector pauses while the file's millions of small acyclic
    objects are made (54k train2017 contexts: 2x faster), and a big result is frozen."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        contexts = []
        for n, ctx in read_jsonl_numbered(path, ImageContext):
            problem = context_problem(ctx)
            if problem is not None:
                raise InputError(path, problem[1], f"line {n}: {problem[0]}")
            contexts.append(ctx)
        if len(contexts) > _FREEZE_AFTER // 10:
            gc.freeze()
    finally:
        if enabled:
            gc.enable()
    return contexts


def context_problem(ctx: ImageContext) -> tuple[str, str] | None:
    """(field, problem) of the first absurd value in a context, or None. Pure.

    Values are what `prepare` writes: an image path inside the COCO root, sides of 1 to
    `MAX_IMAGE_SIDE` px, boxes and keypoints normalized to [0, 1], 17 keypoints with v in 0-2.
    """
    if not _PLAIN_PATH.fullmatch(ctx.image):  # else `paths` has nothing to say about it
        problem = path_problem(ctx.image)
        if problem is not None:
            return "image", f"{problem}; refusing to read outside the COCO root"
    for side, value in (("width", ctx.width), ("height", ctx.height)):
        if not 1 <= value <= MAX_IMAGE_SIDE:
            return side, f"must be 1 to {MAX_IMAGE_SIDE:,} px, got {value:,}"
    for kind, items in (("objects", ctx.objects), ("persons", ctx.persons)):
        for i, item in enumerate(items):
            box = item.box
            if not (0.0 <= box[0] <= box[2] <= 1.0 and 0.0 <= box[1] <= box[3] <= 1.0):
                return (
                    f"{kind}[{i}].box",
                    f"expected (x1, y1, x2, y2) with 0 <= x1 <= x2 <= 1, got {_fmt(box)}",
                )
    for i, person in enumerate(ctx.persons):
        points = person.keypoints
        if len(points) != NUM_KEYPOINTS:
            return (
                f"persons[{i}].keypoints",
                f"expected {NUM_KEYPOINTS} keypoints, got {len(points)}",
            )
        if person.estimate is not None:  # a pose model's person: its scores (llava_pose.folder)
            problem = estimate_problem(person.estimate)
            if problem is not None:
                return f"persons[{i}].estimate.{problem[0]}", problem[1]
        if points is _ZEROS or _plausible(points):
            continue
        for j, (x, y, v) in enumerate(points):
            if v not in _V:
                return f"persons[{i}].keypoints[{j}][2]", f"visibility must be 0, 1 or 2, got {v}"
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                return f"persons[{i}].keypoints[{j}]", f"({x:g}, {y:g}) is not in [0, 1]"
    return None


def _plausible(points: tuple[Keypoint, ...]) -> bool:
    """Every x and y in [0, 1] and every v in 0-2, by C-level min, max and sum over the
    flattened points (a NaN fails the sum's self-comparison), not a loop per point."""
    try:
        flat = list(itertools.chain.from_iterable(points))
        xy = flat[0::3] + flat[1::3]
        total = sum(xy)
        return (
            len(flat) == 3 * len(points)
            and total == total
            and min(xy) >= 0.0
            and max(xy) <= 1.0
            and _V_SET.issuperset(flat[2::3])
        )
    except TypeError:  # not numbers: the loop says which
        return False


_V = (0, 1, 2)
_V_SET = frozenset(_V)
# Relative paths of word-character names (dots inside a name only): no root, drive, NUL, '.'
# or '..' part, so `path_problem` would pass them; checking that costs more than this match.
_PLAIN_PATH = re.compile(r"[\w-]+(?:\.[\w-]+)*(?:/[\w-]+(?:\.[\w-]+)*)*")


def read_jsonl_numbered(path: str | Path, type: type[T_Row]) -> list[tuple[int, T_Row]]:
    """(line number, record) of every non-empty line of a JSONL file. An error names the file,
    the line and the field, NaN and Infinity included (`non_finite_field`)."""
    decoder = msgspec.json.Decoder(type)
    rows: list[tuple[int, T_Row]] = []
    for n, line in enumerate(read_bytes(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append((n, decoder.decode(line)))
        except msgspec.ValidationError as e:
            field, problem = _split_validation(e)
            field = field.lstrip(".")
            raise InputError(
                path, problem, f"line {n}: {field}" if field else f"line {n}"
            ) from None
        except msgspec.DecodeError as e:
            field = non_finite_field(line)
            if field is not None:
                raise InputError(path, _NOT_A_NUMBER, f"line {n}: {field}") from None
            problem = _json_problem(str(e), line).replace("(line 1, column", "(column")
            raise InputError(path, problem, f"line {n}") from None
    return rows


def non_finite_field(line: bytes) -> str | None:
    """Where one JSON text holds NaN or Infinity (Python's json writes them, JSON has neither),
    e.g. ``persons[0].keypoints[3][1]``; None when it holds none. For error messages only."""
    try:
        value = json.loads(line)
    except ValueError:
        return None
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        at, v = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            return at.lstrip(".") or "(the value)"
        if isinstance(v, dict):
            stack += reversed([(f"{at}.{k}", x) for k, x in v.items()])
        elif isinstance(v, list):
            stack += reversed([(f"{at}[{i}]", x) for i, x in enumerate(v)])
    return None


def sample_root() -> Path:
    """The bundled 8-image COCO root (split `SAMPLE_SPLIT`), for demos and offline runs."""
    return Path(str(resources.files("llava_pose") / "data" / "sample"))
