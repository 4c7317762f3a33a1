"""LLaVA-format training records built from real COCO-MINI images and captions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def coco_records(coco: Path, n: int, split: str = "train2017") -> list[dict[str, Any]]:
    """`n` two-turn records about real images: the answers are the images' own captions."""
    data = json.loads((coco / "annotations" / f"captions_{split}.json").read_text())
    files = {im["id"]: im["file_name"] for im in data["images"]}
    captions: dict[int, list[str]] = {}
    for a in sorted(data["annotations"], key=lambda a: a["id"]):
        captions.setdefault(a["image_id"], []).append(" ".join(a["caption"].split()))
    records = []
    for image_id in sorted(captions)[:n]:
        first, second = captions[image_id][:2]
        records.append(
            {
                "id": f"{image_id}-conv",
                "image": f"{split}/{files[image_id]}",
                "conversations": [
                    {"from": "human", "value": "<image>\nWhat is happening in this image?"},
                    {"from": "gpt", "value": first},
                    {"from": "human", "value": "Describe it in other words."},
                    {"from": "gpt", "value": second},
                ],
            }
        )
    return records


TEXT_ONLY = {
    "id": 7,  # LLaVA's mixes carry some integer ids
    "conversations": [
        {"from": "human", "value": "Which joints does a squat bend?"},
        {"from": "gpt", "value": "The hips, the knees and the ankles."},
    ],
}


def write_records(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(records, indent=1))
    return path


def train_args(data: Path, coco: Path, output: Path, *extra: str) -> list[str]:
    return [
        "train", "--model", "tiny", "--data", str(data), "--image-root", str(coco), "--output", str(output),
        "--batch-size", "3", "--grad-accum", "1", "--lr", "3e-3", "--warmup-ratio", "0", "--lr-scheduler", "constant",
        "--logging-steps", "1", "--num-workers", "0", "--save-steps", "1000", "--no-group-by-length", *extra,
    ]  # fmt: skip
