"""Options of `llava-pose train` (no heavy imports: `--help` must stay fast).

Defaults are the paper's recipe (Section 5): LLaVA-1.5's fine-tuning hyperparameters with a
per-device batch of 8 and gradient accumulation 2. configs/llava_pose_full.yaml and
configs/llava_pose_lora.yaml restate them; flags override a --config file.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import option

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
DEEPSPEED_PRESETS = ("zero2", "zero3", "zero3_offload")
# Training methods, each a module of llava_pose.train with a `run(cfg)` (train/trainer.py).
METHODS = {"sft": "llava_pose.train.sft", "grpo": "llava_pose.train.grpo"}


@dataclass
class TrainConfig:
    """Fine-tune a vision-language model on LLaVA-format instruction data."""

    data: list[str] = option(
        [],
        "LLaVA JSON file(s) to train on, mixed (the generator's output, llava_v1_5_mix665k.json, "
        "...); grpo: their detail and reasoning records' questions are prompts",
        nargs="+",
        metavar="FILE.json",
    )
    image_root: str | None = option(
        None,
        "folder the records' relative 'image' paths are joined to (default: each data file's folder)",
        metavar="DIR",
    )
    model: str = option(
        "llava-hf/llava-1.5-7b-hf",
        "checkpoint to start from, a local folder or hub id: llava-hf (the paper's), or any "
        "image-text-to-text model of data/vlm/families.yaml (Qwen2.5-VL, Qwen3-VL, "
        "Idefics3/SmolVLM, Gemma 3, LLaVA-OneVision, InternVL); or a preset, a small random model "
        "for CPU tests and demos: tiny (LLaVA), tiny-qwen2_5_vl, tiny-qwen3_vl, tiny-idefics3, "
        "tiny-gemma3, tiny-llava_onevision, tiny-internvl",
    )
    method: str = option(
        "sft",
        "training method: sft (supervised fine-tuning on --data), grpo (reinforcement from "
        "verifiable pose rewards: PoseQA questions of --poseqa scored by exact match, the "
        "detail and reasoning prompts of --data by the claims verify checks)",
        choices=tuple(METHODS),
    )
    output: str = option(
        "runs/llava-pose",
        "run folder: checkpoints, final model, logs",
        metavar="DIR",
        path="dir",
    )
    lora: bool = option(
        False,
        "train LoRA adapters on the language model (connector fully trained) instead of all weights",
    )
    qlora: bool = option(
        False, "LoRA on a 4-bit quantised language model (bitsandbytes, CUDA only); implies --lora"
    )
    lora_r: int = option(128, "LoRA rank (LLaVA-1.5's LoRA recipe: 128)", at_least=1)
    lora_alpha: int = option(256, "LoRA alpha (LLaVA-1.5's LoRA recipe: 256)")
    lora_dropout: float = option(0.05, "LoRA dropout", at_least=0, at_most=1)
    lr: float = option(2e-5, "peak learning rate (LoRA recipe: 2e-4)", more_than=0)
    projector_lr: float | None = option(
        None, "learning rate of the vision-language connector (default: --lr; LoRA recipe: 2e-5)"
    )
    epochs: float = option(1.0, "passes over the data", more_than=0)
    max_steps: int | None = option(
        None, "stop after this many optimizer steps (overrides --epochs)", at_least=1
    )
    batch_size: int = option(8, "samples per device per step (paper: 8)", at_least=1)
    grad_accum: int = option(2, "gradient accumulation steps (paper: 2)", at_least=1)
    warmup_ratio: float = option(
        0.03, "share of steps spent warming up the learning rate", at_least=0, at_most=1
    )
    weight_decay: float = option(
        0.0, "AdamW weight decay (not applied to biases and norms)", at_least=0
    )
    lr_scheduler: str = option("cosine", "learning-rate schedule (any transformers SchedulerType)")
    max_grad_norm: float = option(1.0, "gradient clipping norm")
    max_length: int = option(
        2048, "tokens per sample, image tokens included; longer samples are cut", at_least=16
    )
    precision: str = option(
        "auto", "bf16, fp16 or fp32; auto: bf16 on a GPU that has it, else fp32", choices=PRECISIONS
    )
    gradient_checkpointing: bool = option(True, "recompute activations in backward to save memory")
    deepspeed: str | None = option(
        None,
        "DeepSpeed ZeRO config: zero2, zero3, zero3_offload (shipped in configs/deepspeed/) or a JSON path",
        metavar="PRESET|FILE.json",
    )
    pad_to_square: bool | None = option(
        None,
        "pad images to a square with the image mean colour, as LLaVA-1.5 ('pad'); default: "
        "the family's (llava: yes, the others: no)",
    )
    chat_template: str | None = option(
        None,
        "the prompt to train (and then chat) with: a jinja chat template whose generation "
        "markers enclose each answer (the loss is on them); default: the family's (llava: "
        "Vicuna v1), else the checkpoint's own, or TRL's training version of it",
        metavar="FILE.jinja",
    )
    group_by_length: bool = option(
        True,
        "batch samples of similar length together (LLaVA's group_by_modality_length, approximately)",
    )
    save_steps: int = option(500, "save a resumable checkpoint every N optimizer steps", at_least=1)
    save_total_limit: int = option(2, "keep only the last N checkpoints", at_least=1)
    logging_steps: int = option(
        10, "log loss, learning rate and throughput every N steps", at_least=1
    )
    seed: int = option(42, "random seed (model init of presets, data order, dropout)")
    num_workers: int = option(
        4, "data-loading worker processes per device (at most the CPU count)", at_least=0
    )
    attn_implementation: str = option("sdpa", "attention kernel: sdpa, eager or flash_attention_2")
    report_to: str = option(
        "none", "also log to: none, tensorboard, wandb, ... (transformers' report_to)"
    )
    resume: bool = option(False, "continue from the last checkpoint in --output")
    skip_bad: bool = option(
        False, "leave out the records the validation pass rejects instead of stopping"
    )
    check: bool = option(
        False, "only validate the data (images, turns, lengths), print statistics and exit"
    )
    max_samples: int | None = option(None, "use only the first N records (quick runs)", at_least=1)
    # -- GRPO (--method grpo; train/grpo.py) ---------------------------------------------------
    poseqa: list[str] = option(
        [],
        "grpo: PoseQA folder(s) built from a training split (`poseqa build --split train2017`, "
        "or --contexts/--images) whose questions are prompts, rewarded by exact match",
        nargs="+",
        metavar="DIR",
    )
    contexts: str | None = option(
        None,
        "grpo with --data: the image contexts (`prepare`'s JSONL) that the claims reward checks "
        "the answers against (default: the keypoints of --split under --image-root)",
        metavar="FILE",
    )
    split: str = option(
        "train2017",
        "grpo with --data and no --contexts: the COCO split under --image-root whose keypoints "
        "check the answers",
        metavar="NAME",
    )
    eval_bench: list[str] = option(
        [],
        "grpo: PoseQA or E-HPAUB folder(s) you evaluate on: a training prompt about any of "
        "their images refuses the run",
        nargs="+",
        metavar="DIR",
    )
    num_generations: int = option(
        8, "grpo: answers sampled per prompt (the group its rewards are compared in)", at_least=2
    )
    max_completion_length: int = option(256, "grpo: tokens per sampled answer at most", at_least=1)
    temperature: float = option(1.0, "grpo: sampling temperature", more_than=0)
    beta: float = option(
        0.04,
        "grpo: weight of the KL term to the starting model (0: no reference model, no KL)",
        at_least=0,
    )
