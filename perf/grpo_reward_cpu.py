"""Does the GRPO loop learn? The mean reward of a tiny model before and after `llava-pose train
--method grpo`, on the CPU, on a fixed task built from COCO-MINI, same seed, same prompts.

The task: PoseQA's questions about COCO-MINI's train2017 images (`poseqa build --split
train2017`), rewarded by the real exact-match reward (`train.rewards.exact_match`, PoseQA's
strict parser). A random tiny model almost never writes an option letter (one token in a
1,024-word vocabulary), so every reward of a group is 0 and GRPO has nothing to compare: the
start is an SFT run (`llava-pose train --model tiny`) on each question answered once with each
of its letters, which answers with a letter at about chance and knows no answer. Then:

1. reward before: `--samples` answers per question sampled from the SFT run (temperature 1,
   seed `--seed`, through `vlm.generate`, as `chat` and hf: ask), scored by `exact_match`;
2. `--steps` GRPO steps from the SFT run, through the CLI (every step in train_log.jsonl);
3. reward after: the same sampling of the GRPO run, same seed, same prompts.

It prints the per-step curve (mean reward of the step's sampled answers, and the KL to the SFT
start) and the rewards before and after. It shows that the loop learns from the rewards, not
that a real model gets better at poses: the task is two questions and the model a toy.
tests/train/test_grpo.py runs `measure` and holds after > before.

    python perf/grpo_reward_cpu.py [--coco tests/data/coco-mini] [--steps 20] [--samples 16]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _common(seed: int) -> list[str]:
    """Options both runs share: no warmup, a constant rate, every step logged, one process."""
    return [
        "--grad-accum", "1", "--warmup-ratio", "0", "--lr-scheduler", "constant", "--logging-steps", "1",
        "--num-workers", "0", "--save-steps", "100000", "--no-gradient-checkpointing", "--seed", str(seed),
    ]  # fmt: skip


def _cli(args: list[str]) -> None:
    from llava_pose.cli import main

    with contextlib.redirect_stdout(io.StringIO()):
        code = main(args)
    if code != 0:
        raise SystemExit(f"llava-pose {' '.join(args[:3])} ...: exit {code}")


def build_task(coco: Path, out: Path) -> Path:
    """The PoseQA questions of COCO-MINI's train2017: the fixed task."""
    _cli(["poseqa", "build", "--coco", str(coco), "--split", "train2017", "--out", str(out)])
    return out


def questions(poseqa: Path) -> list[dict[str, Any]]:
    from llava_pose.poseqa.files import read_questions

    return [
        {"question_id": q.question_id, "image": q.image, "text": q.text, "answer": q.answer,
         "answer_type": q.answer_type, "choices": q.choices}
        for q in read_questions(poseqa / "questions.jsonl")
    ]  # fmt: skip


def format_records(poseqa: Path, path: Path) -> Path:
    """Each question answered once with each of its answers: the SFT start learns the answer's
    form (a letter, "yes"/"no", a number), not which one is right."""
    records = []
    for q in questions(poseqa):
        if q["answer_type"] == "choice":
            answers = [chr(ord("A") + k) for k in range(len(q["choices"]))]
        elif q["answer_type"] == "yes/no":
            answers = ["yes", "no"]
        else:
            answers = [str(n) for n in range(4)]
        for a in answers:
            records.append(
                {
                    "id": f"{q['question_id']}-{a}",
                    "image": q["image"],
                    "conversations": [
                        {"from": "human", "value": "<image>\n" + q["text"]},
                        {"from": "gpt", "value": a},
                    ],
                }
            )
    path.write_text(json.dumps(records, indent=1))
    return path


def sampled_reward(
    model: Path, poseqa: Path, image_root: Path, *, samples: int, seed: int, max_new_tokens: int
) -> dict[str, float]:
    """Mean exact-match reward of `samples` answers per question, sampled at temperature 1
    with `seed` (the same draws for the same model), per question id."""
    from llava_pose.train.rewards import exact_match
    from llava_pose.vlm.generate import Conversation, generate, load

    loaded = load(str(model), device="cpu", dtype="fp32")
    out = {}
    for q in questions(poseqa):
        conversation = Conversation([("user", q["text"])], image=str(image_root / q["image"]))
        answers = generate(
            loaded, [conversation] * samples, max_new_tokens=max_new_tokens, temperature=1.0,
            seed=seed,
        )  # fmt: skip
        out[q["question_id"]] = sum(exact_match(a.text, q) for a in answers) / len(answers)
    return out


