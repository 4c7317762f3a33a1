"""The llamafactory export through LLaMA-Factory 0.9.5's own data loader (`get_dataset`, as
`llamafactory-cli train` calls it), in LLaMA-Factory's own environment: it pins transformers
<= 5.6, so it lives in a second virtual environment (.ci/run makes `.venv-lf`)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.llamafactory

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent / "lf_env"


def lf_python() -> Path:
    """LLaMA-Factory's interpreter: $LLAVA_POSE_LF_PYTHON, else .venv-lf in the checkout."""
    given = os.environ.get("LLAVA_POSE_LF_PYTHON")
    python = Path(given) if given else REPO / ".venv-lf" / "bin" / "python"
    if not python.is_file():  # CI makes it (.ci/run); a guard for bare checkouts
        pytest.skip(f"no LLaMA-Factory environment at {python} (see .ci/run to make one)")
    return python


def test_llamafactory_loads_the_export(
    exported, generated: Path, coco_mini: Path, tmp_path: Path
) -> None:
    python = lf_python()
    out = exported("llamafactory")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(HERE / "standin")]),
        "DISABLE_VERSION_CHECK": "1",  # its pins name torchvision & co, which its data path never imports
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
    }
    done = subprocess.run(
        [python, HERE / "lf_load.py", out, "llava_pose", coco_mini, tmp_path],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads((tmp_path / "rows.json").read_text())
    records = json.loads((generated / "llava_pose_all.json").read_text())
    assert len(rows) == len(records)
    for row, record in zip(rows, records, strict=True):
        # media_dir resolved the relative path (else LLaMA-Factory keeps it and warns)
        assert row["images"] == [str(coco_mini / record["image"])]
        # the llava plugin opened the image and put its 16 tokens (the tiny CLIP's 4x4 patches)
        # where <image> was
        assert row["image_tokens"] == 16 and "<image>" not in row["input"]
        turns = record["conversations"]
        questions = [t["value"].replace("<image>", "").strip() for t in turns[::2]]
        answers = [t["value"] for t in turns[1::2]]
        assert all(q in row["input"] for q in questions)
        assert all(a in row["input"] for a in answers)
        # loss on the answers only, each with its </s>
        assert row["labels"].count("</s>") == len(answers)
        assert all(a in row["labels"] for a in answers)
        assert not any(q in row["labels"] for q in questions)
