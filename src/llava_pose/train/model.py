"""Load, build and set up LLaVA models (llava-hf format) for training and inference.

* `load_model`: a local folder or hub id (one-line ConfigError when it is neither reachable nor
  cached), or the ``tiny`` preset: a small random LLaVA with an offline-trained tokenizer, so
  that the whole path runs on a CPU in seconds.
* `setup_trainable`: the paper's split (vision tower frozen, connector + language model
  trained) for full fine-tuning, LoRA and QLoRA; `check_trainable` asserts it afterwards.
* `load_pretrained`: what chat and the hf: answerer load: a run, a checkpoint, a LoRA run
  (merged in memory) or an exported model; `export_merged` writes a LoRA run as a plain model.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ConfigError

log = logging.getLogger("llava_pose.train")

TINY = "tiny"
BASE_DIR = "base-model"  # where a preset's starting weights are written inside a run folder
CONNECTOR = "multi_modal_projector"
VISION = "vision_tower"
LANGUAGE = "language_model"
QUANT_SKIP = [VISION, CONNECTOR, "lm_head"]


def quiet_transformers() -> None:
    """No per-shard progress bars or transformers-internal deprecation notes in our output."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    warnings.filterwarnings(
        "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
    )


# -- the tiny preset ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TinySpec:
    """Sizes of the tiny preset; the GPU benchmark's --dry-run reuses the shape."""

    image_size: int = 32
    patch_size: int = 8
    vision_hidden: int = 32
    vision_layers: int = 2
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    intermediate: int = 128
    vocab: int = 1024


def _corpus() -> list[str]:
    from ..records import KEYPOINT_NAMES
    from .data import Template

    text = resources.files("llava_pose").joinpath("data/train/tiny_corpus.txt").read_text("utf-8")
    lines = [
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    ]
    template = Template.load()
    return [*lines, template.system, " ".join(template.roles), *KEYPOINT_NAMES]


def build_tiny_tokenizer(vocab_size: int = 1024) -> Any:
    """A Llama-style tokenizer (SentencePiece-like BPE, byte fallback, <s> prepended) trained
    offline on package text; specials as llava-hf's: <unk> <s> </s> <pad> <image>."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import AddedToken, LlamaTokenizer

    bpe = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement="▁", prepend_scheme="always", split=True
    )
    specials = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256))]
    bpe.train_from_iterator(
        _corpus(),
        trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False),
    )
    model = json.loads(bpe.to_str())["model"]
    tokenizer = LlamaTokenizer(
        vocab=model["vocab"],
        merges=[tuple(m) for m in model["merges"]],
        add_bos_token=True,
        add_eos_token=False,
    )
    tokenizer.add_special_tokens({"pad_token": "<pad>"})
    tokenizer.add_tokens(
        [AddedToken("<image>", special=True, normalized=False)], special_tokens=True
    )
    tokenizer.model_max_length = 2048
    return tokenizer


def _image_processor_cls() -> Any:
    """CLIP's processor; its PIL backend when torchvision is absent (same numbers, no warning)."""
    import importlib.util

    if importlib.util.find_spec("torchvision") is None:
        from transformers import CLIPImageProcessorPil

        return CLIPImageProcessorPil
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor


def build_tiny_processor(spec: TinySpec | None = None) -> Any:
    """The tiny preset's LlavaProcessor: CLIP image processing at `image_size`, our tokenizer."""
    from transformers import LlavaProcessor

    spec = spec or TinySpec()
    side = spec.image_size
    image_processor = _image_processor_cls()(
        size={"shortest_edge": side}, crop_size={"height": side, "width": side}
    )
    chat_template = (
        resources.files("llava_pose")
        .joinpath("data/train/tiny_chat_template.jinja")
        .read_text("utf-8")
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=build_tiny_tokenizer(spec.vocab),
        patch_size=spec.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token, dropped again by the "default" strategy
        image_token="<image>",
        chat_template=chat_template,
    )


def build_tiny(seed: int = 0, spec: TinySpec | None = None) -> tuple[Any, Any]:
    """A randomly initialised LLaVA-1.5 in miniature (CLIP tower, 2-layer MLP connector, Llama)."""
    import torch
    from transformers import LlavaForConditionalGeneration

    spec = spec or TinySpec()
    processor = build_tiny_processor(spec)
    tokenizer = processor.tokenizer
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(tiny_config(spec, tokenizer))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model, processor


def tiny_config(spec: TinySpec, tokenizer: Any) -> Any:
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    vocab = -(-len(tokenizer) // 64) * 64  # padded like llava-hf's 32064
    vision = CLIPVisionConfig(
        hidden_size=spec.vision_hidden,
        intermediate_size=spec.vision_hidden * 4,
        num_hidden_layers=spec.vision_layers,
        num_attention_heads=2,
        image_size=spec.image_size,
        patch_size=spec.patch_size,
        projection_dim=spec.vision_hidden,
        hidden_act="quick_gelu",
    )
    text = LlamaConfig(
        hidden_size=spec.hidden,
        intermediate_size=spec.intermediate,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.heads,
        vocab_size=vocab,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=(spec.image_size // spec.patch_size) ** 2,
        projector_hidden_act="gelu",
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )


# -- loading ------------------------------------------------------------------------------------


def _load_error(name: str, error: Exception) -> ConfigError:
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
    """AutoProcessor, with a llava processor's image-token settings filled from the model config
    when an older checkpoint lacks them (otherwise <image> would expand to the wrong count)."""
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(name)
    except (OSError, ValueError) as e:
        raise _load_error(name, e) from None
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
        raise _load_error(name, e) from None


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
        raise _load_error(name, e) from None
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


# -- inference loading and export -------------------------------------------------------------


def _adapter_base(run: Path) -> str:
    """The base model a LoRA run was trained from: adapter_config's, or the run's saved preset."""
    config = json.loads((run / "adapter_config.json").read_text("utf-8"))
    base = str(config.get("base_model_name_or_path") or "")
    for candidate in (run / BASE_DIR, run.parent / BASE_DIR):
        if (not base or not Path(base).is_dir() or base == TINY) and candidate.is_dir():
            return str(candidate)
    if not base:
        raise ConfigError(f"{run}/adapter_config.json names no base model")
    return base


def load_pretrained(
    name: str, *, dtype: Any = None, device: Any = None, attn_implementation: str | None = None
) -> tuple[Any, Any]:
    """(model, processor) for generation: llava or any AutoModelForImageTextToText checkpoint;
    a LoRA run (adapter_config.json) is loaded onto its base and merged in memory."""
    from transformers import AutoModelForImageTextToText, LlavaForConditionalGeneration

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
    cls = (
        LlavaForConditionalGeneration
        if getattr(config, "model_type", "") == "llava"
        else AutoModelForImageTextToText
    )
    kwargs: dict[str, Any] = {"dtype": dtype}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = cls.from_pretrained(base_name, **kwargs)
    except (OSError, ValueError) as e:
        raise _load_error(base_name, e) from None
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
