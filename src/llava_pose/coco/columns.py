"""Numbers into contexts at scale: boxes and keypoints normalized and rounded (one image's
cache of divisions), and whole files at once as numpy columns when nothing in them is wrong;
the one-at-a-time path finds and names what is."""

from __future__ import annotations

import itertools
import operator
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from ..records import KEYPOINT_NAMES, NUM_KEYPOINTS, Box, Keypoint, Obj
from ._constants import (
    _ZERO_KEYPOINT,
    _ZEROS,
    TOLERANCE_PX,
)
from .decode import (
    _FLOATS,
    _NUMBERS,
    _VISIBILITY,
    _Bad,
    _Image,
    _Instance,
    _PersonAnnotation,
    _split_validation,
)

# An image's size and its two caches of divisions: (width, height, x cache, y cache).
_Size = tuple[int, int, dict[float, float], dict[float, float]]


class _Scale:
    """Caches of x / size rounded to 3 decimals, one per size.

    COCO coordinates repeat a lot (integer keypoints, 2-decimal boxes, a few hundred image
    sizes), so the caches save most `round` calls and share the result's float objects. Keys
    are values clamped to [0, size]: a cache hit also proves the value is inside the image.
    """

    def __init__(self) -> None:
        self._by_size: dict[int, dict[float, float]] = {}

    def __call__(self, size: int) -> dict[float, float]:
        cache = self._by_size.get(size)
        if cache is None:
            cache = self._by_size[size] = {}
        return cache


def _norm(cache: dict[float, float], value: float, size: int) -> float | None:
    """The slow path of a cache miss: clamp, divide, round, remember; None when outside."""
    if value < -TOLERANCE_PX or value > size + TOLERANCE_PX:
        return None
    if value <= 0.0:
        value = 0.0  # also turns -0.0 into 0.0
    elif value > size:
        value = float(size)
    out = cache.get(value)
    if out is None:
        out = cache[value] = _round3(value / size)
    return out


def _box(b: tuple[float, float, float, float], size: _Size) -> Box:
    """COCO [x, y, w, h] in pixels -> normalized (x1, y1, x2, y2).

    Not cached: box values have 2 decimals and x + w adds float noise, so they rarely repeat.
    """
    x, y, w, h = b
    x2, y2 = x + w, y + h
    width, height = size[0], size[1]
    tol = TOLERANCE_PX
    if w < 0 or h < 0 or x < -tol or y < -tol or x2 > width + tol or y2 > height + tol:
        if w < 0 or h < 0:
            raise _Bad("bbox", f"negative size in [x, y, w, h] = {_fmt(b)}")
        raise _Bad(
            "bbox",
            f"box [x, y, w, h] = {_fmt(b)} reaches outside the {width}x{height} image "
            f"(more than {tol:g} px)",
        )
    return (  # clamped into the image; 0.0 also stands for -0.0
        0.0 if x <= 0.0 else 1.0 if x >= width else _round3(x / width),
        0.0 if y <= 0.0 else 1.0 if y >= height else _round3(y / height),
        0.0 if x2 <= 0.0 else 1.0 if x2 >= width else _round3(x2 / width),
        0.0 if y2 <= 0.0 else 1.0 if y2 >= height else _round3(y2 / height),
    )


