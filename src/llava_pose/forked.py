"""Work handed to a forked child process while this one does something else: the second of
two cores, where threads would share one GIL. Used by the COCO load (the instances file),
prompt rendering at scale, and the cost estimate (counted while the SDK is imported)."""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import sys
from typing import Any


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
        if sys.platform != "linux" or not hasattr(os, "fork"):
            return None
        sys.stdout.flush()
        sys.stderr.flush()
        read, write = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(read)
            os.close(write)
            return None
        if pid == 0:  # the child
            code = 1
            try:
                os.close(read)
                logging.disable(logging.CRITICAL)
                data = pickle.dumps(fn(*args), protocol=5)
                with os.fdopen(write, "wb") as out:
                    out.write(data)
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        return cls(pid, read)

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
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
            self.pid = 0
