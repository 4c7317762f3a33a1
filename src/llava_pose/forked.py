"""Work handed to a forked child process while this one does something else: the second of
two cores, where threads would share one GIL. The one interface the start-up's parallel work
goes through, used twice, each measured to pay for itself on a train2017 dry run (README "How
it is built"): the COCO load reads the instances file in a child (`Forked`, ~1.5 s), and
prompts at scale are rendered by two processes (`share`, ~1 s). Only on Linux; anywhere it
cannot fork, the caller does the work itself."""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import pickle
import signal
import struct
import sys
import tempfile
from collections.abc import Callable
from typing import IO, Any, TypeVar

T = TypeVar("T")


class Forked:
    """``fn(*args)`` run in a forked child process, its result (pickled) read back later, so
    that this process works on something else meanwhile: the second of two cores.

    Only on Linux, where fork is cheap and safe for this: the child runs nothing but `fn`
    (no logging, no output) and leaves with ``os._exit``, its result or nothing sent through
    a pipe. `start` returns None where it cannot fork; `result` returns None when the child
    failed or died: the caller then does the work itself, and meets any error there."""

    def __init__(self, pid: int, fd: int) -> None:
        self.pid, self.fd = pid, fd

    @classmethod
    def start(cls, fn: Any, *args: Any) -> Forked | None:
        forked = _fork()
        if forked is None:
            return None
        pid, pipe = forked
        if pid == 0:  # the child
            code = 1
            try:
                data = pickle.dumps(fn(*args), protocol=5)
                with os.fdopen(pipe, "wb") as out:
                    out.write(data)
                code = 0
            finally:
                os._exit(code)
        return cls(pid, pipe)

    def result(self) -> Any:
        """The child's result (waiting for it), or None when it failed."""
        with os.fdopen(self.fd, "rb") as pipe:
            self.fd = -1
            data = pipe.read()
        _, status = os.waitpid(self.pid, 0)
        self.pid = 0
        if not data or status != 0:
            return None
        return pickle.loads(data)

    def close(self) -> None:
        """Stop and reap the child if `result` was not reached (an error, Ctrl-C)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.pid:
            _end(self.pid)
            self.pid = 0


def share(
    n: int,
    chunk: int,
    here: Callable[[int, int], T],
    there: Callable[[int, int], bytes],
    take: Callable[[int, int, bytes], T],
    meanwhile: Callable[[], object] | None = None,
) -> list[T]:
    """``here(start, end)`` for each chunk of ``range(n)``, in order, with a forked child doing
    chunks too: it sends ``there(start, end)``, which ``take`` here turns into the same result.

    This process takes chunks from the front and the child from the back, claimed under a lock,
    so the two meet wherever their speeds put them: no fixed split to tune, and `meanwhile`
    (work of this process's own, run first) is absorbed rather than waited for. The child's
    chunks are taken as they come, between this process's own, so little is left once the two
    meet. Its data goes to an unlinked temporary file and only (chunk, offset, length) records
    go through the pipe, so the child never waits for this process to read. Without fork, or
    for what a failed child claimed and did not send, this process does the chunks itself."""
    chunks = -(-n // chunk)

    def span(k: int) -> tuple[int, int]:
        return k * chunk, min(n, (k + 1) * chunk)

    shared = _shared(chunks) if chunks >= 2 and _can_fork() else None
    if shared is None:
        if meanwhile is not None:
            meanwhile()
        return [here(*span(k)) for k in range(chunks)]
    done: dict[int, T] = {}
    claims, spill = shared
    with claims, spill:
        pid, pipe = _fork() or (-1, -1)
        if pid == 0:  # the child
            code = 1
            try:
                offset = 0
                while (k := claims.back()) is not None:
                    data = there(*span(k))
                    os.pwrite(spill.fileno(), data, offset)
                    os.write(pipe, _RECORD.pack(k, offset, len(data)))
                    offset += len(data)
                code = 0
            finally:
                os._exit(code)
        sent = _Sent(pipe, spill.fileno()) if pid > 0 else None
        try:
            if meanwhile is not None:
                meanwhile()
            while (k := claims.front()) is not None:
                done[k] = here(*span(k))
                if sent is not None:
                    for j, data in sent.ready():
                        done[j] = take(*span(j), data)
            if sent is not None:
                for j, data in sent.rest():
                    done[j] = take(*span(j), data)
        finally:
            if sent is not None:
                sent.close()
            if pid > 0:
                _end(pid)  # gone already, unless this one failed
    for k in range(chunks):  # claimed by a child that died before sending them
        if k not in done:
            done[k] = here(*span(k))
    return [done[k] for k in range(chunks)]


def _can_fork() -> bool:
    return sys.platform == "linux" and hasattr(os, "fork")


def _end(pid: int) -> None:
    """Kill a child if it still runs, and reap it: none is left behind, not even a zombie."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _shared(chunks: int) -> tuple[_Claims, IO[bytes]] | None:
    """The claims and the spill file of a `share`; None where either cannot be made (no
    memory file or no record locks, no writable temporary folder): one process does it all."""
    try:
        claims = _Claims(chunks)
    except OSError:
        return None
    try:
        return claims, tempfile.TemporaryFile()
    except OSError:
        claims.close()
        return None


def _fork() -> tuple[int, int] | None:
    """Fork, with a pipe from the child to this process: (0, the write end) in the child, its
    logging off (it runs only what it was forked for, then ``os._exit``); (the child's pid, the
    read end) here; None where it cannot fork."""
    if not _can_fork():
        return None
    sys.stdout.flush()  # nothing buffered here is written twice
    sys.stderr.flush()
    read, write = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read)
        os.close(write)
        return None
    if pid == 0:
        os.close(read)
        logging.disable(logging.CRITICAL)
        return 0, write
    os.close(write)
    return pid, read


