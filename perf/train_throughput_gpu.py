"""Fine-tuning throughput of LLaVA-1.5-7B on one GPU (H100/H200): LoRA and full with ZeRO-3 offload.

The model is LLaVA-1.5-7B's architecture built from its config with random weights (no
download): CLIP ViT-L/14-336 tower (frozen), 2-layer GELU MLP connector, Vicuna-7B/Llama-2-7B
language model. Samples are synthetic, `--seq-len` tokens each with LLaVA-1.5's 576 image
tokens and a 336x336 image; `--data FILE --processor DIR` measures the mean length of real
records instead (our tokenization, images included). Training goes through the same code as
`llava-pose train` (build_training_args -> prepare_model -> make_trainer), bf16, gradient
checkpointing, the paper's per-device batch of 8.

Variants:
  lora          LoRA r 128 / alpha 256 on every language-model linear, connector trained in
                full, base weights bf16; no DeepSpeed
  full-offload  full fine-tuning (connector + language model) with DeepSpeed ZeRO-3, parameters
                and optimizer offloaded to CPU (configs/deepspeed/zero3_offload.json); needs
                `pip install deepspeed` and ~100 GB of host memory
  all           each variant in its own process, one after the other

Prints samples/s, tokens/s, peak GPU memory and model FLOPs utilisation,
MFU = 6 * parameters * tokens/s / peak bf16 FLOP/s (dense: H100/H200 SXM 989e12; override
with --peak-tflops). 6N counts forward + backward once, as the MFU convention does: gradient
checkpointing's recomputation and LoRA's skipped weight gradients are not adjusted for.
The first `--warmup` steps are not timed.

    python perf/train_throughput_gpu.py --variant all --seq-len 1024
    python perf/train_throughput_gpu.py --variant lora --data out/llava_pose_all.json \\
        --image-root /data/coco --processor llava-hf/llava-1.5-7b-hf
    python perf/train_throughput_gpu.py --dry-run      # CPU: a small model, same code path
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("lora", "full-offload")
IMAGE_TOKEN, PAD_TOKEN, BOS = 32000, 32001, 1

# Dense bf16 tensor-core peaks (FLOP/s) by device name, from NVIDIA's data sheets.
PEAK_BF16 = {
    "H200": 989e12,
    "H100 PCIe": 756e12,
    "H100 NVL": 835e12,
    "H100": 989e12,
    "A100": 312e12,
}


def llava_7b_config() -> Any:
    """LLaVA-1.5-7B (llava-hf/llava-1.5-7b-hf's config.json), written out."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    vision = CLIPVisionConfig(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
        image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu", layer_norm_eps=1e-5,
    )  # fmt: skip
    text = LlamaConfig(
        hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=32, vocab_size=32064, max_position_embeddings=4096, rms_norm_eps=1e-5,
        rope_theta=10000.0, hidden_act="silu", tie_word_embeddings=False, pad_token_id=PAD_TOKEN,
        bos_token_id=BOS, eos_token_id=2,
    )  # fmt: skip
    return LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=IMAGE_TOKEN, image_seq_length=576,
        projector_hidden_act="gelu", vision_feature_layer=-2, vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )  # fmt: skip


