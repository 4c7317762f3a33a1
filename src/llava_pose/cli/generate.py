"""`llava-pose generate`: COCO -> teacher -> LLaVA instruction data."""

from __future__ import annotations

from typing import Any

EXAMPLES = """
  # offline, on the bundled sample, with the built-in teacher (no key, no network)
  llava-pose generate --out out/

  # full COCO with GPT-4o, 64 calls in flight, stop before $50
  export OPENAI_API_KEY=...
  llava-pose generate --coco /data/coco --split train2017 --out out/ \\
      --teacher openai:gpt-4o --concurrency 64 --max-cost 50 --max-images 1000 --seed 0

  # what would it cost? (counts tokens offline, calls nothing)
  llava-pose generate --coco /data/coco --teacher openai:gpt-4o --dry-run

  # a local vLLM / Ollama server, compact prompts, one record per Q/A pair
  llava-pose generate --teacher openai:Qwen2.5-72B-Instruct --base-url http://localhost:8000/v1 \\
      --format compact --split-conversations --out out-qwen/

  # Claude as the teacher
  llava-pose generate --teacher anthropic:claude-sonnet-4-20250514 --coco /data/coco --out out-claude/
"""


def _run(config: Any) -> int:
    from ..generate import run_generate

    return run_generate(config)


def register(subparsers: Any) -> None:
    from ..generate import GenerateConfig
    from . import add_command

    add_command(
        subparsers,
        "generate",
        GenerateConfig,
        _run,
        help="generate keypoint-integrated instruction data (conversation, detail, reasoning)",
        description=(
            "Give a teacher LLM each COCO image's captions, object boxes and 17 keypoints per person, "
            "as the LLaVA-Pose paper's prompts (Tables 1-4) describe, and write LLaVA training records. "
            "Resumable: rerun the same command after a crash and nothing is paid twice."
        ),
        examples=EXAMPLES,
    )
