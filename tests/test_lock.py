"""Two runs never pay for the same call: a second run on an output or cache in use stops at
once, naming the other process; a run killed with kill -9 leaves no lock behind. Every test
here uses two real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.conftest import find_coco_mini, generate_args, one_line_error
from tests.servers import OpenAIServer
from tests.test_generate import KEY, teacher_reply

from llava_pose.cli import main
from llava_pose.lock import InUseError, hold, lock_file

REPO = Path(__file__).resolve().parents[1]

HOLDER = """
import sys, time
from llava_pose.lock import hold
hold(sys.argv[1], "holder", folder=sys.argv[2] == "folder")
print("held", flush=True)
time.sleep(60)
"""


@pytest.fixture
def server(server: OpenAIServer) -> OpenAIServer:
    """The shared loopback server, answering as a teacher would."""
    server.responder = teacher_reply
    return server


def holder(path: Path, folder: bool = True) -> subprocess.Popen:
    """Another process holding `path`, as a running llava-pose command would."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), "folder" if folder else "file"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_on_an_output_in_use_stops_at_once(server, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    other = holder(out)
    try:
        started = time.monotonic()
        rc = main(["-q", *generate_args(server.url, out)])
        line = one_line_error(capsys, rc)
    finally:
        other.kill()
        other.wait()
    assert rc == 2 and time.monotonic() - started < 10
    assert f"pid {other.pid}" in line and "`holder`" in line and "another --out" in line
    assert server.requests == [] and not (out / "stats.json").exists()


def test_a_second_run_on_a_cache_in_use_stops_at_once(server, tmp_path, capsys) -> None:
    cache = tmp_path / "shared.sqlite"
    other = holder(cache, folder=False)
    try:
        rc = main(["-q", *generate_args(server.url, tmp_path / "b", "--cache", cache)])
        line = one_line_error(capsys, rc)
    finally:
        other.kill()
        other.wait()
    assert rc == 2 and f"pid {other.pid}" in line and "another --cache" in line
    assert server.requests == []


def test_a_run_killed_with_kill_9_leaves_no_lock(server, tmp_path) -> None:
    out = tmp_path / "out"
    other = holder(out)
    os.kill(other.pid, signal.SIGKILL)
    other.wait()
    assert lock_file(out, folder=True).exists()  # the file stays; the lock went with its process
    assert main(["-q", *generate_args(server.url, out)]) == 0
    assert json.loads((out / "stats.json").read_text())["complete"] is True


def test_two_generate_processes_at_once_pay_each_call_once(server, tmp_path) -> None:
    server.latency = 0.5
    out = tmp_path / "out"
    env = {**os.environ, "OPENAI_API_KEY": KEY}
    cmd = [sys.executable, "-m", "llava_pose", "-q", *generate_args(server.url, out, images=3)]
    procs = [
        subprocess.Popen(cmd, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 2], results
    refused = next(err for rc, err in results if rc == 2)
    assert "is in use by another llava-pose run" in refused and "`generate`" in refused
    assert len(server.completed) == 9 and max(server.paid_counts().values()) == 1


SLOW_HOLDER = """
import sys, time
from llava_pose import lock
from llava_pose.lock import InUseError, hold, lock_file
f = open(lock_file(sys.argv[1], True), "a+", encoding="utf-8")
assert lock._try_lock(f)
print("locked", flush=True)  # taken, and who holds it not written yet
time.sleep(0.3)
f.write('{"pid": 1, "host": "h", "command": "slow", "started": "now"}')
f.flush()
time.sleep(60)
"""


def test_a_run_refused_the_moment_the_lock_is_taken_still_names_the_holder(tmp_path) -> None:
    """The holder takes the lock first and writes who it is after: a run refused in between
    reads again until it can say who holds it (two runs started together meet this)."""
    out = tmp_path / "out"
    out.mkdir()
    other = subprocess.Popen(
        [sys.executable, "-c", SLOW_HOLDER, str(out)], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "locked"
        with pytest.raises(InUseError) as refused:
            hold(out, "generate", folder=True)  # before the holder has written
    finally:
        other.kill()
        other.wait()
    assert "`slow`" in str(refused.value) and "another --out" in str(refused.value)


@pytest.mark.parametrize("kind", ["out", "cache", "answers"])
def test_a_lock_that_is_a_symlink_is_never_followed(
    kind: str, server, tmp_path: Path, capsys
) -> None:
    """A planted ``.llava-pose.lock -> victim`` would have the victim truncated and overwritten
    with the holder's line: the run refuses instead, and the victim is untouched."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "out"
    if kind == "out":
        args = generate_args(server.url, out)
        link = lock_file(out, folder=True)
    elif kind == "cache":
        cache = tmp_path / "shared.sqlite"
        args = generate_args(server.url, out, "--cache", cache)
        link = lock_file(cache)
    else:
        answers = tmp_path / "answers" / "m.jsonl"
        args = ["bench", "answer", "--bench", str(tmp_path / "none"), "--model", "openai:x"]
        args += ["--base-url", server.url, "--out", str(answers)]
        args += ["--image-root", str(find_coco_mini())]
        link = lock_file(answers)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(victim)
    if kind == "answers":  # the lock is taken after the benchmark is read: give it one
        args[args.index("--bench") + 1] = str(_one_question_bench(tmp_path))
    rc = main(["-q", *args])
    one_line_error(capsys, rc, str(link), "symbolic link")
    assert victim.read_text() == "precious\n"
    assert server.requests == []


def test_a_lock_that_is_a_directory_is_one_line(server, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    lock_file(out, folder=True).mkdir(parents=True)
    rc = main(["-q", *generate_args(server.url, out)])
    one_line_error(capsys, rc, ".llava-pose.lock", "a directory")
    assert server.requests == []


def _one_question_bench(tmp_path: Path) -> Path:
    coco = find_coco_mini()
    image = next((coco / "val2017").glob("*.jpg")).relative_to(coco)
    bench = tmp_path / "perf"
    bench.mkdir()
    question = {"question_id": 1, "image": str(image), "text": "Who?", "category": "conv"}
    (bench / "questions.jsonl").write_text(json.dumps(question) + "\n")
    return bench
