"""`llava-pose poseqa {build,score}`: PoseQA, the judge-free pose benchmark."""

from __future__ import annotations

from typing import Any

BUILD_EXAMPLES = """
  llava-pose poseqa build --coco /data/coco --split val2017 --out poseqa/
  llava-pose poseqa build --coco /data/coco --split val2017 --max-images 1000 --seed 1 --out poseqa-1k/
  llava-pose poseqa build --contexts photos.jsonl --images photos/ --out poseqa-photos/   # prepare --images
"""

SCORE_EXAMPLES = """
  llava-pose bench answer --bench poseqa/ --model openai:gpt-4o-mini --out answers/gpt-4o-mini.jsonl
  llava-pose poseqa score --bench poseqa/ --answers answers/*.jsonl --out report/
"""


def _build(config: Any) -> int:
    from ..poseqa.build import run_build

    return run_build(config)


def _score(config: Any) -> int:
    from ..poseqa.score import run_score

    return run_score(config)


def register(subparsers: Any) -> None:
    """Add `poseqa` and its two steps."""
    from ..poseqa.build import PoseQABuildConfig
    from ..poseqa.score import PoseQAScoreConfig
    from . import add_command, add_group

    steps = add_group(
        subparsers,
        "poseqa",
        help="PoseQA: a judge-free benchmark from the keypoints alone (build, score)",
        description=(
            "PoseQA asks yes/no, multiple-choice and counting questions whose answers are facts "
            "of the COCO keypoints (posture, raised arms, own left/right, facing, who is further "
            "left), only where the geometry is clear by a margin. Answer it with `bench answer "
            "--bench POSEQA`; score it by exact match, with no LLM."
        ),
    )
    add_command(
        steps,
        "build",
        PoseQABuildConfig,
        _build,
        help="write questions.jsonl and manifest.json from a COCO split, contexts or images",
        description=(
            "Read a COCO split (or a contexts file, or a folder of images through a pose model: "
            "only confident joints are asked about) and write PoseQA's questions with their "
            "exact answers, in LLaVA-Bench's shape plus `answer` and `choices`: yes/no answers balanced per "
            "family, options in a seeded order. The same seed writes the same bytes."
        ),
        examples=BUILD_EXAMPLES,
    )
    add_command(
        steps,
        "score",
        PoseQAScoreConfig,
        _score,
        help="exact-match accuracy per family with intervals, chance and baselines",
        description=(
            "Read each model's answers with a tolerant parser and report accuracy per family "
            "(95% Wilson intervals), chance level, the best constant answer, and every "
            "unparseable answer: index.md, scores.csv, unparseable.csv."
        ),
        examples=SCORE_EXAMPLES,
    )
