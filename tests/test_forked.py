"""`Forked`: work in a second process, its result read back, its failures said as None."""

from __future__ import annotations

import os
import time

import pytest

from llava_pose.forked import Forked


def _pid_and_value(value: int) -> tuple[int, int]:
    return os.getpid(), value * 2


def _fail() -> None:
    raise ValueError("in the child")


def _sleep() -> None:
    time.sleep(60)


def test_forked_runs_in_another_process_and_says_when_it_failed() -> None:
    child = Forked.start(_pid_and_value, 21)
    assert child is not None
    pid, value = child.result()
    assert pid != os.getpid() and value == 42
    failing = Forked.start(_fail)
    assert failing is not None and failing.result() is None
    sleeping = Forked.start(_sleep)
    assert sleeping is not None
    pid, started = sleeping.pid, time.monotonic()
    sleeping.close()  # killed and reaped, not waited for
    assert time.monotonic() - started < 5
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # no child left behind, not even a zombie
