"""perf/view_first_page.py runs end to end at a tiny scale (the real numbers come from running
it at full scale: 200,000 records against 1,000; see its docstring)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "perf" / "view_first_page.py"


@pytest.mark.browser
def test_the_first_page_script_measures_both_sizes() -> None:
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does)")
    args = ["--records", "300", "--baseline", "60", "--repeat", "1"]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=240
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert re.search(r"^60 records \(20 images; .*\): index [\d.]+ s", out, re.M), out
    assert re.search(r"^300 records \(100 images; .*\): index [\d.]+ s", out, re.M), out
    assert len(re.findall(r"^  first page: [\d,]+ ms \(photo shown at [\d,]+ ms\)", out, re.M)) == 2
    assert re.search(r"^  search 'standing': first page of matches [\d,]+ ms, all \d+", out, re.M)
    assert re.search(r"^ratio 300 / 60 records: [\d.]+x$", out, re.M)
    assert "target: first page under 2,000 ms at 300 records: " in out
    assert out.rstrip().endswith("met")
