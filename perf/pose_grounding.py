"""Pose grounding of a real teacher: how many pose claims its answers make, how many of them the
keypoints contradict without and with `--cues`, and what the `contradicts_pose` filter removes.

Runs the real CLI against a running OpenAI-compatible server (llama.cpp, vLLM, Ollama), so it
needs nothing but this package. Per arm (plain, then `--cues`), over the same COCO images:

1. `llava-pose generate` as a user runs it (pose filter on): what `contradicts_pose` removed,
   from stats.json (`filtered`, and `pose_claims`, the verdicts of the answers it checked);
2. the same command with `--no-pose-filter` and the first run's cache: no call is made again,
   and the output is the teacher's answers before the filter;
3. `llava-pose verify` on both: claims per answer, the contradicted share by claim kind before
   the filter, and what is left contradicted after it.

A local model is priced at 0 (a prices file is written for it). Start a server, then:

    python perf/pose_grounding.py --base-url http://127.0.0.1:8089/v1 --model qwen \\
        [--images 10] [--coco tests/data/coco-mini] [--split val2017] [--format compact] \\
        [--tasks detail] [--max-tokens 256] \\
        [--work DIR]                    # keep the outputs (and caches: a rerun resumes)

Where `--cues`, `--no-pose-filter` or `verify` is not in the installed CLI, the run says so
and measures what it can. Exit status 0 when the runs finish: the numbers are reported, not
judged.
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
EXAMPLES = 5  # contradicted claims shown per arm


@dataclass(frozen=True)
class Features:
    """What the installed CLI can do (other parts of the toolkit may not have landed)."""

    cues: bool
    pose_filter: bool
    verify: bool


@dataclass
class Arm:
    """One arm's measurements: the filtered run, and verify's summaries before/after the filter."""

    name: str
    seconds: float
    stats: dict[str, Any]
    answers_kept: int
    before: dict[str, Any] | None  # verify summary of the unfiltered output
    answers_before: int
    after: dict[str, Any] | None  # verify summary of the kept (filtered) output
    examples: list[str]


def cpu_name() -> str:
    """The CPU model where the OS says it (Linux), else what `platform` knows."""
    info = Path("/proc/cpuinfo")
    if info.exists():
        for line in info.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=REPO)


def has_option(command: str, option: str) -> bool:
    """Whether `llava-pose COMMAND --help` lists OPTION (False when the command is missing)."""
    shown = cli(command, "--help")
    return shown.returncode == 0 and option in shown.stdout


def answers_in(data: Path) -> int:
    """Teacher answers in a LLaVA JSON file: its `gpt` turns (one per Q/A pair)."""
    records = json.loads(data.read_text())
    return sum(1 for r in records for turn in r["conversations"] if turn["from"] == "gpt")


def generate(name: str, args: argparse.Namespace, work: Path, extra: list[str]) -> float:
    command = [
        "generate",
        *("--coco", args.coco, "--split", args.split, "--max-images", str(args.images)),
        *("--teacher", f"openai:{args.model}", "--base-url", args.base_url),
        *("--format", args.format, "--seed", str(args.seed), "--tasks", args.tasks),
        *("--context-window", str(args.context_window), "--max-tokens", str(args.max_tokens)),
        *("--timeout", str(args.timeout), "--concurrency", str(args.concurrency)),
        *("--prices", str(work / "prices.yaml"), *extra),
    ]
    print(f"[{name}] {shlex.join(['llava-pose', *command])}", flush=True)
    t0 = time.perf_counter()
    done = cli(*command)
    if done.returncode not in (0, 1):  # 1: some calls failed (failed.jsonl); the rest is kept
        raise SystemExit(f"[{name}] generate exited {done.returncode}: {done.stderr.strip()}")
    return time.perf_counter() - t0


def verify(args: argparse.Namespace, data: Path, out: Path) -> tuple[dict[str, Any], list[str]]:
    """verify's summary of `data`, and the first contradicted claims as readable lines."""
    done = cli(
        *("verify", "--data", str(data), "--coco", args.coco, "--split", args.split),
        *("--out", str(out)),
    )
    if done.returncode != 0:
        raise SystemExit(f"verify {data} exited {done.returncode}: {done.stderr.strip()}")
    records = json.loads(data.read_text())
    examples = []
    for line in (out / "claims.jsonl").read_text().splitlines():
        row = json.loads(line)
        for turn in row["turns"]:
            text = records[row["index"]]["conversations"][turn["turn"]]["value"]
            for c in turn["claims"]:
                if c["verdict"] == "contradicted" and len(examples) < EXAMPLES:
                    start, end = c["span"]
                    examples.append(
                        f"{row['id']}: {c['kind']} {c['predicate']!r} of {c['subject']!r}: "
                        f"{c['reason']}\n      {text[start:end]!r}"
                    )
    return json.loads((out / "summary.json").read_text()), examples


