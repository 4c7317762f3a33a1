"""`llava-pose bench export`: E-HPAUB or PoseQA as an lmms-eval task folder.

``OUT/TASK/`` gets ``TASK.yaml``, ``utils.py``, ``docs.jsonl`` (one document per question),
``export.json`` (image root, categories, judge settings), a README, and the one llava-pose
module its scoring needs, copied: ``scores.py`` (the judge-score parser) for E-HPAUB,
``poseqa_answers.py`` (the tolerant answer parser) for PoseQA. `lmms-eval --tasks TASK
--include_path OUT` then runs it.

Why copies and not ``import llava_pose``: lmms-eval runs in its own environment (its pins, a
GPU box), often without llava-pose; copied modules score exactly as the source did at export,
and one code path means one number. Only standard-library modules are copied
(`standalone_source` refuses anything else), so the folder needs lmms-eval and Pillow only.

The YAML names ``docs.jsonl`` relative to itself (lmms-eval 0.7.3 resolves ``data_files`` of
the ``json`` builder against the YAML's folder), so the folder can move; the image root is
recorded absolute in export.json (``LLAVA_POSE_IMAGE_ROOT`` overrides it at run time).

E-HPAUB's documents carry the judge's context already rendered by `judge.context_text`
(captions, boxes, keypoints) and export.json carries the rules and system message of `bench
judge`, so the exported judge sends what ``llava-pose bench judge`` sends, in
LLaVA-in-the-wild's pattern (lmms-eval's judge providers, its environment variables). It also
behaves as `bench judge` does: it re-asks a review without readable scores (``max_attempts``),
and a judge it cannot use (unreachable, key rejected) stops the run at once instead of
leaving every question unscored. Both tasks ask the model for up to 1,024 new tokens, as
`bench answer` does, so a chatty model is not cut off before its answer.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from . import __version__
from .config import option
from .ehpaub.files import (
    MANIFEST_FILE,
    QUESTIONS_FILE,
    REFERENCE_FILE,
    ManifestCheck,
    check_manifest,
    existing_images,
    image_root,
    load_bench,
    qid_key,
)
from .errors import EXIT_OK, ConfigError, InputError
from .io import read_json, read_jsonl, write_json, write_jsonl
from .lock import hold
from .paths import fold
from .poseqa.files import read_questions

FORMATS = ("lmms-eval",)
BENCHMARKS = ("auto", "ehpaub", "poseqa")
DOCS_FILE = "docs.jsonl"
EXPORT_FILE = "export.json"
# Task and metric names: lmms-eval puts them in result keys and file names.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_CATEGORY = re.compile(r"[A-Za-z0-9_]+")
# Imports the exported utils.py may make besides the standard library.
RUNTIME_IMPORTS = frozenset({"lmms_eval", "PIL", "loguru"})


@dataclass
class ExportConfig(ManifestCheck):
    """Options of `llava-pose bench export`."""

    bench: str | None = option(
        None,
        "benchmark folder to export: E-HPAUB (`bench build`) or PoseQA (`poseqa build`)",
    )
    out: str = option(
        "lmms_tasks",
        "folder of task folders: writes OUT/TASK/ (pass OUT to --include_path)",
        path="dir",
    )
    format: str = option("lmms-eval", "export format", choices=FORMATS)
    benchmark: str = option(
        "auto",
        "which benchmark BENCH holds; auto reads manifest.json, then looks for "
        "answers_ref.jsonl (E-HPAUB) or an `answer` field (PoseQA)",
        choices=BENCHMARKS,
    )
    task: str | None = option(
        None, "lmms-eval task name, also the folder's name (default: ehpaub or poseqa)"
    )
    image_root: str | None = option(
        None,
        "folder the questions' image paths are relative to (default: the manifest's image_root)",
    )
    judge_model: str = option(
        "gpt-4o",
        "E-HPAUB: judge model the task calls (MODEL_VERSION overrides it when lmms-eval runs)",
    )
    rules: str = option(
        "auto", "E-HPAUB: judge prompts, as `bench judge --rules`: auto, pose, boxes or a rule.json"
    )
    system: str = option(
        "ours", "E-HPAUB: judge system message, as `bench judge --system`: ours, llava or the text"
    )
    judge_temperature: float = option(
        0.2, "E-HPAUB: judge sampling temperature (LLaVA-Bench uses 0.2)", at_least=0
    )
    judge_max_tokens: int = option(1024, "E-HPAUB: judge max completion tokens", at_least=1)
    judge_max_attempts: int = option(
        3,
        "E-HPAUB: asks per review when the reply has no readable scores, as `bench judge "
        "--max-attempts`",
        at_least=1,
    )


# -- pure ---------------------------------------------------------------------------------------


def _data(name: str) -> str:
    return resources.files("llava_pose").joinpath("data/lmms", name).read_text("utf-8")


def detect_benchmark(manifest: dict[str, Any], has_reference: bool, first_question: Any) -> str:
    """ehpaub or poseqa: the manifest's `benchmark`, else the files' shape."""
    name = str(manifest.get("benchmark", "")).lower().replace("-", "")
    if name in ("ehpaub", "poseqa"):
        return name
    if has_reference:
        return "ehpaub"
    if isinstance(first_question, dict) and "answer" in first_question:
        return "poseqa"
    return "ehpaub"


def metric_list(metrics: list[tuple[str, str, bool]]) -> str:
    """The YAML lines of `metric_list`: (metric, aggregation function in utils, higher is better)."""
    lines = []
    for name, aggregation, higher in metrics:
        lines += [
            f"  - metric: {name}",
            f"    aggregation: !function utils.{aggregation}",
            f"    higher_is_better: {'true' if higher else 'false'}",
        ]
    return "\n".join(lines)


def render_yaml(template: str, task: str, metrics: list[tuple[str, str, bool]]) -> str:
    """The task YAML: the template with the task name, the data file and the metrics filled
    in (JSON flow style, which YAML reads, so no path or name needs escaping)."""
    kwargs = {"data_files": {"test": DOCS_FILE}}
    return (
        template.replace("__TASK__", json.dumps(task))
        .replace("__DATASET_KWARGS__", json.dumps(kwargs))
        .replace("__METRIC_LIST__", metric_list(metrics))
    )


def ehpaub_metrics(categories: list[str]) -> list[tuple[str, str, bool]]:
    relative = [(f"relative_{c}", "aggregate_relative", True) for c in ["all", *categories]]
    return [*relative, ("unscored", "aggregate_unscored", False)]


def poseqa_metrics(categories: list[str]) -> list[tuple[str, str, bool]]:
    exact = [(f"exact_match_{c}", "aggregate_mean", True) for c in ["all", *categories]]
    return [*exact, ("unparsed", "aggregate_mean", False)]


def standalone_source(module: str) -> str:
    """The source of `module`, which must import nothing but the standard library (it is
    copied into a folder that runs without llava-pose)."""
    mod = importlib.import_module(module)
    assert mod.__file__ is not None
    source = Path(mod.__file__).read_text("utf-8")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise ValueError(f"{module} imports relatively (line {node.lineno}); cannot copy it")
        names = (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
        for name in names:
            top = name.split(".")[0]
            if top != "__future__" and top not in sys.stdlib_module_names:
                raise ValueError(f"{module} imports {name} (line {node.lineno}); cannot copy it")
    return source


# -- the run ------------------------------------------------------------------------------------


def _check(cfg: ExportConfig) -> tuple[Path, Path]:
    if not cfg.bench:
        raise ConfigError("--bench: required (an E-HPAUB or PoseQA folder)")
    folder = Path(cfg.bench)
    if not folder.is_dir():
        raise InputError(folder, "benchmark folder not found (run `bench build` or `poseqa build`)")
    if cfg.task is not None and not _NAME.fullmatch(cfg.task):
        raise ConfigError(
            f"--task {cfg.task!r}: use letters, digits, _, . and - (it names files and results)"
        )
    return folder, Path(cfg.out)


def _image_root(cfg: ExportConfig, folder: Path, manifest: dict[str, Any]) -> Path:
    """Where lmms-eval will read the images (and send them to the model): a root the user
    names, or the manifest's only when it lies inside the folder (`files.image_root`)."""
    return image_root(cfg.image_root, folder, manifest).resolve()


