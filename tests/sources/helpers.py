"""Folders of plain images for the any-image tests: COCO-MINI's real photos without their
annotations, nested, plus the broken files a real folder holds."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import find_coco_mini
from tests.crafted import png_declaring


def photo_folder(root: Path, *, copies: int = 1, broken: bool = True) -> Path:
    """`root` holding COCO-MINI's 34 photos (val2017 at the top, train2017 in ``street/``),
    `copies` times (``copy-K/`` for the extra ones), and, with `broken`, four files that are
    not readable images: a text file, a cut-off JPEG, a PNG declaring 30000 x 30000 pixels and
    a hidden file (skipped unread)."""
    coco = find_coco_mini()
    for k in range(copies):
        base = root if k == 0 else root / f"copy-{k}"
        (base / "street").mkdir(parents=True, exist_ok=True)
        for image in sorted((coco / "val2017").glob("*.jpg")):
            shutil.copy(image, base / image.name)
        for image in sorted((coco / "train2017").glob("*.jpg")):
            shutil.copy(image, base / "street" / image.name.replace(".jpg", ".JPG"))
    if broken:
        bad = root / "bad"
        bad.mkdir()
        (bad / "notes.jpg").write_text("not a picture\n")
        first = sorted((coco / "val2017").glob("*.jpg"))[0].read_bytes()
        (bad / "cut.jpg").write_bytes(first[: len(first) // 3])
        (bad / "bomb.png").write_bytes(png_declaring(30_000, 30_000))
        (root / ".hidden.jpg").write_bytes(first)
        (root / "readme.txt").write_text("not listed: not an image suffix\n")
    return root


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()
