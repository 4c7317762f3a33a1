"""Shared fixtures: the real COCO-MINI slice (read-only) and copies of it in temp dirs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def find_coco_mini() -> Path:
    """COCO-MINI: $LLAVA_POSE_COCO_MINI, else ../shared/data/coco-mini beside the repo."""
    candidates = [
        os.environ.get("LLAVA_POSE_COCO_MINI", ""),
        str(REPO.parent / "shared" / "data" / "coco-mini"),
        "/work/shared/data/coco-mini",
    ]
    for c in candidates:
        if c and (Path(c) / "annotations" / "captions_val2017.json").is_file():
            return Path(c)
    pytest.fail("COCO-MINI not found: set LLAVA_POSE_COCO_MINI to the coco-mini folder")


@pytest.fixture(scope="session")
def coco_mini() -> Path:
    """The read-only real COCO slice. Never write into it."""
    return find_coco_mini()


@pytest.fixture(scope="session")
def coco_copy(tmp_path_factory: pytest.TempPathFactory, coco_mini: Path) -> Path:
    """A writable copy of COCO-MINI's annotations and images, shared by the session.

    Tests that modify files must copy again (see `coco_annotations_copy`)."""
    dst = tmp_path_factory.mktemp("coco")
    shutil.copytree(coco_mini, dst, dirs_exist_ok=True, copy_function=shutil.copy)
    for p in dst.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst


@pytest.fixture
def coco_annotations_copy(tmp_path: Path, coco_mini: Path) -> Path:
    """A private copy of the annotations with images symlinked: free to corrupt."""
    (tmp_path / "annotations").mkdir()
    for f in (coco_mini / "annotations").iterdir():
        shutil.copy(f, tmp_path / "annotations" / f.name)
        (tmp_path / "annotations" / f.name).chmod(0o644)
    for split in ("train2017", "val2017"):
        (tmp_path / split).symlink_to(coco_mini / split)
    return tmp_path
