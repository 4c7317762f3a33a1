"""`llava-pose generate` end to end: real CLI, real SDKs, real loopback servers, real COCO-MINI."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.conftest import find_coco_mini
from tests.servers import AnthropicServer, Fault, OpenAIServer

from llava_pose.cli import main
from llava_pose.prompts import load_prompts

KEY = "sk-test-SECRET-123456"
REPO = Path(__file__).resolve().parents[1]


def teacher_reply(body: dict) -> str:
    """A well-formed reply for whichever task the system prompt asks for, unique per request.
    It says nothing about bodies, so the pose filter (on for LLM teachers) keeps it."""
    messages = body["messages"]
    system = body.get("system") or messages[0]["content"]
    if isinstance(system, list):
        system = " ".join(b["text"] for b in system)
    tag = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:6]
    if "Design a conversation" in system:
        return (
            f"Question:\nWhat is the person doing ({tag})?\n===\nAnswer:\nThe person is taking part in the scene.\n"
            "===\nQuestion:\nHow do they seem?\n===\nAnswer:\nThey seem calm."
        )
    if "describe the scene in a detailed manner" in system:
        return f"A person is in the scene, looking relaxed ({tag})."
    return f"Question:\nWhy is the person standing still ({tag})?\n===\nAnswer:\nThey are waiting for a friend."


@pytest.fixture
def openai_server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with OpenAIServer(latency=0.02, responder=teacher_reply, api_key=KEY) as server:
        yield server


def run(*args: object) -> int:
    return main(["-q", *[str(a) for a in args]])


def gen(
    server: OpenAIServer | AnthropicServer,
    out: object,
    *extra: object,
    images: object = 3,
    teacher: str = "openai:gpt-4o",
) -> int:
    """`llava-pose generate` on COCO-MINI val with a teacher at the loopback server."""
    sample = ("--max-images", images) if images is not None else ()
    return run(
        "generate",
        "--coco",
        find_coco_mini(),
        "--split",
        "val2017",
        *sample,
        "--out",
        out,
        "--teacher",
        teacher,
        "--base-url",
        server.url,
        *extra,
    )


def read(path: Path) -> object:
    return json.loads(path.read_text())


def test_generate_through_openai_sends_the_paper_prompts_and_writes_all_task_types(
    openai_server, coco_mini, tmp_path
) -> None:
    out = tmp_path / "out"
    rc = gen(openai_server, out, "--concurrency", "8", images=6)
    assert rc == 0
    requests = openai_server.requests
    assert len(requests) == 18 and all(r.completed for r in requests)
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in requests)
    paper = load_prompts("paper")
    systems = {r.body["messages"][0]["content"] for r in requests}
    assert systems == set(paper.system.values())
    coco_captions = _captions(coco_mini / "annotations" / "captions_val2017.json")
    for r in requests:
        body = r.body
        assert body["model"] == "gpt-4o" and body["max_tokens"] == 1024 and body["seed"] == 0
        texts = [m["content"] for m in body["messages"][1:]]
        if body["messages"][0]["content"] == paper.system["conversation"]:
            captions = texts[1:-1:2]
            assert texts[0:-1:2] == ["What can be described in the image?"] * len(captions)
        else:
            captions = [t[len("caption: ") :] for t in texts if t.startswith("caption: ")]
            for t in texts:
                if t.startswith("person: "):
                    box = json.loads(t.split("\n")[0][len("person: ") :])
                    assert all(0 <= v <= 1 for v in box)
                    if "\nkeypoints: " in t:
                        kps = json.loads(t.split("\nkeypoints: ")[1])
                        assert len(kps) == 17
                        assert all(
                            0 <= x <= 1 and 0 <= y <= 1 and v in (0, 1, 2) for x, y, v in kps
                        )
                        assert all(len(str(x).split(".")[-1]) <= 3 for x, _, _ in kps)
        # all of the image's captions, whitespace-normalized, in annotation order
        assert any(captions == c for c in coco_captions.values())

    stats = read(out / "stats.json")
    assert stats["images"] == 6 and stats["complete"] is True
    assert stats["samples"] == {"conversation": 6, "detail": 6, "reasoning": 6, "all": 18}
    assert (
        stats["requests"]["called"] == 18
        and stats["tokens"]["input"] > 0
        and stats["cost_usd"]["this_run"] > 0
    )
    merged = read(out / "llava_pose_all.json")
    assert len(merged) == 18 and len({r["id"] for r in merged}) == 18
    for record in merged:
        assert re.fullmatch(r"val2017/\d{12}\.jpg", record["image"])
        assert (coco_mini / record["image"]).is_file()
        humans = [t["value"] for t in record["conversations"] if t["from"] == "human"]
        assert humans[0].startswith("<image>\n") and sum("<image>" in h for h in humans) == 1
    for task in ("conversation", "detail", "reasoning"):
        assert len(read(out / f"{task}.json")) == 6
    # nothing secret anywhere in the output folder
    for f in out.iterdir():
        assert KEY.encode() not in f.read_bytes(), f


def _captions(path: Path) -> dict[int, list[str]]:
    data = json.loads(path.read_text())
    out: dict[int, list[str]] = {}
    for a in sorted(data["annotations"], key=lambda a: a["id"]):
        out.setdefault(a["image_id"], []).append(" ".join(a["caption"].split()))
    return out


def test_rerun_pays_nothing_and_rewrites_identical_files(
    openai_server, coco_mini, tmp_path
) -> None:
    assert gen(openai_server, tmp_path, images=4) == 0
    first = (tmp_path / "llava_pose_all.json").read_bytes()
    assert gen(openai_server, tmp_path, images=4) == 0
    assert len(openai_server.requests) == 12  # the second run called nothing
    assert (tmp_path / "llava_pose_all.json").read_bytes() == first
    stats = read(tmp_path / "stats.json")
    assert stats["requests"]["cached"] == 12 and stats["cost_usd"]["this_run"] == 0
    assert stats["cost_usd"]["from_cache"] > 0


def test_split_conversations_compact_and_fewshot(openai_server, coco_mini, tmp_path) -> None:
    rc = gen(
        openai_server,
        tmp_path,
        "--format",
        "compact",
        "--fewshot",
        "--split-conversations",
        "--tasks",
        "conversation,reasoning",
        images=3,
    )
    assert rc == 0
    conv = read(tmp_path / "conversation.json")
    assert [r["id"].rsplit("-", 1)[1] for r in conv] == ["0", "1"] * 3
    assert not (tmp_path / "detail.json").exists()
    reasoning = [
        r
        for r in openai_server.requests
        if "plausible, challenging question" in r.body["messages"][0]["content"]
    ]
    assert len(reasoning) == 3
    users = [m["content"] for m in reasoning[0].body["messages"] if m["role"] == "user"]
    assert len(users) == 3 and all(u.startswith("Captions:\n") for u in users)  # 2 examples + query
    assert sum(m["role"] == "assistant" for m in reasoning[0].body["messages"]) == 2


def test_permanent_failures_go_to_failed_jsonl_and_the_exit_code(
    openai_server, coco_mini, tmp_path
) -> None:
    openai_server.add_fault(
        "context_too_long",
        when=lambda body: "Design a conversation" in body["messages"][0]["content"],
    )
    rc = gen(openai_server, tmp_path, images=3)
    assert rc == 1
    failed = [json.loads(line) for line in (tmp_path / "failed.jsonl").read_text().splitlines()]
    assert sorted(f["id"].split("-")[1] for f in failed) == ["conv"] * 3
    assert all("400" in f["reason"] and f["image"].startswith("val2017/") for f in failed)
    stats = read(tmp_path / "stats.json")
    assert stats["complete"] is False and stats["requests"]["failed"] == 3
    assert stats["samples"]["detail"] == 3 and stats["samples"]["conversation"] == 0
    # the fault is gone: a rerun calls only the three that failed
    openai_server.clear_faults()
    openai_server.reset()
    assert gen(openai_server, tmp_path, images=3) == 0
    assert len(openai_server.requests) == 3
    assert not (tmp_path / "failed.jsonl").exists()


def test_retryable_faults_are_retried_transparently(openai_server, coco_mini, tmp_path) -> None:
    openai_server.add_fault("not_json", times=1)  # no Retry-After: backoff, so let it come first
    openai_server.add_fault(Fault("rate_limit", retry_after_ms=50), times=2)
    openai_server.add_fault(Fault("server_error", retry_after=0.05), times=1)
    rc = gen(openai_server, tmp_path, "--concurrency", "1", images=2)
    assert rc == 0
    stats = read(tmp_path / "stats.json")
    assert stats["requests"]["retries"] == 4 and stats["samples"]["all"] == 6


def test_max_cost_stops_before_the_budget_is_passed(openai_server, coco_mini, tmp_path) -> None:
    # gpt-4o: $2.5 in / $10 out per 1M; a request reserves ~1.2k prompt + 1024 out ~ $0.013
    rc = gen(openai_server, tmp_path, "--max-cost", "0.05", "--concurrency", "2", images=10)
    assert rc == 3
    stats = read(tmp_path / "stats.json")
    assert 0 < stats["requests"]["called"] < 30 and stats["requests"]["skipped_budget"] > 0
    assert stats["cost_usd"]["this_run"] <= 0.05
    assert stats["complete"] is False


def test_dry_run_estimates_and_calls_nothing(openai_server, coco_mini, tmp_path, capsys) -> None:
    rc = gen(openai_server, tmp_path / "o", "--dry-run", images=None)
    assert rc == 0
    out = capsys.readouterr().out
    assert re.search(r"requests: \d+", out) and "prompt tokens:" in out and "cost: ~$" in out
    assert openai_server.requests == [] and not (tmp_path / "o").exists()


def test_anthropic_teacher(monkeypatch, coco_mini, tmp_path) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    with AnthropicServer(latency=0.02, responder=teacher_reply, api_key=KEY) as server:
        rc = gen(server, tmp_path, teacher="anthropic:claude-sonnet-4-20250514", images=2)
        assert rc == 0
        body = server.requests[0].body
        # the system prompt is the whole prefix the requests share: marked for the cache
        [system] = body["system"]
        assert system["text"] in load_prompts("paper").system.values()
        assert system["cache_control"] == {"type": "ephemeral"}
        assert body["messages"][0]["role"] == "user"
    assert read(tmp_path / "stats.json")["samples"]["all"] == 6


def test_bad_key_stops_the_run_with_one_line_and_no_secret(
    monkeypatch, coco_mini, tmp_path, capsys
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-SECRET-999999")
    with OpenAIServer(latency=0.0, responder=teacher_reply, api_key=KEY) as server:
        rc = gen(server, tmp_path, images=2)
    err = capsys.readouterr().err
    assert rc == 2
    assert "OPENAI_API_KEY" in err and "sk-wrong-SECRET-999999" not in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_missing_annotations_exit_2_and_leave_no_output(tmp_path, capsys) -> None:
    (tmp_path / "coco" / "annotations").mkdir(parents=True)
    rc = run(
        "generate", "--coco", tmp_path / "coco", "--split", "val2017", "--out", tmp_path / "out"
    )
    err = capsys.readouterr().err
    assert rc == 2 and "annotations" in err and "_val2017.json" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_resume_after_kill_9_pays_nothing_twice_and_writes_no_duplicate(
    openai_server, coco_mini, tmp_path
) -> None:
    """Kill the generator with SIGKILL mid-run, with calls in flight; the rerun pays only for
    what was never answered, and the dataset equals an uninterrupted run's."""
    n_images, done_before_kill = 8, 10
    # requests after the first `done_before_kill` hang at the server: in flight at the kill
    openai_server.add_fault("hang", at=range(done_before_kill, 1000))
    out, cache = tmp_path / "out", tmp_path / "out" / "cache.sqlite"
    cmd = [
        sys.executable,
        "-m",
        "llava_pose",
        "-q",
        "generate",
        "--coco",
        str(coco_mini),
        "--split",
        "val2017",
        "--max-images",
        str(n_images),
        "--out",
        str(out),
        "--teacher",
        "openai:gpt-4o",
        "--base-url",
        openai_server.url,
        "--concurrency",
        "4",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert openai_server.wait_for(
            lambda recs: sum(r.completed for r in recs) >= done_before_kill, 60
        )
        deadline = time.monotonic() + 30
        while _cached_rows(cache) < done_before_kill:  # every answer received is committed
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert openai_server.wait_for(
            lambda recs: len(recs) > done_before_kill, 30
        )  # calls in flight
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "llava_pose_all.json").exists()  # nothing that looks complete
    openai_server.clear_faults()

    rc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert rc.returncode == 0, rc.stderr
    paid = openai_server.paid_counts()
    assert len(paid) == n_images * 3 and max(paid.values()) == 1  # each request paid exactly once
    merged = read(out / "llava_pose_all.json")
    assert len(merged) == n_images * 3 and len({r["id"] for r in merged}) == len(merged)
    stats = read(out / "stats.json")
    assert stats["requests"]["cached"] == done_before_kill

    fresh = tmp_path / "fresh"
    assert gen(openai_server, fresh, images=str(n_images)) == 0
    assert (fresh / "llava_pose_all.json").read_bytes() == (
        out / "llava_pose_all.json"
    ).read_bytes()


