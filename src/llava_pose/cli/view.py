"""`llava-pose view`: browse a dataset or a benchmark in a web browser, with keypoint overlays."""

from __future__ import annotations

from typing import Any

EXAMPLES = """
  llava-pose view out/                                  # serves http://127.0.0.1:8765/
  llava-pose view out/ --export site/                   # a static folder: open site/index.html
  llava-pose view site/                                 # serve that export as it is (no rebuild)
  llava-pose view out/ --claims verify/claims.jsonl     # highlight `verify`'s claim verdicts
  llava-pose view ehpaub/ --answers answers/ --reviews reviews/gpt-4o/
  llava-pose view poseqa/ --answers answers/ --port 8800
"""


def _run(config: Any) -> int:
    from ..view.run import run_view

    return run_view(config)


def register(subparsers: Any) -> None:
    """Add the `view` command."""
    from ..view.config import ViewConfig
    from . import add_command

    add_command(
        subparsers,
        "view",
        ViewConfig,
        _run,
        help="browse a dataset or benchmark in a web browser, with keypoint overlays",
        description=(
            "Build an index of DIR (a generate output, an E-HPAUB or a PoseQA folder) and "
            "serve it on this machine, or --export it as a static folder that opens from disk. "
            "Each image's page draws its people (keypoints, limbs by the person's own side, "
            "hidden points apart, boxes, P1.. from the left) beside its text: records, the "
            "replies the filters dropped and why, pose-claim verdicts; or each model's answer "
            "with the judges' scores. Filters, search, keyboard navigation (j/k, Enter) and a "
            "link per image. Opens nothing by itself."
        ),
        examples=EXAMPLES,
    )
