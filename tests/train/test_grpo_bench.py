"""The GPU benchmark's GRPO step cannot run here: prove its code path on the CPU (--dry-run):
both models, one GRPO step through `llava-pose train --method grpo`'s trainer, generation and
update timed apart, the answers as long as asked."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.train, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "perf" / "train_throughput_gpu.py"


def test_dry_run_times_generation_and_update_of_a_grpo_step() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--variant", "grpo", "--completion-len", "6"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    lines = {line.split(":")[0]: line for line in done.stdout.splitlines()}
    for model in ("llava-1.5-7b", "qwen2.5-vl-7b"):
        line = lines.get(f"{model} grpo (dry run)", "")
        assert "answers of 6 tokens per step" in line, done.stdout  # min_new_tokens held
        parts = re.search(
            r"step ([\d.]+)s = generation ([\d.]+)s \((\d+) tokens/s\) \+ scoring ([\d.]+)s .* "
            r"\+ update ([\d.]+)s",
            line,
        )
        assert parts, line
        _, generation, tokens_per_s, scoring, update = map(float, parts.groups())
        # the rollout (generation, then scoring) lies inside the step, the update after it
        assert generation > 0 and scoring > 0 and update > 0 and tokens_per_s > 0
        assert "M trainable" in line and "(0.0M trainable)" not in line
        assert re.search(r"\d+-token prompts", line), line