def dry_config() -> Any:
    """The same architecture, small enough for a CPU (--dry-run)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        image_size=56, patch_size=14, projection_dim=32, hidden_act="quick_gelu",
    )  # fmt: skip
    text = LlamaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, vocab_size=32064, max_position_embeddings=4096, tie_word_embeddings=False,
        pad_token_id=PAD_TOKEN, bos_token_id=BOS, eos_token_id=2,
    )  # fmt: skip
    return LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=IMAGE_TOKEN, image_seq_length=16,
        projector_hidden_act="gelu", vision_feature_layer=-2, vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )  # fmt: skip


class SyntheticSamples:
    """`n` samples of exactly `seq_len` tokens: BOS, prompt, the image tokens, question, answer
    (the answer, the last third of the text, is the only part with labels)."""

    def __init__(self, config: Any, seq_len: int, n: int, seed: int = 0) -> None:
        import torch

        image_tokens = config.image_seq_length
        text = seq_len - image_tokens - 1
        if text < 8:
            raise SystemExit(
                f"--seq-len {seq_len}: must exceed the {image_tokens} image tokens by at least 9"
            )
        g = torch.Generator().manual_seed(seed)
        side = config.vision_config.image_size
        self.items = []
        for _ in range(n):
            words = torch.randint(3, IMAGE_TOKEN, (text,), generator=g)
            prompt = min(35, text // 3)
            ids = torch.cat(
                [
                    torch.tensor([BOS]),
                    words[:prompt],
                    torch.full((image_tokens,), IMAGE_TOKEN),
                    words[prompt:],
                ]
            )
            labels = torch.full_like(ids, -100)
            answer = text - text // 3
            labels[-answer:] = ids[-answer:]
            self.items.append(
                {
                    "input_ids": ids,
                    "labels": labels,
                    "pixel_values": torch.randn(3, side, side, generator=g),
                }
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


def measured_seq_len(args: argparse.Namespace) -> int:
    """Mean tokens per sample of real records, as `llava-pose train` would encode them."""
    from llava_pose.train.data import Encoder, count_image_tokens, load_records, validate
    from llava_pose.train.model import build_tiny_processor, load_config, load_processor

    processor = (
        build_tiny_processor()
        if args.processor == "tiny"
        else load_processor(args.processor, load_config(args.processor))
    )
    records, structural = load_records(args.data, args.image_root)
    token_id, n = count_image_tokens(processor)
    encoder = Encoder(
        processor.tokenizer, image_token_id=token_id, num_image_tokens=n, max_length=2048
    )
    _, report = validate(records, encoder, structural=structural)
    print(f"data: {report.summary()}")
    return round(sum(report.lengths) / len(report.lengths))


def peak_flops(args: argparse.Namespace) -> float | None:
    import torch

    if args.peak_tflops:
        return args.peak_tflops * 1e12
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    for key, value in PEAK_BF16.items():  # most specific names first
        if key in name:
            return value
    return None


def run_variant(variant: str, args: argparse.Namespace, seq_len: int) -> dict[str, Any]:
    import torch
    from transformers import LlavaForConditionalGeneration, TrainerCallback

    from llava_pose.train.config import TrainConfig
    from llava_pose.train.model import quiet_transformers, trainable_summary
    from llava_pose.train.trainer import (
        build_training_args,
        make_trainer,
        prepare_model,
        resolve_deepspeed,
    )

    quiet_transformers()
    dry = args.dry_run
    config = dry_config() if dry else llava_7b_config()
    offload = variant == "full-offload"
    deepspeed = resolve_deepspeed("zero3_offload") if offload and not dry else None
    precision = "fp32" if dry else "bf16"
    steps = args.warmup + args.steps
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(
            output=out, lora=variant == "lora", lr=2e-4 if variant == "lora" else 2e-5, batch_size=args.batch_size,
            grad_accum=1, max_steps=steps, num_workers=0, warmup_ratio=0.0,
            group_by_length=False, logging_steps=steps, deepspeed=deepspeed,
        )  # fmt: skip
        if deepspeed:
            from llava_pose.train.trainer import _ensure_single_process_env

            _ensure_single_process_env()
        # TrainingArguments first: under ZeRO-3 the model below is built already partitioned
        training_args = build_training_args(
            cfg, precision=precision, deepspeed=deepspeed, save_strategy="no", report_to=[]
        )
        dtype = torch.float32 if dry else torch.bfloat16
        device = "cpu" if dry or deepspeed else "cuda"
        with torch.device(device):
            model = LlavaForConditionalGeneration._from_config(
                config, dtype=dtype, attn_implementation="sdpa"
            )
        model = prepare_model(model, cfg, deepspeed=deepspeed)
        parameters = sum(total for _, total in trainable_summary(model).values())
        trainable = sum(t for t, _ in trainable_summary(model).values())
        dataset = SyntheticSamples(config, seq_len, max(args.batch_size * steps, 8))
        marks: dict[int, float] = {}

        class Clock(TrainerCallback):
            def on_step_end(self, a: Any, state: Any, control: Any, **kwargs: Any) -> None:
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                marks[state.global_step] = time.perf_counter()

        trainer = make_trainer(model, None, dataset, training_args, pad_token_id=PAD_TOKEN)
        trainer.add_callback(Clock())
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
    seconds = marks[steps] - marks[args.warmup]
    samples = args.steps * args.batch_size
    tokens_per_s = samples * seq_len / seconds
    peak = peak_flops(args)
    return {
        "variant": variant
        + (" (dry run, no DeepSpeed)" if dry and offload else " (dry run)" if dry else ""),
        "parameters": parameters,
        "trainable": trainable,
        "samples_per_s": samples / seconds,
        "tokens_per_s": tokens_per_s,
        "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30
        if torch.cuda.is_available()
        else None,
        "mfu": 6 * parameters * tokens_per_s / peak if peak else None,
    }


def report(result: dict[str, Any]) -> None:
    memory = (
        f"{result['peak_memory_gb']:.1f} GiB" if result["peak_memory_gb"] is not None else "n/a"
    )
    mfu = f"{100 * result['mfu']:.1f}%" if result["mfu"] is not None else "n/a (no GPU peak known)"
    print(
        f"{result['variant']}: {result['parameters'] / 1e9:.3f}B parameters ({result['trainable'] / 1e6:.1f}M trainable), "
        f"{result['samples_per_s']:.2f} samples/s, {result['tokens_per_s']:.0f} tokens/s, peak GPU memory {memory}, MFU {mfu}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--variant", choices=(*VARIANTS, "all"), default="all")
    ap.add_argument(
        "--seq-len", type=int, default=1024, help="tokens per sample, 576 image tokens included"
    )
    ap.add_argument(
        "--data", nargs="+", help="measure the mean sample length of these LLaVA JSON files instead"
    )
    ap.add_argument(
        "--image-root", help="with --data: the folder the records' image paths are relative to"
    )
    ap.add_argument(
        "--processor",
        default="llava-hf/llava-1.5-7b-hf",
        help="with --data: whose tokenizer counts",
    )
    ap.add_argument("--batch-size", type=int, default=8, help="per-device batch (the paper's 8)")
    ap.add_argument("--steps", type=int, default=10, help="timed optimizer steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument(
        "--peak-tflops", type=float, help="the GPU's dense bf16 peak, when its name is not known"
    )
    ap.add_argument(
        "--dry-run", action="store_true", help="CPU: a small model through the same code path"
    )
    ap.add_argument(
        "--measured-seq-len", type=int, help=argparse.SUPPRESS
    )  # --variant all's children
    args = ap.parse_args()

    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print(
            "train_throughput_gpu: needs a CUDA GPU (H100/H200); on a CPU run it with --dry-run",
            file=sys.stderr,
        )
        return 2
    if args.dry_run:
        args.seq_len = min(args.seq_len, 64)
        args.steps, args.warmup, args.batch_size = (
            min(args.steps, 3),
            min(args.warmup, 1),
            min(args.batch_size, 2),
        )
    device = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"CPU ({os.cpu_count()} cores)"
    )
    print(
        f"machine: {platform.node()} {device}, torch {torch.__version__}, python {platform.python_version()}"
    )
    print(f"command: {' '.join(sys.argv)}")
    seq_len = args.measured_seq_len or (measured_seq_len(args) if args.data else args.seq_len)
    size, precision = (" (dry-run size)", "fp32") if args.dry_run else ("", "bf16")
    print(
        f"model: LLaVA-1.5-7B architecture{size}, random weights; {precision}, gradient checkpointing"
    )
    print(
        f"batch {args.batch_size} per device, {seq_len} tokens per sample, {args.steps} timed steps after {args.warmup}"
    )
    variants = VARIANTS if args.variant == "all" else (args.variant,)
    if len(variants) > 1 and not args.dry_run:
        code = 0
        for variant in variants:  # a fresh process each: GPU memory and DeepSpeed state start clean
            # the last --variant wins; the length is measured once
            child = [*sys.argv[1:], "--variant", variant, "--measured-seq-len", str(seq_len)]
            done = subprocess.run([sys.executable, __file__, *child], check=False)
            code = code or done.returncode
        return code
    for variant in variants:
        report(run_variant(variant, args, seq_len))
    return 0


if __name__ == "__main__":
    sys.exit(main())
