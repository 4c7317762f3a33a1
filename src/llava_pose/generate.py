"""The data pipeline, wired: COCO -> contexts -> prompts -> teacher (runner) -> parsed samples ->
LLaVA dataset files.

A run is resumable by construction: every finished teacher call is in the SQLite cache before
anything else happens to it, and the dataset files are rebuilt from the cache and the new
calls at the end, so rerunning the same command after a crash or Ctrl-C pays for nothing twice
and writes no duplicate.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from . import __version__
from .coco import (
    DEFAULT_MIN_KEYPOINTS,
    DEFAULT_MIN_PERSONS,
    filter_rule,
    read_contexts,
    read_split,
    sample_root,
    select_images,
)
from .config import option
from .context import FORMATS
from .dataset import assemble, write_dataset
from .errors import EXIT_BUDGET, EXIT_OK, EXIT_SOME_FAILED, ConfigError
from .io import append_jsonl, write_json
from .llm import make_backend
from .llm.pricing import PriceTable, estimate
from .llm.runner import ModelOptions, Result
from .prompts import build_request, load_prompts
from .records import TASKS, ChatRequest, ImageContext, Sample

log = logging.getLogger("llava_pose")


@dataclass
class SourceOptions:
    """Which COCO images a command reads. Shared by generate and bench build."""

    coco: str | None = option(
        None, "COCO root holding annotations/ and the image folders (default: the bundled sample)"
    )
    split: str = option("train2017", "split name, e.g. train2017, val2017, val2014")
    contexts: str | None = option(
        None, "contexts JSONL from `llava-pose prepare`, instead of --coco"
    )
    max_images: int | None = option(
        None, "use at most this many images, a seeded sample (stable as it grows)"
    )
    min_keypoints: int = option(
        DEFAULT_MIN_KEYPOINTS,
        "an image is human-centric if a person has at least this many labelled keypoints",
    )
    min_persons: int = option(DEFAULT_MIN_PERSONS, "... and at least this many such persons")
    all_images: bool = option(False, "keep images without people too (no human-centric filter)")
    check_images: bool = option(
        True, "check that every image file exists (--no-check-images for annotations only)"
    )


@dataclass
class GenerateConfig(SourceOptions, ModelOptions):
    """Options of `llava-pose generate`."""

    out: str = option(
        "out", "output folder: one JSON per task, the merged file, stats.json, failed.jsonl, cache"
    )
    teacher: str = option(
        "rules",
        "teacher model: openai:MODEL, anthropic:MODEL, or rules (built-in, offline)",
        short="-t",
    )
    tasks: list[str] = option(
        ["conversation", "detail", "reasoning"], "task types to generate, comma-separated"
    )
    format: str = option(
        "paper",
        "prompt format: paper (Tables 1-4 exactly) or compact (fewer tokens)",
        choices=FORMATS,
    )
    fewshot: bool = option(
        False, "put worked keypoint-bearing examples before each query to steady the format"
    )
    split_conversations: bool = option(
        False, "write one record per conversation Q/A pair instead of one multi-turn record"
    )
    seed: int = option(
        0, "seed of image sampling, Table 4 instruction choice and the teacher's sampling"
    )
    temperature: float | None = option(
        None, "teacher sampling temperature (default: the provider's)"
    )
    max_tokens: int = option(
        1024, "teacher max completion tokens; replies cut here are filtered as truncated"
    )
    dry_run: bool = option(False, "print requests, tokens and cost, and call nothing")


@functools.cache
def expected_output_tokens() -> dict[str, int]:
    """Typical teacher reply length per task, for cost estimates (package data)."""
    text = resources.files("llava_pose").joinpath("data/estimates.yaml").read_text("utf-8")
    return yaml.safe_load(text)["output_tokens"]


def load_source(cfg: SourceOptions, seed: int) -> list[ImageContext]:
    """Contexts for the configured images: from --contexts, --coco, or the bundled sample."""
    if cfg.contexts:
        contexts = read_contexts(cfg.contexts)
    else:
        root = Path(cfg.coco) if cfg.coco else sample_root()
        if not cfg.coco:
            log.info("no --coco given: using the bundled COCO sample (%s)", root)
        loaded = read_split(
            root,
            cfg.split,
            min_keypoints=cfg.min_keypoints,
            min_persons=cfg.min_persons,
            human_only=not cfg.all_images,
            check_images=cfg.check_images,
        )
        rule = filter_rule(cfg.min_keypoints, cfg.min_persons, not cfg.all_images)
        log.info("%s", loaded.stats.summary(rule))
        contexts = loaded.contexts
    if cfg.max_images is not None:
        contexts = select_images(contexts, cfg.max_images, seed)
    if not contexts:
        raise ConfigError(
            "no images left after filtering: check --split, --min-keypoints or --all-images"
        )
    return contexts


def build_requests(
    contexts: list[ImageContext], cfg: GenerateConfig, model: str
) -> list[ChatRequest]:
    unknown = [t for t in cfg.tasks if t not in TASKS]
    if unknown or not cfg.tasks:
        raise ConfigError(
            f"--tasks: unknown task {unknown[0] if unknown else '(none)'}: choose from {', '.join(TASKS)}"
        )
    prompts = load_prompts(cfg.format)
    return [
        build_request(
            ctx,
            task,
            model=model,
            prompts=prompts,
            seed=cfg.seed,
            fewshot=cfg.fewshot,
            temperature=cfg.temperature,
            max_tokens=cfg.max_tokens,
        )
        for ctx in contexts
        for task in TASKS
        if task in cfg.tasks
    ]


def run_generate(cfg: GenerateConfig) -> int:
    started = time.monotonic()
    backend = make_backend(cfg.teacher, **cfg.backend_options())
    log.info("teacher: %s", backend.describe())
    contexts = load_source(cfg, cfg.seed)
    requests = build_requests(contexts, cfg, backend.model)
    prices = PriceTable.load(cfg.prices)
    price = prices.for_backend(backend)
    if not backend.free or cfg.dry_run:
        expected = expected_output_tokens()
        est = estimate(
            requests, backend.model or "gpt-4o", price, lambda r: expected[r.meta["task"]]
        )
        log.info("%d images x %d tasks; estimate before the run:", len(contexts), len(cfg.tasks))
        for line in est.lines():
            log.info("  %s", line)
        if cfg.dry_run:
            print("\n".join(est.lines()))
            return EXIT_OK

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    failed_path = out / "failed.jsonl"
    failed_path.unlink(missing_ok=True)

    def on_result(request: ChatRequest, result: Result) -> None:
        if result.kind == "failed":  # persisted at once, like every success is in the cache
            append_jsonl(
                failed_path,
                {"id": request.id, "image": request.meta["image"], "reason": result.error},
            )

    with cfg.open_runner(backend, out / "cache.sqlite", "teacher", prices) as runner:
        results = runner.run(requests, on_result=on_result)

    by_task: dict[str, list[Sample]] = {t: [] for t in cfg.tasks}
    turns: Counter[str] = Counter()
    filtered: Counter[str] = Counter()
    for request, result in zip(requests, results, strict=True):
        if result.completion is None:
            continue
        assembly = assemble(request, result.completion, split_conversations=cfg.split_conversations)
        task = request.meta["task"]
        by_task[task] += assembly.samples
        turns[task] += assembly.turns
        filtered.update(assembly.filtered)
    files = write_dataset(out, by_task, cfg.tasks)

    s = runner.stats
    budget_stopped = s.skipped_budget > 0
    stats = {
        "llava_pose_version": __version__,
        "complete": not budget_stopped and s.failed == 0,
        "teacher": backend.spec,
        "format": cfg.format,
        "fewshot": cfg.fewshot,
        "seed": cfg.seed,
        "source": cfg.contexts or cfg.coco or "bundled sample",
        "split": cfg.split,
        "images": len(contexts),
        "requests": {
            "total": s.requests,
            "cached": s.cached,
            "called": s.called,
            "failed": s.failed,
            "skipped_budget": s.skipped_budget,
            "retries": s.retries,
        },
        "samples": {
            **{t: len(by_task[t]) for t in cfg.tasks},
            "all": sum(len(v) for v in by_task.values()),
        },
        "turns": {t: turns[t] for t in cfg.tasks},
        "filtered": {name: filtered[name] for name in sorted(filtered)},
        "tokens": {"input": s.input_tokens, "output": s.output_tokens},
        "cost_usd": {
            "this_run": round(s.cost, 4),
            "from_cache": round(s.cached_cost, 4),
            "priced": not s.unpriced,
        },
        "elapsed_s": round(time.monotonic() - started, 2),
        "files": files,
    }
    write_json(out / "stats.json", stats)
    log.info(
        "wrote %d samples (%s) to %s; cost this run $%.4f; %d failed",
        stats["samples"]["all"],
        ", ".join(f"{t} {len(by_task[t])}" for t in cfg.tasks),
        out,
        s.cost,
        s.failed,
    )
    if budget_stopped:
        log.warning(
            "budget reached: %d requests not sent. Rerun with a higher --max-cost to continue; "
            "finished calls come from the cache.",
            s.skipped_budget,
        )
        return EXIT_BUDGET
    if s.failed:
        log.warning("%d requests failed permanently: see %s", s.failed, failed_path)
        return EXIT_SOME_FAILED
    return EXIT_OK