class _Table:
    """The split's images as sorted arrays, to check and normalize annotations by the hundred
    thousand with numpy (train2017: 860k instances, 262k persons) instead of one at a time.

    Each method computes exactly what the one-at-a-time code does (`_box`, `_round3`: same
    IEEE operations, ties to `round`), or returns None when any annotation is wrong or out of
    numpy's range; the one-at-a-time code then runs and raises the error naming the first.
    """

    def __init__(self, ids: Any, width: Any, height: Any) -> None:
        self.ids, self.width, self.height = ids, width, height

    @classmethod
    def of(cls, images: dict[int, _Image]) -> _Table | None:
        import numpy as np

        n = len(images)
        if n == 0:
            return None
        try:
            ids = np.fromiter(images, np.int64, n)
        except OverflowError:
            return None
        order = np.argsort(ids)
        width = np.fromiter((im.width for im in images.values()), np.float64, n)
        height = np.fromiter((im.height for im in images.values()), np.float64, n)
        return cls(ids[order], width[order], height[order])

    def _find(self, image_ids: Any) -> tuple[Any, bool]:
        """Positions of `image_ids` in the table, and whether all of them are there."""
        import numpy as np

        pos = np.minimum(np.searchsorted(self.ids, image_ids), len(self.ids) - 1)
        return pos, bool((self.ids[pos] == image_ids).all())

    def person_boxes(self, annotations: Sequence[_PersonAnnotation]) -> list[Box] | None:
        """`_box` of every annotation (crowd regions: unchecked, as they are not read)."""
        columns = _columns(annotations, ("image_id", "iscrowd"))
        if columns is None:
            return None
        image_ids, crowd = columns
        pos, known = self._find(image_ids)
        if not known:
            return None
        bbox = _bboxes(annotations)
        w, h = self.width[pos], self.height[pos]
        if _outside(bbox, w, h)[crowd == 0].any():
            return None
        return list(map(tuple, _normalized(bbox, w, h).tolist()))

    def object_columns(
        self, annotations: Sequence[_Instance], categories: dict[int, str]
    ) -> _ObjectColumns | None:
        """Every object the load reads (not a person, not a crowd region), checked and
        normalized, in annotation-id order; None when an annotation is wrong."""
        import numpy as np

        columns = _columns(annotations, ("image_id", "category_id", "iscrowd", "id"))
        if columns is None:
            return None
        image_ids, category_ids, crowd, ann_ids = columns
        if not len(image_ids):
            return _ObjectColumns(image_ids, category_ids, np.empty((0, 4)), image_ids)
        pos, known = self._find(image_ids)
        try:
            known_categories = np.fromiter(categories, np.int64, len(categories))
            persons = np.fromiter(
                (c for c, name in categories.items() if name == "person"), np.int64
            )
        except OverflowError:
            return None
        if not known or not np.isin(category_ids, known_categories).all():
            return None
        person = np.isin(category_ids, persons)
        crowd = crowd != 0
        read = ~person & ~crowd  # crowd regions and persons are neither read nor checked
        bbox = _bboxes(annotations)
        w, h = self.width[pos], self.height[pos]
        if (_outside(bbox, w, h) & read).any():
            return None
        order = np.argsort(ann_ids, kind="stable")  # id order, file order for equal ids
        take = order[read[order]]
        return _ObjectColumns(
            image_ids[take],
            category_ids[take],
            _normalized(bbox[take], w[take], h[take]),
            image_ids[~person & crowd],
        )


@dataclass
class _ObjectColumns:
    """The objects of every image, as `_Table.object_columns` makes them: one row per object
    in annotation-id order, and the image of each crowd region (they are only counted)."""

    image_ids: Any  # int64
    category_ids: Any  # int64
    boxes: Any  # float64 (n, 4): normalized (x1, y1, x2, y2)
    crowd_image_ids: Any  # int64

    def select(
        self, kept: set[int], categories: dict[int, str]
    ) -> tuple[dict[int, list[Obj]], dict[int, int]]:
        """`_read_objects`'s result: the objects and crowd counts of the kept images."""
        import numpy as np

        wanted = np.fromiter(kept, np.int64, len(kept))
        crowd: dict[int, int] = {}
        for image_id in self.crowd_image_ids[np.isin(self.crowd_image_ids, wanted)].tolist():
            crowd[image_id] = crowd.get(image_id, 0) + 1
        take = np.isin(self.image_ids, wanted)
        objects: dict[int, list[Obj]] = {}
        rows = zip(
            self.image_ids[take].tolist(),
            self.category_ids[take].tolist(),
            self.boxes[take].tolist(),
            strict=True,
        )
        for image_id, category, box in rows:
            obj = Obj(categories[category], tuple(box))  # type: ignore[arg-type]
            things = objects.get(image_id)
            if things is None:
                objects[image_id] = [obj]
            else:
                things.append(obj)
        return objects, crowd


def _columns(annotations: Sequence[Any], names: tuple[str, ...]) -> list[Any] | None:
    """Integer fields of every annotation as int64 arrays; None if one does not fit."""
    import numpy as np

    n = len(annotations)
    try:
        return [
            np.fromiter(map(operator.attrgetter(name), annotations), np.int64, n) for name in names
        ]
    except OverflowError:
        return None


def _bboxes(annotations: Sequence[_Instance | _PersonAnnotation]) -> Any:
    import numpy as np

    n = len(annotations)
    flat = itertools.chain.from_iterable(map(operator.attrgetter("bbox"), annotations))
    return np.fromiter(flat, np.float64, 4 * n).reshape(n, 4)


def _outside(bbox: Any, width: Any, height: Any) -> Any:
    """Where `_box` raises: a negative size, or more than `TOLERANCE_PX` outside the image."""
    x, y, w, h = bbox.T
    tol = TOLERANCE_PX
    return (
        (w < 0) | (h < 0) | (x < -tol) | (y < -tol)
        | (x + w > width + tol) | (y + h > height + tol)
    )  # fmt: skip


def _normalized(bbox: Any, width: Any, height: Any) -> Any:
    """`_box` of each row, for rows `_outside` passes."""
    import numpy as np

    x, y, w, h = bbox.T
    out = np.empty_like(bbox)
    for column, (value, size) in enumerate(
        ((x, width), (y, height), (x + w, width), (y + h, height))
    ):
        out[:, column] = _round3_clamped(value, size)
    return out


