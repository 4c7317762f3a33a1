"""PoseQA for lmms-eval: exact match after llava-pose's tolerant answer parser (written by
`llava-pose bench export`; this file is copied verbatim, the benchmark's data lives in
export.json and docs.jsonl).

Every answer is a fact of the COCO keypoints ("yes", an option letter such as "B", a count
such as "2"). The model's reply is read with poseqa_answers.py, copied from
llava_pose.poseqa.answers at export, so lmms-eval scores exactly as `llava-pose poseqa score`
does: "Yes, he is." is yes, "B) the man on the left" is B, "two" is 2; a reply that cannot be
read without guessing is wrong, and counted under `unparsed`.

Self-contained: needs lmms-eval and Pillow, not llava-pose.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

from PIL import Image

HERE = Path(__file__).resolve().parent
EXPORT = json.loads((HERE / "export.json").read_text(encoding="utf-8"))
ALL = "all"


def _load(name: str) -> Any:
    """A module copied beside this file; utils.py itself is loaded by path, not as a package."""
    spec = importlib.util.spec_from_file_location(f"_{EXPORT['task']}_{name}", HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


answers = _load("poseqa_answers")


def image_root() -> Path:
    """LLAVA_POSE_IMAGE_ROOT, else the root recorded at export (relative: to this folder)."""
    return HERE / os.environ.get("LLAVA_POSE_IMAGE_ROOT", EXPORT["image_root"])


def doc_to_visual(doc: dict[str, Any]) -> list[Image.Image]:
    with Image.open(image_root() / doc["image"]) as image:
        return [image.convert("RGB")]


def doc_to_text(
    doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None
) -> str:
    kwargs = lmms_eval_specific_kwargs or {}
    return f"{kwargs.get('pre_prompt', '')}{doc['text']}{kwargs.get('post_prompt', '')}"


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, dict[str, Any]]:
    """One answer, under `exact_match_all`, `exact_match_<family>` and `unparsed`."""
    reply = results[0] if results else ""
    parsed = answers.parse_answer(reply, doc)
    item = {
        "question_id": doc["question_id"],
        "category": doc["category"],
        "answer": doc["answer"],
        "reply": reply,
        "parsed": parsed,
        "score": float(parsed == doc["answer"]),
    }
    return {
        f"exact_match_{ALL}": item,
        f"exact_match_{doc['category']}": item,
        "unparsed": {**item, "score": float(parsed is None)},
    }


def aggregate_mean(items: list[dict[str, Any]]) -> float:
    """The mean item score: accuracy for exact_match_*, the unparsed fraction for unparsed."""
    return sum(item["score"] for item in items) / len(items) if items else 0.0
