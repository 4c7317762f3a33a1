"""perf/fast_start.py and perf/teacher_throughput.py at a tiny size: they run end to end and
report what they promise. (Their targets are judged at full size, not here.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "perf"


def test_fast_start_reports_the_dry_run_and_the_first_request(tmp_path: Path) -> None:
    folder = tmp_path / "synthetic"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "fast_start.py"), "--scale", "0.003", "--dir", str(folder)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    assert "estimate printed 1 time(s)" in proc.stdout, proc.stdout + proc.stderr
    assert "    requests: " in proc.stdout  # the dry run's estimate, shown
    assert "first request: " in proc.stdout and "s after the start" in proc.stdout
    assert not folder.exists()  # it wrote the set, so it removed it


def test_teacher_throughput_reports_the_whole_command() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / "teacher_throughput.py"), "--latency", "0.05",
         "--n-ours", "16", "--n-seq", "2", "--rpm", "600", "--rpm-seconds", "1", "--whole", "30",
         "--whole-repeat", "2"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    out = proc.stdout
    assert "(d) whole `llava-pose generate`, 30 requests" in out, out + proc.stderr
    assert "the fastest of 2 runs" in out  # each run calls anew: its own output folder
    assert "first request at the server after" in out
    assert "whole command: 1/" in out and "of sequential" in out
