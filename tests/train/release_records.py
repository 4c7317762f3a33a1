"""Records shaped like the official LLaVA-Pose release's samples (Ody-trek/LLaVA-Pose,
datasets/generated_data_conversation.json), about real COCO-MINI images:

    {"id": "134754", "image": "data/coco/train2014/000000134754.jpg", "conversations": [...]}

a bare image id repeated on every record of the image, and a 2017-style file name in a 2014
folder, relative to LLaVA's repository rather than to the COCO root."""

from __future__ import annotations

from pathlib import Path
from typing import Any

QUESTIONS = (
    ("What action are the people in the image doing?", "They are walking."),
    ("Are the people standing still or in motion?", "They are in motion."),
    ("Can you identify any distinct postures?", "They stand upright, arms relaxed."),
)


def release_records(image_ids: list[int]) -> list[dict[str, Any]]:
    """Three one-question records per image, as the release writes them."""
    return [
        {
            "id": str(image_id),
            "image": f"data/coco/train2014/{image_id:012d}.jpg",
            "conversations": [
                {"from": "human", "value": f"<image>\n{question}"},
                {"from": "gpt", "value": answer},
            ],
        }
        for image_id in image_ids
        for question, answer in QUESTIONS
    ]


def coco2014_root(root: Path, coco: Path, n: int) -> tuple[Path, list[int]]:
    """A COCO root as the 2014 download lays it out (``train2014/COCO_train2014_<id>.jpg``),
    linking `n` real COCO-MINI train2017 images; returns the root and their image ids."""
    names = sorted(p.name for p in (coco / "train2017").iterdir())[:n]
    (root / "train2014").mkdir(parents=True)
    ids = [int(Path(name).stem) for name in names]
    for name, image_id in zip(names, ids, strict=True):
        link = root / "train2014" / f"COCO_train2014_{image_id:012d}.jpg"
        link.symlink_to(coco / "train2017" / name)
    return root, ids
