"""`llava-pose chat`: one image, questions asked in turn, answers streamed (no heavy imports at
module import: `--help` must stay fast)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import option
from ..errors import InputError
from .generate import TEMPLATES
from .load import DTYPES


@dataclass
class ChatConfig:
    """Ask a model about one image, streaming the answers."""

    questions: list[str] = option(
        [],
        "questions, asked in turn as one conversation (none: read them from standard input)",
        positional=True,
        nargs="*",
    )
    model: str = option(
        "runs/llava-pose",
        "a model folder (a run, a checkpoint, a LoRA run, an exported model) or a hub id",
    )
    image: str | None = option(None, "the image to talk about", metavar="FILE")
    max_new_tokens: int = option(512, "longest answer, in tokens", at_least=1)
    temperature: float = option(
        0.0, "0 answers greedily (deterministic); above 0 samples", at_least=0
    )
    device: str = option("auto", "cpu, cuda, cuda:1, ... (auto: cuda if available)")
    dtype: str = option(
        "auto", "bf16, fp16 or fp32 (auto: bf16 on GPU, fp32 on CPU)", choices=DTYPES
    )
    template: str = option(
        "auto",
        "prompt: auto (what the model was trained with: a run's own template; llava checkpoints "
        "LLaVA-1.5's Vicuna v1), vicuna_v1, or chat (the checkpoint's own chat template)",
        choices=TEMPLATES,
    )
    system: str | None = option(None, "replace the template's system line")


def run_chat(cfg: ChatConfig) -> int:
    """`llava-pose chat`: one image, questions asked in turn, answers streamed to stdout."""
    from transformers import TextStreamer

    from .generate import Conversation, generate, load

    if cfg.image is not None and not Path(cfg.image).is_file():
        raise InputError(cfg.image, "image not found")
    loaded = load(cfg.model, device=cfg.device, dtype=cfg.dtype, template=cfg.template)
    interactive = not cfg.questions
    if interactive and sys.stdin.isatty():
        print("Ask about the image; an empty line or Ctrl-D ends the chat.", file=sys.stderr)
    history: list[tuple[str, str]] = []
    questions = iter(cfg.questions) if not interactive else _stdin_questions()
    for question in questions:
        print(f"USER: {question}\nASSISTANT: ", end="", flush=True)
        streamer = TextStreamer(
            loaded.processor.tokenizer, skip_prompt=True, skip_special_tokens=True
        )
        conversation = Conversation([*_flatten(history), ("user", question)], cfg.image, cfg.system)
        answer = generate(
            loaded,
            [conversation],
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            streamer=streamer,
        )[0]
        print(flush=True)
        history.append((question, answer.text))
    return 0


def _flatten(history: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [turn for q, a in history for turn in (("user", q), ("assistant", a))]


def _stdin_questions() -> Any:
    while True:
        if sys.stdin.isatty():
            print("> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line or not line.strip():
            return
        yield line.strip()
