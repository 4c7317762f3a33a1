"""The CLI under misuse: secrets, budgets, unreachable servers, timeouts, bad options, missing
extras and logs that stay readable. Real CLI, real SDKs, real loopback servers, COCO-MINI."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import find_coco_mini, generate_args
from tests.servers import Fault, OpenAIServer
from tests.test_generate import teacher_reply

from llava_pose.cli import main

REPO = Path(__file__).resolve().parents[2]
KEY = "sk-test-LEAKYSECRET-7f3a9c2e51"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with OpenAIServer(latency=0.01, responder=teacher_reply, api_key=KEY) as s:
        yield s


def written(folder: Path) -> bytes:
    """Every byte the tool wrote under `folder` (cache and its WAL included)."""
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def fragments(secret: str, n: int = 8) -> list[str]:
    return [secret[i : i + n] for i in range(len(secret) - n + 1)]


# -- 4. secrets -------------------------------------------------------------------------------


def test_a_key_echoed_in_replies_and_errors_is_in_no_file(server, tmp_path, capsys) -> None:
    masked = f"{KEY[:14]}...{KEY[-4:]}"
    server.responder = lambda body: teacher_reply(body).replace("looking", f"looking ({KEY})", 1)
    server.add_fault(
        Fault("context_too_long", message=f"Incorrect API key provided: {masked}"), times=2
    )
    rc = main(["-v", *generate_args(server.url, tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 1  # the two 400s failed; the rest was written
    data = written(tmp_path / "out") + err.encode()
    assert b"failed.jsonl" not in data or (tmp_path / "out" / "failed.jsonl").exists()
    assert (tmp_path / "out" / "failed.jsonl").read_text().count("***") >= 1
    for piece in fragments(KEY):
        assert piece.encode() not in data, piece
    assert b"(***)" in written(tmp_path / "out")  # the reply was kept, the key scrubbed


def test_a_password_in_base_url_is_never_printed(server, tmp_path, capsys, monkeypatch) -> None:
    server.api_key = None  # a proxy that takes HTTP basic auth from the URL, not the key
    monkeypatch.delenv("OPENAI_API_KEY")
    host = server.url.split("//", 1)[1]
    url = f"http://alice:hunter2-pw-1234@{host}"
    assert main(["-v", *generate_args(url, tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "alice:***@" in err and "hunter2" not in err
    assert b"hunter2" not in written(tmp_path / "out")


def test_a_password_echoed_back_in_any_encoding_is_in_no_file(
    server, tmp_path, capsys, monkeypatch
) -> None:
    """The SDK sends ``user:password`` as HTTP Basic: a server that echoes its headers hands
    back base64 that decodes to the password; percent-encoded forms come back too."""
    server.api_key = None
    monkeypatch.delenv("OPENAI_API_KEY")
    password = "Pw9x!Kq7#zR2"
    quoted = urllib.parse.quote(password, safe="")
    host = server.url.split("//", 1)[1]
    basic = base64.b64encode(f"alice:{password}".encode()).decode()

    def echo(body: dict[str, Any]) -> str:
        header = server.requests[-1].headers.get("authorization", "")
        return teacher_reply(body).replace(
            "looking", f"looking ({header}; {quoted}; {password})", 1
        )

    server.responder = echo
    url = f"http://alice:{quoted}@{host}"
    assert main(["-v", *generate_args(url, tmp_path / "out")]) == 0
    assert server.requests[0].headers["authorization"] == f"Basic {basic}"  # Basic was sent
    data = written(tmp_path / "out") + capsys.readouterr().err.encode()
    for secret in (password, quoted, basic):
        for piece in fragments(secret):
            assert piece.encode() not in data, piece
    assert b"(Basic ***; ***; ***)" in written(tmp_path / "out")  # replies kept, scrubbed


def test_a_key_and_a_url_password_both_wanting_the_authorization_header_are_refused(
    server, tmp_path, capsys
) -> None:
    """Basic auth from the URL would replace the Bearer key without a word: one or the other."""
    host = server.url.split("//", 1)[1]
    rc = main(generate_args(f"http://alice:hunter2-pw-1234@{host}", tmp_path / "out"))
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "unset OPENAI_API_KEY" in err
    assert "hunter2" not in err and KEY not in err
    assert server.requests == []


def test_a_rejected_key_names_the_variable_in_use(server, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("MY_TEAM_KEY", "sk-wrong-key-000000000")
    rc = main(["-q", *generate_args(server.url, tmp_path / "o", "--api-key-env", "MY_TEAM_KEY")])
    err = capsys.readouterr().err
    assert rc == 2 and "MY_TEAM_KEY" in err and "OPENAI_API_KEY" not in err
    assert "sk-wrong-key" not in err


# -- 3. the budget --------------------------------------------------------------------------


def test_absurd_usage_stops_a_budgeted_run_after_the_first_reply(server, tmp_path, capsys) -> None:
    server.latency = 0.2
    server.report_usage = lambda p, c: (p, 10**9)
    out = tmp_path / "out"
    rc = main(["-q", *generate_args(server.url, out, "--concurrency", 16, "--max-cost", 0.05)])
    err = capsys.readouterr().err
    assert rc == 3 and "impossible usage" in err and "Traceback" not in err
    first_reply = min(r.finished for r in server.requests if r.finished)
    assert all(r.arrived <= first_reply for r in server.requests)
    stats = json.loads((out / "stats.json").read_text())
    assert 0 <= stats["cost_usd"]["this_run"] <= 0.05 and stats["complete"] is False


def test_a_rerun_does_not_get_a_fresh_budget(server, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    args = generate_args(server.url, out, "--max-cost", 0.04, "--concurrency", 1, images=10)
    assert main(["-q", *args]) == 3
    paid = len(server.completed)
    assert 0 < paid < 30
    assert main(["-q", *args]) == 3  # the same command again: nothing more is paid
    assert len(server.completed) == paid
    assert "by earlier runs" in capsys.readouterr().err
    stats = json.loads((out / "stats.json").read_text())
    assert stats["cost_usd"]["this_run"] == 0 and stats["cost_usd"]["from_cache"] <= 0.04


# -- 5. fail fast, say the fix ----------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_base_url_stops_in_seconds(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    url = f"http://127.0.0.1:{closed_port()}/v1"
    started = time.monotonic()
    rc = main(["-q", *generate_args(url, tmp_path / "out", images=3)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and time.monotonic() - started < 10
    assert len(err.splitlines()) == 1 and url in err and "connection refused" in err
    assert not (tmp_path / "out" / "llava_pose_all.json").exists()


def test_timeouts_are_said_once_with_the_numbers(server, tmp_path, capsys) -> None:
    server.latency = 3.0
    args = generate_args(
        server.url, tmp_path / "out", "--timeout", 0.3, "--max-retries", 1, images=1
    )
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("timed out after 0.3s and is retried") == 1
    assert "needs a higher --timeout" in err and "1024 tokens" in err


def test_dry_run_needs_no_key_and_prints_the_estimate_once(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    args = ["generate", "--coco", find_coco_mini(), "--split", "val2017", "--dry-run"]
    rc = main([*map(str, args), "--teacher", "openai:gpt-4o", "--out", str(tmp_path / "o")])
    captured = capsys.readouterr()
    assert rc == 0
    both = captured.out + captured.err
    assert both.count("prompt tokens:") == 1 and "cost: ~$" in captured.out
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--tasks", "conversation,foo"], "--tasks: 'foo' is not one of conversation"),
        (["--concurrency", "0"], "--concurrency: must be at least 1, got 0"),
        (["--max-images", "-3"], "--max-images: must be at least 1, got -3"),
        (["--max-cost", "-1"], "--max-cost: must be at least 0"),
        (["--timeout", "0"], "--timeout: must be more than 0"),
        (["--max-retries", "-1"], "--max-retries: must be at least 0"),
    ],
)
def test_option_values_are_checked_before_any_file_is_read(tmp_path, capsys, args, needle) -> None:
    missing = tmp_path / "no-such-coco"  # would be the error if files were read first
    rc = main(["generate", "--coco", str(missing), "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and needle in err and "no-such-coco" not in err


def test_option_values_from_a_config_file_are_checked_too(tmp_path, capsys) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("tasks: [conversation, poems]\n")
    rc = main(["generate", "--config", str(config), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and f"{config}: tasks: 'poems' is not one of" in err


@pytest.mark.parametrize("position", ["before", "after"])
def test_quiet_and_verbose_work_before_and_after_the_command(tmp_path, capsys, position) -> None:
    args = ["generate", "--out", str(tmp_path / "o"), "--max-images", "2"]
    assert main(["-q", *args] if position == "before" else [*args, "-q"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["-v", *args] if position == "before" else [*args, "-v"]) == 0
    assert "offline" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["generate", "--teacher", "hf:some/model"], "--teacher hf:some/model: not usable as"),
        (
            ["bench", "judge", "--judge", "rules", "--answers", "a.jsonl"],
            "--judge rules: not usable",
        ),
    ],
)
def test_a_model_in_a_role_it_cannot_play_is_refused_at_start(tmp_path, capsys, args, needle):
    assert main([*args, "--out", str(tmp_path / "o")]) == 2
    assert needle in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_an_option_the_backend_does_not_take_is_an_error(tmp_path, capsys) -> None:
    rc = main(["generate", "--base-url", "http://127.0.0.1:9/v1", "--out", str(tmp_path / "o")])
    assert rc == 2 and "--base-url: rules: models do not take it" in capsys.readouterr().err


# -- core install only: a subprocess where torch cannot be imported ------------------------

NO_TRAIN = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "transformers", "accelerate", "peft", "safetensors"}:
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, Blocker())
from llava_pose.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--data", "d.json", "--output", "runs/x"],
        ["chat", "--model", "runs/x", "hello"],
        ["export", "runs/x", "--output", "runs/y"],
        ["bench", "answer", "--bench", "b", "--model", "hf:runs/x", "--out", "a.jsonl"],
    ],
)
def test_without_the_train_extra_one_line_names_the_install(tmp_path, args) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", NO_TRAIN, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    err = proc.stderr.strip()
    assert proc.returncode == 2, err
    assert len(err.splitlines()) == 1 and 'pip install -e ".[train]"' in err


# -- logs stay readable when stderr is a file --------------------------------------------------


def test_stderr_to_a_file_gets_whole_lines_only(server, tmp_path) -> None:
    server.add_fault(Fault("hang", hang=5), times=1)  # one call times out mid-run: a warning
    log = tmp_path / "run.log"
    cmd = [sys.executable, "-m", "llava_pose"]
    cmd += generate_args(server.url, tmp_path / "out", "--timeout", 0.5, images=3)
    with log.open("w") as f:
        rc = subprocess.run(cmd, cwd=REPO, stderr=f, env={**os.environ}, timeout=120).returncode
    text = log.read_text()
    assert rc == 0 and "\r" not in text
    lines = text.splitlines()
    assert any(line.startswith("a call to openai:gpt-4o") for line in lines)
    assert any(line.startswith("teacher: 9/9 req") for line in lines)
    assert lines[-1].startswith("wrote ")


def _subparser(parser: Any, name: str) -> Any:
    action = next(a for a in parser._actions if getattr(a, "choices", None) and name in a.choices)
    return action.choices[name]


def test_a_named_command_builds_only_its_parser_and_the_same_one() -> None:
    """`llava-pose generate ...` registers generate alone (a faster start); its options,
    help and defaults are those of the full parser, for every command."""
    from llava_pose.cli import COMMANDS, build_parser, named_command

    full = build_parser()
    for name in COMMANDS:
        lazy = build_parser(name)
        commands = next(a for a in lazy._actions if getattr(a, "choices", None)).choices
        assert name in commands and len(commands) <= 2  # train's module registers export too
        assert _subparser(lazy, name).format_help() == _subparser(full, name).format_help()
    assert named_command(["-v", "generate", "--out", "x"]) == "generate"
    assert named_command(["--version"]) is None


def test_an_unknown_command_lists_them_all(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["genrate"])
    err = capsys.readouterr().err
    assert "invalid choice" in err and "generate" in err and "overlay" in err
