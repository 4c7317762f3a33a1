"""Set up vision-language models for training (inference loading lives in `llava_pose.vlm`).

* `load_model`: a local folder or hub id of any family in the registry
  (`llava_pose.vlm.families`), or a preset (`llava_pose.vlm.tiny`).
* `setup_trainable`: the paper's split (vision tower frozen, connector + language model
  trained), per family, for full fine-tuning, LoRA and QLoRA; `check_trainable` asserts it.
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
from ..vlm.families import (
    ADAPTER,
    CONNECTOR,
    LANGUAGE,
    OTHER,
    VISION,
    Family,
    family_for,
    family_of,
    presets,
)
from ..vlm.load import load_config, load_error, load_pretrained, load_processor
from ..vlm.load import quiet_transformers as quiet_transformers
from ..vlm.tiny import build_tiny as build_tiny
from ..vlm.tiny import build_tiny_processor as build_tiny_processor
from ..vlm.tiny import build_tiny_tokenizer as build_tiny_tokenizer

log = logging.getLogger("llava_pose.train")


# -- loading ------------------------------------------------------------------------------------


def load_model(
    name: str,
    *,
    dtype: Any = None,
    seed: int = 0,
    attn_implementation: str | None = "sdpa",
    quantization_config: Any = None,
    device_map: Any = None,
    processor: Any = None,
) -> tuple[Any, Any, Family]:
    """(model, processor, family) of a checkpoint of a registered family, or of a preset;
    `processor`: the one already loaded from `name` (training's data check), not loaded again."""
    if name in presets():
        family = presets()[name]
        model, processor = build_tiny(seed, family=family.name, processor=processor)
        if dtype is not None:
            model = model.to(dtype)
        return model, processor, family
    from transformers import AutoModelForImageTextToText

    config = load_config(name)
    family = family_for(config, name)
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": attn_implementation}
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        model = AutoModelForImageTextToText.from_pretrained(name, **kwargs)
    except (OSError, ValueError) as e:
        raise load_error(name, e) from None
    return model, load_processor(name, config) if processor is None else processor, family


def family_of_model(model: Any) -> Family:
    """The registry entry of a model (a PEFT wrapper's too)."""
    model_type = str(getattr(model.config, "model_type", ""))
    family = family_of(model_type)
    if family is None:
        raise ConfigError(f"model_type {model_type!r} is not in data/vlm/families.yaml")
    return family


def quantization_skip(family: Family) -> list[str]:
    """Modules QLoRA leaves in 16 bits: the tower, the connector and lm_head."""
    return sorted({p.rsplit(".", 1)[-1] for p in (*family.tower, *family.connector)} | {"lm_head"})


# -- what trains --------------------------------------------------------------------------------


def _numel(p: Any) -> int:
    return int(getattr(p, "ds_numel", 0) or p.numel())  # ZeRO-3 partitions hold 0 elements locally


def trainable_summary(model: Any, family: Family | None = None) -> dict[str, tuple[int, int]]:
    """part -> (trainable parameters, all parameters)."""
    family = family or family_of_model(model)
    out: dict[str, list[int]] = {}
    for name, p in model.named_parameters():
        if ".original_module." in name:  # PEFT's frozen copy of a modules_to_save module
            continue
        counts = out.setdefault(family.part_of(name), [0, 0])
        counts[1] += _numel(p)
        if p.requires_grad:
            counts[0] += _numel(p)
    return {k: (v[0], v[1]) for k, v in out.items()}


def check_trainable(
    model: Any, *, lora: bool, family: Family | None = None
) -> dict[str, tuple[int, int]]:
    """Assert the paper's split for the model's family; a violation is a bug here (or in the
    registry), never the user's doing."""
    family = family or family_of_model(model)
    summary = trainable_summary(model, family)
    vision = summary.get(VISION, (0, 0))
    connector = summary.get(CONNECTOR, (0, 0))
    language = summary.get(LANGUAGE, (0, 0))
    adapter = summary.get(ADAPTER, (0, 0))
    problems = []
    if OTHER in summary:
        unknown = sorted(
            {n.rsplit(".", 2)[0] for n, _ in model.named_parameters() if family.part_of(n) == OTHER}
        )
        problems.append(
            f"{summary[OTHER][1]} parameters in no part of the {family.name} entry of "
            f"data/vlm/families.yaml (e.g. {unknown[0]})"
        )
    if not vision[1]:
        problems.append(
            f"no vision-tower parameters found ({family.name}: {', '.join(family.tower)})"
        )
    if vision[0]:
        problems.append(
            f"{vision[0]} vision-tower parameters are trainable (the tower must be frozen)"
        )
    held = 0  # connector parameters LoRA leaves as they are (the entry's frozen_with_lora)
    if lora and family.frozen_with_lora:
        for name, p in model.named_parameters():
            if family.frozen_under_lora(name) and ".original_module." not in name:
                if p.requires_grad:
                    problems.append(f"LoRA: {name} is trainable (frozen_with_lora)")
                held += _numel(p)
    if not connector[1] or connector[0] != connector[1] - held:
        problems.append(
            f"connector: {connector[0]} of {connector[1] - held} parameters trainable (all must be)"
        )
    if not language[1]:
        problems.append(f"no language-model parameters found ({family.name})")
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


def lora_target_regex(model: Any, family: Family | None = None) -> str:
    """Every nn.Linear inside the language model (LLaVA's find_all_linear_names), none in the
    vision tower, connector or lm_head."""
    import torch

    family = family or family_of_model(model)
    linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    return family.lora_targets(linears)


def connector_modules(model: Any, family: Family) -> list[str]:
    """The connector as PEFT's modules_to_save: a list of modules (Qwen3-VL's deepstack
    mergers) is named child by child, as PEFT wraps single modules only."""
    import torch

    modules = dict(model.named_modules())
    names = []
    for path in family.connector:
        if path in family.frozen_with_lora:
            continue
        module = modules.get(path)
        if isinstance(module, torch.nn.ModuleList | torch.nn.ModuleDict):
            names += [f"{path}.{child}" for child, _ in module.named_children()]
        else:
            names.append(path)
    return names


def setup_trainable(
    model: Any,
    *,
    family: Family | None = None,
    lora: bool = False,
    qlora: bool = False,
    r: int = 128,
    alpha: int = 256,
    dropout: float = 0.05,
    gradient_checkpointing: bool = True,
) -> Any:
    """Freeze the vision tower; train the connector and the language model (or its adapters)."""
    family = family or family_of_model(model)
    for name, p in model.named_parameters():
        p.requires_grad_(family.part_of(name) != VISION)
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
            target_modules=lora_target_regex(model, family),
            # the connector is trained in full alongside the adapters
            modules_to_save=connector_modules(model, family),
        )
        with warnings.catch_warnings():  # peft asks a deprecated transformers property
            warnings.filterwarnings(
                "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
            )
            model = get_peft_model(model, config)
        for name, p in model.named_parameters():  # get_peft_model froze everything else
            if family.part_of(name) == VISION:
                p.requires_grad_(False)
    check_trainable(model, lora=lora or qlora, family=family)
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
