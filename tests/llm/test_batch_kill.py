"""kill -9 of a --batch run right after the upload, right after the create, and during the
collect: the rerun finds what was sent, never submits a request twice, and writes the same
dataset. The command runs as a real process; the loopback server holds the request at the
chosen point (`hang_at`) until the process is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import KEY, generate_args
from tests.ehpaub.replies import respond
from tests.servers import AnthropicServer, OpenAIServer

from llava_pose.errors import EXIT_OK, EXIT_PENDING

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def start(args: list[str]) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "OPENAI_API_KEY": KEY,
        "ANTHROPIC_API_KEY": KEY,
        "PYTHONPATH": str(ROOT / "src"),
    }
    env.pop("OPENAI_BASE_URL", None)
    env.pop("ANTHROPIC_BASE_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "llava_pose", "-q", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def run(args: list[str]) -> int:
    proc = start(args)
    _, err = proc.communicate(timeout=120)
    assert b"Traceback" not in err, err.decode()
    return proc.returncode


def kill_at(server, point: str, args: list[str]) -> None:
    server.hang_at = {point}
    proc = start(args)
    try:
        assert server.wait_hung(point, timeout=60), proc.stderr.read() if proc.stderr else ""
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    server.hang_at = None


def cli(server, spec: str, out: Path) -> list[str]:
    args = generate_args(server.url, out, "--batch")
    args[args.index("--teacher") + 1] = spec
    return args


@pytest.mark.parametrize(
    ("cls", "spec", "point"),
    [
        (OpenAIServer, "openai:gpt-4o", "after_file_upload"),
        (OpenAIServer, "openai:gpt-4o", "after_batch_create"),
        (OpenAIServer, "openai:gpt-4o", "results"),
        (AnthropicServer, "anthropic:claude-sonnet-4-5", "after_batch_create"),
        (AnthropicServer, "anthropic:claude-sonnet-4-5", "results"),
    ],
)
def test_kill_9_loses_nothing_and_sends_nothing_twice(
    cls, spec: str, point: str, tmp_path: Path
) -> None:
    with cls(api_key=KEY, responder=respond) as server:
        out = tmp_path / "out"
        args = cli(server, spec, out)
        if point == "results":  # the batch is submitted and ends; the kill comes mid-collect
            assert run(args) == EXIT_PENDING
        kill_at(server, point, args)
        rc = run(args)  # finishes the submission the kill interrupted, collects if it ended
        if rc == EXIT_PENDING:
            rc = run(args)
        assert rc == EXIT_OK
        assert len(server.batches) == 1  # found again, not made again
        if cls is OpenAIServer:
            assert len([f for f in server.files if f.purpose == "batch"]) == 1
        counts = server.batch_submissions()
        assert len(counts) == 6 and set(counts.values()) == {1}
        reference = tmp_path / "online"
        online = generate_args(server.url, reference)
        online[online.index("--teacher") + 1] = spec
        assert run(online) == EXIT_OK
        for name in ("llava_pose_all.json", "rejected.jsonl"):
            assert (out / name).read_bytes() == (reference / name).read_bytes()
