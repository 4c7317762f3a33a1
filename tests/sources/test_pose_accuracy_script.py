"""perf/pose_accuracy.py on COCO-MINI with MediaPipe's real weights: it runs end to end and
reports every number the README's table takes, each in its range and consistent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mediapipe", reason="needs the [pose] extra's mediapipe (.ci/run installs it)")
pytestmark = pytest.mark.pose

PERF = Path(__file__).resolve().parents[2] / "perf"


def test_the_accuracy_script_reports_the_table(tmp_path: Path) -> None:
    out = tmp_path / "numbers.json"
    proc = subprocess.run(
        [sys.executable, str(PERF / "pose_accuracy.py"), "--json", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    n = json.loads(out.read_text())
    assert n["images"] == 27 and n["annotated_people"] > n["images"]  # COCO-MINI's with people
    assert 0 < n["recall_oks50"] <= n["recall_oks50_large"] <= 1
    assert 0 < n["precision_oks50"] <= 1 and n["predicted_people"] > 0
    assert set(n["pck02"]) <= {"nose", "left eye", "right eye", "left ear", "right ear",
        "left shoulder", "right shoulder", "left elbow", "right elbow", "left wrist",
        "right wrist", "left hip", "right hip", "left knee", "right knee", "left ankle",
        "right ankle"} and len(n["pck02"]) == 17  # fmt: skip
    assert min(n["pck02"].values()) <= n["pck02_mean"] <= max(n["pck02"].values())
    assert n["images_per_second"] > 0
    for part in ("poseqa", "verify"):
        same, both = n[part]["agree"].split(" = ")[0].split("/")
        assert int(both) == n[part]["both"] > 0 and 0 <= int(same) <= int(both)
    if n["oks_ap"] is not None:  # pycocotools installed
        assert 0 <= n["oks_ap"]["AP75"] <= n["oks_ap"]["AP50"] <= 1
    assert "person recall@OKS0.5" in proc.stdout and "PCK@0.2" in proc.stdout