def _round3_clamped(value: Any, size: Any) -> Any:
    """``0.0 if v <= 0 else 1.0 if v >= size else _round3(v / size)``, elementwise: the same
    product, the same round-half-even, the same int / 1000; near a tie, `round` decides."""
    import numpy as np

    a = value / size
    r = a * 1000.0
    k = np.rint(r)
    out = k / 1000.0
    inside = (value > 0.0) & (value < size)
    near_tie = ~((r - k > -0.4999) & (r - k < 0.4999)) & inside
    for i in np.flatnonzero(near_tie).tolist():
        out[i] = round(float(a[i]), 3)
    out[value <= 0.0] = 0.0
    out[~(value <= 0.0) & (value >= size)] = 1.0
    return out


def _round3(a: float) -> float:
    """Exactly `round(a, 3)` for 0 <= a <= 1, in half the time (round formats decimals).

    r = a * 1000.0 is within 1e-13 of the exact product, so unless r is within 1e-4 of a
    half-integer, the exact product rounds to the same integer k as r; k / 1000 (int / int,
    correctly rounded) is then the same double `round` returns. Near a tie, `round` decides.
    """
    r = a * 1000.0
    k = round(r)
    return k / 1000 if -0.4999 < r - k < 0.4999 else round(a, 3)


class _Outside(Exception):
    pass


def _norm_inside(cache: dict[float, float], value: float, size: int) -> float:
    out = _norm(cache, value, size)
    if out is None:
        raise _Outside
    return out


def _keypoints(raw: msgspec.Raw, size: _Size) -> tuple[tuple[Keypoint, ...], int]:
    """17 normalized (x, y, v) and how many are labelled.

    The fast path decodes ints as ints (COCO's integer coordinates: half the time of floats)
    and builds the tuple in one comprehension; anything unusual goes the slow way.
    """
    try:
        k = _NUMBERS.decode(raw)
        if len(k) == 3 * NUM_KEYPOINTS:
            vs = k[2::3]
            unlabelled = vs.count(0)
            if unlabelled == NUM_KEYPOINTS:
                return _ZEROS, 0
            if unlabelled + vs.count(2) + vs.count(1) == NUM_KEYPOINTS:
                width, height, cx, cy = size
                # a cached 0.0 is falsy: _norm_inside then returns it again
                out = tuple(
                    [
                        _ZERO_KEYPOINT
                        if v == 0
                        else (
                            cx.get(x) or _norm_inside(cx, x, width),
                            cy.get(y) or _norm_inside(cy, y, height),
                            _VISIBILITY[v],
                        )
                        for x, y, v in zip(k[0::3], k[1::3], vs, strict=True)
                    ]
                )
                return out, NUM_KEYPOINTS - unlabelled
    except (_Outside, TypeError, KeyError, msgspec.ValidationError):
        pass  # a string, bool, null, out of the image...: the slow path says which
    return _keypoints_checked(raw, size)


def _keypoints_checked(raw: msgspec.Raw, size: _Size) -> tuple[tuple[Keypoint, ...], int]:
    """`_keypoints` the slow way, with typed decoding: says exactly what is wrong."""
    try:
        k = _FLOATS.decode(raw)
    except msgspec.ValidationError as e:
        field, problem = _split_validation(e)
        index = re.fullmatch(r"\[(\d+)\]", field)
        if index and int(index.group(1)) % 3 == 2 and problem.endswith("got bool"):
            j = int(index.group(1)) // 3
            problem = f"visibility v of {KEYPOINT_NAMES[j]} must be 0, 1 or 2, got a boolean"
        if field:
            raise _Bad(f"keypoints{field}", problem) from None
        raise _Bad("keypoints", f"expected {3 * NUM_KEYPOINTS} numbers, {problem}") from None
    if len(k) != 3 * NUM_KEYPOINTS:
        raise _Bad("keypoints", f"expected {3 * NUM_KEYPOINTS} numbers, got {len(k)}")
    width, height, cx, cy = size
    out: list[Keypoint] = []
    append = out.append
    labelled = 0
    for j, (x, y, v) in enumerate(zip(k[0::3], k[1::3], k[2::3], strict=True)):
        if v == 0:
            append(_ZERO_KEYPOINT)  # one shared tuple: most keypoints of COCO are unlabelled
            continue
        if v != 2 and v != 1:
            raise _Bad(
                f"keypoints[{3 * j + 2}]",
                f"visibility v of {KEYPOINT_NAMES[j]} must be 0, 1 or 2, got {v:g}",
            )
        nx = cx.get(x)
        if nx is None:
            nx = _norm(cx, x, width)
        ny = cy.get(y)
        if ny is None:
            ny = _norm(cy, y, height)
        if nx is None or ny is None:
            raise _Bad(
                f"keypoints[{3 * j}]",
                f"{KEYPOINT_NAMES[j]} at ({x:g}, {y:g}) is outside the {width}x{height} image "
                f"(more than {TOLERANCE_PX:g} px)",
            )
        append((nx, ny, 2 if v == 2 else 1))
        labelled += 1
    return tuple(out), labelled


def _fmt(values: Iterable[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"


_COCO2017_NAME = re.compile(r"(\d{12})\.jpg")
