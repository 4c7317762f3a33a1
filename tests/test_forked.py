"""`Forked`: work in a second process, its result read back, its failures said as None;
`share`: chunks of one job split between two processes, whatever either does."""

from __future__ import annotations

import os
import time

import pytest

from llava_pose import forked
from llava_pose.forked import Forked, share


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


def _span(start: int, end: int) -> tuple[int, int, int]:
    return start, end, os.getpid()


def _encoded(start: int, end: int) -> bytes:
    return f"{start} {end} {os.getpid()}".encode()


def _taken(start: int, end: int, data: bytes) -> tuple[int, int, int]:
    s, e, pid = map(int, data.split())
    assert (s, e) == (start, end)
    return s, e, pid


def _slowly(start: int, end: int) -> tuple[int, int, int]:
    time.sleep(0.02)  # so the child surely takes a share
    return _span(start, end)


@pytest.mark.parametrize(("n", "chunk"), [(100, 7), (101, 10), (5, 1), (3, 5), (0, 4)])
def test_share_covers_every_chunk_once_in_order_between_two_processes(n: int, chunk: int) -> None:
    parts = share(n, chunk, _slowly, _encoded, _taken)
    assert [(s, e) for s, e, _ in parts] == [(k, min(n, k + chunk)) for k in range(0, n, chunk)]
    pids = [pid for _, _, pid in parts]
    if len(parts) >= 5:  # both took part: this one from the front, the child from the back
        assert pids[0] == os.getpid() and pids[-1] != os.getpid()
        child = pids.index(pids[-1])
        assert set(pids[:child]) == {os.getpid()} and set(pids[child:]) == {pids[-1]}


def test_share_runs_meanwhile_here_while_the_child_takes_more() -> None:
    ran: list[int] = []
    parts = share(
        40,
        1,
        _slowly,
        _encoded,
        _taken,
        meanwhile=lambda: ran.append(os.getpid()) or time.sleep(0.3),
    )
    assert ran == [os.getpid()]
    assert sum(pid != os.getpid() for _, _, pid in parts) > 20  # it worked on meanwhile


def test_share_does_here_what_a_failed_child_left(monkeypatch: pytest.MonkeyPatch) -> None:
    parent = os.getpid()
    sent: list[int] = []

    def dies_after_one(start: int, end: int) -> bytes:
        if sent:
            os._exit(3)  # as if killed mid-way, a chunk claimed and never sent
        sent.append(start)
        return _encoded(start, end)

    parts = share(30, 3, _slowly, dies_after_one, _taken)
    assert [(s, e) for s, e, _ in parts] == [(k, k + 3) for k in range(0, 30, 3)]
    assert sum(pid != parent for _, _, pid in parts) == 1

    def no_memory_file(name: str) -> int:
        raise OSError(38, "Function not implemented")

    with monkeypatch.context() as m:  # no shared memory for the claims: one process does all
        m.setattr(os, "memfd_create", no_memory_file)
        parts = share(9, 3, _span, _encoded, _taken)
        assert parts == [(0, 3, parent), (3, 6, parent), (6, 9, parent)]

    monkeypatch.setattr(forked, "_can_fork", lambda: False)  # no fork: all here, meanwhile first
    order: list[str] = []
    parts = share(
        9,
        3,
        lambda s, e: order.append("chunk") or _span(s, e),
        _encoded,
        _taken,
        meanwhile=lambda: order.append("meanwhile"),
    )
    assert order == ["meanwhile", "chunk", "chunk", "chunk"]
    assert {pid for _, _, pid in parts} == {parent}


def test_share_kills_its_child_when_this_side_fails() -> None:
    before = set(_children())
    forked_pids: set[int] = set()

    def fails(start: int, end: int) -> tuple[int, int, int]:
        raise ValueError("here")

    def there(start: int, end: int) -> bytes:
        time.sleep(60)
        return b""

    with pytest.raises(ValueError, match="here"):
        share(
            10,
            1,
            fails,
            there,
            _taken,
            meanwhile=lambda: forked_pids.update(set(_children()) - before),
        )
    assert len(forked_pids) == 1
    with pytest.raises(ProcessLookupError):
        os.kill(forked_pids.pop(), 0)  # killed and reaped, not waited for


def _children() -> list[int]:
    """This process's child pids (Linux /proc)."""
    task = f"/proc/{os.getpid()}/task/{os.getpid()}/children"
    with open(task) as f:
        return [int(p) for p in f.read().split()]
