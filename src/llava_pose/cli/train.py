"""`llava-pose train` and `llava-pose export` (fine-tuning and what it reads or writes; torch
loads only when they run)."""

from __future__ import annotations

from typing import Any

from ..extras import require_train

TRAIN_EXAMPLES = """
  # the paper's recipe (full fine-tuning of LLaVA-1.5-7B, vision tower frozen), one machine
  llava-pose train --data out/llava_pose_all.json --image-root /data/coco \\
      --model llava-hf/llava-1.5-7b-hf --output runs/llava-pose --deepspeed zero3

  # LoRA (LLaVA-1.5's LoRA recipe: r 128, alpha 256, lr 2e-4, connector lr 2e-5)
  llava-pose train --config configs/llava_pose_lora.yaml --data out/llava_pose_all.json \\
      --image-root /data/coco --output runs/llava-pose-lora

  # 8 GPUs (the YAML holds the recipe; flags after it override it)
  accelerate launch --config_file configs/accelerate/multi_gpu.yaml --num_processes 8 \\
      -m llava_pose.train --config configs/llava_pose_full.yaml

  # check the data first (images, turns, <image> tokens, lengths): seconds, no GPU
  llava-pose train --check --data out/llava_pose_all.json --image-root /data/coco

  # continue after a crash or preemption from the last checkpoint
  llava-pose train --config configs/llava_pose_full.yaml --resume

  # a modern model: Qwen2.5-VL-7B with LoRA (its own chat template, TRL's training version)
  llava-pose train --config configs/qwen2_5_vl_lora.yaml --data out/llava_pose_all.json \\
      --image-root /data/coco
  llava-pose train --model Qwen/Qwen3-VL-8B-Instruct --lora --data out/llava_pose_all.json \\
      --image-root /data/coco --output runs/qwen3-vl-pose

  # reinforcement from verifiable pose rewards (GRPO) after SFT: PoseQA questions of the
  # training split (exact match) and the detail/reasoning prompts (verify's claims); a prompt
  # about an image of an --eval-bench folder refuses the run
  llava-pose poseqa build --coco /data/coco --split train2017 --out poseqa-train
  llava-pose train --method grpo --model runs/llava-pose --poseqa poseqa-train \
      --data out/detail.json out/reasoning.json --image-root /data/coco --eval-bench poseqa/ ehpaub/ \
      --lr 1e-6 --output runs/llava-pose-grpo

  # a tiny random model on the CPU: the whole path in a minute (tiny is LLaVA; tiny-qwen2_5_vl,
  # tiny-qwen3_vl, tiny-idefics3, tiny-gemma3, tiny-llava_onevision, tiny-internvl the others)
  llava-pose train --model tiny --data out/llava_pose_all.json --image-root /data/coco \\
      --output runs/tiny --max-steps 20 --batch-size 2 --grad-accum 1 --lr 1e-3
"""

EXPORT_EXAMPLES = """
  # LLaMA-Factory: dataset_info.json + the records (sharegpt); media_dir is the COCO root
  llava-pose export out/ --format llamafactory --image-root /data/coco --out export/lf

  # TRL's SFTTrainer: a datasets copy in its vision-language form + a chat template for
  # assistant-only loss; the card carries `verify`'s summary
  llava-pose verify --data out/llava_pose_all.json --coco /data/coco --out out/verify
  llava-pose export out/ --format trl --image-root /data/coco --verify out/verify --out export/trl

  # a plain Hugging Face datasets copy (messages + images columns, <image> kept)
  llava-pose export out/ --format hf --image-root /data/coco --out export/hf

  # merge LoRA adapters (and the trained connector) into a plain llava-hf checkpoint
  llava-pose export runs/llava-pose-lora --output runs/llava-pose-merged
"""


def _train(config: Any) -> int:
    require_train("llava-pose train", "trl")
    from ..train.trainer import run_train

    return run_train(config)


def _export(config: Any) -> int:
    from ..export import run_export

    return run_export(config)


def register(subparsers: Any) -> None:
    """Add the `train` and `export` commands."""
    from ..export import ExportConfig
    from ..train.config import TrainConfig
    from . import add_command

    add_command(
        subparsers,
        "train",
        TrainConfig,
        _train,
        help="fine-tune LLaVA-1.5 or a modern VLM on keypoint-integrated data (full, LoRA, QLoRA)",
        description=(
            "Fine-tune a vision-language model on LLaVA-format data as the LLaVA-Pose paper does: "
            "vision tower frozen, connector and language model trained, loss on the answers only. "
            "llava-hf checkpoints (the default, the paper's recipe) train with LLaVA-1.5's "
            "Vicuna-v1 prompt; Qwen2.5-VL, Qwen3-VL, Idefics3/SmolVLM, Gemma 3, LLaVA-OneVision and "
            "InternVL "
            "(which modules are which: data/vlm/families.yaml) with their own chat template (or "
            "training prompt), which the run keeps "
            "for chat and hf:. Every record is checked first; bad ones are listed and stop the "
            "run (exit 2) unless --skip-bad. Defaults are the paper's recipe. --method grpo "
            "then reinforces answers the keypoints prove right (PoseQA's exact match, verify's "
            "claims), never on an evaluation split's images."
        ),
        examples=TRAIN_EXAMPLES,
    )
    add_command(
        subparsers,
        "export",
        ExportConfig,
        _export,
        help="data for LLaMA-Factory, TRL or HF datasets; or a LoRA run merged",
        description=(
            "Dataset formats (SOURCE: a generate output folder or a LLaVA JSON file): "
            "llamafactory writes the records and their dataset_info.json entry (sharegpt, "
            "<image> kept); hf a datasets copy with messages and images columns (<image> kept); "
            "trl that copy in TRL's vision-language form (an image part, no <image>) with a "
            "chat template for assistant-only loss. Images stay paths relative to the COCO "
            "root. Each writes a dataset card (README.md) from the run's stats.json and "
            "--verify's summary. merged (SOURCE: a LoRA run; the default for one): merge the "
            "adapters and the trained connector into a plain checkpoint that needs no PEFT "
            "(chat and `bench answer --model hf:RUN` also load LoRA runs directly)."
        ),
        examples=EXPORT_EXAMPLES,
    )
