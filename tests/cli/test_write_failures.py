"""Errors, not tracebacks, when the machine refuses: an output on a read-only mount, a full disk,
a cache that is no cache. And a rerun that fails half-way never leaves a set of outputs that
mixes two runs under a ``stats.json`` that says complete. Real CLI in real child processes on
a disk the kernel makes read-only or full (`tests.fsfaults`)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from tests.conftest import KEY, generate_args, one_line_error
from tests.fsfaults import one_line, run_cli, run_cli_read_only
from tests.servers import OpenAIServer
from tests.test_generate import teacher_reply

from llava_pose.cli import main
from llava_pose.errors import OutputError
from llava_pose.io import file_set


def offline_generate(coco: Path, out: Path, *extra: object) -> list[object]:
    return ["generate", "--coco", coco, "--split", "val2017", "--out", out, *extra]


@pytest.fixture(scope="module")
def generated(coco_mini: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An offline teacher's dataset of COCO-MINI val2017, for the commands that read one."""
    out = tmp_path_factory.mktemp("generated")
    assert main(["-q", *map(str, offline_generate(coco_mini, out))]) == 0
    return out


@pytest.fixture(scope="module")
def poseqa(coco_mini: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("poseqa")
    args = ["-q", "poseqa", "build", "--coco", coco_mini, "--split", "val2017", "--out", out]
    assert main(list(map(str, args))) == 0
    questions = [json.loads(line) for line in (out / "questions.jsonl").open()]
    rows = [{"question_id": q["question_id"], "text": "Yes."} for q in questions]
    (out / "answers.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def commands(coco: Path, generated: Path, poseqa: Path, out: Path) -> dict[str, list[object]]:
    """Each command that writes, with its output inside `out`."""
    return {
        "generate": offline_generate(coco, out / "data"),
        "prepare": ["prepare", "--coco", coco, "--split", "val2017", "--out", out / "c.jsonl"],
        "verify": [
            "verify", "--data", generated / "llava_pose_all.json", "--coco", coco,
            "--split", "val2017", "--out", out / "verify",
        ],
        "poseqa build": [
            "poseqa", "build", "--coco", coco, "--split", "val2017", "--out", out / "poseqa",
        ],
        "poseqa score": [
            "poseqa", "score", "--bench", poseqa, "--answers", poseqa / "answers.jsonl",
            "--out", out / "report",
        ],
    }  # fmt: skip


COMMANDS = ["generate", "prepare", "verify", "poseqa build", "poseqa score"]


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_an_output_on_a_read_only_mount_is_one_line(
    command: str, coco_mini: Path, generated: Path, poseqa: Path, tmp_path: Path
) -> None:
    mount = tmp_path / "ro"
    args = commands(coco_mini, generated, poseqa, mount)[command]
    result = run_cli_read_only(mount, args)
    one_line(result, str(mount))
    assert list(mount.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_an_output_on_a_full_disk_is_one_line(
    command: str, coco_mini: Path, generated: Path, poseqa: Path, tmp_path: Path
) -> None:
    out = tmp_path / "full"
    args = commands(coco_mini, generated, poseqa, out)[command]
    line = one_line(run_cli(args, file_limit=300), str(out))
    assert "free some space" in line
    leftovers = [p for p in out.rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    assert all(p.stat().st_size <= 300 for p in leftovers)
    assert not [p for p in leftovers if p.name.endswith(".tmp")]


def test_a_failed_rerun_leaves_the_old_set_or_says_it_is_incomplete(
    coco_mini: Path, tmp_path: Path
) -> None:
    """The reported bug: a rerun with another seed on a nearly full disk crashed after
    writing conversation.json, leaving the old detail/reasoning/merged files and the old
    ``stats.json`` (complete: true) beside it."""
    out = tmp_path / "out"
    first = offline_generate(coco_mini, out, "--max-images", "6", "--seed", "0")
    assert run_cli(first).returncode == 0
    old = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    stats = json.loads(old["stats.json"])
    sizes = sorted(len(old[name]) for name in stats["files"].values())
    # room for every per-task file, not for the merged one (the largest)
    limit = (sizes[-2] + sizes[-1]) // 2
    second = offline_generate(coco_mini, out, "--max-images", "6", "--seed", "1")
    one_line(run_cli(second, file_limit=limit), "llava_pose_all.json", "free some space")
    now = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    marker = json.loads(now["stats.json"])
    if marker["complete"]:  # then it must be exactly the old set
        assert {n: now.get(n) for n in stats["files"].values()} == {
            n: old[n] for n in stats["files"].values()
        }
        assert now["stats.json"] == old["stats.json"]
    assert not [name for name in now if name.endswith(".tmp")]


def test_a_set_failing_while_it_is_put_in_place_says_it_is_incomplete(tmp_path: Path) -> None:
    (tmp_path / "b.json").mkdir()  # a folder where the set puts a file: the rename fails
    (tmp_path / "b.json" / "x").write_text("")
    (tmp_path / "stats.json").write_text('{"complete": true}')
    with (
        pytest.raises(OutputError, match=r"b\.json"),
        file_set(tmp_path, "stats.json", {"complete": False, "writing": True}) as files,
    ):
        files.json("a.json", [1])
        files.json("b.json", [2])
        files.json("stats.json", {"complete": True, "new": True})
    assert json.loads((tmp_path / "stats.json").read_text()) == {
        "complete": False,
        "writing": True,
    }
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_call_that_cannot_be_kept_stops_the_run_with_one_line(tmp_path: Path) -> None:
    """The cache's WAL cannot grow on a full disk: the run stops at the first call it cannot
    keep, instead of paying for every other one and keeping none."""
    with OpenAIServer(latency=0.0, responder=teacher_reply) as server:
        out = tmp_path / "out"
        args = generate_args(server.url, out, "--concurrency", 1, images=4)
        result = run_cli(args, file_limit=60_000)  # room to open the cache, not to fill it
        one_line(result, "cache.sqlite", "cannot write to the cache", "the run stops here")
        assert 0 < len(server.requests) < 12  # not all 12 calls were paid for


# -- caches that are no cache -------------------------------------------------------------------


def _not_sqlite(path: Path) -> None:
    path.write_text("these are my notes, not a database\n" * 50)


def _truncated(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE completions (key TEXT PRIMARY KEY, backend TEXT)")
    db.executemany(
        "INSERT INTO completions VALUES (?, ?)", [(str(i), "x" * 500) for i in range(99)]
    )
    db.commit()
    db.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _directory(path: Path) -> None:
    path.mkdir()


def _foreign(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, caption TEXT)")
    db.execute("INSERT INTO photos VALUES (1, 'my holiday')")
    db.commit()
    db.close()


BAD_CACHES = {"not sqlite": _not_sqlite, "truncated": _truncated, "a directory": _directory}
BAD_CACHES["foreign sqlite"] = _foreign


@pytest.mark.parametrize("kind", list(BAD_CACHES))
def test_a_cache_that_is_no_cache_is_one_line(
    kind: str, server: OpenAIServer, tmp_path: Path, capsys
) -> None:
    server.responder = teacher_reply
    out = tmp_path / "out"
    out.mkdir()
    BAD_CACHES[kind](out / "cache.sqlite")
    before = sorted(p.name for p in out.iterdir())
    rc = main(["-q", *generate_args(server.url, out)])
    one_line_error(capsys, rc, "cache.sqlite")
    assert server.requests == []
    if kind == "foreign sqlite":  # someone else's data is left as it was
        db = sqlite3.connect(out / "cache.sqlite")
        assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["photos"]
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        n for n in before if not n.startswith(".")
    ]


@pytest.mark.parametrize("step", ["status", "cancel"])
@pytest.mark.parametrize("kind", list(BAD_CACHES))
def test_batch_control_on_a_cache_that_is_no_cache_is_one_line(
    step: str, kind: str, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    BAD_CACHES[kind](tmp_path / "cache.sqlite")
    rc = main(["batch", step, "--cache", str(tmp_path / "cache.sqlite")])
    one_line_error(capsys, rc, "cache.sqlite")
