"""Does a teacher that sees the picture contradict the keypoints less? `--teacher-image` as an
ablation: the same `llava-pose generate` over the same COCO images twice, reading text only
(the paper's teacher) and then seeing the image too, each with the pose filter on, and the
verdicts of the pose-claim checker on the teacher's replies side by side (stats.json's
`pose_claims`: every claim of every reply checked, before the filter drops a pair; and the
pairs `contradicts_pose` dropped).

A real teacher (an API key in the environment, or a vision model behind an OpenAI-compatible
server with --base-url):

    python perf/teacher_image_ablation.py --teacher openai:gpt-4o --coco /data/coco \\
        --split val2017 --images 50 [--tasks detail] [--max-cost 5] \\
        [--teacher-image-detail low] [--teacher-image-max-side 512] [--work DIR]

`--loopback` runs the same commands against the repository's loopback OpenAI server with a
scripted teacher that writes the same reply in both arms (it sees nothing): a check that the
commands, the images and the filter work, whose numbers say nothing about any model. Exit
status 0 when both arms finish: the numbers are reported, not judged.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "llava_pose"]
VERDICTS = ("supported", "contradicted", "unverifiable")
LOOPBACK_KEY = "sk-loopback-not-a-key"


def scripted_teacher(body: dict[str, Any]) -> str:
    """The loopback teacher: one reply per task and image, made from the first caption the
    request carries (the same with and without the image), with pose claims the checker can
    read, some true and some false of COCO's people."""
    text = json.dumps(body["messages"])
    system = body["messages"][0]["content"]
    seed = sum(map(ord, text[text.find("caption") : text.find("caption") + 200])) % 3
    posture = ("standing upright", "sitting down", "lying on the ground")[seed]
    if "Design a conversation" in system:
        return (
            "Question:\nWhat is the person doing?\n===\nAnswer:\n"
            f"The person is {posture} with both arms raised above the head."
        )
    if "describe the scene in a detailed manner" in system:
        return f"The person is {posture}, with both arms raised above the head."
    return (
        "Question:\nWhy might the person hold this pose?\n===\nAnswer:\n"
        f"The person is {posture} with both arms raised above the head to keep balance."
    )


@contextlib.contextmanager
def loopback() -> Iterator[str]:
    """The loopback OpenAI server (tests/servers) with the scripted teacher: its base URL."""
    sys.path.insert(0, str(REPO))
    from tests.servers import OpenAIServer

    with OpenAIServer(responder=scripted_teacher, api_key=LOOPBACK_KEY) as server:
        yield server.url


def arm_command(args: argparse.Namespace, out: Path, sees: bool) -> list[str]:
    command = [
        "generate",
        *("--coco", args.coco, "--split", args.split, "--max-images", str(args.images)),
        *("--teacher", args.teacher, "--format", args.format, "--seed", str(args.seed)),
        *("--tasks", args.tasks, "--concurrency", str(args.concurrency), "--out", str(out)),
    ]
    if args.base_url:
        command += ["--base-url", args.base_url]
    if args.max_cost is not None:
        command += ["--max-cost", str(args.max_cost)]
    if sees:
        command.append("--teacher-image")
        if args.teacher_image_detail:
            command += ["--teacher-image-detail", args.teacher_image_detail]
        if args.teacher_image_max_side:
            command += ["--teacher-image-max-side", str(args.teacher_image_max_side)]
    return command


def run_arm(name: str, command: list[str], env: dict[str, str]) -> tuple[dict[str, Any], float]:
    print(f"[{name}] {shlex.join(['llava-pose', *command])}", flush=True)
    t0 = time.perf_counter()
    done = subprocess.run([*CLI, *command], capture_output=True, text=True, cwd=REPO, env=env)
    seconds = time.perf_counter() - t0
    if done.returncode not in (0, 1, 3):  # 1: some calls failed, 3: --max-cost reached
        raise SystemExit(f"[{name}] generate exited {done.returncode}: {done.stderr.strip()}")
    out = Path(command[command.index("--out") + 1])
    return json.loads((out / "stats.json").read_text()), seconds


def share(claims: dict[str, Any]) -> float | None:
    total = sum(claims[v] for v in VERDICTS)
    return claims["contradicted"] / total if total else None


