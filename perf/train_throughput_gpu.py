"""Fine-tuning throughput on one GPU (H100/H200) at real model sizes, random weights (no
download): LLaVA-1.5-7B (the paper's) and Qwen2.5-VL-7B (a modern image-text-to-text model).

The models are built from their configs as released (llava-hf/llava-1.5-7b-hf,
Qwen/Qwen2.5-VL-7B-Instruct), their tokenizers stood in for by the offline tiny ones (the
vocabulary size, so the embeddings, are the real ones), their image processors the real ones:
LLaVA-1.5's 336 px CLIP crop (576 image tokens) and Qwen2.5-VL's dynamic resolution (patches of
14 px merged 2x2: a 640x480 image is 391 tokens). Samples are synthetic records of about
`--seq-len` tokens with one `--image-size` image each, trained through the code of
`llava-pose train` itself: the records through `sft_dataset` and TRL's collator (the chat
template, the processor, assistant-only labels), the model through `prepare_model`, the
Trainer through `make_trainer` (SFTTrainer + the recipe), bf16, gradient checkpointing, the
paper's per-device batch of 8.

Variants:
  lora          LoRA r 128 / alpha 256 on every language-model linear, connector trained in
                full, base weights bf16; no DeepSpeed
  full-offload  full fine-tuning (connector + language model) with DeepSpeed ZeRO-3, parameters
                and optimizer offloaded to CPU (configs/deepspeed/zero3_offload.json); needs
                `pip install deepspeed` and ~100 GB of host memory
  grpo          one GRPO step of `llava-pose train --method grpo` (LoRA as above, beta 0.04): a
                PoseQA question with one image, `--generations` answers of exactly
                `--completion-len` tokens sampled by the model's own `generate`, scored by the
                real exact-match reward, then the policy update; generation, scoring (rewards,
                the reference model's log-probs) and the update are timed apart
  all           each variant in its own process, one after the other (and each --model)

Prints samples/s, tokens/s (the tokens the batches held, padding excluded), peak GPU memory
and model FLOPs utilisation, MFU = 6 * parameters * tokens/s / peak bf16 FLOP/s (dense:
H100/H200 SXM 989e12; override with --peak-tflops). 6N counts forward + backward once, as the
MFU convention does: gradient checkpointing's recomputation and LoRA's skipped weight
gradients are not adjusted for. The first `--warmup` steps are not timed.

    python perf/train_throughput_gpu.py --model qwen2.5-vl-7b --variant lora      # < 10 min on an H100
    python perf/train_throughput_gpu.py --model all --variant all --seq-len 1024
    python perf/train_throughput_gpu.py --variant lora --data out/llava_pose_all.json \\
        --image-root /data/coco --processor llava-hf/llava-1.5-7b-hf
    python perf/train_throughput_gpu.py --model qwen2.5-vl-7b --variant grpo     # < 10 min on an H100
    python perf/train_throughput_gpu.py --dry-run      # CPU: small models, the same code path
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
VARIANTS = ("lora", "full-offload", "grpo")
MODELS = {"llava-1.5-7b": "llava", "qwen2.5-vl-7b": "qwen2_5_vl"}  # name -> family
IMAGE_TOKEN, PAD_TOKEN, BOS = 32000, 32001, 1  # llava-hf's

# Dense bf16 tensor-core peaks (FLOP/s) by device name, from NVIDIA's data sheets.
PEAK_BF16 = {
    "H200": 989e12,
    "H100 PCIe": 756e12,
    "H100 NVL": 835e12,
    "H100": 989e12,
    "A100": 312e12,
}


def llava_7b_config(tokenizer: Any = None) -> Any:
    """LLaVA-1.5-7B (llava-hf/llava-1.5-7b-hf's config.json), written out; special token ids
    from `tokenizer` when given (the stand-in's), else llava-hf's."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    image, pad = IMAGE_TOKEN, PAD_TOKEN
    bos, eos = BOS, 2
    if tokenizer is not None:
        image = tokenizer.convert_tokens_to_ids("<image>")
        pad, bos, eos = tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id
    vision = CLIPVisionConfig(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
        image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu", layer_norm_eps=1e-5,
    )  # fmt: skip
    text = LlamaConfig(
        hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=32, vocab_size=32064, max_position_embeddings=4096, rms_norm_eps=1e-5,
        rope_theta=10000.0, hidden_act="silu", tie_word_embeddings=False, pad_token_id=pad,
        bos_token_id=bos, eos_token_id=eos,
    )  # fmt: skip
    return LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=image, image_seq_length=576,
        projector_hidden_act="gelu", vision_feature_layer=-2, vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )  # fmt: skip


def qwen2_5_vl_7b_config(tokenizer: Any = None) -> Any:
    """Qwen2.5-VL-7B-Instruct's config.json, written out: 8.29B parameters (a 32-layer ViT
    with window attention, 0.68B with its merger; Qwen2-7B's 28-layer language model)."""
    from transformers import Qwen2_5_VLConfig

    ids: dict[str, int] = {}
    if tokenizer is not None:
        ids = {
            key: tokenizer.convert_tokens_to_ids(token)
            for key, token in (
                ("image_token_id", "<|image_pad|>"),
                ("video_token_id", "<|video_pad|>"),
                ("vision_start_token_id", "<|vision_start|>"),
                ("vision_end_token_id", "<|vision_end|>"),
            )
        }
    vision = dict(
        depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, in_channels=3,
        out_hidden_size=3584, patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
        window_size=112, fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2, hidden_act="silu",
    )  # fmt: skip
    text = dict(
        hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
        num_key_value_heads=4, vocab_size=152064, max_position_embeddings=128000, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1e6},
        sliding_window=32768, use_sliding_window=False, hidden_act="silu",
    )  # fmt: skip
    if tokenizer is not None:
        text.update(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    return Qwen2_5_VLConfig(
        vision_config=vision, text_config=text, tie_word_embeddings=False, **ids
    )


def model_and_processor_setup(name: str, dry: bool) -> tuple[Any, Any, str]:
    """(config, processor, family) of `name` (MODELS) at real size, or small for --dry-run: the
    offline tokenizer of the family, its real image processor."""
    from llava_pose.vlm.tiny import _CONFIGS as TINY_CONFIGS
    from llava_pose.vlm.tiny import TinySpec, _pil, build_tiny_processor, tiny_config

    family = MODELS[name]
    if family == "llava":
        spec = TinySpec(image_size=56 if dry else 336, patch_size=14)
        processor = build_tiny_processor(spec, family)
        config = (
            tiny_config(spec, processor.tokenizer) if dry else llava_7b_config(processor.tokenizer)
        )
        return config, processor, family
    processor = build_tiny_processor(TinySpec(), family)
    if dry:
        return TINY_CONFIGS[family][1](TinySpec(), processor.tokenizer), processor, family
    # Qwen/Qwen2.5-VL-7B-Instruct's preprocessor_config.json
    processor.image_processor = _pil("Qwen2VLImageProcessor")(
        patch_size=14, merge_size=2, temporal_patch_size=2, min_pixels=3136, max_pixels=12845056
    )
    return qwen2_5_vl_7b_config(processor.tokenizer), processor, family


def synthetic_records(
    processor: Any, family: Any, seq_len: int, n: int, image: str, size: tuple[int, int]
) -> list[Any]:
    """`n` one-turn records about `image`, each of about `seq_len` tokens as the training
    template and processor make them, image tokens included (the question a third of the
    text, the answer the rest: what the loss is on)."""
    from PIL import Image

    from llava_pose.train.data import Encoder, Record, image_token_counter
    from llava_pose.train.sft import training_template

    Image.new("RGB", size, (120, 110, 100)).save(image)
    tokenizer = processor.tokenizer
    encoder = Encoder(
        tokenizer,
        image_token_id=tokenizer.convert_tokens_to_ids(processor.image_token),
        num_image_tokens=image_token_counter(processor, family.pad_to_square),
        max_length=1 << 20,
        chat_template=training_template(processor, family),
    )

    def record(question: str, answer: str, i: int = 0) -> Any:
        turns = (("human", f"<image>\n{question}"), ("gpt", answer))
        return Record(f"s{i}", "synthetic", image, turns, i)

    overhead = encoder.encode(record("a", "a"), size).full_length - 2
    text = seq_len - overhead
    if text < 8:
        raise SystemExit(
            f"--seq-len {seq_len}: must exceed the {overhead} tokens of template and image by 8"
        )
    words = [
        "the",
        "person",
        "on",
        "the",
        "left",
        "raises",
        "the",
        "right",
        "arm",
        "above",
        "the",
        "head",
        "while",
        "the",
        "left",
        "knee",
        "bends",
    ]

    def phrase(tokens: int, shift: int) -> str:
        out: list[str] = []
        while len(tokenizer(" ".join(out), add_special_tokens=False)["input_ids"]) < tokens:
            out.append(words[(len(out) + shift) % len(words)])
        return " ".join(out)

    question, answer = phrase(text // 3, 0), phrase(text - text // 3, 5)
    return [record(question, answer, i) for i in range(n)]


def measured_seq_len(args: argparse.Namespace) -> int:
    """Mean tokens per sample of real records, as `llava-pose train` would encode them."""
    from llava_pose.train.data import Encoder, image_token_counter, load_records, validate
    from llava_pose.train.sft import training_template
    from llava_pose.train.trainer import processor_and_family

    processor, family = processor_and_family(args.processor)
    records, structural = load_records(args.data, args.image_root)
    tokenizer = processor.tokenizer
    encoder = Encoder(
        tokenizer,
        image_token_id=tokenizer.convert_tokens_to_ids(processor.image_token),
        num_image_tokens=image_token_counter(processor, family.pad_to_square),
        max_length=2048,
        chat_template=training_template(processor, family),
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


def run_variant(name: str, variant: str, args: argparse.Namespace, seq_len: int) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForImageTextToText, TrainerCallback

    from llava_pose.train.config import TrainConfig
    from llava_pose.train.data import sft_dataset
    from llava_pose.train.model import quiet_transformers, trainable_summary
    from llava_pose.train.sft import make_trainer, sft_args, training_template
    from llava_pose.train.trainer import ensure_single_process_env, prepare_model, resolve_deepspeed
    from llava_pose.vlm.families import families
    from llava_pose.vlm.images import mean_colour

    quiet_transformers()
    dry = args.dry_run
    config, processor, family_name = model_and_processor_setup(name, dry)
    family = families()[family_name]
    offload = variant == "full-offload"
    deepspeed = resolve_deepspeed("zero3_offload") if offload and not dry else None
    precision = "fp32" if dry else "bf16"
    steps = args.warmup + args.steps
    size = tuple(int(x) for x in args.image_size.split("x"))
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(
            output=out, lora=variant == "lora", lr=2e-4 if variant == "lora" else 2e-5, batch_size=args.batch_size,
            grad_accum=1, max_steps=steps, num_workers=args.workers, warmup_ratio=0.0,
            group_by_length=False, logging_steps=steps, deepspeed=deepspeed, max_length=max(seq_len * 2, 2048),
        )  # fmt: skip
        if deepspeed:
            ensure_single_process_env()
        # the arguments first: under ZeRO-3 the model below is built already partitioned
        training_args = sft_args(
            cfg, precision=precision, deepspeed=deepspeed, save_strategy="no", report_to=[]
        )
        dtype = torch.float32 if dry else torch.bfloat16
        device = "cpu" if dry or deepspeed else "cuda"
        with torch.device(device):
            model = AutoModelForImageTextToText.from_config(
                config, dtype=dtype, attn_implementation="sdpa"
            )
        model = prepare_model(model, cfg, family=family, deepspeed=deepspeed)
        summary = trainable_summary(model, family)
        parameters = sum(total for _, total in summary.values())
        trainable = sum(t for t, _ in summary.values())
        colour = mean_colour(processor.image_processor) if family.pad_to_square else None
        records = synthetic_records(
            processor,
            family,
            seq_len,
            max(args.batch_size * steps, 8),
            str(Path(out) / "image.png"),
            size,
        )
        marks: dict[int, tuple[float, int]] = {}

        class Clock(TrainerCallback):
            def on_step_end(self, a: Any, state: Any, control: Any, **kwargs: Any) -> None:
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                marks[state.global_step] = (time.perf_counter(), state.num_input_tokens_seen)

        trainer = make_trainer(
            model, processor, sft_dataset(records, colour), training_args, family=family,
            pad_colour=colour, chat_template=training_template(processor, family),
        )  # fmt: skip
        trainer.add_callback(Clock())
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
    (t0, tokens0), (t1, tokens1) = marks[args.warmup], marks[steps]
    seconds = t1 - t0
    samples = args.steps * args.batch_size
    tokens_per_s = (tokens1 - tokens0) / seconds
    peak = peak_flops(args)
    suffix = " (dry run, no DeepSpeed)" if dry and offload else " (dry run)" if dry else ""
    return {
        "variant": f"{name} {variant}{suffix}",
        "parameters": parameters,
        "trainable": trainable,
        "tokens_per_sample": (tokens1 - tokens0) / samples,
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
        f"{result['tokens_per_sample']:.0f} tokens/sample, {result['samples_per_s']:.2f} samples/s, "
        f"{result['tokens_per_s']:.0f} tokens/s, peak GPU memory {memory}, MFU {mfu}",
        flush=True,
    )


def run_grpo(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """One GRPO configuration of `name`, through `llava-pose train --method grpo`'s code: the
    dataset (`grpo_dataset`), GRPOConfig (`grpo_args`) and the trainer (`make_trainer`: TRL's
    GRPOTrainer, the recipe, the rewards); each step's generation, scoring and update timed."""
    from collections import defaultdict

    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, TrainerCallback

    from llava_pose.poseqa.build import question_text
    from llava_pose.train.config import TrainConfig
    from llava_pose.train.grpo import Prompt, grpo_args, grpo_dataset, make_trainer
    from llava_pose.train.model import quiet_transformers, trainable_summary
    from llava_pose.train.rewards import PromptTask
    from llava_pose.train.sft import training_template
    from llava_pose.train.trainer import prepare_model
    from llava_pose.vlm.families import families
    from llava_pose.vlm.images import mean_colour

    quiet_transformers()
    dry = args.dry_run
    config, processor, family_name = model_and_processor_setup(name, dry)
    family = families()[family_name]
    steps = args.warmup + args.steps
    cuda = torch.cuda.is_available()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(
            output=out, lora=True, lr=1e-5, batch_size=args.batch_size, grad_accum=1, max_steps=steps,
            num_workers=0, warmup_ratio=0.0, group_by_length=False, logging_steps=1,
            num_generations=args.generations, max_completion_length=args.completion_len, beta=0.04,
        )  # fmt: skip
        training_args = grpo_args(
            cfg, precision="fp32" if dry else "bf16", deepspeed=None, save_strategy="no",
            report_to=[], generation_kwargs={"min_new_tokens": args.completion_len},
        )  # fmt: skip
        with torch.device("cpu" if dry else "cuda"):
            model = AutoModelForImageTextToText.from_config(
                config, dtype=torch.float32 if dry else torch.bfloat16, attn_implementation="sdpa"
            )
        model = prepare_model(model, cfg, family=family, deepspeed=None)
        summary = trainable_summary(model, family)
        size = tuple(int(x) for x in args.image_size.split("x"))
        image = str(Path(out) / "image.png")
        Image.new("RGB", size, (120, 110, 100)).save(image)
        options = ["towards the camera", "away from the camera", "towards the left side of the picture",
                   "towards the right side of the picture"]  # fmt: skip
        text = question_text("Which way is the person on the left facing?", "choice", options)
        question = {"answer": "A", "answer_type": "choice", "choices": options, "text": text}
        prompts = [
            Prompt(f"q{i}", "synthetic", image, "image.png", text, PromptTask("facing", question))
            for i in range(max(steps * args.batch_size // args.generations, 2))
        ]
        colour = mean_colour(processor.image_processor) if family.pad_to_square else None
        trainer = make_trainer(
            model, processor, grpo_dataset(prompts, colour), training_args, family=family,
            kinds={"exact_match"}, pad_colour=colour, chat_template=training_template(processor, family),
        )  # fmt: skip
        timings: dict[str, list[float]] = defaultdict(list)

        def timed(key: str, fn: Any) -> Any:
            def wrapper(*a: Any, **k: Any) -> Any:
                sync()
                started = time.perf_counter()
                result = fn(*a, **k)
                sync()
                timings[key].append(time.perf_counter() - started)
                return result

            return wrapper

        trainer._generate_single_turn = timed("generate", trainer._generate_single_turn)
        trainer._generate_and_score_completions = timed(
            "rollout", trainer._generate_and_score_completions
        )
        logged: list[dict[str, Any]] = []

        class Clock(TrainerCallback):
            def on_step_begin(self, a: Any, state: Any, control: Any, **kwargs: Any) -> None:
                sync()
                timings["begin"].append(time.perf_counter())

            def on_step_end(self, a: Any, state: Any, control: Any, **kwargs: Any) -> None:
                sync()
                timings["step"].append(time.perf_counter() - timings["begin"][-1])

            def on_log(self, a: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
                if logs and "completions/mean_length" in logs:
                    logged.append(dict(logs))

        trainer.add_callback(Clock())
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
    timed_steps = slice(args.warmup, steps)
    mean = lambda key: sum(timings[key][timed_steps]) / args.steps  # noqa: E731
    step, rollout, generate = mean("step"), mean("rollout"), mean("generate")
    answers = args.batch_size  # completions per optimizer step (one process, no accumulation)
    tokens_seen = logged[-1]["num_tokens"] - logged[-2]["num_tokens"] if len(logged) > 1 else 0.0
    suffix = " (dry run)" if dry else ""
    return {
        "variant": f"{name} grpo{suffix}",
        "parameters": sum(total for _, total in summary.values()),
        "trainable": sum(t for t, _ in summary.values()),
        "answers": answers,
        "generations": args.generations,
        "completion_len": logged[-1]["completions/mean_length"],
        "prompt_tokens": tokens_seen / answers - logged[-1]["completions/mean_length"]
        if tokens_seen
        else None,
        "step_s": step,
        "generation_s": generate,
        "scoring_s": rollout - generate,
        "update_s": step - rollout,
        "generated_tokens_per_s": answers * logged[-1]["completions/mean_length"] / generate,
        "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
    }


def report_grpo(r: dict[str, Any]) -> None:
    memory = f"{r['peak_memory_gb']:.1f} GiB" if r["peak_memory_gb"] is not None else "n/a"
    prompt = f"{r['prompt_tokens']:.0f}-token prompts" if r["prompt_tokens"] else "prompts"
    print(
        f"{r['variant']}: {r['parameters'] / 1e9:.3f}B parameters ({r['trainable'] / 1e6:.1f}M trainable), "
        f"{r['answers']} answers of {r['completion_len']:.0f} tokens per step ({r['generations']} per prompt, "
        f"{prompt}): step {r['step_s']:.3g}s = generation {r['generation_s']:.3g}s "
        f"({r['generated_tokens_per_s']:.0f} tokens/s) + scoring {r['scoring_s']:.3g}s (rewards, "
        f"reference log-probs) + update {r['update_s']:.3g}s; peak GPU memory {memory}",
        flush=True,
    )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", choices=(*MODELS, "all"), default="all")
    ap.add_argument("--variant", choices=(*VARIANTS, "all"), default="lora")
    ap.add_argument(
        "--seq-len", type=int, default=1024, help="tokens per sample, image tokens included"
    )
    ap.add_argument(
        "--image-size", default="640x480", help="WIDTHxHEIGHT of each sample's image (COCO's)"
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
        help="with --data: whose tokenizer and template count",
    )
    ap.add_argument("--batch-size", type=int, default=8, help="per-device batch (the paper's 8)")
    ap.add_argument("--steps", type=int, help="timed optimizer steps (default: 10; grpo: 3)")
    ap.add_argument("--warmup", type=int, help="untimed steps first (default: 3; grpo: 1)")
    ap.add_argument("--generations", type=int, default=8, help="grpo: answers sampled per prompt")
    ap.add_argument(
        "--completion-len", type=int, default=128, help="grpo: tokens of every sampled answer"
    )
    ap.add_argument(
        "--workers", type=int, default=4, help="data-loader workers (collation, images)"
    )
    ap.add_argument(
        "--peak-tflops", type=float, help="the GPU's dense bf16 peak, when its name is not known"
    )
    ap.add_argument(
        "--dry-run", action="store_true", help="CPU: small models through the same code path"
    )
    ap.add_argument(
        "--measured-seq-len", type=int, help=argparse.SUPPRESS
    )  # the children of --model/--variant all
    args = ap.parse_args()

    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print(
            "train_throughput_gpu: needs a CUDA GPU (H100/H200); on a CPU run it with --dry-run",
            file=sys.stderr,
        )
        return 2
    grpo_only = args.variant == "grpo"
    if args.steps is None:
        args.steps = 3 if grpo_only else 10
    if args.warmup is None:
        args.warmup = 1 if grpo_only else 3
    if args.dry_run:
        args.seq_len, args.image_size = min(args.seq_len, 192), "64x48"
        args.steps, args.warmup = min(args.steps, 3 if not grpo_only else 2), min(args.warmup, 1)
        args.batch_size, args.workers = min(args.batch_size, 2), 0
        args.generations, args.completion_len = 2, min(args.completion_len, 8)
    device = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"CPU ({os.cpu_count()} cores)"
    )
    print(
        f"machine: {platform.node()} {device}, torch {torch.__version__}, python {platform.python_version()}"
    )
    print(f"command: {' '.join(sys.argv)}", flush=True)
    seq_len = args.measured_seq_len or (measured_seq_len(args) if args.data else args.seq_len)
    size, precision = (" (dry-run sizes)", "fp32") if args.dry_run else ("", "bf16")
    models = tuple(MODELS) if args.model == "all" else (args.model,)
    variants = VARIANTS if args.variant == "all" else (args.variant,)
    print(
        f"models: {', '.join(models)}{size}, random weights; {precision}, gradient checkpointing; "
        f"batch {args.batch_size} per device, about {seq_len} tokens and one {args.image_size} image "
        f"per sample, {args.steps} timed steps after {args.warmup}",
        flush=True,
    )
    runs = [(m, v) for m in models for v in variants]
    if len(runs) > 1 and not args.dry_run:
        code = 0
        for model, variant in runs:  # a fresh process each: GPU memory and DeepSpeed start clean
            # the last --model/--variant win; the length is measured once
            child = [*sys.argv[1:], "--model", model, "--variant", variant]
            child += ["--measured-seq-len", str(seq_len)]
            done = subprocess.run([sys.executable, __file__, *child], check=False)
            code = code or done.returncode
        return code
    for model, variant in runs:
        if variant == "grpo":
            report_grpo(run_grpo(model, args))
        else:
            report(run_variant(model, variant, args, seq_len))
    return 0


if __name__ == "__main__":
    sys.exit(main())
