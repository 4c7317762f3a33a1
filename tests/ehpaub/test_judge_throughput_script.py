"""perf/judge_throughput.py runs end to end at a tiny scale (the real numbers come from running
it at full scale; see its docstring)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import perf_script

SCRIPT = Path(__file__).resolve().parents[2] / "perf" / "judge_throughput.py"


def test_the_throughput_script_measures_both_runs(capsys: pytest.CaptureFixture[str]) -> None:
    module = perf_script("judge_throughput")
    rc = module.main(["--images", "4", "--latency", "0.05", "--seq-questions", "3"])
    out = capsys.readouterr().out
    assert rc in (0, 1)  # the target is for 1 s latency; at 0.05 s overhead may dominate
    assert "workload: 12 questions x 2 models x 2 orders (--swap) = 48 reviews" in out
    assert "sequential (--concurrency 1):" in out and "for 12 reviews (3 questions)" in out
    assert "speed-up: " in out
