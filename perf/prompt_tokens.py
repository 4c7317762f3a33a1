"""Prompt tokens per image, paper vs compact format, on COCO-MINI (o200k_base, offline).

Counts every message the teacher is sent for the three tasks of each human-centric image
(system prompts included, as billed), both formats side by side in one run, and prints the
ratio compact/paper (target <= 0.6). That the compact context loses nothing is proven by
tests/test_context.py (render -> parse back -> same numbers on every COCO-MINI image).

    python perf/prompt_tokens.py [--coco tests/data/coco-mini] [--fewshot]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
from pathlib import Path

from llava_pose.coco import load_split
from llava_pose.llm.pricing import count_message_tokens
from llava_pose.prompts import build_request, load_prompts
from llava_pose.tasks import TASKS

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--coco", default=str(REPO / "tests" / "data" / "coco-mini"))
    ap.add_argument("--splits", default="train2017,val2017")
    ap.add_argument(
        "--fewshot", action="store_true", help="include the worked examples in both formats"
    )
    args = ap.parse_args()

    contexts = [c for split in args.splits.split(",") for c in load_split(args.coco, split)]
    per_image: dict[str, list[int]] = {"paper": [], "compact": []}
    context_only: dict[str, list[int]] = {"paper": [], "compact": []}
    for fmt in per_image:
        prompts = load_prompts(fmt)
        for ctx in contexts:
            total = 0
            for task in TASKS:
                r = build_request(ctx, task, model="gpt-4o", prompts=prompts, fewshot=args.fewshot)
                total += count_message_tokens(r.messages)
                if task == "reasoning":  # system + context only: the part the format changes
                    context_only[fmt].append(count_message_tokens(r.messages[1:]))
            per_image[fmt].append(total)

    paper, compact = sum(per_image["paper"]), sum(per_image["compact"])
    cp, cc = sum(context_only["paper"]), sum(context_only["compact"])
    print(
        f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}"
    )
    print(f"command: {' '.join(sys.argv)}")
    print(
        f"images: {len(contexts)} human-centric COCO-MINI images ({args.splits}); tokenizer o200k_base"
    )
    print(f"{'':28}{'paper':>10}{'compact':>10}{'ratio':>8}")
    print(
        f"{'prompt tokens / image (3 tasks)':28}{paper / len(contexts):10.0f}{compact / len(contexts):10.0f}{compact / paper:8.3f}"
    )
    print(
        f"{'  median':28}{statistics.median(per_image['paper']):10.0f}{statistics.median(per_image['compact']):10.0f}"
    )
    print(
        f"{'context tokens / image':28}{cp / len(contexts):10.0f}{cc / len(contexts):10.0f}{cc / cp:8.3f}"
    )
    ok = compact / paper <= 0.6
    print(f"target compact <= 0.6 x paper: {'met' if ok else 'NOT met'} ({compact / paper:.3f})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
