"""The real CLI in a child process on a disk that refuses writes: read-only, or full.

Both are made by the kernel, not by patching the code under test:

* **read-only**: as root, the child runs in its own mount namespace (``unshare -m``) where the
  folder is bind-mounted read-only (EROFS); as another user, the folder is made 0555 (EACCES),
  which only root could write through;
* **full**: ``RLIMIT_FSIZE`` in the child, so no file it writes can grow past the limit: the
  kernel's EFBIG, which a writer meets exactly as it meets a full disk's ENOSPC (SIGXFSZ is
  ignored, as a server process would).
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    src = str(REPO / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


def run_cli(
    args: list[object], *, file_limit: int | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``llava-pose ARGS`` in a child; `file_limit`: no file it writes grows past that many
    bytes (a full disk, as a writer meets it)."""

    def limit() -> None:
        if file_limit is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    command = [sys.executable, "-m", "llava_pose", *map(str, args)]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_env(),
        preexec_fn=limit,
        timeout=timeout,
        check=False,
    )


def run_cli_read_only(
    folder: Path, args: list[object], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``llava-pose ARGS`` in a child that sees `folder` read-only."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            return run_cli(args, timeout=timeout)
        finally:
            folder.chmod(0o755)
    if shutil.which("unshare") is None:  # pragma: no cover - util-linux is on every CI image
        pytest.fail("running as root needs `unshare` (util-linux) to mount a folder read-only")
    script = 'mount --bind -o ro "$0" "$0" && exec "$@"'
    command = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, str(folder)]
    command += [sys.executable, "-m", "llava_pose", *map(str, args)]
    return subprocess.run(
        command, capture_output=True, text=True, cwd=REPO, env=_env(), timeout=timeout
    )


def one_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """The child failed with exit 2 and printed one error line holding every needle."""
    err = result.stderr.strip()
    assert result.returncode == 2, (result.returncode, result.stderr)
    errors = [line for line in err.splitlines() if line.startswith("llava-pose: error: ")]
    assert len(errors) == 1 and "Traceback" not in err and "internal error" not in err, err
    for needle in needles:
        assert needle in errors[0], f"{needle!r} not in {errors[0]!r}"
    return errors[0]