def _check_categories(categories: list[str], source: Path) -> None:
    for c in categories:
        if not _CATEGORY.fullmatch(c) or c == "all":
            raise InputError(
                source,
                f"category {c!r} cannot name a metric (letters, digits and _ only; not `all`)",
            )


def _ehpaub(cfg: ExportConfig, folder: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from .ehpaub.judge import context_text, load_rules, system_message

    bench = load_bench(folder, allow_modified=cfg.allow_modified)
    rules_name, rules = load_rules(cfg.rules, bench.contexts)
    categories = bench.categories()
    _check_categories(categories, bench.questions_path)
    for c in categories:
        if c not in rules:
            raise InputError(
                bench.questions_path,
                f"category {c!r} has no judge rule in {rules_name} (rules for: {', '.join(rules)})",
            )
    root = _image_root(cfg, folder, bench.manifest)
    existing_images(root, bench.questions, bench.questions_path)
    docs = []
    for q in bench.questions:
        captions, boxes = context_text(bench.contexts[q.image])
        docs.append(
            {
                "question_id": qid_key(q.question_id),
                "image": fold(q.image),
                "text": q.text,
                "category": q.category,
                "reference": bench.reference[qid_key(q.question_id)].text,
                "context": f"{captions}\n\n{boxes}",
            }
        )
    export = {
        "benchmark": "E-HPAUB",
        "categories": categories,
        "image_root": str(root),
        "modified": bench.modified,
        "judge": {
            "model": cfg.judge_model,
            "temperature": cfg.judge_temperature,
            "max_tokens": cfg.judge_max_tokens,
            "max_attempts": cfg.judge_max_attempts,
            "system": system_message(cfg.system),
            "rules_name": rules_name,
            "rules": {c: {"role": rules[c].role, "prompt": rules[c].prompt} for c in categories},
        },
    }
    return export, docs


def _poseqa(
    cfg: ExportConfig, folder: Path, manifest: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    path = folder / QUESTIONS_FILE
    modified = check_manifest(folder, manifest, [QUESTIONS_FILE], cfg.allow_modified)
    questions = read_questions(path)
    categories = list(dict.fromkeys(q.category for q in questions))
    _check_categories(categories, path)
    root = _image_root(cfg, folder, manifest)
    existing_images(root, questions, path)
    docs = [
        {
            "question_id": qid_key(q.question_id),
            "image": fold(q.image),
            "text": q.text,
            "category": q.category,
            "answer": q.answer,
            "answer_type": q.answer_type,
            "choices": q.choices,
        }
        for q in questions
    ]
    export = {"benchmark": "PoseQA", "categories": categories, "image_root": str(root)}
    return {**export, "modified": modified}, docs


def _replace_folder(tmp: Path, dest: Path) -> None:
    """Move the finished `tmp` to `dest`, replacing an earlier export (never half of one)."""
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        dest.rename(old)
    tmp.rename(dest)
    if old is not None:
        shutil.rmtree(old)


def run_export(cfg: ExportConfig) -> int:
    folder, out = _check(cfg)
    manifest: dict[str, Any] = {}
    if (folder / MANIFEST_FILE).is_file():
        manifest = read_json(folder / MANIFEST_FILE)
    first = None
    if (folder / QUESTIONS_FILE).is_file():
        rows = read_jsonl(folder / QUESTIONS_FILE)
        first = rows[0] if rows else None
    kind = cfg.benchmark
    if kind == "auto":
        kind = detect_benchmark(manifest, (folder / REFERENCE_FILE).is_file(), first)
    if kind == "ehpaub":
        export, docs = _ehpaub(cfg, folder)
        metrics = ehpaub_metrics(export["categories"])
        module, copy_as = "llava_pose.ehpaub.scores", "scores.py"
    else:
        export, docs = _poseqa(cfg, folder, manifest)
        metrics = poseqa_metrics(export["categories"])
        module, copy_as = "llava_pose.poseqa.answers", "poseqa_answers.py"
    task = cfg.task or kind
    export = {
        "task": task,
        **export,
        "source": str(folder.resolve()),
        "questions": len(docs),
        "llava_pose_version": __version__,
        "copied": {copy_as: module},
    }
    scoring = yaml.safe_load(_data("scoring.yaml"))[kind]
    readme = (
        _data("README.md")
        .replace("__BENCHMARK__", export["benchmark"])
        .replace("__TASK__", task)
        .replace("__VERSION__", __version__)
        .replace("__SOURCE__", export["source"])
        .replace("__QUESTIONS__", str(len(docs)))
        .replace("__IMAGE_ROOT__", export["image_root"])
        .replace("__INCLUDE__", str(out))
        .replace("__SCORING__", scoring)
    )

    hold(out, "bench export", folder=True)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{task}.", suffix=".tmp", dir=out))
    try:
        (tmp / f"{task}.yaml").write_text(
            render_yaml(_data(f"{kind}.yaml"), task, metrics), encoding="utf-8"
        )
        (tmp / "utils.py").write_text(_data(f"{kind}_utils.py"), encoding="utf-8")
        (tmp / copy_as).write_text(standalone_source(module), encoding="utf-8")
        (tmp / "README.md").write_text(readme, encoding="utf-8")
        write_jsonl(tmp / DOCS_FILE, docs)
        write_json(tmp / EXPORT_FILE, export)
        tmp.chmod(0o755)
        _replace_folder(tmp, out / task)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
        raise
    print(
        f"wrote {export['benchmark']} ({len(docs)} questions) as lmms-eval task {task!r} to "
        f"{out / task}; run it with: lmms-eval --tasks {task} --include_path {out} ..."
    )
    return EXIT_OK
