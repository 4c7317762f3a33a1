"""The data pipeline, wired: COCO -> contexts -> prompts -> teacher (runner) -> parsed samples ->
LLaVA dataset files.

A run is resumable by construction: every finished teacher call is in the SQLite cache before
anything else happens to it, and the dataset files are rebuilt from the cache and the new
calls at the end, so rerunning the same command after a crash or Ctrl-C pays for nothing twice
and writes no duplicate.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec
import yaml

from . import __version__
from .config import option
from .context import FORMATS
from .dataset import Assembly, assemble, write_dataset, write_extras
from .errors import ConfigError, InputError
from .images import size_of
from .io import append_jsonl, file_set
from .lifetime import keep_until_exit
from .llm.image_tokens import DETAILS, check_detail
from .llm.pricing import (
    Estimate,
    PriceTable,
    context_window,
    load_tokenizer,
    over_context,
    prompt_chars,
)
from .llm.results import Result
from .llm.runner import ModelOptions
from .llm.usage import request_image_tokens
from .lock import hold
from .paths import join_inside
from .prompts import Built, load_prompts, with_image
from .prompts import build_requests as prompts_build_requests
from .records import ChatRequest, ImageContext, Sample
from .sources import ImageSource, SourceOptions, image_root, load_source, source_name
from .stage import Stage, make_stage
from .tasks import TASKS
from .teachers import Teacher, make_teacher

log = logging.getLogger("llava_pose")


@dataclass
class TeacherImageOptions:
    """Whether the teacher sees the picture: an ablation switch. The paper's teacher read
    text only. Shared by generate and bench build."""

    teacher_image: bool = option(
        False,
        "send the teacher the image itself with its text (captions, boxes, keypoints) and tell "
        "it so in the system prompt; off, requests are as the paper's text-only teacher's",
    )
    teacher_image_detail: str | None = option(
        None,
        "with --teacher-image, openai: teachers only: the image's `detail`; default: not sent, "
        "the provider's own auto (see Billed as the providers bill)",
        choices=DETAILS,
    )
    teacher_image_max_side: int | None = option(
        None,
        "with --teacher-image: scale the image down to this longest side before sending "
        "(default: the file as it is; COCO's are at most 640 px)",
        at_least=32,
    )


@dataclass
class GenerateConfig(SourceOptions, ModelOptions, TeacherImageOptions):
    """Options of `llava-pose generate`."""

    out: str = option(
        "out",
        "output folder: one JSON per task, the merged file, stats.json, failed.jsonl, cache",
        path="dir",
    )
    teacher: str = option(
        "rules",
        "teacher model: openai:MODEL, anthropic:MODEL, or rules (built-in, offline)",
        short="-t",
    )
    tasks: list[str] = option(
        list(TASKS),
        "task types to generate, comma-separated",
        choices=TASKS,
    )
    format: str = option(
        "paper",
        "prompt format: paper (Tables 1-4 exactly) or compact (fewer tokens)",
        choices=FORMATS,
    )
    fewshot: bool = option(
        False, "put worked keypoint-bearing examples before each query to steady the format"
    )
    pose_filter: bool | None = option(
        None,
        "check every answer's pose claims against the keypoints and drop the pairs they "
        "contradict (filter contradicts_pose; default: on for LLM teachers, off for rules)",
    )
    cues: bool = option(
        False,
        "after each person's keypoints, the pose facts computed from them in plain words "
        "(posture, limbs with joint angles, facing, order, hidden parts); an ablation switch",
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
        1024,
        "teacher max completion tokens; replies cut here are filtered as truncated",
        at_least=1,
    )
    context_window: int | None = option(
        None,
        "teacher's context window in tokens; requests whose prompt + --max-tokens pass it are "
        "skipped (default: llava_pose/data/models.yaml, 128000 for unknown models)",
        at_least=1,
    )
    dry_run: bool = option(False, "print requests, tokens and cost, and call nothing")
    show: int = option(
        0,
        "with --dry-run: first print this many requests exactly as they would be sent (the "
        "API's JSON body); with the offline teacher, what an LLM teacher would read "
        "(as openai:gpt-4o), --format, --fewshot and --cues included",
        at_least=0,
    )


@functools.cache
def expected_output_tokens() -> dict[str, int]:
    """Typical teacher reply length per task, for cost estimates (package data)."""
    text = resources.files("llava_pose").joinpath("data/estimates.yaml").read_text("utf-8")
    return yaml.safe_load(text)["output_tokens"]


# -- the teacher sees the picture (--teacher-image) ------------------------------------------


@dataclass(frozen=True)
class TeacherImages:
    """The image file of each image id, checked, and how they are sent."""

    files: dict[int, str]
    detail: str | None = None
    max_side: int | None = None

    def attach(self, request: ChatRequest) -> ChatRequest:
        """`request` with its image (`prompts.with_image`)."""
        return with_image(
            request,
            self.files[request.meta["image_id"]],
            detail=self.detail,
            max_side=self.max_side,
        )

    def settings(self) -> dict[str, object]:
        """How the images went, for stats.json and the manifest."""
        return {"detail": self.detail, "max_side": self.max_side}


def check_teacher_image(cfg: TeacherImageOptions, teacher: Teacher, previewing: bool) -> None:
    """Refuse what --teacher-image cannot mean: its settings without it, an offline teacher
    (it reads no prompt, so an image would be sent nowhere; ``--dry-run --show`` previews an
    LLM teacher's and takes it), `detail` for a provider without one."""
    if not cfg.teacher_image:
        for name in ("detail", "max_side"):
            if getattr(cfg, f"teacher_image_{name}") is not None:
                flag = name.replace("_", "-")
                raise ConfigError(f"--teacher-image-{flag}: only with --teacher-image")
        return
    if not teacher.reads_prompt and not previewing:
        raise ConfigError(
            "--teacher-image: the offline teacher (rules) reads no prompt; drop it or use an "
            "LLM teacher (with --dry-run --show N, see what one would be sent)"
        )
    provider = getattr(getattr(teacher, "backend", None), "provider", "openai")
    check_detail("--teacher-image-detail", provider, cfg.teacher_image_detail)


def teacher_image_root(cfg: ImageSource) -> Path:
    """The folder the contexts' image paths are relative to (`sources.image_root`: --images,
    --coco or the bundled sample; with --contexts, whichever of them is given)."""
    root = image_root(cfg)
    if root is None:
        raise ConfigError(
            "--teacher-image: with --contexts, say where the image files are: --coco ROOT, "
            "or the folder of images the contexts were prepared from"
        )
    return root


def teacher_images(
    cfg: TeacherImageOptions, source: ImageSource, contexts: Sequence[ImageContext]
) -> TeacherImages | None:
    """Each context's image file under the root (`paths.join_inside`: a path from data never
    leads out of it), all checked up front to be images of a sane size (`images.size_of`), so a
    bad one is one line before any call, not a failure among paid ones. None when off."""
    if not cfg.teacher_image:
        return None
    root = teacher_image_root(source)
    where = source.contexts or root
    files: dict[int, str] = {}
    for ctx in contexts:
        if ctx.image_id in files:
            continue
        field = f"image_id {ctx.image_id}: image"
        path = join_inside(root, ctx.image, source=where, field=field)
        if not path.is_file():
            raise InputError(
                where,
                f"image file not found: {path}; --teacher-image sends the image files "
                f"(are they under {root}?)",
                field=field,
            )
        try:
            size_of(path)  # the header, checked; remembered for the estimate and the reservation
        except InputError as e:
            raise InputError(where, f"{path}: {e.problem}", field=field) from None
        files[ctx.image_id] = str(path)
    log.info("the teacher sees each image too (--teacher-image, under %s)", root)
    return TeacherImages(files, cfg.teacher_image_detail, cfg.teacher_image_max_side)


def build_requests(
    contexts: list[ImageContext],
    cfg: GenerateConfig,
    model: str,
    meanwhile: Callable[[], object] | None = None,
    images: TeacherImages | None = None,
) -> Built:
    """The teacher requests and their characters (`prompts.build_requests`), each with its
    image under --teacher-image (the characters are the text's: images are counted apart)."""
    built = prompts_build_requests(
        contexts,
        cfg.tasks,
        model=model,
        prompts=load_prompts(cfg.format, cfg.cues, cfg.teacher_image),
        seed=cfg.seed,
        fewshot=cfg.fewshot,
        temperature=cfg.temperature,
        max_tokens=cfg.max_tokens,
        meanwhile=meanwhile,
    )
    if images is None:
        return built
    return Built([images.attach(r) for r in built.requests], built.chars)


def warm(teacher: Teacher, cfg: GenerateConfig) -> None:
    """What this process needs next, done while a second one renders the prompts: the SDK for
    the first call, and the tokenizer where counting comes first (a dry run's estimate,
    reservations for --max-cost, --tpm or --batch). An estimate forked later inherits it."""
    if not cfg.dry_run:
        teacher.warm()
    counts = cfg.max_cost is not None or cfg.tpm is not None or cfg.batch
    if cfg.dry_run or (counts and not teacher.free):
        load_tokenizer(teacher.model or "gpt-4o")


@dataclass
class TooLong:
    """Requests left out because prompt + max tokens pass the teacher's context window."""

    window: int | None
    skipped: list[tuple[ChatRequest, int]]  # (request, its tokens)

    def images(self) -> list[int]:
        return sorted({r.meta["image_id"] for r, _ in self.skipped})

    def note(self, est: Estimate) -> Estimate:
        """`est` saying what was left out (the estimate counts only what is sent)."""
        est.too_long, est.too_long_images = len(self.skipped), len(self.images())
        est.context_window = self.window
        return est

    def stats(self) -> dict[str, object]:
        return {
            "tokens": self.window,
            "skipped_requests": len(self.skipped),
            "skipped_images": self.images(),
        }


def fit_context_window(
    requests: list[ChatRequest],
    teacher: Teacher,
    window: int | None = None,
    chars: list[int] | None = None,
) -> tuple[list[ChatRequest], TooLong]:
    """The requests that fit the teacher's context window, and those left out with a warning.

    One that does not fit cannot be answered: an absurd image (10,000 captions: a 661k-token
    prompt) must be said and counted, not planned and sent in silence. The offline teacher
    reads no prompt and has no window. `window` (``--context-window``) overrides the table;
    `chars` are the requests' `prompt_chars`, when known.
    """
    if not teacher.reads_prompt:
        return requests, TooLong(None, [])
    window = window or context_window(teacher.model)
    kept: list[ChatRequest] = []
    skipped: list[tuple[ChatRequest, int]] = []
    sizes = chars if chars is not None else prompt_chars(requests)
    model = teacher.model or "gpt-4o"
    provider = getattr(getattr(teacher, "backend", None), "provider", "openai")
    for request, size in zip(requests, sizes, strict=True):
        # an image (--teacher-image) takes its tokens by the provider's rule out of the window
        images = request_image_tokens(request, provider, model) if request.images else 0
        tokens = over_context(request, window - images, model, chars=size)
        if tokens is None:
            kept.append(request)
        else:
            skipped.append((request, tokens + images))
    too_long = TooLong(window, skipped)
    if skipped:
        first, tokens = skipped[0]
        log.warning(
            "skipped %d requests of %d images: prompt + max tokens pass the context window of "
            "%s (%s tokens), e.g. %s needs %s; --context-window N if the model takes more",
            len(skipped),
            len(too_long.images()),
            teacher.spec,
            f"{window:,}",
            first.id,
            f"{tokens:,}",
        )
    return kept, too_long


def pose_filter_on(asked: bool | None, teacher: Teacher) -> bool:
    """`--pose-filter` as given, else on for an LLM teacher: the offline teacher writes from
    the same facts the checker reads, so checking it only costs time."""
    return asked if asked is not None else teacher.reads_prompt


def run_generate(cfg: GenerateConfig) -> int:
    started = time.monotonic()
    if cfg.show and not cfg.dry_run:
        raise ConfigError("--show: only with --dry-run (it prints requests instead of sending)")
    previewing = bool(cfg.show)  # prompt options show what an LLM teacher would read
    teacher = make_teacher(
        cfg.teacher,
        dry_run=cfg.dry_run,
        prompt=None
        if previewing
        else {"format": cfg.format, "fewshot": cfg.fewshot, "cues": cfg.cues},
        **cfg.backend_options(),
    )
    check_teacher_image(cfg, teacher, previewing)
    prices = PriceTable.load(cfg.prices)
    stage = make_stage("generate", teacher, prices, cfg, Path(cfg.out) / "cache.sqlite")
    log.info("teacher: %s", teacher.describe())
    contexts = load_source(cfg, cfg.seed)
    images = teacher_images(cfg, cfg, contexts)
    built, chars = build_requests(
        contexts, cfg, teacher.model, functools.partial(warm, teacher, cfg), images
    )
    requests, too_long = fit_context_window(built, teacher, cfg.context_window, chars)
    if too_long.skipped:
        chars = prompt_chars(requests)
    out = Path(cfg.out)
    if not teacher.free or cfg.dry_run:
        expected = expected_output_tokens()

        def tokens(r: ChatRequest) -> int:
            return expected[r.meta["task"]]

        if cfg.dry_run:  # the estimate is the output: said once, on stdout
            keep_until_exit(contexts, requests)
            if cfg.show:
                show_requests(requests[: cfg.show], teacher)
            return stage.dry_run(requests, tokens, too_long.note, chars)
        log.info("%d images x %d tasks", len(contexts), len(cfg.tasks))
        stage.log_estimate(requests, tokens, too_long.note, chars)

    hold(out, "generate", folder=True)
    out.mkdir(parents=True, exist_ok=True)
    failed_path = out / "failed.jsonl"
    failed_path.unlink(missing_ok=True)

    check_poses = pose_filter_on(cfg.pose_filter, teacher)
    assemblies: dict[str, Assembly] = {}

    def on_result(request: ChatRequest, result: Result) -> None:
        """Each reply is assembled as it arrives (while other calls are in flight, not in a
        tail after the last one); a failure is persisted at once, like every success is in
        the cache."""
        if result.completion is not None:
            assemblies[request.id] = assemble(
                request,
                result.completion,
                split_conversations=cfg.split_conversations,
                check_poses=check_poses,
            )
        elif result.kind == "failed":
            append_jsonl(
                failed_path,
                {"id": request.id, "image": request.meta["image"], "reason": result.error},
            )

    with stage.open(teacher.open(cfg, out / "cache.sqlite", "teacher", prices)):
        stage.ask(requests, lambda r: r, on_result=on_result)
    if stage.waiting:  # the dataset is written once every batch is in, as an online run would
        return stage.exit_code()

    by_task: dict[str, list[Sample]] = {t: [] for t in cfg.tasks}
    turns: Counter[str] = Counter()
    filtered: Counter[str] = Counter()
    claims: Counter[str] = Counter()
    rejected: list[dict[str, Any]] = []
    claim_lines: list[dict[str, Any]] = []
    for request in requests:  # in request order: the files do not depend on arrival order
        assembly = assemblies.get(request.id)
        if assembly is None:
            continue
        task = request.meta["task"]
        by_task[task] += assembly.samples
        turns[task] += assembly.turns
        filtered.update(assembly.filtered)
        claims.update(assembly.claims)
        rejected += assembly.rejected
        claim_lines += assembly.claim_lines
    pending = {"complete": False, "writing": "this run's outputs are being put in place"}
    with file_set(out, "stats.json", pending) as outputs:
        files = write_dataset(outputs, by_task, cfg.tasks)
        files |= write_extras(outputs, rejected, claim_lines if check_poses else None)
        stats = _stats(cfg, stage, teacher, too_long, contexts, by_task, turns, filtered)
        stats |= {
            "teacher_image": images.settings() if images is not None else False,
            "pose_claims": {
                "checked": check_poses,
                **{v: claims[v] for v in ("supported", "contradicted", "unverifiable")},
            },
            "elapsed_s": round(time.monotonic() - started, 2),
            "files": files,
        }
        outputs.json("stats.json", stats)

    s = stage.stats
    log.info(
        "wrote %d samples (%s) to %s; cost this run $%.4f; %d failed",
        stats["samples"]["all"],
        ", ".join(f"{t} {len(by_task[t])}" for t in cfg.tasks),
        out,
        s.cost,
        s.failed,
    )
    keep_until_exit(contexts, requests, assemblies)
    return stage.exit_code(s.failed, f"{s.failed} requests failed permanently: see {failed_path}")


def show_requests(requests: Sequence[ChatRequest], teacher: Teacher) -> None:
    """Print `requests` as the teacher's API would receive them (``--dry-run --show N``): the
    JSON body of each call, with its id. The offline teacher reads no prompt: what an LLM
    teacher would be sent is shown, as openai:gpt-4o's."""
    backend = getattr(teacher, "backend", None)
    if backend is None:
        from .llm.openai_api import OpenAIBackend

        backend = OpenAIBackend("gpt-4o", need_key=False)
        print(
            "# the offline teacher (rules) reads no prompt: shown is what an LLM teacher "
            "would be sent (openai:gpt-4o)"
        )
    for k, request in enumerate(requests, 1):
        stand_ins = [f"<image {path}, sent as base64>" for path in request.images]
        print(f"# request {k} of {len(requests)}: {request.id} -> {backend.spec}")
        print(json.dumps(backend.request_body(request, stand_ins), indent=2, ensure_ascii=False))
    print()


def prompt_sha256(cfg: GenerateConfig) -> str:
    """sha256 of the prompt texts the run sent (system prompts, messages, Table 4 instructions,
    the worked examples under --fewshot): two datasets with one digest were asked alike, so a
    dataset card can say which prompts made it (None in stats.json for the offline teacher,
    which reads no prompt)."""
    prompts = load_prompts(cfg.format, cfg.cues, cfg.teacher_image)
    sent = dataclasses.replace(prompts, fewshot=prompts.fewshot if cfg.fewshot else {})
    return hashlib.sha256(msgspec.json.encode(sent, order="sorted")).hexdigest()


def _stats(
    cfg: GenerateConfig,
    stage: Stage,
    teacher: Teacher,
    too_long: TooLong,
    contexts: list[ImageContext],
    by_task: dict[str, list[Sample]],
    turns: Counter[str],
    filtered: Counter[str],
) -> dict[str, Any]:
    """``stats.json`` of a finished run (the caller adds what it counted while writing)."""
    s = stage.stats
    run = stage.run_stats()
    run["requests"]["skipped_context"] = len(too_long.skipped)
    return {
        "llava_pose_version": __version__,
        "complete": not s.skipped_budget and s.failed == 0,
        "teacher": teacher.spec,
        "format": cfg.format,
        "fewshot": cfg.fewshot,
        "prompt_sha256": prompt_sha256(cfg) if teacher.reads_prompt else None,
        "seed": cfg.seed,
        "source": source_name(cfg),
        "split": cfg.split,
        "images": len(contexts),
        "mode": run["mode"],
        "requests": run["requests"],
        "context_window": too_long.stats(),
        "samples": {
            **{t: len(by_task[t]) for t in cfg.tasks},
            "all": sum(len(v) for v in by_task.values()),
        },
        "turns": {t: turns[t] for t in cfg.tasks},
        "filtered": {name: filtered[name] for name in sorted(filtered)},
        "tokens": run["tokens"],
        "cost_usd": run["cost_usd"],
    }
