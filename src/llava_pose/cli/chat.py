"""`llava-pose chat`: talk to a model about one image (torch loads only when it runs)."""

from __future__ import annotations

from typing import Any

from ..extras import require_train

EXAMPLES = """
  llava-pose chat --model runs/llava-pose --image street.jpg "What is the person on the left doing?"

  # several questions: one conversation, each answer is context for the next
  llava-pose chat --model runs/llava-pose --image street.jpg "Describe the scene." "Who is running?"

  # interactive: questions from standard input, one per line
  llava-pose chat --model runs/llava-pose-lora --image street.jpg

  # a run of a modern model (train --model Qwen/Qwen2.5-VL-7B-Instruct ...): asked with the
  # chat template it was trained with, which the run saved
  llava-pose chat --model runs/qwen2.5-vl-pose-lora --image street.jpg "What are they doing?"

  # any other image-text-to-text checkpoint, through its own chat template
  llava-pose chat --model Qwen/Qwen3-VL-8B-Instruct --image street.jpg "What are they doing?"
"""


def _run(config: Any) -> int:
    require_train("llava-pose chat")
    from ..vlm.chat import run_chat

    return run_chat(config)


def register(subparsers: Any) -> None:
    """Add the `chat` command."""
    from ..vlm.chat import ChatConfig
    from . import add_command

    add_command(
        subparsers,
        "chat",
        ChatConfig,
        _run,
        help="ask a model about an image (answers stream to the terminal)",
        description=(
            "Load a trained run (full, LoRA or exported), a checkpoint or a hub model and answer "
            "questions about one image as a multi-turn chat. A run is asked with the chat "
            "template it was trained with (llava: the Vicuna-v1 prompt); other checkpoints with "
            "their own; greedy decoding unless --temperature > 0."
        ),
        examples=EXAMPLES,
    )