def summary(stats: dict[str, Any], seconds: float) -> dict[str, Any]:
    claims = stats["pose_claims"]
    replies = stats["requests"]["called"] + stats["requests"]["cached"]
    return {
        "images": stats["images"],
        "replies": replies,
        "failed": stats["requests"]["failed"],
        "complete": stats["complete"],
        "seconds": round(seconds, 1),
        "tokens_in": stats["tokens"]["input"],
        "tokens_out": stats["tokens"]["output"],
        "cost_usd": stats["cost_usd"]["this_run"],
        "claims": {v: claims[v] for v in VERDICTS},
        "contradicted_share": share(claims),
        "pairs_dropped_contradicts_pose": stats["filtered"].get("contradicts_pose", 0),
        "samples": stats["samples"]["all"],
    }


def cell(value: Any) -> str:
    if value is None:
        return "no claims"
    if isinstance(value, float):
        return f"{value:.1%}" if value <= 1 else f"{value:,.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def table(text: dict[str, Any], image: dict[str, Any]) -> str:
    rows = [
        ("images", "images"),
        ("teacher replies", "replies"),
        ("failed calls", "failed"),
        ("prompt tokens (billed)", "tokens_in"),
        ("completion tokens", "tokens_out"),
        ("cost this run, USD", "cost_usd"),
        ("seconds", "seconds"),
        ("pose claims: supported", None),
        ("pose claims: contradicted", None),
        ("pose claims: unverifiable", None),
        ("contradicted share of claims", "contradicted_share"),
        ("Q/A pairs dropped by contradicts_pose", "pairs_dropped_contradicts_pose"),
        ("samples written", "samples"),
    ]
    lines = ["| | text only (paper) | sees the image |", "|---|---|---|"]
    for label, key in rows:
        if key is None:
            verdict = label.rsplit(" ", 1)[1]
            a, b = text["claims"][verdict], image["claims"][verdict]
        else:
            a, b = text[key], image[key]
        if key == "cost_usd":
            a, b = f"{a:.4f}", f"{b:.4f}"
        lines.append(f"| {label} | {cell(a)} | {cell(b)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--teacher", help="teacher spec, e.g. openai:gpt-4o (not with --loopback)")
    ap.add_argument("--base-url", help="an OpenAI-compatible server (a local vision model)")
    ap.add_argument("--loopback", action="store_true", help="scripted loopback teacher")
    ap.add_argument("--coco", default=str(REPO / "tests" / "data" / "coco-mini"))
    ap.add_argument("--split", default="val2017")
    ap.add_argument("--images", type=int, default=10)
    ap.add_argument("--tasks", default="conversation,detail,reasoning")
    ap.add_argument("--format", default="paper", choices=("paper", "compact"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--max-cost", type=float, help="USD ceiling of each arm")
    ap.add_argument("--teacher-image-detail", choices=("low", "high", "auto"))
    ap.add_argument("--teacher-image-max-side", type=int)
    ap.add_argument("--work", help="keep outputs and caches here (a rerun pays nothing twice)")
    args = ap.parse_args(argv)
    if args.loopback == bool(args.teacher):
        ap.error("name a --teacher, or --loopback for the scripted check")

    env = dict(os.environ)
    with contextlib.ExitStack() as stack:
        if args.loopback:
            args.teacher, args.base_url = "openai:gpt-4o", stack.enter_context(loopback())
            env["OPENAI_API_KEY"] = LOOPBACK_KEY
            print("loopback: a scripted teacher that writes the same reply whether or not it is")
            print("sent the image; these numbers check the commands, not any model.\n")
        work = (
            Path(args.work)
            if args.work
            else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        )
        results = {}
        for name, sees in (("text", False), ("image", True)):
            stats, seconds = run_arm(name, arm_command(args, work / name, sees), env)
            results[name] = summary(stats, seconds)
    print()
    print(f"teacher {args.teacher}, {args.split}, {args.tasks}, --format {args.format}")
    print(table(results["text"], results["image"]))
    a, b = results["text"]["contradicted_share"], results["image"]["contradicted_share"]
    if a is not None and b is not None:
        ratio = f"{b / a:.2f}x" if a else "n/a (text-only share is 0)"
        print(f"\ncontradicted share, image / text: {ratio}")
    if args.work:
        (work / "summary.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
