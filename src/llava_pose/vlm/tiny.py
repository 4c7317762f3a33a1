"""The tiny presets: each family's architecture in miniature, random weights, with a tokenizer
trained offline on package text and the checkpoints' own chat template, so that training,
`chat` and the hf: answerer run on a CPU in seconds without downloads.

``--model tiny`` is LLaVA-1.5 (CLIP tower, 2-layer MLP connector, Llama); ``tiny-<family>``
the others in `data/vlm/families.yaml` that have a ``tiny`` entry. What a family's tokenizer
holds (class, BPE style, special tokens) and which chat template it ships is data there; the
config of each architecture is code here (`_CONFIGS`), the same `TinySpec` sizes for all.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from .families import families, read_template
from .processors import has_torchvision, image_only, needs_image_only

# Prompt words the templates add around the corpus's captions, so the tiny tokenizers merge them.
PROMPT_LINES = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions.",
    "USER ASSISTANT",
    "You are a helpful assistant. system user assistant User Assistant model",
)


@dataclass(frozen=True)
class TinySpec:
    """Sizes of the tiny presets; the GPU benchmark's --dry-run reuses the shape."""

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

    text = resources.files("llava_pose").joinpath("data/train/tiny_corpus.txt").read_text("utf-8")
    lines = [
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    ]
    return [*lines, *PROMPT_LINES, *KEYPOINT_NAMES]


# -- tokenizers -----------------------------------------------------------------------------------


def build_tiny_tokenizer(vocab_size: int = 1024, family: str = "llava") -> Any:
    """The family's tokenizer class, its BPE trained offline on package text: ``metaspace``
    (SentencePiece-like, byte fallback: Llama, Gemma) or ``byte_level`` (GPT-2, Qwen). Every
    text encodes and decodes back; the special tokens and their roles are the family's."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import AddedToken

    spec = families()[family].tiny["tokenizer"]
    special = {k: v for k, v in spec["special"].items() if v}
    added = list(spec.get("added", ()))
    seeds = list(dict.fromkeys([*special.values(), *added]))  # ids in a fixed order, first
    if spec["style"] == "metaspace":
        bpe = Tokenizer(models.BPE(unk_token=special.get("unk"), byte_fallback=True))
        bpe.pre_tokenizer = pre_tokenizers.Metaspace(
            replacement="▁", prepend_scheme="always", split=True
        )
        # llava-hf's first ids: <unk> <s> </s>, then the bytes; the rest are added afterwards
        first = [t for t in seeds if t not in added]
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[*first, *(f"<0x{b:02X}>" for b in range(256))],
            show_progress=False,
        )
    else:
        bpe = Tokenizer(models.BPE())
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        first = seeds
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=first,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    bpe.train_from_iterator(_corpus(), trainer)
    model = json.loads(bpe.to_str())["model"]
    cls = getattr(transformers, spec["class"])
    kwargs: dict[str, Any] = {f"{role}_token": token for role, token in special.items()}
    for role in ("unk", "bos", "pad"):
        kwargs.setdefault(f"{role}_token", None)
    if spec["class"] == "LlamaTokenizer":
        kwargs.update(add_bos_token=True, add_eos_token=False)
    if spec.get("roles"):
        kwargs["extra_special_tokens"] = dict(spec["roles"])
    tokenizer = cls(vocab=model["vocab"], merges=[tuple(m) for m in model["merges"]], **kwargs)
    tokenizer.add_tokens(
        [AddedToken(t, special=True, normalized=False) for t in added], special_tokens=True
    )
    tokenizer.model_max_length = 2048
    return tokenizer


# -- processors -----------------------------------------------------------------------------------


def _pil(name: str) -> Any:
    """An image processor class, its PIL backend (the only one without torchvision)."""
    import transformers

    if not has_torchvision() and hasattr(transformers, f"{name}Pil"):
        return getattr(transformers, f"{name}Pil")
    return getattr(transformers, name)


def _processor(cls_name: str, **parts: Any) -> Any:
    import transformers

    cls = getattr(transformers, cls_name)
    if needs_image_only(cls):
        cls = image_only(cls)
    return cls(**parts)


def build_tiny_processor(spec: TinySpec | None = None, family: str = "llava") -> Any:
    """The preset's processor: the family's processor class, image processor at `spec`'s
    size, the offline tokenizer and the family's chat template."""
    spec = spec or TinySpec()
    entry = families()[family].tiny
    tokenizer = build_tiny_tokenizer(spec.vocab, family)
    return _CONFIGS[family][0](spec, tokenizer, read_template(entry["chat_template"]))