def run_arm(
    name: str, extra: list[str], args: argparse.Namespace, work: Path, can: Features
) -> Arm:
    out = work / name
    seconds = generate(name, args, work, [*extra, "--out", str(out)])
    stats = json.loads((out / "stats.json").read_text())
    arm = Arm(name, seconds, stats, answers_in(out / "llava_pose_all.json"), None, 0, None, [])
    if not can.verify:
        return arm
    arm.after, _ = verify(args, out / "llava_pose_all.json", work / f"{name}-verify-kept")
    if can.pose_filter:
        raw = work / f"{name}-unfiltered"
        cache = ["--cache", str(out / "cache.sqlite"), "--no-pose-filter", "--out", str(raw)]
        generate(f"{name}, unfiltered, from the cache", args, work, [*extra, *cache])
        called = json.loads((raw / "stats.json").read_text())["requests"]["called"]
        if called:
            print(f"note: the unfiltered {name} run called the teacher {called} times (not cached)")
        arm.answers_before = answers_in(raw / "llava_pose_all.json")
        arm.before, arm.examples = verify(
            args, raw / "llava_pose_all.json", raw.with_name(f"{raw.name}-verify")
        )
    return arm


def share(summary: dict[str, Any] | None) -> str:
    if not summary:
        return "n/a"
    total = sum(summary[v] for v in VERDICTS)
    return (
        f"{summary['contradicted'] / total:.1%} ({summary['contradicted']}/{total})"
        if total
        else "no claims"
    )


def per_answer(summary: dict[str, Any] | None, answers: int) -> str:
    return f"{summary['claims'] / answers:.2f}" if summary and answers else "n/a"


def rows(arm: Arm) -> dict[str, str]:
    """The arm's numbers as table cells, keyed by row label."""
    stats, requests = arm.stats, arm.stats["requests"]
    images = max(stats["images"], 1)
    filtered = dict(stats.get("filtered", {}))
    removed = filtered.pop("contradicts_pose", 0)
    checked = stats.get("pose_claims", {})
    answers_checked = arm.answers_kept + removed
    cells = {
        "images": str(stats["images"]),
        "requests: called / cached / failed / too long": (
            f"{requests['called']} / {requests['cached']} / {requests['failed']} / "
            f"{requests['skipped_context']}"
        ),
        "seconds per image": f"{arm.seconds / images:.0f}",
        "tokens in / out per image": (
            f"{stats['tokens']['input'] / images:,.0f} / {stats['tokens']['output'] / images:,.0f}"
        ),
        "other filters": ", ".join(f"{k} {v}" for k, v in sorted(filtered.items())) or "none",
        "answers checked by the pose filter": str(answers_checked) if checked else "no filter",
        "claims in them: supp. / contr. / unverif.": (
            " / ".join(str(checked.get(v, 0)) for v in VERDICTS) if checked else "n/a"
        ),
        "contradicts_pose removed (answers)": (
            f"{removed} of {answers_checked} ({removed / answers_checked:.1%})"
            if checked and answers_checked
            else str(removed)
        ),
        "pose claims per answer, before filter": per_answer(arm.before, arm.answers_before),
        "contradicted share, before filter": share(arm.before),
        "pose claims per answer, kept data": per_answer(arm.after, arm.answers_kept),
        "contradicted share, kept data": share(arm.after),
    }
    if arm.before:
        for kind, counts in arm.before["by_kind"].items():
            cells[f"  {kind}: contradicted / claims, before"] = (
                f"{counts['contradicted']} / {sum(counts[v] for v in VERDICTS)}"
            )
    return cells


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
    ap.add_argument(
        "--tasks",
        default="conversation,detail,reasoning",
        help="task types (a slow CPU server: detail alone, where pose claims are densest)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--context-window", type=int, default=8192, help="the server's --n_ctx")
    ap.add_argument("--max-tokens", type=int, default=1024)
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per call (slow CPUs)")
    ap.add_argument("--concurrency", type=int, default=1, help="the server's parallel slots")
    ap.add_argument("--work", help="keep outputs and caches here (a rerun resumes)")
    args = ap.parse_args()

    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} CPUs, "
        f"{platform.system()} {platform.release()}, python {platform.python_version()}"
    )
    print(f"teacher: {args.model} at {args.base_url}; {args.images} images of {args.split}")
    can = Features(
        cues=has_option("generate", "--cues"),
        pose_filter=has_option("generate", "--no-pose-filter"),
        verify=has_option("verify", "--data"),
    )
    if not can.cues:
        print("note: `llava-pose generate` has no --cues: only the plain arm runs")
    if not can.pose_filter:
        print("note: `llava-pose generate` has no --no-pose-filter: no before-filter numbers")
    if not can.verify:
        print("note: no `llava-pose verify`: claims are not counted")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        (work / "prices.yaml").write_text(f"{json.dumps(args.model)}: {{input: 0, output: 0}}\n")
        arms = [run_arm("plain", [], args, work, can)]
        if can.cues:
            arms.append(run_arm("cues", ["--cues"], args, work, can))

    table = [rows(arm) for arm in arms]
    width = max(len(label) for label in table[0])
    print()
    print(f"{'':{width}}  " + "".join(f"{arm.name:>26}" for arm in arms))
    for label in table[0]:
        print(f"{label:{width}}  " + "".join(f"{cells.get(label, ''):>26}" for cells in table))
    for arm in arms:
        if arm.examples:
            print(f"\n[{arm.name}] first contradicted claims, before the filter:")
            for line in arm.examples:
                print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
