"""`llava-pose bench {build,answer,judge,report,export}`: the E-HPAUB benchmark (paper section 5.2),
and the lmms-eval export of it and of PoseQA."""

from __future__ import annotations

from typing import Any

BUILD_EXAMPLES = """
  # the paper's benchmark: 90 images of COCO val2014 x 3 question types, GPT-4o as teacher
  llava-pose bench build --coco /data/coco --split val2014 --images 90 --seed 0 \\
      --teacher openai:gpt-4o --out ehpaub/

  # leak-free for models trained on train2017 data, and what would it cost?
  llava-pose bench build --coco /data/coco --split val2017 --out ehpaub-val2017/ --dry-run
"""

ANSWER_EXAMPLES = """
  llava-pose bench answer --bench ehpaub/ --model openai:gpt-4o-mini --out answers/gpt-4o-mini.jsonl

  # a model served by vLLM / SGLang / llama.cpp (OpenAI-compatible, images as data URLs)
  llava-pose bench answer --bench ehpaub/ --model openai:Qwen/Qwen2-VL-7B-Instruct \\
      --base-url http://localhost:8000/v1 --model-id qwen2-vl-7b --out answers/qwen2-vl-7b.jsonl

  # a local Hugging Face checkpoint (needs the [train] extra)
  llava-pose bench answer --bench ehpaub/ --model hf:/ckpt/llava-pose-7b --out answers/llava-pose.jsonl
"""

JUDGE_EXAMPLES = """
  llava-pose bench judge --bench ehpaub/ --answers answers/*.jsonl --judge openai:gpt-4o --out reviews/
  llava-pose bench judge --bench ehpaub/ --answers answers/*.jsonl \\
      --judge anthropic:claude-sonnet-4-20250514 --out reviews-claude/

  # both orders (cancels position bias) and 3 samples per order, median
  llava-pose bench judge --bench ehpaub/ --answers answers/*.jsonl --swap --samples 3 --out reviews-swap/

  # LLaVA-Bench COCO with LLaVA's own files, rules and system message (LLaVA's judge request)
  llava-pose bench judge --questions qa90_questions.jsonl --context caps_boxes_coco2014_val_80.jsonl \\
      --reference qa90_gpt4_answer.jsonl --rules rule.json --system llava --judge openai:gpt-4-0314 \\
      --answers answers/llava.jsonl --out reviews-llava-bench/
"""

REPORT_EXAMPLES = """
  llava-pose bench report --bench ehpaub/ --reviews reviews/ reviews-claude/ --out report/
"""

EXPORT_EXAMPLES = """
  # E-HPAUB (LLM-judged) and PoseQA (exact match) as lmms-eval tasks in one folder
  llava-pose bench export --bench ehpaub/ --format lmms-eval --out lmms_tasks/
  llava-pose bench export --bench poseqa/ --format lmms-eval --out lmms_tasks/
  lmms-eval --model llava_onevision --tasks ehpaub,poseqa --include_path lmms_tasks/ ...
"""


def _build(config: Any) -> int:
    from ..ehpaub.build import run_build

    return run_build(config)


def _answer(config: Any) -> int:
    from ..answer import run_answer

    return run_answer(config)


def _judge(config: Any) -> int:
    from ..ehpaub.judge import run_judge

    return run_judge(config)


def _report(config: Any) -> int:
    from ..ehpaub.report import run_report

    return run_report(config)


def _export(config: Any) -> int:
    from ..lmms_export import run_export

    return run_export(config)


def register(subparsers: Any) -> None:
    """Add `bench` and its subcommands."""
    from ..answer import AnswerConfig
    from ..ehpaub.build import BuildConfig
    from ..ehpaub.judge import JudgeConfig
    from ..ehpaub.report import ReportConfig
    from ..lmms_export import ExportConfig
    from . import add_command, add_group

    steps = add_group(
        subparsers,
        "bench",
        help="the E-HPAUB benchmark: build, answer, judge, report, export",
        description=(
            "E-HPAUB (paper section 5.2): build the questions and reference answers from COCO, "
            "answer them with any model, score the answers with a language-only judge "
            "(LLaVA-Bench's protocol), and report the paper's tables."
        ),
    )
    add_command(
        steps,
        "build",
        BuildConfig,
        _build,
        help="pick images and write questions, reference answers and judge context",
        description=(
            "Pick N human-centric images of a COCO split with a seed and have the teacher write "
            "one conversation, one detailed-description and one complex-reasoning question per "
            "image, with reference answers, using the data pipeline's prompts (Tables 1-4). "
            "Writes LLaVA-Bench-shaped files plus manifest.json. Resumable through the cache."
        ),
        examples=BUILD_EXAMPLES,
    )
    add_command(
        steps,
        "answer",
        AnswerConfig,
        _answer,
        help="run a vision-language model on every question",
        description=(
            "Answer every question with the image: OpenAI-compatible endpoints (images as base64 "
            "data URLs), Anthropic, or a local Hugging Face model (hf:PATH). Greedy by default; "
            "resumable (cache, and answers kept as they arrive)."
        ),
        examples=ANSWER_EXAMPLES,
    )
    add_command(
        steps,
        "judge",
        JudgeConfig,
        _judge,
        help="score answers against the references with a language-only judge",
        description=(
            "LLaVA-Bench's review protocol (context of captions, boxes and keypoints; reference "
            "as Assistant 1, model as Assistant 2; two 1-10 scores), with a tolerant score "
            "parser, bounded re-asks, optional position swap and repeated samples. Every call "
            "is cached."
        ),
        examples=JUDGE_EXAMPLES,
    )
    add_command(
        steps,
        "report",
        ReportConfig,
        _report,
        help="tables (Markdown, CSV), judge agreement and charts",
        description=(
            "Relative scores per model and category for each judge (the paper's Tables 8-10), "
            "Kendall's tau and score correlations between judges, bar charts, and what is "
            "missing or failed, in one folder with an index.md."
        ),
        examples=REPORT_EXAMPLES,
    )
    add_command(
        steps,
        "export",
        ExportConfig,
        _export,
        help="write E-HPAUB or PoseQA as an lmms-eval task folder",
        description=(
            "Write OUT/TASK/ with the task YAML, utils.py, the documents and the scoring code "
            "(copied from llava-pose: the folder runs without it), for `lmms-eval --tasks TASK "
            "--include_path OUT`. E-HPAUB is judged in LLaVA-in-the-wild's pattern through "
            "lmms-eval's judge providers; PoseQA is exact match after llava-pose's answer parser."
        ),
        examples=EXPORT_EXAMPLES,
    )
