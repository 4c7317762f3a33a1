"""Training steps/s of the tiny presets on the CPU, full fine-tuning and LoRA, every family, to
catch regressions.

Each (preset, variant) runs twice on the same model, data and batch size: through our trainer
(`make_trainer`: TRL's SFTTrainer and collator, the recipe's optimizer groups, throughput
logging, the blank-vision pass) and through a bare PyTorch loop as the baseline (a DataLoader
with the same TRL collator, AdamW, clipping, a step), both with gradient checkpointing as the
recipe. It prints steps/s of both and their ratio (ours / bare): what our trainer costs over
the forward and backward passes themselves. The first `--warmup` steps of each run are not
timed. The two are interleaved and the best of `--repeat` runs is kept, because a shared CPU
makes single runs noisy (the load average is printed with the results).

    python perf/train_steps_cpu.py [--coco tests/data/coco-mini] [--steps 30] [--batch-size 4]
    python perf/train_steps_cpu.py --preset tiny-qwen2_5_vl --variant lora
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("full", "lora")


def coco_records(coco: Path, n: int) -> list[Any]:
    """Two-turn records about real COCO-MINI images (the tests' records), read back through
    the same loader as `llava-pose train`."""
    sys.path.insert(0, str(REPO))
    from tests.train.llava_records import coco_records as rows
    from tests.train.llava_records import write_records

    from llava_pose.train.data import load_records

    with tempfile.TemporaryDirectory() as folder:
        records, bad = load_records(
            [str(write_records(Path(folder) / "data.json", rows(coco, n)))], str(coco)
        )
    assert not bad, bad
    return records


def setup(preset: str, variant: str, records: list[Any]) -> tuple[Any, Any, Any, Any, Any]:
    """(model, processor, dataset, family, chat template) as `llava-pose train` sets them up."""
    from llava_pose.train.data import sft_dataset
    from llava_pose.train.model import load_model, setup_trainable
    from llava_pose.train.sft import training_template
    from llava_pose.vlm.images import mean_colour

    model, processor, family = load_model(preset, seed=0)
    model.config.use_cache = model.config.get_text_config().use_cache = False
    model = setup_trainable(model, family=family, lora=variant == "lora", r=8, alpha=16)
    template = training_template(processor, family)
    processor.chat_template = template
    colour = mean_colour(processor.image_processor) if family.pad_to_square else None
    return model, processor, sft_dataset(records, colour), family, template


def ours(
    preset: str, variant: str, records: list[Any], steps: int, warmup: int, batch: int
) -> float:
    """Steps/s through make_trainer (what `llava-pose train` runs)."""
    from transformers import TrainerCallback

    from llava_pose.train.config import TrainConfig
    from llava_pose.train.sft import make_trainer, sft_args

    model, processor, dataset, family, template = setup(preset, variant, records)
    marks: dict[int, float] = {}

    class Clock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            marks[state.global_step] = time.perf_counter()

    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(
            output=out, lr=1e-3, batch_size=batch, grad_accum=1, max_steps=steps, num_workers=0,
            warmup_ratio=0.0, group_by_length=False, logging_steps=steps,
        )  # fmt: skip
        args = sft_args(cfg, precision="fp32", deepspeed=None, save_strategy="no", report_to=[])
        trainer = make_trainer(
            model, processor, dataset, args, family=family, chat_template=template
        )
        trainer.add_callback(Clock())
        trainer.train()
    return (steps - warmup) / (marks[steps] - marks[warmup])


def bare(
    preset: str, variant: str, records: list[Any], steps: int, warmup: int, batch: int
) -> float:
    """Steps/s of a plain PyTorch loop on the same model and batches (TRL's collator)."""
    import torch
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    model, processor, dataset, _, template = setup(preset, variant, records)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    collate = DataCollatorForVisionLanguageModeling(
        processor=processor, assistant_only_loss=True, chat_template=template
    )
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch, shuffle=True, collate_fn=collate,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    batches = iter(())
    start = 0.0
    for step in range(1, steps + 1):
        try:
            inputs = next(batches)
        except StopIteration:
            batches = iter(loader)
            inputs = next(batches)
        model(**inputs).loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step == warmup:
            start = time.perf_counter()
    return (steps - warmup) / (time.perf_counter() - start)


def main() -> int:
    from llava_pose.vlm.families import presets

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--coco", default=str(REPO / "tests" / "data" / "coco-mini"))
    ap.add_argument("--preset", choices=(*presets(), "all"), default="all")
    ap.add_argument("--variant", choices=(*VARIANTS, "all"), default="all")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--records", type=int, default=16)
    ap.add_argument(
        "--repeat", type=int, default=2, help="interleaved runs per measurement; the best is kept"
    )
    args = ap.parse_args()

    import torch

    from llava_pose.train.model import quiet_transformers

    quiet_transformers()
    records = coco_records(Path(args.coco), args.records)
    print(
        f"machine: {platform.machine()} {os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), python {platform.python_version()}"
    )
    print(f"command: {' '.join(sys.argv)}")
    print(
        f"tiny presets (vlm.tiny.TinySpec: vision hidden 32, 2 layers; language hidden 64, 2 layers), "
        f"{len(records)} COCO-MINI records, batch {args.batch_size}, gradient checkpointing, fp32; "
        f"{args.steps} steps, first {args.warmup} untimed, best of {args.repeat}"
    )
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"{'preset':22}{'variant':9}{'ours steps/s':>14}{'bare steps/s':>14}{'ratio':>8}{'samples/s':>11}",
        flush=True,
    )
    chosen = list(presets()) if args.preset == "all" else [args.preset]
    variants = VARIANTS if args.variant == "all" else (args.variant,)
    for preset in chosen:
        for variant in variants:
            mine, base = [], []
            for _ in range(args.repeat):
                mine.append(
                    ours(preset, variant, records, args.steps, args.warmup, args.batch_size)
                )
                base.append(
                    bare(preset, variant, records, args.steps, args.warmup, args.batch_size)
                )
            best, best_base = max(mine), max(base)
            print(
                f"{preset:22}{variant:9}{best:14.2f}{best_base:14.2f}{best / best_base:8.2f}"
                f"{best * args.batch_size:11.1f}",
                flush=True,
            )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
