"""Generation shared by `llava-pose chat` and the ``hf:`` answerer (`llava_pose.llm.hf`).

One function, `generate`, renders prompts, batches them (left padding), generates and decodes.
LLaVA checkpoints are prompted with the exact Vicuna-v1 template used in training (and by
LLaVA-1.5's own evaluation), their images padded to a square like in training. Any other
transformers vision-language model is loaded with AutoModelForImageTextToText and prompted
through its processor's chat template.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputError
from .images import load_image, mean_colour
from .load import load_pretrained, resolve_device, resolve_dtype
from .template import GPT, HUMAN, Template, move_image_token_first

log = logging.getLogger("llava_pose.vlm")

TEMPLATES = ("auto", "vicuna_v1", "chat")


@dataclass
class Loaded:
    """A model ready to generate, and how to prompt it."""

    name: str
    model: Any
    processor: Any
    template: str  # "vicuna_v1" or "chat"
    is_llava: bool
    device: Any


@dataclass
class Conversation:
    """Turns ("user"/"assistant", text) ending with a user turn, one optional image."""

    turns: list[tuple[str, str]]
    image: Any = None  # a path or a PIL image
    system: str | None = None


@dataclass
class Generated:
    text: str
    input_tokens: int
    output_tokens: int
    finish_reason: str  # "stop" or "length"


def load(name: str, *, device: str = "auto", dtype: str = "auto", template: str = "auto") -> Loaded:
    """Load a run, checkpoint, LoRA run, exported model or hub id for generation."""
    if template not in TEMPLATES:
        raise ConfigError(f"template {template!r}: expected one of {', '.join(TEMPLATES)}")
    dev = resolve_device(device)
    model, processor = load_pretrained(name, dtype=resolve_dtype(dtype, dev), device=dev)
    is_llava = getattr(model.config, "model_type", "") == "llava"
    if template == "auto":
        template = "vicuna_v1" if is_llava else "chat"
    if template == "chat" and not getattr(processor, "chat_template", None):
        raise ConfigError(f"{name}: its processor has no chat template; use --template vicuna_v1")
    processor.tokenizer.padding_side = "left"  # batched generation continues every row at the end
    if processor.tokenizer.pad_token_id is None:
        processor.tokenizer.pad_token = processor.tokenizer.eos_token
    return Loaded(name, model, processor, template, is_llava, dev)


def render_prompt(loaded: Loaded, conversation: Conversation) -> str:
    """The prompt text for the next assistant turn."""
    has_image = conversation.image is not None
    if loaded.template == "vicuna_v1":
        template = Template.load("vicuna_v1")
        turns: list[tuple[str, str | None]] = []
        for i, (role, text) in enumerate(conversation.turns):
            if i == 0 and has_image:
                text = move_image_token_first(
                    text if template.image_token in text else f"{template.image_token}\n{text}"
                )
            turns.append((HUMAN if role == "user" else GPT, text))
        turns.append((GPT, None))
        return template.render(turns, conversation.system)[0]
    messages: list[dict[str, Any]] = []
    if conversation.system:
        messages.append(
            {"role": "system", "content": [{"type": "text", "text": conversation.system}]}
        )
    for i, (role, text) in enumerate(conversation.turns):
        parts: list[dict[str, Any]] = [{"type": "image"}] if i == 0 and has_image else []
        messages.append({"role": role, "content": [*parts, {"type": "text", "text": text}]})
    return loaded.processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False
    )


def _image(loaded: Loaded, image: Any) -> Any:
    if not isinstance(image, str | Path):
        return image
    if not Path(image).is_file():
        raise InputError(image, "image not found")
    # llava checkpoints saw square-padded images in training (LLaVA-1.5's 'pad'), others did not
    return load_image(
        str(image), mean_colour(loaded.processor.image_processor) if loaded.is_llava else None
    )


def generate(
    loaded: Loaded,
    conversations: Sequence[Conversation],
    *,
    max_new_tokens: int = 512,
    temperature: float = 0.0,
    seed: int | None = None,
    streamer: Any = None,
) -> list[Generated]:
    """Answer the last user turn of every conversation, all in one batch (greedy unless
    temperature > 0). A streamer, if given, sees the tokens of a batch of one as they come."""
    import torch

    prompts = [render_prompt(loaded, c) for c in conversations]
    images = [_image(loaded, c.image) for c in conversations if c.image is not None]
    inputs = loaded.processor(
        text=prompts, images=images or None, padding=True, return_tensors="pt"
    )
    inputs = inputs.to(loaded.device)
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(loaded.model.dtype)
    tokenizer = loaded.processor.tokenizer
    options: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "do_sample": temperature > 0,
    }
    if temperature > 0:
        options.update(temperature=temperature, top_p=1.0, top_k=0)
        if seed is not None:
            torch.manual_seed(seed)
    else:
        options.update(temperature=None, top_p=None, top_k=None)
    if streamer is not None:
        options["streamer"] = streamer
    with torch.inference_mode():
        output = loaded.model.generate(**inputs, **options)
    new = output[:, inputs["input_ids"].shape[1] :]
    results = []
    for row, prompt_mask in zip(new.tolist(), inputs["attention_mask"].tolist(), strict=True):
        stop = next((i for i, t in enumerate(row) if t == tokenizer.eos_token_id), None)
        tokens = row[:stop] if stop is not None else [t for t in row if t != tokenizer.pad_token_id]
        text = tokenizer.decode(tokens, skip_special_tokens=True).strip()
        finish = "stop" if stop is not None or len(tokens) < max_new_tokens else "length"
        results.append(
            Generated(text, int(sum(prompt_mask)), len(tokens) + (stop is not None), finish)
        )
    return results