_RECORD = struct.Struct("<QQQ")  # chunk index, offset in the spill file, length


class _Claims:
    """The next chunk from the front (this process) and from the back (the child), as two
    counters in shared memory under a lock on the memory's own file (POSIX record locks are
    per process, so the two exclude each other)."""

    def __init__(self, chunks: int) -> None:
        self.fd = os.memfd_create("llava-pose-claims")
        try:
            os.ftruncate(self.fd, 16)
            self.memory = mmap.mmap(self.fd, 16)
            os.lockf(self.fd, os.F_TLOCK, 0)  # record locks work on it
            os.lockf(self.fd, os.F_ULOCK, 0)
        except OSError:
            os.close(self.fd)
            raise
        self.memory[:] = struct.pack("<qq", 0, chunks)

    def __enter__(self) -> _Claims:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.memory.close()
        os.close(self.fd)

    def _claim(self, front: bool) -> int | None:
        os.lockf(self.fd, os.F_LOCK, 0)
        try:
            lo, hi = struct.unpack("<qq", self.memory[:])
            if lo >= hi:
                return None
            if front:
                self.memory[:8] = struct.pack("<q", lo + 1)
                return lo
            self.memory[8:] = struct.pack("<q", hi - 1)
            return hi - 1
        finally:
            os.lockf(self.fd, os.F_ULOCK, 0)

    def front(self) -> int | None:
        return self._claim(True)

    def back(self) -> int | None:
        return self._claim(False)


class _Sent:
    """The child's records, read from the pipe without waiting (`ready`) or to its end
    (`rest`), each with its data from the spill file."""

    def __init__(self, pipe: int, spill: int) -> None:
        self.pipe, self.spill = pipe, spill
        self.buffer = b""
        os.set_blocking(pipe, False)

    def _records(self) -> list[tuple[int, bytes]]:
        size = _RECORD.size
        whole = len(self.buffer) // size * size
        records = [_RECORD.unpack_from(self.buffer, i) for i in range(0, whole, size)]
        self.buffer = self.buffer[whole:]
        return [(k, os.pread(self.spill, length, offset)) for k, offset, length in records]

    def ready(self) -> list[tuple[int, bytes]]:
        try:
            while data := os.read(self.pipe, 1 << 16):
                self.buffer += data
        except BlockingIOError:
            pass
        return self._records()

    def rest(self) -> list[tuple[int, bytes]]:
        os.set_blocking(self.pipe, True)
        while data := os.read(self.pipe, 1 << 16):
            self.buffer += data
        return self._records()

    def close(self) -> None:
        if self.pipe >= 0:
            os.close(self.pipe)
            self.pipe = -1
