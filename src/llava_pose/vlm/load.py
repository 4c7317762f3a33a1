"""Loading vision-language models and their processors, for generation and for training.

* `load_config`, `load_processor`: a local folder or hub id; a one-line ConfigError when it is
  neither reachable nor cached.
* `load_pretrained`: what chat and the hf: answerer load: a run, a checkpoint, a LoRA run
  (merged in memory) or an exported model.
* `resolve_device`, `resolve_dtype`: the --device and --dtype options.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from ..errors import ConfigError

BASE_DIR = "base-model"  # where a preset's starting weights are written inside a run folder
RUN_FILE = "llava_pose_run.json"  # what `llava-pose train` wrote into a finished run
DTYPES = ("auto", "bf16", "fp16", "fp32")


def quiet_transformers() -> None:
    """No per-shard progress bars or transformers-internal deprecation notes in our output."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    warnings.filterwarnings(
        "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
    )


def load_error(name: str, error: Exception) -> ConfigError:
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if Path(name).exists():
        return ConfigError(f"{name}: cannot load the model from this folder ({first})")
    if name.startswith(("/", ".", "~")) or name.count("/") != 1:  # a path: hub ids are "org/name"
        return ConfigError(f"{name}: no such model folder")
    return ConfigError(
        f"{name}: not a local folder, and not in the Hugging Face cache or reachable on the hub "
        f"(download it first, e.g. `hf download {name}`, or give a local path) ({first[:200]})"
    )


def load_processor(name: str, config: Any | None = None) -> Any:
    """AutoProcessor (image-only without torchvision: `processors`), with a llava processor's
    image-token settings filled from the model config when an older checkpoint lacks them
    (otherwise <image> would expand to the wrong count)."""
    from . import processors

    try:
        processor = processors.load(name)
    except (OSError, ValueError) as e:
        raise load_error(name, e) from None
    if config is not None and getattr(config, "model_type", "") == "llava":
        if getattr(processor, "patch_size", None) is None:
            processor.patch_size = config.vision_config.patch_size
            processor.num_additional_image_tokens = 1
        if getattr(processor, "vision_feature_select_strategy", None) is None:
            processor.vision_feature_select_strategy = config.vision_feature_select_strategy
    return processor


def load_config(name: str) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as e:
        raise load_error(name, e) from None


def _adapter_base(run: Path) -> str:
    """The base model a LoRA run was trained from: adapter_config's, or the run's saved preset."""
    config = json.loads((run / "adapter_config.json").read_text("utf-8"))
    base = str(config.get("base_model_name_or_path") or "")
    for candidate in (run / BASE_DIR, run.parent / BASE_DIR):
        if (not base or not Path(base).is_dir()) and candidate.is_dir():
            return str(candidate)
    if not base:
        raise ConfigError(f"{run}/adapter_config.json names no base model")
    return base


def load_pretrained(
    name: str, *, dtype: Any = None, device: Any = None, attn_implementation: str | None = None
) -> tuple[Any, Any]:
    """(model, processor) for generation: any AutoModelForImageTextToText checkpoint; a LoRA
    run (adapter_config.json) is loaded onto its base and merged in memory."""
    from transformers import AutoModelForImageTextToText

    quiet_transformers()
    path = Path(name)
    if (
        path.is_dir()
        and not (path / "config.json").is_file()
        and not (path / "adapter_config.json").is_file()
    ):
        checkpoints = sorted(
            path.glob("checkpoint-*"),
            key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1,
        )
        hint = f"; the last checkpoint is {checkpoints[-1]}" if checkpoints else ""
        raise ConfigError(
            f"{name}: holds no model (config.json or adapter_config.json): did training finish?{hint}"
        )
    adapter = path / "adapter_config.json"
    base_name = _adapter_base(path) if adapter.is_file() else name
    config = load_config(base_name)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = AutoModelForImageTextToText.from_pretrained(base_name, **kwargs)
    except (OSError, ValueError) as e:
        raise load_error(base_name, e) from None
    if adapter.is_file():
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
    # the run folder's processor is the one trained with (the preset's tokenizer lives there)
    processor_source = (
        name
        if (path / "processor_config.json").is_file() or (path / "tokenizer_config.json").is_file()
        else base_name
    )
    processor = load_processor(processor_source, config)
    if device is not None:
        model = model.to(device)
    model.eval()
    return model, processor


def run_settings(name: str) -> dict[str, Any]:
    """The options a finished run was trained with (its RUN_FILE), or {} for any other model."""
    path = Path(name) / RUN_FILE
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text("utf-8")).get("config") or {})
    except (OSError, ValueError, AttributeError):
        return {}


def resolve_device(device: str) -> Any:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ConfigError(
            f"--device {device}: not a torch device (cpu, cuda, cuda:1, ...)"
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA GPU here")
    return resolved


def resolve_dtype(dtype: str, device: Any) -> Any:
    import torch

    names = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype not in names:
        raise ConfigError(f"dtype {dtype!r}: expected auto, bf16, fp16 or fp32")
    return names[dtype]
