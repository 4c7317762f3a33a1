"""One run at a time per output and per cache, so two runs never pay for the same call.

Two `generate` processes on the same ``--out`` (or ``--cache``) would otherwise both find a
request missing from the cache and both send it. The second run stops at once instead, with
one line naming the process that holds the folder and what to do.

The lock is an OS advisory lock (``flock``; ``msvcrt.locking`` on Windows) on a small file
beside what it guards. The kernel drops it when its process ends, however it ends, so a run
killed with ``kill -9`` leaves no stale lock behind: the file may stay, the lock does not.
Inside one process a path is held once and re-entered freely (tests and notebooks call
several commands in a row); ``scope()`` releases everything taken inside it, and the CLI wraps
each command in one.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .errors import LlavaPoseError

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(f: IO[Any]) -> bool:
        try:
            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

else:
    import fcntl

    def _try_lock(f: IO[Any]) -> bool:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


class InUseError(LlavaPoseError):
    """Another live process holds the output or cache this run needs."""


class LockPathError(LlavaPoseError):
    """The lock's own path is a link, a folder or cannot be written."""


_held: dict[Path, IO[Any]] = {}
_scopes: list[list[Path]] = []


def lock_file(path: str | Path, folder: bool = False) -> Path:
    """Where the lock of `path` lives: inside a folder, beside a file (hidden either way)."""
    path = Path(path)
    return path / ".llava-pose.lock" if folder else path.with_name(f".{path.name}.lock")


def hold(path: str | Path, command: str, *, what: str = "--out", folder: bool = False) -> None:
    """Hold `path` (an output folder or file, or a cache) for the rest of the current scope;
    raise `InUseError` at once if another process holds it."""
    target = lock_file(path, folder).absolute()
    if target in _held:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    f = _open_lock(target)
    if not _try_lock(f):
        holder = _holder(f)
        f.close()
        raise InUseError(
            f"{path} is in use by another llava-pose run ({holder}): wait for it to finish, "
            f"or give this run another {what}"
        )
    f.seek(0)
    f.truncate()
    f.write(
        json.dumps(
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "command": command,
                "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            }
        )
    )
    f.flush()
    _held[target] = f
    if _scopes:
        _scopes[-1].append(target)


def _open_lock(target: Path) -> IO[Any]:
    """The lock file, opened for update without following a link: a ``.llava-pose.lock``
    placed as a symlink to another file would otherwise have that file truncated and
    overwritten with the holder's line. A link or a directory there is refused."""
    if target.is_symlink() or target.is_dir():
        kind = "a symbolic link" if target.is_symlink() else "a directory"
        raise LockPathError(
            f"{target}: the lock file is {kind}; llava-pose writes its lock there and never "
            "follows a link or replaces a folder: remove it and rerun"
        )
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(target, flags, 0o644)
    except OSError as e:  # a link made since the check (O_NOFOLLOW: ELOOP), or unwritable
        raise LockPathError(f"{target}: cannot open the lock file ({e.strerror})") from None
    return os.fdopen(fd, "r+", encoding="utf-8")


# How long a refused run waits for the holder to write who it is: a holder writes right after
# it takes the lock, so two runs started together would otherwise read an empty file.
HOLDER_WAIT_S = 1.0


def _holder(f: IO[Any]) -> str:
    """Who holds the lock, as the holder wrote it; read again until it is there (at most
    `HOLDER_WAIT_S`), since the holder takes the lock first and writes after."""
    deadline = time.monotonic() + HOLDER_WAIT_S
    while True:
        f.seek(0)
        described = _describe(f.read())
        if described is not None:
            return described
        if time.monotonic() >= deadline:
            return "a process that has not said which yet"
        time.sleep(0.01)


def _describe(text: str) -> str | None:
    try:
        info = json.loads(text)
        return (
            f"pid {info['pid']} on {info['host']}, `{info['command']}`, started {info['started']}"
        )
    except (ValueError, KeyError, TypeError):
        return None


@contextlib.contextmanager
def scope() -> Iterator[None]:
    """Release, on the way out, every lock taken inside."""
    _scopes.append([])
    try:
        yield
    finally:
        for target in _scopes.pop():
            f = _held.pop(target, None)
            if f is not None:
                f.close()  # closing the file drops the OS lock
