"""The pose-claim checker's time against text length: it must grow linearly.

    python perf/verify_speed.py [--sentences 2000] [--repeat 3] [--coco ROOT]

Checks one model turn made of a sentence repeated N and 10 N times (issue 16's "The man is
sitting. ", then a sentence with a negation, a past and a pronoun) against COCO-MINI image
109313, best of --repeat runs each, and prints the time per character and the ratio
time(10 N) / time(N): about 10 for linear work, 100 for quadratic. Also the same ratio of
Python function calls at a tenth the size (deterministic, unlike time). Exits 1 when a time
ratio is over 13.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from llava_pose.coco import load_split
from llava_pose.records import ImageContext
from llava_pose.verify import check_text

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
COCO_MINI = ROOT / "tests" / "data" / "coco-mini"
IMAGE = 109313  # val2017: one man, standing
UNITS = (
    "The man is sitting. ",
    "The man does not have his arms raised, and he was sitting earlier but is now standing. ",
)
MAX_RATIO = 13.0


def best_time(text: str, ctx: ImageContext, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        check_text(text, ctx)
        best = min(best, time.perf_counter() - t)
    return best


def count_calls(fn: Callable[..., T], *args: Any) -> tuple[T, int]:
    """`fn(*args)` and the Python function calls (and generator resumptions) it made: a
    measure of work that, unlike time, does not vary between runs."""
    n = 0

    def count(frame: object, event: str, arg: object) -> None:
        nonlocal n
        if event in ("call", "c_call"):
            n += 1

    sys.setprofile(count)
    try:
        result = fn(*args)
    finally:
        sys.setprofile(None)
    return result, n


def calls(text: str, ctx: ImageContext) -> int:
    """Python function calls made checking `text`."""
    return count_calls(check_text, text, ctx)[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sentences", type=int, default=2000, help="N (default: 2000)")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument("--coco", type=Path, default=COCO_MINI)
    args = parser.parse_args(argv)
    ctx = next(c for c in load_split(args.coco, "val2017", human_only=False) if c.image_id == IMAGE)
    check_text("warm up: the word lists load once.", ctx)
    worst = 0.0
    for unit in UNITS:
        small, large = unit * args.sentences, unit * (10 * args.sentences)
        t1, t10 = best_time(small, ctx, args.repeat), best_time(large, ctx, args.repeat)
        c1, c10 = calls(unit * (args.sentences // 10 or 1), ctx), calls(small, ctx)
        worst = max(worst, t10 / t1)
        print(f"{unit.strip()!r}")
        for n, chars, t in (
            (args.sentences, len(small), t1),
            (10 * args.sentences, len(large), t10),
        ):
            print(f"  x{n}: {chars:,} characters in {t:.3f} s = {t / chars * 1e6:.2f} us/character")
        print(
            f"  time ratio x10/x1: {t10 / t1:.2f}; function calls ratio (x10 vs x1, a tenth the size): {c10 / c1:.2f}"
        )
    ok = worst <= MAX_RATIO
    print(
        f"worst time ratio {worst:.2f} ({'<=' if ok else '>'} {MAX_RATIO}: {'linear' if ok else 'NOT linear'})"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
