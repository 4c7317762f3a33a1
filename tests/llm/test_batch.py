"""--batch: pure builders, then the real commands against loopback servers that speak OpenAI's
Files+Batches and Anthropic's Message Batches through the official SDKs: submit and collect,
splitting, out-of-order results, expiry and failed items resubmitted, the budget at batch
prices, switching between batch and online, `batch status` and `batch cancel`."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
from tests.conftest import KEY, generate_args
from tests.ehpaub.helpers import model_answers, read_jsonl
from tests.ehpaub.replies import respond
from tests.servers import AnthropicServer, OpenAIServer

from llava_pose.cli import main
from llava_pose.errors import EXIT_OK, EXIT_PENDING, EXIT_SOME_FAILED
from llava_pose.llm.anthropic_api import AnthropicBackend
from llava_pose.llm.batch import (
    AnthropicBatches,
    BatchOptions,
    BatchRunner,
    Limits,
    OpenAIBatches,
    split_batches,
)
from llava_pose.llm.cache import Cache, request_key
from llava_pose.llm.openai_api import OpenAIBackend
from llava_pose.llm.pricing import Price
from llava_pose.llm.runner import Runner
from llava_pose.records import ChatRequest, Message

SERVERS = {
    "openai": (OpenAIServer, "openai:gpt-4o"),
    "anthropic": (AnthropicServer, "anthropic:claude-sonnet-4-5"),
}


def req(i: int, max_tokens: int = 64) -> ChatRequest:
    return ChatRequest(
        id=f"r{i}",
        model="m",
        messages=(Message("system", "Be brief."), Message("user", f"Question number {i}?")),
        max_tokens=max_tokens,
    )


@pytest.fixture(params=["openai", "anthropic"])
def provider(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    cls, spec = SERVERS[request.param]
    with cls(api_key=KEY, responder=respond) as server:
        yield server, spec


def backend_for(server, spec: str):
    model = spec.split(":", 1)[1]
    cls = OpenAIBackend if spec.startswith("openai") else AnthropicBackend
    return cls(model, base_url=server.url, api_key=KEY)


def runner(server, spec: str, cache: Cache, **options) -> BatchRunner:
    limits = options.pop("limits", None)
    max_cost = options.pop("max_cost", None)
    return BatchRunner(
        backend_for(server, spec),
        cache=cache,
        price=Price(2.5, 10.0),
        options=BatchOptions(poll_interval=0.01, limits=limits, **options),
        max_cost=max_cost,
    )


# -- pure -----------------------------------------------------------------------------------------


def sizes(groups) -> list[list[int]]:
    return [[len(line) for _, line in g] for g in groups]


def test_split_batches_respects_count_and_bytes() -> None:
    def items(*n: int):
        return ((i, b"x" * k) for i, k in enumerate(n))

    assert sizes(split_batches(items(*[10] * 7), Limits(3, 1000))) == [[10] * 3, [10] * 3, [10]]
    assert sizes(split_batches(items(40, 40, 40, 10), Limits(100, 80))) == [[40, 40], [40, 10]]
    assert sizes(split_batches(items(500, 10), Limits(100, 80))) == [[500], [10]]  # alone
    assert list(split_batches(items(), Limits(3, 10))) == []


def test_custom_id_is_the_cache_key_and_fits_both_providers() -> None:
    key = request_key("anthropic:claude-sonnet-4-5", req(1))
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", key)  # Anthropic's documented pattern


def test_items_are_the_online_bodies() -> None:
    from llava_pose.llm import anthropic_api, openai_api

    o = OpenAIBatches(OpenAIBackend("gpt-4o", base_url="http://127.0.0.1:9/v1", api_key="k"))
    assert o.item("abc", req(1)) == {
        "custom_id": "abc",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": openai_api.build_params(req(1), "gpt-4o", []),
    }
    a = AnthropicBatches(AnthropicBackend("claude-x", base_url="http://127.0.0.1:9", api_key="k"))
    assert a.item("abc", req(1)) == {
        "custom_id": "abc",
        "params": anthropic_api.build_params(req(1), "claude-x", []),
    }


def test_error_lines_are_sorted_by_kind() -> None:
    expired = {
        "custom_id": "a",
        "response": None,
        "error": {"code": "batch_expired", "message": "x"},
    }
    assert OpenAIBatches._error("a", expired).outcome == "expired"
    failed = {
        "custom_id": "b",
        "response": {"status_code": 400, "body": {"error": {"message": "bad max_tokens"}}},
        "error": None,
    }
    r = OpenAIBatches._error("b", failed)
    assert r.outcome == "failed" and "bad max_tokens" in (r.reason or "")


# -- the runner against the servers -----------------------------------------------------------------


def test_submit_then_collect_out_of_order_and_never_twice(provider, tmp_path: Path) -> None:
    server, spec = provider
    requests = [req(i) for i in range(7)]
    with Cache(tmp_path / "c.sqlite") as cache:
        first = runner(server, spec, cache, limits=Limits(3, 10**6))
        results = first.run(requests)
        assert [r.kind for r in results] == ["pending"] * 7
        assert (first.submitted, first.batches_submitted) == (7, 3)  # split by the count limit
        again = first.run(requests)  # the same runner polls again: nothing new is submitted
        assert all(r.ok for r in again)
        assert (first.stats.called, first.stats.cached) == (7, 0)  # paid now, not cached
        first.close()
        for request, result in zip(requests, again, strict=True):
            assert result.completion is not None
            assert f"number {request.id[1:]}" in result.completion.text  # matched by custom_id
        assert len(server.batches) == 3
        assert set(server.batch_submissions().values()) == {1}
        # The cache is the online one: an online run with it makes no call.
        online = Runner(backend_for(server, spec), cache=cache)
        before = len(server.requests)
        assert all(r.ok for r in online.run(requests)) and online.stats.cached == 7
        assert len(server.requests) == before


def test_expired_and_failed_items_are_resubmitted_then_failed(provider, tmp_path: Path) -> None:
    server, spec = provider
    server.batch_expire_when = lambda body: "number 1?" in json.dumps(body)
    server.batch_fail_when = lambda body: "number 2?" in json.dumps(body)
    requests = [req(i) for i in range(4)]
    with Cache(tmp_path / "c.sqlite") as cache:
        r = runner(server, spec, cache, wait=True, retries=1)
        results = r.run(requests)
        assert [x.kind for x in results] == ["ok", "failed", "failed", "ok"]
        assert "expired" in (results[1].error or "") and "in 2 batches" in (results[1].error or "")
        counts = server.batch_submissions()
        assert sorted(counts.values()) == [1, 1, 2, 2]  # each bad one twice (1 retry), others once
        server.batch_expire_when = None  # a later run with retries left gets it
        results = runner(server, spec, cache, wait=True, retries=2).run(requests)
        assert [x.kind for x in results] == ["ok", "ok", "failed", "ok"]


def test_held_batches_wait_and_are_polled(provider, tmp_path: Path) -> None:
    server, spec = provider
    server.batch_hold = True
    with Cache(tmp_path / "c.sqlite") as cache:
        assert runner(server, spec, cache).run([req(0)])[0].kind == "pending"
        assert runner(server, spec, cache).run([req(0)])[0].kind == "pending"  # still in progress
        assert len(server.batches) == 1
        server.release_batches()
        assert runner(server, spec, cache).run([req(0)])[0].ok


def test_budget_is_reserved_at_batch_prices_before_submitting(provider, tmp_path: Path) -> None:
    server, spec = provider
    requests = [req(i, max_tokens=1000) for i in range(4)]
    # Worst case per request at batch prices: ~1000 completion tokens x $5/M = $0.005.
    with Cache(tmp_path / "c.sqlite") as cache:
        r = runner(server, spec, cache, max_cost=0.011)
        results = r.run(requests)
        assert [x.kind for x in results] == ["pending", "pending", "budget", "budget"]
        assert r.stats.skipped_budget == 2 and "batch prices" in (r.stats.stop_reason or "")
        assert sum(server.batch_submissions().values()) == 2


# -- the four commands ------------------------------------------------------------------------------


def set_spec(args: list[str], spec: str, url: str) -> list[str]:
    args = list(args)
    args[args.index("--teacher") + 1] = spec
    args[args.index("--base-url") + 1] = url
    return args


def test_generate_batch_writes_what_online_writes(provider, tmp_path: Path, capsys) -> None:
    server, spec = provider
    batch_out, online_out = tmp_path / "batch", tmp_path / "online"
    args = set_spec(generate_args(server.url, batch_out), spec, server.url)
    assert main([*args, "--batch"]) == EXIT_PENDING
    err = capsys.readouterr().err
    assert "submitted 6 requests in 1 batches; rerun" in err and "batch status" in err
    assert not (batch_out / "llava_pose_all.json").exists()  # nothing half-written
    assert main([*args, "--batch"]) == EXIT_OK
    online = set_spec(generate_args(server.url, online_out), spec, server.url)
    calls = len(server.requests)
    assert main(online) == EXIT_OK
    assert len(server.requests) > calls  # separate caches: online pays its own calls
    for name in ("llava_pose_all.json", "rejected.jsonl"):
        assert (batch_out / name).read_bytes() == (online_out / name).read_bytes()
    stats = json.loads((batch_out / "stats.json").read_text())
    assert stats["mode"] == "batch" and stats["requests"]["called"] == 6
    # Online with the batch run's cache pays nothing.
    calls = len(server.requests)
    assert main([*online, "--cache", str(batch_out / "cache.sqlite")]) == EXIT_OK
    assert len(server.requests) == calls


def test_generate_batch_wait_and_failed_jsonl(provider, tmp_path: Path) -> None:
    server, spec = provider
    server.batch_fail_when = lambda body: "Describe" in json.dumps(body)
    out = tmp_path / "out"
    args = set_spec(generate_args(server.url, out), spec, server.url)
    rc = main([*args, "--batch", "--wait", "--poll-interval", "0.01", "--batch-retries", "1"])
    assert rc == EXIT_SOME_FAILED
    failed = read_jsonl(out / "failed.jsonl")
    twice = [body for body, n in server.batch_submissions().items() if n == 2]
    assert len(failed) == len(twice) > 0  # each failing request sent twice, then listed
    assert all("failed in 2 batches" in f["reason"] for f in failed)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["requests"]["failed"] == len(failed) and not stats["complete"]


def test_bench_build_judge_answer_in_batch_mode(provider, tmp_path: Path, coco_mini) -> None:
    server, spec = provider
    bench = tmp_path / "ehpaub"
    build = [
        "-q", "bench", "build", "--coco", str(coco_mini), "--split", "val2017", "--images", "2",
        "--out", str(bench), "--teacher", spec, "--base-url", server.url, "--batch",
    ]  # fmt: skip
    assert main(build) == EXIT_PENDING
    assert main(build) == EXIT_OK
    assert len(read_jsonl(bench / "questions.jsonl")) == 6
    manifest = json.loads((bench / "manifest.json").read_text())
    assert manifest["mode"] == "batch" and manifest["complete"]

    answers = tmp_path / "answers" / "m.jsonl"
    answer = [
        "-q", "bench", "answer", "--bench", str(bench), "--model", spec, "--base-url",
        server.url, "--out", str(answers), "--batch", "--image-root", str(coco_mini),
    ]  # fmt: skip
    assert main(answer) == EXIT_PENDING and not answers.exists()
    assert main(answer) == EXIT_OK
    assert len(read_jsonl(answers)) == 6
    # The answer requests carried the image, in the provider's batch shape.
    assert any("base64" in body for body in server.batch_submissions())

    good = model_answers(tmp_path / "good.jsonl", bench, "GOOD")
    reviews = tmp_path / "reviews"
    judge = [
        "-q", "bench", "judge", "--bench", str(bench), "--answers", str(good), "--out",
        str(reviews), "--judge", spec, "--base-url", server.url, "--batch", "--wait",
        "--poll-interval", "0.01",
    ]  # fmt: skip
    assert main(judge) == EXIT_OK
    lines = read_jsonl(reviews / "good.jsonl")
    assert len(lines) == 6 and all(line["status"] == "ok" for line in lines)


def test_dry_run_shows_online_and_batch_cost(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    args = generate_args("http://127.0.0.1:9/v1", tmp_path / "o")
    assert main([*args, "--dry-run"]) == EXIT_OK
    out = capsys.readouterr().out
    online = re.search(r"^cost: ~\$([\d.]+) expected, at most \$([\d.]+)$", out, re.M)
    batch = re.search(r"^cost with --batch: ~\$([\d.]+) expected, at most \$([\d.]+)", out, re.M)
    assert online and batch
    assert float(batch[2]) == pytest.approx(float(online[2]) / 2, abs=0.011)
    assert out.count("prompt tokens:") == 1  # said once


def test_batch_refused_where_there_is_no_batch_api(tmp_path: Path, capsys) -> None:
    from tests.conftest import one_line_error

    rc = main(["generate", "--out", str(tmp_path / "o"), "--batch"])
    one_line_error(capsys, rc, "--batch", "rules")
    rc = main(["generate", "--out", str(tmp_path / "o"), "--wait"])
    one_line_error(capsys, rc, "--wait", "only with --batch")
    pytest.importorskip("torch")  # hf: answerers need the [train] extra
    bench = tmp_path / "b"
    bench.mkdir()
    rc = main(["bench", "answer", "--bench", str(bench), "--model", "hf:some/model",
               "--out", str(tmp_path / "a.jsonl"), "--batch"])  # fmt: skip
    one_line_error(capsys, rc, "--batch", "hf:some/model", "no batch API")


# -- batch status / cancel --------------------------------------------------------------------------


def test_status_and_cancel(provider, tmp_path: Path, capsys) -> None:
    server, spec = provider
    server.batch_hold = True
    out = tmp_path / "out"
    args = set_spec(generate_args(server.url, out), spec, server.url)
    assert main([*args, "--batch"]) == EXIT_PENDING
    capsys.readouterr()
    assert main(["batch", "status", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert server.batches[0].id in text and "1 still running at the provider" in text
    assert KEY not in text
    assert main(["batch", "cancel", "--out", str(out)]) == 0
    assert "asked 1 open batches to cancel" in capsys.readouterr().out
    server.batch_hold = False
    # The rerun collects the cancelled batch and resubmits its requests (one try used).
    assert main([*args, "--batch"]) == EXIT_PENDING
    assert len(server.batches) == 2
    assert main([*args, "--batch"]) == EXIT_OK
    with sqlite3.connect(out / "cache.sqlite") as db:
        states = [s for (s,) in db.execute("SELECT state FROM batch_submissions")]
    assert states == ["collected", "collected"]


def test_status_says_plainly_what_waits_and_what_is_collected(
    provider, tmp_path: Path, capsys
) -> None:
    """Before collection it said 'completed', '6/6', 'ok 0' and '1 of 1 batches still
    running'; after it, '0 of 1 batches still running: rerun ... to collect'."""
    server, spec = provider
    out = tmp_path / "out"
    args = set_spec(generate_args(server.url, out), spec, server.url)
    assert main([*args, "--batch"]) == EXIT_PENDING  # submitted; the provider finishes it
    capsys.readouterr()
    assert main(["batch", "status", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ready to collect" in text and "1 finished there, not collected yet" in text
    assert "still running" not in text
    assert main([*args, "--batch"]) == EXIT_OK  # the rerun collects it
    capsys.readouterr()
    assert main(["batch", "status", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "all 1 batches collected" in text and "rerun" not in text
    row = text.splitlines()[1].split()
    assert "collected" in row and "6" in row  # 6 requests, 6 ok


def test_status_of_an_offline_output_says_there_are_no_batches(
    coco_mini: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    assert (
        main(["-q", "generate", "--coco", str(coco_mini), "--split", "val2017", "--out", str(out)])
        == 0
    )
    rc = main(["batch", "status", "--out", str(out)])
    from tests.conftest import one_line_error

    one_line_error(capsys, rc, "offline teacher (rules)", "no batches")


def test_status_needs_a_cache(tmp_path: Path, capsys) -> None:
    from tests.conftest import one_line_error

    rc = main(["batch", "status", "--out", str(tmp_path)])
    one_line_error(capsys, rc, "cache.sqlite", "no cache file")
