"""Teacher-call throughput: our Runner vs a one-at-a-time loop, and how much of an RPM limit
the Runner actually uses. Everything runs against the loopback OpenAI server (a separate
process answering after a fixed latency), with real paper-format teacher requests built from
COCO-MINI, in one command:

(a) ours: `Runner` at --concurrency over --n-ours requests;
(b) baseline: `openai.OpenAI().chat.completions.create` in a plain for loop, as the original
    generation scripts do, over --n-seq requests (fewer: it is slow; its per-request time is
    extrapolated, and the output says so);
(c) the Runner with --rpm as the binding limit for ~--rpm-seconds of work: requests per
    minute achieved / configured;
(d) the whole `llava-pose generate` command (a fresh process: imports, contexts, requests,
    estimate, cache, the calls, parsing and writing the dataset) for --whole requests at
    --concurrency, timed from its start to its exit, against the sequential loop's time for
    as many requests (extrapolated from (b)): the fraction of the sequential time it takes.
    The ideal is 1/concurrency; the server log says when the first request arrived. The
    package is byte-compiled first, as an install is (perf/bytecode.py). ``--whole-repeat N``
    runs it N times, each into a fresh output folder, and keeps the fastest (as
    perf/fast_start.py's ``--repeat``: use it on a busy machine); every run's time is printed.

    python perf/teacher_throughput.py [--latency 1] [--n-ours 128] [--n-seq 16]
        [--concurrency 64] [--rpm 1200] [--rpm-seconds 30] [--whole 1200] [--whole-repeat 1]

Targets: (a)/(b) >= 50x; (c) >= 95%; (d) at most 1/58 of the sequential time.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import openai

from llava_pose.coco import load_split, write_contexts
from llava_pose.llm.base import aiohttp_usable
from llava_pose.llm.openai_api import OpenAIBackend
from llava_pose.llm.runner import Runner, RunnerOptions
from llava_pose.prompts import build_request, load_prompts
from llava_pose.records import ChatRequest
from llava_pose.tasks import TASKS

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "perf"))
from bytecode import compile_package  # noqa: E402

KEY = "sk-bench-not-a-real-key-0000"
MODEL = "gpt-4o"
WHOLE_TARGET = 58  # the whole command within 1/58 of the sequential time (ideal: 1/64)


def teacher_requests(coco: str, n: int, tag: str) -> list[ChatRequest]:
    """`n` paper-format teacher requests (all three tasks) over COCO-MINI, cycling the images;
    ids are unique per phase so no call is a duplicate of another."""
    prompts = load_prompts("paper")
    contexts = [c for split in ("train2017", "val2017") for c in load_split(coco, split)]
    base = [
        build_request(c, t, model=MODEL, prompts=prompts, temperature=0.7, max_tokens=1024)
        for c in contexts
        for t in TASKS
    ]
    return [
        msgspec.structs.replace(r, id=f"{tag}-{k}-{r.id}")
        for k, r in zip(range(n), itertools.cycle(base), strict=False)
    ]


def whole_contexts(coco: str, images: int, path: Path) -> None:
    """`images` contexts for `generate --contexts`: COCO-MINI's human-centric images cycled,
    each copy with its own image id and its first caption marked, so every request differs."""
    base = [c for split in ("train2017", "val2017") for c in load_split(coco, split)]
    contexts = []
    for k in range(images):
        c = base[k % len(base)]
        copy = k // len(base)
        captions = (f"{c.captions[0]} (copy {copy})", *c.captions[1:]) if copy else c.captions
        contexts.append(
            msgspec.structs.replace(c, image_id=c.image_id * 1000 + copy, captions=captions)
        )
    write_contexts(path, contexts)


def whole_command(url: str, log: Path, n: int, concurrency: int, tmp: Path) -> dict[str, float]:
    """Run `llava-pose generate` for `n` requests (n/3 images x 3 tasks) in a fresh process;
    its wall time from start to exit, and when its first request and last reply were (server
    log, relative to the start)."""
    compile_package()
    tmp.mkdir(parents=True, exist_ok=True)
    contexts = tmp / "whole-contexts.jsonl"
    whole_contexts(str(REPO / "tests" / "data" / "coco-mini"), n // len(TASKS), contexts)
    cmd = [sys.executable, "-m", "llava_pose", "generate", "--contexts", str(contexts)]
    cmd += ["--teacher", f"openai:{MODEL}", "--base-url", url, "--out", str(tmp / "whole-out")]
    cmd += ["--concurrency", str(concurrency)]
    env = {**os.environ, "OPENAI_API_KEY": KEY}
    start = time.time()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"generate failed ({proc.returncode}): {proc.stderr[-2000:]}")
    seen = [json.loads(line) for line in log.read_text().splitlines()]
    seen = [r for r in seen if r["arrived"] >= start and r["completed"]]
    if len(seen) != n:
        raise SystemExit(f"generate made {len(seen)} calls, expected {n}")
    return {
        "wall": wall,
        "first": min(r["arrived"] for r in seen) - start,
        "last": max(r["finished"] for r in seen) - start,
    }


def start_server(latency: float, log: Path) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "tests.servers.openai_server", "--port", "0"]
    cmd += ["--latency", str(latency), "--log", str(log)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http://"):
        proc.kill()
        raise SystemExit(f"loopback server did not start: {url!r}")
    return proc, url


def runner(url: str, **options: object) -> Runner:
    backend = OpenAIBackend(MODEL, base_url=url, api_key=KEY, timeout=60)
    return Runner(backend, options=RunnerOptions(timeout=60, **options))  # type: ignore[arg-type]


def sequential(url: str, requests: list[ChatRequest]) -> None:
    """What the original scripts do: one blocking call after another."""
    client = openai.OpenAI(base_url=url, api_key=KEY)
    for r in requests:
        reply = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": m.role, "content": m.content} for m in r.messages],  # type: ignore[misc]
            temperature=r.temperature,
            max_tokens=r.max_tokens,
        )
        assert reply.choices[0].message.content
    client.close()


def arrivals(log: Path, start: float, end: float) -> list[float]:
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    return sorted(r["arrived"] for r in rows if start <= r["arrived"] <= end and r["completed"])


def max_in_window(times: list[float], window: float) -> int:
    best, j = 0, 0
    for i in range(len(times)):
        while times[i] - times[j] > window:
            j += 1
        best = max(best, i - j + 1)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--coco", default=str(REPO / "tests" / "data" / "coco-mini"))
    ap.add_argument("--latency", type=float, default=1.0, help="server seconds per call")
    ap.add_argument("--n-ours", type=int, default=128)
    ap.add_argument("--n-seq", type=int, default=16)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--rpm", type=float, default=1200.0)
    ap.add_argument("--rpm-seconds", type=float, default=30.0)
    ap.add_argument(
        "--whole", type=int, default=1200, help="requests of the whole-command run (0: skip it)"
    )
    ap.add_argument(
        "--whole-repeat", type=int, default=1, help="runs of (d), the fastest kept (default 1)"
    )
    args = ap.parse_args()
    if args.whole % len(TASKS):
        ap.error(f"--whole: a multiple of {len(TASKS)} (images x tasks)")

    n_rpm = round(args.rpm / 60 * args.rpm_seconds)
    ours_requests = teacher_requests(args.coco, args.n_ours, "ours")
    seq_requests = teacher_requests(args.coco, args.n_seq, "seq")
    rpm_requests = teacher_requests(args.coco, n_rpm, "rpm")
    sizes = [
        len(msgspec.json.encode([(m.role, m.content) for m in r.messages])) for r in ours_requests
    ]

    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"python {platform.python_version()}, openai {openai.__version__}, transport of the "
        f"online clients: {'aiohttp' if aiohttp_usable(openai) else 'httpx'}"
    )
    print(
        f"server: loopback OpenAI server in its own process, fixed latency {args.latency:g} s; "
        f"requests: paper-format teacher prompts from COCO-MINI, "
        f"{statistics.mean(sizes) / 1024:.1f} KiB of messages on average"
    )

    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.jsonl"
        server, url = start_server(args.latency, log)
        try:
            # Warm both clients (imports, connection set-up, tokenizer) outside the timings.
            warm = teacher_requests(args.coco, 2, "warm")
            sequential(url, warm[:1])
            runner(url, concurrency=2).run(warm)

            t0 = time.perf_counter()
            sequential(url, seq_requests)
            seq_s = time.perf_counter() - t0
            seq_rate = args.n_seq / seq_s

            r = runner(url, concurrency=args.concurrency)
            t0 = time.perf_counter()
            results = r.run(ours_requests)
            ours_s = time.perf_counter() - t0
            assert all(x.ok for x in results), "a call failed"
            ours_rate = args.n_ours / ours_s

            print()
            print(
                f"(b) sequential loop : {args.n_seq:4d} requests in {seq_s:7.2f} s = {seq_rate:7.2f} req/s"
            )
            print(
                f"    (extrapolated to {args.n_ours} requests: {seq_s / args.n_seq * args.n_ours:.1f} s)"
            )
            print(
                f"(a) Runner c={args.concurrency:<3d}   : {args.n_ours:4d} requests in {ours_s:7.2f} s "
                f"= {ours_rate:7.2f} req/s"
            )
            ratio = ours_rate / seq_rate
            print(
                f"speed-up (a)/(b): {ratio:.1f}x (target >= 50x: {'met' if ratio >= 50 else 'NOT met'})"
            )

            r = runner(url, concurrency=args.concurrency, rpm=args.rpm)
            wall0 = time.time()
            t0 = time.perf_counter()
            results = r.run(rpm_requests)
            rpm_s = time.perf_counter() - t0
            wall1 = time.time()
            assert all(x.ok for x in results), "a call failed"
            wholes = [
                whole_command(url, log, args.whole, args.concurrency, Path(tmp) / f"whole-{i}")
                for i in range(max(1, args.whole_repeat) if args.whole else 0)
            ]
            whole = min(wholes, key=lambda w: w["wall"]) if wholes else None
        finally:
            server.terminate()
            server.wait(10)
        seen = arrivals(log, wall0, wall1)

    used = n_rpm / (rpm_s / 60)
    share = used / args.rpm
    rate = args.rpm / 60
    steady = (len(seen) - rate) / (seen[-1] - seen[0]) * 60 if len(seen) > 1 else 0.0
    print()
    print(
        f"(c) Runner --rpm {args.rpm:g} --concurrency {args.concurrency}: {n_rpm} requests in "
        f"{rpm_s:.2f} s (first call to last reply)"
    )
    print(f"    achieved {used:.0f} requests/min = {share:.1%} of the configured {args.rpm:g}")
    print(
        f"    server side: {len(seen)} arrivals; after the first second's burst of {rate:g}, "
        f"{steady:.0f}/min = {steady / args.rpm:.1%} of the limit"
    )
    print(
        f"    busiest 10 s at the server: {max_in_window(seen, 10.0)} arrivals "
        f"(the token bucket lets {rate * 10 + rate:.0f} start: 10 s of rate + a 1 s burst; "
        "more arrive when the window opens on the first burst, which reaches the server late "
        "by the client's connection set-up)"
    )
    print(f"RPM share used: {share:.1%} (target >= 95%: {'met' if share >= 0.95 else 'NOT met'})")
    whole_ok = True
    if whole is not None:
        sequential_s = seq_s / args.n_seq * args.whole
        fraction = whole["wall"] / sequential_s
        ideal = math.ceil(args.whole / args.concurrency) * args.latency
        whole_ok = fraction <= 1 / WHOLE_TARGET
        print()
        runs = ", ".join(f"{w['wall']:.2f}" for w in wholes)
        print(
            f"(d) whole `llava-pose generate`, {args.whole} requests, --concurrency "
            f"{args.concurrency}, a fresh process: {whole['wall']:.2f} s from start to exit"
            + (f" (the fastest of {len(wholes)} runs: {runs} s)" if len(wholes) > 1 else "")
        )
        print(
            f"    first request at the server after {whole['first']:.2f} s, last reply at "
            f"{whole['last']:.2f} s; the calls alone need at least {ideal:g} s "
            f"({math.ceil(args.whole / args.concurrency)} rounds of {args.latency:g} s)"
        )
        print(
            f"    sequential loop for {args.whole} requests: {sequential_s:.1f} s (extrapolated "
            f"from (b)); whole command = 1/{1 / fraction:.1f} of it (steady state (a): "
            f"1/{ratio:.1f}; ideal 1/{args.concurrency})"
        )
        print(
            f"whole command: 1/{1 / fraction:.1f} of sequential (target <= 1/{WHOLE_TARGET}: "
            f"{'met' if whole_ok else 'NOT met'})"
        )
    return 0 if ratio >= 50 and share >= 0.95 and whole_ok else 1


if __name__ == "__main__":
    sys.exit(main())
