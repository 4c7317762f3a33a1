"""Which file is an image: COCO 2017 and 2014 names, ids in file names, and the contexts a
record names by path or id."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from ..errors import InputError
from ..paths import fold
from ..records import ImageContext
from ._constants import (
    _COCO2014_NAME,
)
from .columns import (
    _COCO2017_NAME,
)
from .decode import (
    _PLAIN_NAME,
    _Image,
)


def match_context(
    image: str, by_path: dict[str, ImageContext], by_id: dict[int, ImageContext]
) -> ImageContext | None:
    """The context of a record's image: the same path, else the COCO id in its file name
    (2014 and 2017 names alike)."""
    hit = by_path.get(image)
    if hit is not None:
        return hit
    image_id = image_id_of(PurePosixPath(image).name)
    return None if image_id is None else by_id.get(image_id)


def image_id_of(name: str) -> int | None:
    """The image id in a COCO file name, 2017 (``000000397133.jpg``) or 2014
    (``COCO_val2014_000000397133.jpg``); None for any other name."""
    m = _COCO2017_NAME.fullmatch(name) or _COCO2014_NAME.fullmatch(name)
    return int(m.group(1)) if m else None


def names_2014(listing: Iterable[str]) -> dict[int, str]:
    """The 2014-style names (``COCO_<split>_<id>.jpg``) of a folder listing, by image id."""
    by_id: dict[int, str] = {}
    for name in listing:
        m = _COCO2014_NAME.fullmatch(name)
        if m:
            by_id.setdefault(int(m.group(1)), name)
    return by_id


def image_names(file_name: str | None, image_id: int | None, by_id: dict[int, str]) -> list[str]:
    """The names a COCO image may have in its folder, in the order they are tried: `file_name`,
    the 2017 name ``000000397133.jpg``, then a 2014 name from `names_2014` (one rule for
    `prepare` and `train`, whichever COCO download the user has)."""
    names = [file_name] if file_name else []
    if image_id is not None:
        names += [f"{image_id:012d}.jpg", by_id.get(image_id, "")]
    return [n for n in dict.fromkeys(names) if n]


class _ImageFiles:
    """Finds image files by listing the split folder once (118k stat calls are slow on NFS)."""

    def __init__(self, root: Path, split: str, check: bool) -> None:
        self.root, self.split, self.check = root, split, check
        self.names: set[str] = set()
        self.by_id: dict[int, str] = {}
        if check:
            folder = root / split
            try:
                self.names = set(os.listdir(folder))
            except (FileNotFoundError, NotADirectoryError):
                raise InputError(
                    folder, "image folder not found (or pass --no-check-images to skip the check)"
                ) from None
            self.by_id = names_2014(self.names)

    def resolve(self, im: _Image, index: int, inst_path: Path) -> str:
        name2017 = f"{im.id:012d}.jpg"
        given = im.file_name or None  # contained (`_check_image`); folded unless bare
        if given and not _PLAIN_NAME.fullmatch(given):
            given = fold(given)
        if not self.check:
            return f"{self.split}/{given or name2017}"
        for name in image_names(given, im.id, self.by_id):
            if name in self.names or ("/" in name and (self.root / self.split / name).is_file()):
                return f"{self.split}/{name}"
        raise InputError(
            inst_path,
            f"image file {self.root / self.split / (im.file_name or name2017)} not found "
            f"(nor {name2017} or COCO_*_{im.id:012d}.jpg; --no-check-images skips the check)",
            f"images[{index}].file_name",
        )