def _cached_rows(path: Path) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        try:
            return db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def test_offline_default_as_a_user_runs_it(tmp_path) -> None:
    """`llava-pose generate --out out/`: bundled sample, built-in teacher, no key, no network;
    it says it is the offline teacher, and the same seed writes the same bytes."""
    env = {
        k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k != "OPENAI_BASE_URL"
    }
    runs = []
    for name in ("a", "b"):
        proc = subprocess.run(
            [sys.executable, "-m", "llava_pose", "generate", "--out", str(tmp_path / name)],
            env={**env, "PYTHONPATH": str(REPO / "src")},
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        runs.append(proc)
    assert "teacher: rules (built-in offline teacher" in runs[0].stderr.splitlines()[0]
    stats = read(tmp_path / "a" / "stats.json")
    assert stats["teacher"] == "rules" and stats["images"] == 8 and stats["filtered"] == {}
    assert stats["samples"] == {"conversation": 8, "detail": 8, "reasoning": 8, "all": 24}
    for f in ("conversation.json", "detail.json", "reasoning.json", "llava_pose_all.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    assert not (tmp_path / "a" / "cache.sqlite").exists()  # nothing to keep from a free teacher


def test_offline_teacher_on_coco_mini_writes_all_task_types(coco_mini, tmp_path) -> None:
    for split in ("train2017", "val2017"):
        assert (
            run("generate", "--coco", coco_mini, "--split", split, "--out", tmp_path / split) == 0
        )
        stats = read(tmp_path / split / "stats.json")
        n = stats["images"]
        assert n >= 10 and stats["samples"] == {  # 12 train, 14 val human-centric images
            "conversation": n,
            "detail": n,
            "reasoning": n,
            "all": 3 * n,
        }
        assert stats["filtered"] == {} and stats["requests"]["failed"] == 0


def test_cues_reach_the_teacher_only_when_asked(openai_server, tmp_path) -> None:
    assert gen(openai_server, tmp_path / "plain", images=2) == 0
    plain = [json.dumps(r.body) for r in openai_server.requests]
    openai_server.reset()
    assert gen(openai_server, tmp_path / "cued", "--cues", images=2) == 0
    cued = [json.dumps(r.body) for r in openai_server.requests]
    assert not any("pose: " in b for b in plain)
    assert sum("pose: " in b for b in cued) == 4  # detail and reasoning of each image


def test_the_pose_filter_is_on_for_llm_teachers_and_counted(openai_server, tmp_path) -> None:
    def lying(body: dict) -> str:  # nobody in COCO-MINI val is lying down: a false statement
        return teacher_reply(body).replace("A person is in the scene", "Everyone is lying down", 1)

    openai_server.responder = lying
    assert gen(openai_server, tmp_path / "on", images=3) == 0
    on = read(tmp_path / "on" / "stats.json")
    assert on["pose_claims"]["checked"] is True and on["pose_claims"]["contradicted"] >= 1
    assert on["filtered"]["contradicts_pose"] == on["pose_claims"]["contradicted"]
    assert on["samples"]["detail"] == 3 - on["filtered"]["contradicts_pose"]
    assert gen(openai_server, tmp_path / "off", "--no-pose-filter", images=3) == 0
    off = read(tmp_path / "off" / "stats.json")
    assert off["pose_claims"] == {
        "checked": False,
        "supported": 0,
        "contradicted": 0,
        "unverifiable": 0,
    }
    assert off["samples"]["detail"] == 3 and "contradicts_pose" not in off["filtered"]