def build_tiny(
    seed: int = 0, spec: TinySpec | None = None, family: str = "llava", processor: Any = None
) -> tuple[Any, Any]:
    """(model, processor) of the family's preset, weights drawn from `seed`; `processor`: the
    preset's processor already built (`build_tiny_processor`), not trained again."""
    import torch
    from transformers import AutoModelForImageTextToText

    spec = spec or TinySpec()
    if processor is None:
        processor = build_tiny_processor(spec, family)
    tokenizer = processor.tokenizer
    config = _CONFIGS[family][1](spec, tokenizer)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config)
    stop = families()[family].tiny.get("stop") or [tokenizer.eos_token]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    ids = [tokenizer.convert_tokens_to_ids(t) for t in stop]
    model.generation_config.eos_token_id = ids[0] if len(ids) == 1 else ids
    return model, processor


def _ids(tokenizer: Any, **tokens: str) -> dict[str, int]:
    return {key: tokenizer.convert_tokens_to_ids(token) for key, token in tokens.items()}


def _vocab(tokenizer: Any) -> int:
    return -(-len(tokenizer) // 64) * 64  # padded like llava-hf's 32064


def _text(spec: TinySpec, tokenizer: Any, **extra: Any) -> dict[str, Any]:
    """The language model's config, Llama-shaped, as the families share it."""
    return {
        "hidden_size": spec.hidden,
        "intermediate_size": spec.intermediate,
        "num_hidden_layers": spec.layers,
        "num_attention_heads": spec.heads,
        "num_key_value_heads": spec.heads,
        "vocab_size": _vocab(tokenizer),
        "max_position_embeddings": 2048,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        **extra,
    }


# -- llava --------------------------------------------------------------------------------------


def _llava_processor(spec: TinySpec, tokenizer: Any, template: str) -> Any:
    side = spec.image_size
    image_processor = _pil("CLIPImageProcessor")(
        size={"shortest_edge": side}, crop_size={"height": side, "width": side}
    )
    return _processor(
        "LlavaProcessor",
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=spec.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token, dropped again by the "default" strategy
        image_token="<image>",
        chat_template=template,
    )


def tiny_config(spec: TinySpec, tokenizer: Any) -> Any:
    """LLaVA-1.5 in miniature: CLIP tower, 2-layer GELU MLP connector, Llama."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

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
    return LlavaConfig(
        vision_config=vision,
        text_config=LlamaConfig(**_text(spec, tokenizer, tie_word_embeddings=False)),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=(spec.image_size // spec.patch_size) ** 2,
        projector_hidden_act="gelu",
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )


# -- Qwen2.5-VL and Qwen3-VL --------------------------------------------------------------------


def _qwen_image_processor(spec: TinySpec) -> Any:
    """Qwen's dynamic resolution, scaled down: patches of `patch_size`, 2x2 merged, between
    2x2 and 4x4 merged tokens per image (COCO's 640x480 becomes 4x3 = 12 image tokens)."""
    unit = spec.patch_size * 2
    return _pil("Qwen2VLImageProcessor")(
        patch_size=spec.patch_size,
        merge_size=2,
        temporal_patch_size=2,
        min_pixels=(2 * unit) ** 2,
        max_pixels=(4 * unit) ** 2,
    )


def _qwen_processor(cls_name: str, video_processor: str) -> Callable[[TinySpec, Any, str], Any]:
    def build(spec: TinySpec, tokenizer: Any, template: str) -> Any:
        image_processor = _qwen_image_processor(spec)
        processor = _processor(
            cls_name, image_processor=image_processor, tokenizer=tokenizer, chat_template=template
        )
        if hasattr(processor, "video_config"):  # what a torchvision machine loads it with
            processor.video_config = {
                "video_processor_type": video_processor,
                "patch_size": spec.patch_size,
                "merge_size": 2,
                "temporal_patch_size": 2,
            }
        return processor

    return build


def _qwen_vision(spec: TinySpec, **extra: Any) -> dict[str, Any]:
    return {
        "depth": spec.vision_layers,
        "hidden_size": spec.vision_hidden,
        "intermediate_size": spec.vision_hidden * 2,
        "num_heads": 2,
        "patch_size": spec.patch_size,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "out_hidden_size": spec.hidden,
        **extra,
    }


def _mrope(spec: TinySpec, **extra: Any) -> dict[str, Any]:
    half = spec.hidden // spec.heads // 2  # rotary pairs per head, split over (t, h, w)
    return {
        "rope_type": "default",
        "mrope_section": [half - 2 * (half // 3), half // 3, half // 3],
        **extra,
    }


def _qwen2_5_vl_config(spec: TinySpec, tokenizer: Any) -> Any:
    from transformers import Qwen2_5_VLConfig

    ids = _ids(
        tokenizer,
        image_token_id="<|image_pad|>",
        video_token_id="<|video_pad|>",
        vision_start_token_id="<|vision_start|>",
        vision_end_token_id="<|vision_end|>",
    )
    return Qwen2_5_VLConfig(
        vision_config=_qwen_vision(
            spec, window_size=spec.patch_size * 4, fullatt_block_indexes=[spec.vision_layers - 1]
        ),
        text_config=_text(spec, tokenizer, rope_parameters=_mrope(spec, rope_theta=1e6)),
        tie_word_embeddings=False,
        **ids,
    )


def _qwen3_vl_config(spec: TinySpec, tokenizer: Any) -> Any:
    from transformers import Qwen3VLConfig

    ids = _ids(
        tokenizer,
        image_token_id="<|image_pad|>",
        video_token_id="<|video_pad|>",
        vision_start_token_id="<|vision_start|>",
        vision_end_token_id="<|vision_end|>",
    )
    head_dim = spec.hidden // spec.heads
    return Qwen3VLConfig(
        vision_config=_qwen_vision(spec, num_position_embeddings=64, deepstack_visual_indexes=[0]),
        text_config=_text(
            spec,
            tokenizer,
            head_dim=head_dim,
            rope_parameters=_mrope(spec, mrope_interleaved=True, rope_theta=5e6),
        ),
        tie_word_embeddings=False,
        **ids,
    )


# -- Idefics3 (SmolVLM) -------------------------------------------------------------------------


def _idefics3_processor(spec: TinySpec, tokenizer: Any, template: str) -> Any:
    side = spec.image_size
    image_processor = _pil("Idefics3ImageProcessor")(
        do_image_splitting=False,
        size={"longest_edge": side},
        max_image_size={"longest_edge": side},
    )
    tokens = ((side // spec.patch_size) ** 2) // 4  # the connector's pixel shuffle, scale 2
    return _processor(
        "Idefics3Processor",
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=tokens,
        chat_template=template,
    )


def _vision(spec: TinySpec, **extra: Any) -> dict[str, Any]:
    """The vision tower's config, ViT-shaped, as the families share it."""
    return {
        "hidden_size": spec.vision_hidden,
        "intermediate_size": spec.vision_hidden * 2,
        "num_hidden_layers": spec.vision_layers,
        "num_attention_heads": 2,
        "image_size": spec.image_size,
        "patch_size": spec.patch_size,
        **extra,
    }


def _siglip(spec: TinySpec) -> dict[str, Any]:
    """A SigLIP tower without its pooling head (Gemma 3's and LLaVA-OneVision's)."""
    return _vision(spec, model_type="siglip_vision_model", vision_use_head=False)


def _idefics3_config(spec: TinySpec, tokenizer: Any) -> Any:
    from transformers import Idefics3Config

    return Idefics3Config(
        vision_config=_vision(spec),
        text_config={"model_type": "llama", **_text(spec, tokenizer)},
        scale_factor=2,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        tie_word_embeddings=False,
    )


# -- Gemma 3 ------------------------------------------------------------------------------------


def _gemma3_processor(spec: TinySpec, tokenizer: Any, template: str) -> Any:
    side = spec.image_size
    image_processor = _pil("Gemma3ImageProcessor")(
        size={"height": side, "width": side}, do_pan_and_scan=False
    )
    return _processor(
        "Gemma3Processor",
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_length=4,
        chat_template=template,
    )


def _gemma3_config(spec: TinySpec, tokenizer: Any) -> Any:
    from transformers import Gemma3Config

    head_dim = spec.hidden // spec.heads
    return Gemma3Config(
        vision_config=_siglip(spec),
        text_config=_text(
            spec,
            tokenizer,
            head_dim=head_dim,
            query_pre_attn_scalar=head_dim,
            sliding_window=64,
        ),
        mm_tokens_per_image=4,
        **_ids(
            tokenizer,
            boi_token_index="<start_of_image>",
            eoi_token_index="<end_of_image>",
            image_token_index="<image_soft_token>",
        ),
    )


# -- LLaVA-OneVision ----------------------------------------------------------------------------


def _onevision_pinpoints(spec: TinySpec) -> list[list[int]]:
    """AnyRes grids of up to 2x2 tiles (the real checkpoints go to 6x6 of 384 px)."""
    side = spec.image_size
    return [[side * h, side * w] for h in (1, 2) for w in (1, 2)]


def _onevision_processor(spec: TinySpec, tokenizer: Any, template: str) -> Any:
    side = spec.image_size
    image_processor = _pil("LlavaOnevisionImageProcessor")(
        size={"height": side, "width": side}, image_grid_pinpoints=_onevision_pinpoints(spec)
    )
    return _processor(
        "LlavaOnevisionProcessor",
        image_processor=image_processor,
        tokenizer=tokenizer,
        num_image_tokens=(side // spec.patch_size) ** 2,
        vision_feature_select_strategy="full",
        chat_template=template,
        image_token="<image>",
        video_token="<video>",
    )


def _onevision_config(spec: TinySpec, tokenizer: Any) -> Any:
    """LLaVA-OneVision in miniature: SigLIP tower, 2-layer MLP connector with image_newline,
    Qwen2, AnyRes tiles."""
    from transformers import LlavaOnevisionConfig

    return LlavaOnevisionConfig(
        vision_config=_siglip(spec),
        text_config={"model_type": "qwen2", **_text(spec, tokenizer, tie_word_embeddings=False)},
        image_grid_pinpoints=_onevision_pinpoints(spec),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        vision_aspect_ratio="anyres_max_9",
        tie_word_embeddings=False,
        **_ids(tokenizer, image_token_index="<image>", video_token_index="<video>"),
    )


# -- InternVL -----------------------------------------------------------------------------------


def _internvl_processor(spec: TinySpec, tokenizer: Any, template: str) -> Any:
    side = spec.image_size
    image_processor = _pil("GotOcr2ImageProcessor")(
        size={"height": side, "width": side}, crop_to_patches=True, max_patches=4
    )
    return _processor(
        "InternVLProcessor",
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_length=(side // spec.patch_size // 2) ** 2,  # pixel shuffle: 1/4 the patches
        chat_template=template,
    )


def _internvl_config(spec: TinySpec, tokenizer: Any) -> Any:
    """InternVL in miniature: InternViT tower, pixel shuffle and MLP connector, Qwen2, tiles."""
    from transformers import InternVLConfig

    side = spec.image_size
    return InternVLConfig(
        vision_config=_vision(
            spec, image_size=[side, side], patch_size=[spec.patch_size, spec.patch_size]
        ),
        text_config={"model_type": "qwen2", **_text(spec, tokenizer, tie_word_embeddings=False)},
        image_seq_length=(side // spec.patch_size // 2) ** 2,
        downsample_ratio=0.5,
        tie_word_embeddings=False,
        **_ids(tokenizer, image_token_id="<IMG_CONTEXT>"),
    )


# family -> (processor builder, config builder)
_CONFIGS: dict[str, tuple[Callable[[TinySpec, Any, str], Any], Callable[[TinySpec, Any], Any]]] = {
    "llava": (_llava_processor, tiny_config),
    "qwen2_5_vl": (
        _qwen_processor("Qwen2_5_VLProcessor", "Qwen2VLVideoProcessor"),
        _qwen2_5_vl_config,
    ),
    "qwen3_vl": (_qwen_processor("Qwen3VLProcessor", "Qwen3VLVideoProcessor"), _qwen3_vl_config),
    "idefics3": (_idefics3_processor, _idefics3_config),
    "gemma3": (_gemma3_processor, _gemma3_config),
    "llava_onevision": (_onevision_processor, _onevision_config),
    "internvl": (_internvl_processor, _internvl_config),
}
