"""Fixtures for the training tests: LLaVA-format records built from real COCO-MINI images and
captions, and tiny-preset runs trained once per session through the real CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.train.llava_records import TEXT_ONLY, coco_records, train_args, write_records


@pytest.fixture(scope="session")
def train_data(tmp_path_factory: pytest.TempPathFactory, coco_mini: Path) -> Path:
    """8 image records + 1 text-only record; image paths relative to COCO-MINI."""
    folder = tmp_path_factory.mktemp("data")
    return write_records(folder / "llava_pose_all.json", [*coco_records(coco_mini, 8), TEXT_ONLY])


@pytest.fixture(scope="session")
def full_run(tmp_path_factory: pytest.TempPathFactory, train_data: Path, coco_mini: Path) -> Path:
    """A tiny full fine-tune, through `llava-pose train` (30 steps)."""
    from llava_pose.cli import main

    out = tmp_path_factory.mktemp("runs") / "full"
    assert main(train_args(train_data, coco_mini, out, "--max-steps", "30")) == 0
    return out


@pytest.fixture(scope="session")
def lora_run(tmp_path_factory: pytest.TempPathFactory, train_data: Path, coco_mini: Path) -> Path:
    """A tiny LoRA run with a separate connector learning rate (15 steps)."""
    from llava_pose.cli import main

    out = tmp_path_factory.mktemp("runs") / "lora"
    args = train_args(
        train_data,
        coco_mini,
        out,
        "--max-steps",
        "15",
        "--lora",
        "--lora-r",
        "8",
        "--lora-alpha",
        "16",
    )
    assert main([*args, "--projector-lr", "1e-3"]) == 0
    return out