def measure(
    work: Path,
    coco: Path,
    *,
    steps: int = 20,
    sft_steps: int = 25,
    samples: int = 16,
    seed: int = 0,
    lr: float = 5e-3,
) -> dict[str, Any]:
    """The whole measurement in `work`: the task, the SFT start, before, GRPO, after."""
    poseqa = build_task(coco, work / "poseqa")
    sft, grpo = work / "sft", work / "grpo"
    records = format_records(poseqa, work / "format.json")
    started = time.perf_counter()
    _cli([
        "train", "--model", "tiny", "--data", str(records), "--image-root", str(coco), "--output", str(sft),
        "--batch-size", "8", "--lr", "1e-2", "--max-steps", str(sft_steps), "--no-group-by-length", *_common(seed),
    ])  # fmt: skip
    sft_seconds = time.perf_counter() - started
    tokens = 3  # a letter (D is two tokens here) and the end of the answer
    before = sampled_reward(sft, poseqa, coco, samples=samples, seed=seed, max_new_tokens=tokens)
    started = time.perf_counter()
    _cli([
        "train", "--method", "grpo", "--model", str(sft), "--poseqa", str(poseqa), "--image-root", str(coco),
        "--output", str(grpo), "--batch-size", "16", "--num-generations", "8",
        "--max-completion-length", str(tokens), "--lr", str(lr), "--max-steps", str(steps), *_common(seed),
    ])  # fmt: skip
    grpo_seconds = time.perf_counter() - started
    after = sampled_reward(grpo, poseqa, coco, samples=samples, seed=seed, max_new_tokens=tokens)
    log = [json.loads(line) for line in (grpo / "train_log.jsonl").read_text().splitlines()]
    curve = [
        {"step": row["step"], "reward": row["reward"], "kl": row.get("kl")}
        for row in log
        if "reward" in row
    ]
    return {
        "questions": {q["question_id"]: q["answer"] for q in questions(poseqa)},
        "before": sum(before.values()) / len(before),
        "after": sum(after.values()) / len(after),
        "before_by_question": before,
        "after_by_question": after,
        "curve": curve,
        "log": log,
        "sft_seconds": sft_seconds,
        "grpo_seconds": grpo_seconds,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--coco", type=Path, default=REPO / "tests" / "data" / "coco-mini")
    ap.add_argument("--steps", type=int, default=20, help="GRPO steps")
    ap.add_argument("--sft-steps", type=int, default=25, help="steps of the SFT start")
    ap.add_argument("--samples", type=int, default=16, help="answers sampled per question")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=5e-3, help="GRPO learning rate")
    args = ap.parse_args(argv)
    import torch

    print(
        f"machine: {platform.node()} CPU ({os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}), "
        f"torch {torch.__version__}, python {platform.python_version()}"
    )
    print(f"command: {' '.join(sys.argv)}", flush=True)
    with tempfile.TemporaryDirectory() as work:
        r = measure(
            Path(work), args.coco, steps=args.steps, sft_steps=args.sft_steps,
            samples=args.samples, seed=args.seed, lr=args.lr,
        )  # fmt: skip
    print(
        f"task: {len(r['questions'])} PoseQA questions of {args.coco.name} train2017, "
        f"{args.samples} answers sampled per question (seed {args.seed})"
    )
    print("step  reward  kl")
    for point in r["curve"]:
        kl = f"{point['kl']:.4f}" if point["kl"] is not None else "-"
        print(f"{point['step']:>4}  {point['reward']:.3f}   {kl}")
    for qid, answer in r["questions"].items():
        print(
            f"question {qid} (answer {answer}): reward before {r['before_by_question'][qid]:.3f}, "
            f"after {r['after_by_question'][qid]:.3f}"
        )
    print(
        f"mean reward before {r['before']:.3f}, after {args.steps} GRPO steps {r['after']:.3f} "
        f"(SFT start {r['sft_seconds']:.1f}s, GRPO {r['grpo_seconds']:.1f}s)"
    )
    return 0 if r["after"] > r["before"] else 1


if __name__ == "__main__":
    sys.exit(main())
