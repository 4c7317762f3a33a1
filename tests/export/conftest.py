"""A real generated dataset of COCO-MINI (offline teacher), made once and exported by the tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from llava_pose.cli import main


def cli(*args: object) -> int:
    return main(["-q", *map(str, args)])


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory, coco_mini: Path) -> Path:
    """`llava-pose generate` on COCO-MINI val2017 with the offline teacher: its output folder."""
    out = tmp_path_factory.mktemp("generated") / "out"
    assert cli("generate", "--coco", coco_mini, "--split", "val2017", "--out", out) == 0
    return out


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory, generated: Path, coco_mini: Path):
    """`export FORMAT` of `generated`, made once per format."""
    made: dict[str, Path] = {}

    def export(fmt: str) -> Path:
        if fmt not in made:
            out = tmp_path_factory.mktemp("exported") / fmt
            args = ("export", generated, "--format", fmt, "--image-root", coco_mini, "--out", out)
            assert cli(*args) == 0
            made[fmt] = out
        return made[fmt]

    return export
