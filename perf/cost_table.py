"""The paper-scale plan's cost, every way it can be bought: prompt format (paper / compact) x
few-shot examples (off / on) x online / batch x prompt caching, from `llava-pose generate
--dry-run --teacher openai:gpt-4o` on the synthetic train2017-sized set (perf/prepare_scale.py;
163,716 teacher requests), each cell relative to the paper's own plan (paper format, no
examples, online, no caching).

    python perf/cost_table.py                         # writes the set (~1 min), runs, deletes it
    python perf/cost_table.py --dir /tmp/coco-syn --keep
    python perf/cost_table.py --teacher anthropic:claude-sonnet-4

Prints a Markdown table. Caching is what the estimate expects: every request of a task but the
first reads its shared prefix (system prompt and examples) from the provider's cache, when that
prefix reaches the provider's minimum (OpenAI: 1,024 tokens).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prepare_scale import SPLIT, NotOurs, Synthetic

REPO = Path(__file__).resolve().parents[1]
_COST = re.compile(r"~\$([\d,]+\.\d+) expected")
_SAVED = re.compile(r"~\$([\d,]+\.\d+) expected with it")
_TOKENS = re.compile(r"prompt tokens: ([\d,]+)")
_OUT = re.compile(r"completion tokens: ~([\d,]+)")


def _usd(text: str) -> float:
    return float(text.replace(",", ""))


def plan(folder: Path, tmp: Path, teacher: str, fmt: str, fewshot: bool) -> dict[str, float]:
    """One dry run's estimate: online and batch cost, each with and without caching."""
    cmd = [
        sys.executable, "-m", "llava_pose", "generate", "--coco", str(folder), "--split", SPLIT,
        "--no-check-images", "--teacher", teacher, "--format", fmt, "--out", str(tmp / "dry"),
        "--dry-run", *(["--fewshot"] if fewshot else []),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed:\n{proc.stderr}")
    lines = proc.stdout.splitlines()

    def line(prefix: str, contains: str = "") -> str:
        return next(x for x in lines if x.startswith(prefix) and contains in x)

    online = _usd(_COST.search(line("cost: "))[1])
    batch = _usd(_COST.search(line("cost with --batch"))[1])
    caching = [x for x in lines if x.startswith("prompt caching: ~")]
    online_cached = _usd(_SAVED.search(caching[0])[1]) if caching else online
    batch_cached = _usd(_SAVED.search(caching[1])[1]) if len(caching) > 1 else batch
    return {
        "prompt": _usd(_TOKENS.search(line("prompt tokens"))[1]),
        "completion": _usd(_OUT.search(line("completion tokens"))[1]),
        "online": online,
        "online_cached": online_cached,
        "batch": batch,
        "batch_cached": batch_cached,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--dir", type=Path)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--teacher", default="openai:gpt-4o")
    args = ap.parse_args(argv)
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}"
    )
    try:
        synthetic = Synthetic(args.dir, args.scale, args.seed, args.keep)
    except NotOurs as e:
        print(e)
        return 2
    rows = []
    with synthetic as folder, tempfile.TemporaryDirectory() as tmp:
        for fmt in ("paper", "compact"):
            for fewshot in (False, True):
                rows.append((fmt, fewshot, plan(folder, Path(tmp), args.teacher, fmt, fewshot)))
    base = rows[0][2]["online"]
    print(f"\nteacher {args.teacher}; USD, and x the paper's plan (paper, no examples, online)\n")
    print(
        "| format | few-shot | prompt tokens | completion tokens (expected) | online | "
        "online + caching | batch | batch + caching |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for fmt, fewshot, p in rows:
        cells = [
            f"${p[k]:,.0f} ({p[k] / base:.2f}x)"
            for k in ("online", "online_cached", "batch", "batch_cached")
        ]
        print(
            f"| {fmt} | {'on' if fewshot else 'off'} | {p['prompt']:,.0f} | "
            f"{p['completion']:,.0f} | " + " | ".join(cells) + " |"
        )
    compact = rows[2][2]
    output_share = compact["completion"] * 10.0 / 1e6 / compact["online"]
    print(
        f"\ncompact, no examples, online: completion tokens are {output_share:.0%} of the cost "
        "(at gpt-4o's $10/M output, $2.50/M input)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
