"""Set up vision-language models for training (inference loading lives in `llava_pose.vlm`).

* `load_model`: a local folder or hub id, or the ``tiny`` preset (`llava_pose.vlm.tiny`).
* `setup_trainable`: the paper's split (vision tower frozen, connector + language model
  trained) for full fine-tuning, LoRA and QLoRA; `check_trainable` asserts it afterwards.
* `export_merged`: a LoRA run written as a plain model.
"""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..vlm.load import BASE_DIR as BASE_DIR
from ..vlm.load import TINY as TINY
from ..vlm.load import load_config, load_error, load_pretrained, load_processor
from ..vlm.load import quiet_transformers as quiet_transformers
from ..vlm.tiny import build_tiny as build_tiny
from ..vlm.tiny import build_tiny_processor as build_tiny_processor
from ..vlm.tiny import build_tiny_tokenizer as build_tiny_tokenizer

log = logging.getLogger("llava_pose.train")

CONNECTOR = "multi_modal_projector"
VISION = "vision_tower"
LANGUAGE = "language_model"
QUANT_SKIP = [VISION, CONNECTOR, "lm_head"]


# -- loading ------------------------------------------------------------------------------------


def load_model(
    name: str,
    *,
    dtype: Any = None,
    seed: int = 0,
    attn_implementation: str | None = "sdpa",
    quantization_config: Any = None,
    device_map: Any = None,
) -> tuple[Any, Any]:
    """(model, processor) of a llava-hf checkpoint or the tiny preset, for training."""
    if name == TINY:
        model, processor = build_tiny(seed)
        if dtype is not None:
            model = model.to(dtype)
        return model, processor
    from transformers import LlavaForConditionalGeneration

    config = load_config(name)
    if getattr(config, "model_type", None) != "llava":
        raise ConfigError(
            f"{name}: training supports llava-hf checkpoints (model_type 'llava', e.g. llava-hf/llava-1.5-7b-hf); "
            f"this one is {getattr(config, 'model_type', 'unknown')!r}"
        )
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": attn_implementation}
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        model = LlavaForConditionalGeneration.from_pretrained(name, **kwargs)
    except (OSError, ValueError) as e:
        raise load_error(name, e) from None
    return model, load_processor(name, config)


# -- what trains --------------------------------------------------------------------------------


def part_of(name: str) -> str:
    """Which part a parameter belongs to: vision, connector, adapter or language."""
    if f"{VISION}." in name:
        return "vision"
    if "lora_" in name:
        return "adapter"
    if f"{CONNECTOR}." in name:
        return "connector"
    return "language"


def _numel(p: Any) -> int:
    return int(getattr(p, "ds_numel", 0) or p.numel())  # ZeRO-3 partitions hold 0 elements locally


def trainable_summary(model: Any) -> dict[str, tuple[int, int]]:
    """part -> (trainable parameters, all parameters)."""
    out: dict[str, list[int]] = {}
    for name, p in model.named_parameters():
        if ".original_module." in name:  # PEFT's frozen copy of a modules_to_save module
            continue
        counts = out.setdefault(part_of(name), [0, 0])
        counts[1] += _numel(p)
        if p.requires_grad:
            counts[0] += _numel(p)
    return {k: (v[0], v[1]) for k, v in out.items()}


def check_trainable(model: Any, *, lora: bool) -> dict[str, tuple[int, int]]:
    """Assert the paper's split; a violation is a bug here, never the user's doing."""
    summary = trainable_summary(model)
    vision = summary.get("vision", (0, 0))
    connector = summary.get("connector", (0, 0))
    language = summary.get("language", (0, 0))
    adapter = summary.get("adapter", (0, 0))
    problems = []
    if vision[0]:
        problems.append(
            f"{vision[0]} vision-tower parameters are trainable (the tower must be frozen)"
        )
    if not connector[1] or connector[0] != connector[1]:
        problems.append(
            f"connector: {connector[0]} of {connector[1]} parameters trainable (all must be)"
        )
    if lora and language[0]:
        problems.append(
            f"LoRA: {language[0]} base language-model parameters are trainable (only adapters may be)"
        )
    if lora and not adapter[0]:
        problems.append("LoRA: no adapter parameters are trainable")
    if not lora and language[0] != language[1]:
        problems.append(
            f"full fine-tuning: {language[0]} of {language[1]} language-model parameters trainable"
        )
    if problems:
        raise RuntimeError("trainable-parameter check failed: " + "; ".join(problems))
    return summary


def lora_target_regex(model: Any) -> str:
    """Every nn.Linear inside the language model (LLaVA's find_all_linear_names), none in the
    vision tower, connector or lm_head."""
    import torch

    suffixes = sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if f"{LANGUAGE}." in name and isinstance(module, torch.nn.Linear)
        }
    )
    if not suffixes:
        raise ConfigError("LoRA: the language model has no linear layers to adapt")
    return rf".*\.{LANGUAGE}\..*\.({'|'.join(suffixes)})"


def setup_trainable(
    model: Any,
    *,
    lora: bool = False,
    qlora: bool = False,
    r: int = 128,
    alpha: int = 256,
    dropout: float = 0.05,
    gradient_checkpointing: bool = True,
) -> Any:
    """Freeze the vision tower; train the connector and the language model (or its adapters)."""
    for name, p in model.named_parameters():
        p.requires_grad_(part_of(name) != "vision")
    if qlora:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    if lora or qlora:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            r=r,
            lora_alpha=alpha,
            lora_dropout=dropout,
            bias="none",
            target_modules=lora_target_regex(model),
            modules_to_save=[CONNECTOR],  # the connector is trained in full alongside the adapters
        )
        with warnings.catch_warnings():  # peft asks a deprecated transformers property
            warnings.filterwarnings(
                "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
            )
            model = get_peft_model(model, config)
        for name, p in model.named_parameters():  # get_peft_model froze everything else
            if part_of(name) == "vision":
                p.requires_grad_(False)
    check_trainable(model, lora=lora or qlora)
    return model


# -- export -------------------------------------------------------------------------------------


def export_merged(run: str, output: str, dtype: Any = None) -> Path:
    """Merge a LoRA run's adapters (and trained connector) into a plain checkpoint."""
    if not (Path(run) / "adapter_config.json").is_file():
        raise ConfigError(
            f"{run}: not a LoRA run (no adapter_config.json); a full fine-tune needs no export"
        )
    out = Path(output)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{output}: exists and is not empty; choose a new folder")
    model, processor = load_pretrained(run, dtype=dtype)
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)  # left by an interrupted export
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    if out.exists():
        out.rmdir()
    os.replace(tmp, out)
    return out
