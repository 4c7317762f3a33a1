"""The ``tiny`` preset: a small random LLaVA-1.5 with a tokenizer trained offline on package
text, so that training, chat and the hf: answerer run on a CPU in seconds without downloads."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any


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
    from .template import Template

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
