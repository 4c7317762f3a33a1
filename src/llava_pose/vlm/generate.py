"""Generation shared by `llava-pose chat` and the ``hf:`` answerer (`llava_pose.llm.hf`).

One function, `generate`, renders prompts, batches them (left padding), generates and decodes.
The prompt is the chat template the model was trained with, rendered by its own processor
exactly as `llava-pose train` renders it (`processor.apply_chat_template`, images inside the
messages): a run saves the template it trained with as its processor's chat template, so a run
is always asked as it was taught. ``--template`` picks another for checkpoints from elsewhere:

* ``auto``: the family's prompt when it has one (llava: the paper's Vicuna v1, as LLaVA-1.5
  trains and evaluates), else the checkpoint's own chat template;
* ``vicuna_v1``: LLaVA-1.5's Vicuna v1, whatever the model;
* ``chat``: the checkpoint's own chat template.

Images are padded to a square where the family trains so (LLaVA-1.5's ``pad``), or as the run
recorded. Answers stop at any of the model's end-of-turn tokens (its generation config's).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputError
from .families import Family, families, family_of
from .images import load_image, mean_colour
from .load import load_pretrained, resolve_device, resolve_dtype, run_settings
from .processors import own_chat_template

log = logging.getLogger("llava_pose.vlm")

TEMPLATES = ("auto", "vicuna_v1", "chat")


@dataclass
class Loaded:
    """A model ready to generate, and how to prompt it."""

    name: str
    model: Any
    processor: Any
    template: str  # the jinja chat template prompts are rendered with
    pad_colour: tuple[int, int, int] | None  # images padded to a square with it, or not
    device: Any
    family: Family | None = None

    @property
    def stop_ids(self) -> list[int]:
        """Every token that ends an answer: the generation config's eos ids and the tokenizer's."""
        ids = self.model.generation_config.eos_token_id
        ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
        eos = self.processor.tokenizer.eos_token_id
        return list(dict.fromkeys([*ids, *([eos] if eos is not None else [])]))


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


def pick_template(processor: Any, family: Family | None, template: str, name: str) -> str:
    """The chat template `template` (one of TEMPLATES, as `load` checked) names for this
    model."""
    if template == "vicuna_v1":
        vicuna = families()["llava"].prompt_template()
        assert vicuna is not None
        return vicuna
    own = own_chat_template(processor)
    if template == "auto" and family is not None and family.template:
        return family.prompt_template() or ""
    if not own:
        hint = "; use --template vicuna_v1" if family is not None and family.name == "llava" else ""
        raise ConfigError(f"{name}: its processor has no chat template{hint}")
    return own


def load(name: str, *, device: str = "auto", dtype: str = "auto", template: str = "auto") -> Loaded:
    """Load a run, checkpoint, LoRA run, exported model or hub id for generation."""
    if template not in TEMPLATES:
        raise ConfigError(f"template {template!r}: expected one of {', '.join(TEMPLATES)}")
    dev = resolve_device(device)
    model, processor = load_pretrained(name, dtype=resolve_dtype(dtype, dev), device=dev)
    family = family_of(str(getattr(model.config, "model_type", "")))
    trained = run_settings(name)
    if trained.get("pad_to_square") is not None:
        pad = bool(trained["pad_to_square"])
    else:
        pad = family is not None and family.pad_to_square
    chosen = pick_template(processor, family, template, name)
    processor.tokenizer.padding_side = "left"  # batched generation continues every row at the end
    if processor.tokenizer.pad_token_id is None:
        processor.tokenizer.pad_token = processor.tokenizer.eos_token
    colour = mean_colour(processor.image_processor) if pad else None
    return Loaded(name, model, processor, chosen, colour, dev, family)


def messages(conversation: Conversation, image: Any = None) -> list[dict[str, Any]]:
    """The conversation as chat-template messages: content parts, the image (a PIL image, or
    a bare placeholder when None) first in the first user turn, as training builds them."""
    out: list[dict[str, Any]] = []
    if conversation.system:
        out.append({"role": "system", "content": [{"type": "text", "text": conversation.system}]})
    for i, (role, text) in enumerate(conversation.turns):
        parts: list[dict[str, Any]] = []
        if i == 0 and conversation.image is not None:
            parts.append({"type": "image", **({"image": image} if image is not None else {})})
        out.append({"role": role, "content": [*parts, {"type": "text", "text": text}]})
    return out


def render_prompt(loaded: Loaded, conversation: Conversation) -> str:
    """The prompt text for the next assistant turn."""
    return loaded.processor.apply_chat_template(
        messages(conversation),
        chat_template=loaded.template,
        add_generation_prompt=True,
        tokenize=False,
    )


def _image(loaded: Loaded, image: Any) -> Any:
    if not isinstance(image, str | Path):
        return image
    if not Path(image).is_file():
        raise InputError(image, "image not found")
    return load_image(str(image), loaded.pad_colour)


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

    batch = [
        messages(c, _image(loaded, c.image) if c.image is not None else None) for c in conversations
    ]
    inputs = loaded.processor.apply_chat_template(
        batch,
        chat_template=loaded.template,
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        processor_kwargs={"padding": True, "max_length": None},
    )
    inputs = inputs.to(loaded.device)
    for key in ("pixel_values", "pixel_values_videos"):
        if key in inputs and inputs[key].is_floating_point():
            inputs[key] = inputs[key].to(loaded.model.dtype)
    tokenizer = loaded.processor.tokenizer
    stops = loaded.stop_ids
    options: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": stops,
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
        stop = next((i for i, t in enumerate(row) if t in stops), None)
        tokens = row[:stop] if stop is not None else [t for t in row if t != tokenizer.pad_token_id]
        text = tokenizer.decode(tokens, skip_special_tokens=True).strip()
        finish = "stop" if stop is not None or len(tokens) < max_new_tokens else "length"
        results.append(
            Generated(text, int(sum(prompt_mask)), len(tokens) + (stop is not None), finish)
        )
    return results
