"""Pose grounding of a real teacher: how many pose claims its answers make, how many of them the
keypoints contradict without and with `--cues`, and what the `contradicts_pose` filter removes.

Runs the real CLI against a running OpenAI-compatible server (llama.cpp, vLLM, Ollama): two
`llava-pose generate` arms over the same COCO images (plain, then `--cues`), then
`llava-pose verify` on each kept dataset. It talks to the server only through the CLI, so it
needs nothing but this package. A local model is priced at 0 (a prices file is written for it).

    python -m llama_cpp.server --model model.gguf --port 8089 --n_ctx 8192 &   # any server
    python bench/pose_grounding.py --base-url http://127.0.0.1:8089/v1 --model qwen \\
        [--images 10] [--coco tests/data/coco-mini] [--split val2017] [--format compact] \\
        [--work DIR]                    # keep the outputs (and caches: a rerun resumes)

Where `--cues` or `verify` is not in the installed CLI yet, the run says so and measures what it
can. Exit status 0 whenever the runs finish; the numbers are reported, not judged.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "llava_pose"]
VERDICTS = ("supported", "contradicted", "unverifiable")


@dataclass
class Arm:
    """One generate run and what verify found in its kept data."""

    name: str
    seconds: float
    stats: dict[str, Any]
    answers: int
    summary: dict[str, Any] | None


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=REPO)


def has_option(command: str, option: str) -> bool:
    """Whether `llava-pose COMMAND --help` lists OPTION (False when the command is missing)."""
    help_text = cli(command, "--help")
    return help_text.returncode == 0 and option in help_text.stdout


def answers_in(data: Path) -> int:
    """Teacher answers kept in a LLaVA JSON file: its `gpt` turns."""
    records = json.loads(data.read_text())
    return sum(1 for r in records for turn in r["conversations"] if turn["from"] == "gpt")


def claim_totals(tree: Any) -> dict[str, int] | None:
    """The first mapping in `tree` that counts claims by verdict (stats.json's claim totals)."""
    if isinstance(tree, dict):
        if all(isinstance(tree.get(v), int) for v in VERDICTS):
            return {v: tree[v] for v in VERDICTS}
        for value in tree.values():
            found = claim_totals(value)
            if found:
                return found
    return None


def share(counts: dict[str, Any] | None) -> str:
    if not counts:
        return "n/a"
    total = sum(counts[v] for v in VERDICTS)
    return f"{counts['contradicted'] / total:.1%} of {total}" if total else "no claims"


def run_arm(name: str, extra: list[str], args: argparse.Namespace, work: Path, verify: bool) -> Arm:
    out = work / name
    command = [
        "generate",
        *("--coco", args.coco, "--split", args.split, "--max-images", str(args.images)),
        *("--teacher", f"openai:{args.model}", "--base-url", args.base_url),
        *("--format", args.format, "--seed", str(args.seed)),
        *("--context-window", str(args.context_window), "--max-tokens", str(args.max_tokens)),
        *("--timeout", str(args.timeout), "--concurrency", str(args.concurrency)),
        *("--prices", str(work / "prices.yaml"), "--out", str(out), *extra),
    ]
    print(f"\n[{name}] {shlex.join(['llava-pose', *command])}", flush=True)
    t0 = time.perf_counter()
    done = cli(*command)
    seconds = time.perf_counter() - t0
    if done.returncode not in (0, 1):  # 1: some calls failed (failed.jsonl); the rest is kept
        raise SystemExit(f"[{name}] generate exited {done.returncode}: {done.stderr.strip()}")
    stats = json.loads((out / "stats.json").read_text())
    data = out / "llava_pose_all.json"
    summary = None
    if verify:
        checked = cli(
            *("verify", "--data", str(data), "--coco", args.coco, "--split", args.split),
            *("--out", str(work / f"{name}-verify")),
        )
        if checked.returncode != 0:
            raise SystemExit(f"[{name}] verify exited {checked.returncode}: {checked.stderr}")
        summary = json.loads((work / f"{name}-verify" / "summary.json").read_text())
    return Arm(name, seconds, stats, answers_in(data), summary)


def report(arm: Arm) -> None:
    stats = arm.stats
    requests = stats["requests"]
    images = stats["images"]
    print(f"\n[{arm.name}]")
    print(
        f"  {images} images, {requests['total']} requests ({requests['called']} called, "
        f"{requests['cached']} cached, {requests['failed']} failed, "
        f"{requests['skipped_context']} too long for the context window)"
    )
    print(
        f"  {arm.seconds:.0f} s, {arm.seconds / max(images, 1):.0f} s per image; tokens "
        f"{stats['tokens']['input']:,} in, {stats['tokens']['output']:,} out"
    )
    filtered = stats.get("filtered", {})
    print(f"  filtered: {json.dumps(filtered) if filtered else 'nothing'}")
    print(f"  contradicts_pose removed: {filtered.get('contradicts_pose', 'no such filter')}")
    before = claim_totals({k: v for k, v in stats.items() if k != "filtered"})
    print(f"  teacher's claims before filtering (stats.json): {before or 'not counted'}")
    print(f"  contradicted share before filtering: {share(before)}")
    print(f"  answers kept: {arm.answers}")
    if arm.summary is None:
        return
    kept = claim_totals(arm.summary)
    total = sum(kept[v] for v in VERDICTS) if kept else 0
    print(f"  kept data (verify summary.json): {kept}")
    if arm.answers:
        print(f"  pose claims per kept answer: {total / arm.answers:.2f}")
    print(f"  contradicted share in kept data: {share(kept)}")


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--base-url", required=True, help="the server, e.g. http://127.0.0.1:8089/v1")
    ap.add_argument("--model", required=True, help="model name the server answers to")
    ap.add_argument("--images", type=int, default=10)
    ap.add_argument("--coco", default=str(REPO / "tests" / "data" / "coco-mini"))
    ap.add_argument("--split", default="val2017")
    ap.add_argument("--format", default="paper", choices=("paper", "compact"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--context-window", type=int, default=8192, help="the server's --n_ctx")
    ap.add_argument("--max-tokens", type=int, default=1024)
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per call (slow CPUs)")
    ap.add_argument("--concurrency", type=int, default=1, help="the server's parallel slots")
    ap.add_argument("--work", help="keep outputs and caches here (a rerun resumes)")
    args = ap.parse_args()

    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(
        f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
        f"{platform.system()} {platform.release()}, python {platform.python_version()}"
    )
    print(f"teacher: {args.model} at {args.base_url}; {args.images} images of {args.split}")
    cues = has_option("generate", "--cues")
    verify = has_option("verify", "--data")
    if not cues:
        print("note: `llava-pose generate` has no --cues yet: only the plain arm runs")
    if not verify:
        print("note: no `llava-pose verify` yet: claims are not counted")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        (work / "prices.yaml").write_text(f"{json.dumps(args.model)}: {{input: 0, output: 0}}\n")
        arms = [run_arm("plain", [], args, work, verify)]
        if cues:
            arms.append(run_arm("cues", ["--cues"], args, work, verify))
    for arm in arms:
        report(arm)
    return 0


if __name__ == "__main__":
    sys.exit(main())
