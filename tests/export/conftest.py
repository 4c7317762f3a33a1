"""Exports of the generated COCO-MINI dataset (`generated` in tests/conftest.py), made once a format."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import cli


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
