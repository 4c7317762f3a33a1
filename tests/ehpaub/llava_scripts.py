"""LLaVA's own evaluation scripts (haotian-liu/LLaVA, commit c121f04), their few relevant lines
rewritten here from the source, not from our code: what `eval_gpt_review_visual.py` sends to the
judge, and what `summarize_gpt_review.py` computes from a review folder. Tests compare our
files and requests with these."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

# llava/eval/eval_gpt_review_visual.py, get_eval()
LLAVA_SYSTEM = "You are a helpful and precise assistant for checking the quality of the answer."


def llava_review_request(
    ques: dict, inst: dict, ans1: dict, ans2: dict, rule_dict: dict, max_tokens: int = 1024
) -> dict[str, Any]:
    """The keyword arguments of LLaVA's `openai.ChatCompletion.create` (its request body) for
    one question: `inst` is the question's line of caps_boxes_coco2014_val_80.jsonl."""
    cap_str = "\n".join(inst["captions"])
    box_str = "\n".join(
        [f"{instance['category']}: {instance['bbox']}" for instance in inst["instances"]]
    )
    rule = rule_dict[ques["category"]]
    prompt = rule["prompt"]
    role = rule["role"]
    content = (
        f"[Context]\n{cap_str}\n\n{box_str}\n\n"
        f"[Question]\n{ques['text']}\n\n"
        f"[{role} 1]\n{ans1['text']}\n\n[End of {role} 1]\n\n"
        f"[{role} 2]\n{ans2['text']}\n\n[End of {role} 2]\n\n"
        f"[System]\n{prompt}\n\n"
    )
    return {
        "model": "gpt-4-0314",
        "messages": [
            {"role": "system", "content": LLAVA_SYSTEM},
            {"role": "user", "content": content},
        ],
        "temperature": 0.2,
        "max_tokens": max_tokens,
    }


def llava_summarize(
    directory: Path | None = None, files: list[Path] | None = None
) -> dict[str, dict[str, tuple[float, float, float]]]:
    """summarize_gpt_review.py: per review file and category, (relative, reference x10,
    model x10) from the mean of each `tuple` column. Fails exactly where the original fails
    (e.g. a ``"tuple": null`` line)."""
    if files:
        review_files = [str(f) for f in files]
    else:
        assert directory is not None
        review_files = [
            x
            for x in os.listdir(directory)
            if x.endswith(".jsonl")
            and (
                x.startswith("gpt4_text")
                or x.startswith("reviews_")
                or x.startswith("review_")
                or "review" in str(directory)
            )
        ]
    out: dict[str, dict[str, tuple[float, float, float]]] = {}
    for review_file in sorted(review_files):
        config = os.path.basename(review_file).replace("gpt4_text_", "").replace(".jsonl", "")
        scores: dict[str, list[Any]] = defaultdict(list)
        path = os.path.join(directory, review_file) if directory is not None else review_file
        with open(path) as f:
            for review_str in f:
                review = json.loads(review_str)
                if "category" in review:
                    scores[review["category"]].append(review["tuple"])
                    scores["all"].append(review["tuple"])
                elif "tuple" in review:
                    scores["all"].append(review["tuple"])
                else:
                    scores["all"].append(review["score"])
        result = {}
        for k, v in sorted(scores.items()):
            stats = np.asarray(v).mean(0).tolist()
            stats = [round(x, 3) for x in stats]
            result[k] = (
                round(stats[1] / stats[0] * 100, 1),
                round(stats[0] * 10, 1),
                round(stats[1] * 10, 1),
            )
        out[config] = result
    return out
