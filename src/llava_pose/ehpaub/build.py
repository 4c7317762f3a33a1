"""`llava-pose bench build`: E-HPAUB, reproducibly (paper section 5.2).

N human-centric images of a COCO split, picked with a fixed seed; for each image one question
of each type, written with the data pipeline's own prompts and teacher (Tables 1-4), and the
teacher's reply as the reference answer:

* conversation (``conv``): the teacher's conversation reply is parsed into Q/A pairs, the
  quality filters drop bad pairs, and one remaining pair is chosen by a hash of (seed, image id);
* detailed description (``detail``): the question is the image's Table 4 instruction (chosen
  from (seed, image id) as in `generate`), the answer the teacher's description;
* complex reasoning (``complex``): the teacher's generated question and its answer.

Which images: the seeded, prefix-stable order of `coco.select_images` over the images that
pass a stricter human-centric rule than `generate`'s: at least ``--min-persons`` (1) persons
each with at least ``--min-keypoints`` (10 of 17) labelled keypoints *and* a box covering at
least ``--min-person-area`` (5%) of the image. A benchmark about poses needs a person whose pose
can be seen, not a few labelled points on a figure in the distance.

A reply that cannot be used (failed call, cut at max tokens, no Q/A structure, every pair
dropped by the filters) is asked again with a seed derived from (seed, image, task, attempt),
up to ``--max-attempts`` (3) asks in all. If one of an image's three questions still fails,
the whole image is dropped (every image keeps all three types) and the next image in the seeded
order takes its place. Every rejected reply is listed with its reason in ``rejected.jsonl``, and
the manifest counts them. Calls go through the shared runner and cache: a rerun pays for nothing
twice and, with the same cache, writes the same files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from .. import __version__
from ..coco import filter_rule, select_images
from ..config import option
from ..context import FORMATS
from ..dataset import IMAGE_TOKEN, assemble
from ..errors import ConfigError
from ..generate import (
    SourceOptions,
    TeacherImageOptions,
    TeacherImages,
    check_teacher_image,
    expected_output_tokens,
    fit_context_window,
    load_source,
    pose_filter_on,
    teacher_images,
)
from ..io import FileSet, write_jsonl
from ..llm import check_role
from ..llm.pricing import PriceTable
from ..llm.results import Result
from ..llm.runner import ModelOptions
from ..lock import hold
from ..prompts import build_request, load_prompts
from ..records import ChatRequest, ImageContext, PromptSet, derived_seed
from ..stage import make_stage
from ..tasks import TASK_TYPES, TASKS, task_type
from ..teachers import make_teacher
from .files import (
    CONTEXT_FILE,
    MANIFEST_FILE,
    QUESTIONS_FILE,
    REFERENCE_FILE,
    context_line,
)

log = logging.getLogger("llava_pose")

REJECTED_FILE = "rejected.jsonl"
BENCH_MIN_KEYPOINTS = 10
BENCH_MIN_PERSON_AREA = 0.05


@dataclass
class BuildConfig(SourceOptions, ModelOptions, TeacherImageOptions):
    """Options of `llava-pose bench build`."""

    out: str = option(
        "ehpaub",
        "output folder: questions.jsonl, answers_ref.jsonl, context.jsonl, manifest.json, "
        "rejected.jsonl, cache",
        path="dir",
    )
    teacher: str = option(
        "openai:gpt-4o",
        "teacher that writes questions and reference answers: openai:MODEL, anthropic:MODEL, rules",
        short="-t",
    )
    images: int = option(  # here --images is the size; the folder source is --image-folder
        90,
        "images in the benchmark; each gives one question of each type",
        at_least=1,
        hint="here --images is the benchmark's size; a folder of images is --image-folder DIR",
    )
    image_folder: str | None = option(
        None,
        "a folder of images (or a list file) instead of --coco: people and keypoints estimated "
        "by --pose (the --images of the other commands; here --images is the benchmark's size)",
        metavar="DIR",
    )
    seed: int = option(
        0, "seed of the image order, the Table 4 instruction, the conversation pair and the teacher"
    )
    split: str = option(
        "val2017",
        "COCO split to draw images from (val2017: disjoint from train2017, which the data is "
        "made of; the paper used val2014, most of whose images are in train2017)",
    )
    min_keypoints: int = option(
        BENCH_MIN_KEYPOINTS,
        "an image qualifies if a person has at least this many labelled keypoints ...",
        at_least=0,
        at_most=17,
    )
    min_person_area: float = option(
        BENCH_MIN_PERSON_AREA,
        "... and that person's box covers at least this fraction of the image",
        at_least=0,
        at_most=1,
    )
    format: str = option(
        "paper", "prompt format: paper (Tables 1-4 exactly) or compact", choices=FORMATS
    )
    fewshot: bool = option(False, "put worked examples before each teacher query")
    cues: bool = option(False, "give the teacher each person's pose facts in words (see generate)")
    pose_filter: bool | None = option(
        None,
        "re-ask replies whose pose claims the keypoints contradict (default: on for LLM "
        "teachers, off for rules)",
    )
    temperature: float | None = option(
        None, "teacher temperature (default: the provider's); re-asks need it above 0 to differ"
    )
    max_tokens: int = option(
        1024, "teacher max completion tokens; cut replies are re-asked", at_least=1
    )
    context_window: int | None = option(
        None,
        "teacher's context window in tokens; an image whose prompt + --max-tokens passes it is "
        "not drawn (default: llava_pose/data/models.yaml, 128000 for unknown models)",
        at_least=1,
    )
    max_attempts: int = option(
        3,
        "asks per image and question type before the image is replaced by the next one",
        at_least=1,
    )
    dry_run: bool = option(False, "print requests, tokens and cost, and call nothing")
    # Not for the benchmark: its size is --images, and it is human-centric by definition.
    max_images: int | None = option(None, "not used: the benchmark's size is --images", cli=False)
    all_images: bool = option(False, "not used: the benchmark is human-centric", cli=False)

    def folder_source(self) -> str | None:
        return self.image_folder


# -- pure: selection, requests, replies -------------------------------------------------------


def box_area(box: tuple[float, float, float, float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def qualifies(ctx: ImageContext, min_keypoints: int, min_persons: int, min_area: float) -> bool:
    """The benchmark's human-centric rule (see the module docstring)."""
    clear = sum(
        1 for p in ctx.persons if p.num_labelled >= min_keypoints and box_area(p.box) >= min_area
    )
    return clear >= min_persons


def selection_rule(cfg: BuildConfig) -> str:
    return (
        filter_rule(cfg.min_keypoints, cfg.min_persons)
        + f", each box >= {cfg.min_person_area:.0%} of the image"
    )


def teacher_request(
    ctx: ImageContext,
    task: str,
    attempt: int,
    cfg: BuildConfig,
    model: str,
    prompts: PromptSet,
    images: TeacherImages | None = None,
) -> ChatRequest:
    """The pipeline's request (with its image under --teacher-image); a re-ask changes only
    the sampling seed (and the id)."""
    request = build_request(
        ctx,
        task,
        model=model,
        prompts=prompts,
        seed=cfg.seed,
        fewshot=cfg.fewshot,
        temperature=cfg.temperature,
        max_tokens=cfg.max_tokens,
    )
    if images is not None:
        request = images.attach(request)
    if attempt == 0:
        return request
    return msgspec.structs.replace(
        request,
        id=f"{request.id}-retry{attempt}",
        seed=derived_seed(cfg.seed, ctx.image_id, task, attempt),
        meta={**request.meta, "attempt": attempt},
    )


@dataclass(frozen=True)
class Item:
    """One benchmark question made from one teacher reply."""

    question: str
    answer: str


def extract(
    request: ChatRequest, result: Result, seed: int, check_poses: bool = False
) -> tuple[Item | None, str, Counter[str]]:
    """(item, reason, filtered): the question and reference answer in a teacher reply, or why
    there is none. Parsing and filtering are the data pipeline's (`dataset.assemble`)."""
    if result.completion is None:
        return None, f"call failed: {result.error}", Counter()
    assembly = assemble(request, result.completion, check_poses=check_poses)
    if not assembly.samples:
        reason = ", ".join(sorted(assembly.filtered)) or "no usable question/answer"
        return None, f"unusable reply ({reason})", assembly.filtered
    turns = assembly.samples[0].conversations
    pairs = [
        (turns[i].value.removeprefix(IMAGE_TOKEN + "\n"), turns[i + 1].value)
        for i in range(0, len(turns) - 1, 2)
    ]
    spec = task_type(request.meta["task"])
    if spec.multi_turn:  # one pair of the conversation, drawn with the seed
        rng = random.Random(derived_seed(seed, request.meta["image_id"], f"{spec.name}-pair"))
        question, answer = pairs[rng.randrange(len(pairs))]
    else:
        question, answer = pairs[0]
    return Item(question.strip(), answer.strip()), "", assembly.filtered


# -- the run ----------------------------------------------------------------------------------


@dataclass
class _Image:
    ctx: ImageContext
    rank: int  # position in the seeded order
    items: dict[str, Item] = dataclasses.field(default_factory=dict)
    meta: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    dropped: bool = False


def _prompts_digest(prompts: PromptSet) -> str:
    payload = json.dumps(
        [prompts.format, prompts.system, prompts.conversation_request, prompts.detail_instructions],
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def run_build(cfg: BuildConfig) -> int:
    check_role(cfg.teacher, "teacher", "--teacher")
    if not cfg.coco and not cfg.contexts and not cfg.image_folder:
        raise ConfigError(
            "--coco: required (the COCO root holding annotations/ and the image folders), "
            "or --contexts FILE from `llava-pose prepare`, or --image-folder DIR"
        )
    if cfg.split.startswith("val2014"):
        log.warning(
            "val2014: about 35k of its 40.5k images are in train2017, so a model trained on "
            "data generated from train2017 has seen most of them; --split val2017 is disjoint"
        )
    teacher = make_teacher(
        cfg.teacher,
        dry_run=cfg.dry_run,
        prompt={"format": cfg.format, "fewshot": cfg.fewshot, "cues": cfg.cues},
        **cfg.backend_options(),
    )
    check_teacher_image(cfg, teacher, previewing=False)
    prices = PriceTable.load(cfg.prices)
    stage = make_stage("bench build", teacher, prices, cfg, Path(cfg.out) / "cache.sqlite")
    log.info("teacher: %s", teacher.describe())
    prompts = load_prompts(cfg.format, cfg.cues, cfg.teacher_image)
    contexts = load_source(cfg, cfg.seed)
    eligible = [
        c for c in contexts if qualifies(c, cfg.min_keypoints, cfg.min_persons, cfg.min_person_area)
    ]
    # Every image that may be drawn (a replacement too) is checked before the first call.
    pictures = teacher_images(cfg, cfg, eligible)
    # An image needs all three questions: one prompt too long for the teacher leaves it out.
    _, too_long = fit_context_window(
        [
            teacher_request(c, t, 0, cfg, teacher.model, prompts, pictures)
            for c in eligible
            for t in TASKS
        ],
        teacher,
        cfg.context_window,
    )
    skipped = set(too_long.images())
    eligible = [c for c in eligible if c.image_id not in skipped]
    order = select_images(eligible, len(eligible), cfg.seed)
    log.info(
        "%d of %d images pass the benchmark rule (%s)",
        len(order),
        len(contexts),
        selection_rule(cfg),
    )
    if len(order) < cfg.images:
        log.warning("only %d images qualify, fewer than --images %d", len(order), cfg.images)

    out = Path(cfg.out)
    if cfg.dry_run:
        expected = expected_output_tokens()
        requests = [
            teacher_request(c, t, 0, cfg, teacher.model, prompts, pictures)
            for c in order[: cfg.images]
            for t in TASKS
        ]
        return stage.dry_run(requests, lambda r: expected[r.meta["task"]], too_long.note)

    hold(out, "bench build", folder=True)
    out.mkdir(parents=True, exist_ok=True)
    active = [_Image(c, i) for i, c in enumerate(order[: cfg.images])]
    next_rank = len(active)
    images = list(active)
    rejected: list[dict[str, Any]] = []
    filtered: Counter[str] = Counter()
    dropped: list[dict[str, Any]] = []
    check_poses = pose_filter_on(cfg.pose_filter, teacher)

    def ask(item: tuple[_Image, str, int]) -> ChatRequest:
        im, task, attempt = item
        return teacher_request(im.ctx, task, attempt, cfg, teacher.model, prompts, pictures)

    def settle(
        item: tuple[_Image, str, int], request: ChatRequest, result: Result
    ) -> list[tuple[_Image, str, int]]:
        """Keep a usable reply; re-ask an unusable one with the next seed; after
        --max-attempts drop the image and bring in the next one of the seeded order."""
        nonlocal next_rank
        im, task, attempt = item
        if result.kind == "budget" or im.dropped:
            return []
        found, reason, counts = extract(request, result, cfg.seed, check_poses)
        filtered.update(counts)
        if found is not None:
            im.items[task] = found
            c = result.completion
            assert c is not None
            im.meta[task] = {
                "attempt": attempt,
                "seed": request.seed,
                "finish_reason": c.finish_reason,
                "input_tokens": c.input_tokens,
                "output_tokens": c.output_tokens,
                **(
                    {"instruction": request.meta["instruction"]}
                    if task_type(task).instructed
                    else {}
                ),
            }
            return []
        rejected.append(
            {"image_id": im.ctx.image_id, "task": task, "attempt": attempt, "reason": reason}
        )
        if attempt + 1 < cfg.max_attempts:
            return [(im, task, attempt + 1)]
        im.dropped = True
        dropped.append({"image_id": im.ctx.image_id, "task": task, "reason": reason})
        if next_rank >= len(order):
            log.warning("image %d dropped and no image is left to take its place", im.ctx.image_id)
            return []
        new = _Image(order[next_rank], next_rank)
        next_rank += 1
        images.append(new)
        log.info(
            "image %d dropped (%s failed %d times): image %d takes its place",
            im.ctx.image_id,
            task,
            cfg.max_attempts,
            new.ctx.image_id,
        )
        return [(new, t, 0) for t in TASKS]

    with stage.open(teacher.open(cfg, out / "cache.sqlite", "teacher", prices)):
        stage.ask([(im, t, 0) for im in active for t in TASKS], ask, settle)

    write_jsonl(out / REJECTED_FILE, rejected)
    s = stage.stats
    if s.skipped_budget or stage.waiting:
        log.warning("the benchmark is not written until every question has its reply")
        return stage.exit_code()
    built = sorted((im for im in images if not im.dropped), key=lambda im: im.rank)
    built = [im for im in built if len(im.items) == len(TASKS)][: cfg.images]
    pending = {"benchmark": "E-HPAUB", "complete": False, "writing": "files being put in place"}
    outputs = FileSet(out, MANIFEST_FILE, pending)
    files = _write_bench(outputs, built, teacher.spec)
    complete = len(built) == cfg.images
    manifest = {
        "benchmark": "E-HPAUB",
        "llava_pose_version": __version__,
        "complete": complete,
        "images": len(built),
        "images_requested": cfg.images,
        "questions": len(built) * len(TASKS),
        "categories": [t.category for t in TASK_TYPES],
        "seed": cfg.seed,
        "split": cfg.split,
        "image_root": str(Path(cfg.coco).resolve()) if cfg.coco else None,
        "source": {"coco": cfg.coco, "contexts": cfg.contexts},
        "selection": {
            "rule": selection_rule(cfg),
            "min_keypoints": cfg.min_keypoints,
            "min_persons": cfg.min_persons,
            "min_person_area": cfg.min_person_area,
            "images_loaded": len(contexts),
            "images_eligible": len(order),
            "too_long_for_context_window": too_long.stats(),
            "order": "coco.select_images (blake2b of seed:image_id), prefix-stable",
        },
        "teacher": teacher.spec,
        "prompts": {
            "format": cfg.format,
            "fewshot": cfg.fewshot,
            "sha256": _prompts_digest(prompts),
            "teacher_image": pictures.settings() if pictures is not None else False,
        },
        "temperature": cfg.temperature,
        "max_tokens": cfg.max_tokens,
        "max_attempts": cfg.max_attempts,
        "rejected_replies": len(rejected),
        "dropped_images": dropped,
        "filtered": dict(sorted(filtered.items())),
        **{k: v for k, v in stage.run_stats().items() if k != "llava_pose_version"},
        "files": files,
    }
    try:
        outputs.json(MANIFEST_FILE, manifest)
        outputs.commit()
    finally:
        outputs.discard()
    log.info(
        "wrote %d images x %d = %d questions to %s (%d replies re-asked, %d images replaced); "
        "cost this run $%.4f",
        len(built),
        len(TASK_TYPES),
        len(built) * len(TASK_TYPES),
        out,
        len(rejected),
        len(dropped),
        s.cost,
    )
    return stage.exit_code(
        0 if complete else cfg.images - len(built),
        f"only {len(built)} of {cfg.images} images could be built: manifest.json says "
        "complete: false",
    )


def _write_bench(out: FileSet, built: list[_Image], teacher: str) -> dict[str, str]:
    """Questions, reference answers and contexts into the output set; their sha256s."""
    questions: list[dict[str, Any]] = []
    answers: list[dict[str, Any]] = []
    contexts: list[dict[str, Any]] = []
    for i, im in enumerate(built):
        contexts.append(context_line(im.ctx, im.ctx.image))
        for k, spec in enumerate(TASK_TYPES):
            task = spec.name
            qid = len(TASK_TYPES) * i + k
            category = spec.category
            item = im.items[task]
            questions.append(
                {
                    "question_id": qid,
                    "image": im.ctx.image,
                    "text": item.question,
                    "category": category,
                }
            )
            answers.append(
                {
                    "question_id": qid,
                    "text": item.answer,
                    "category": category,
                    "answer_id": f"ref-{qid}",
                    "model_id": teacher,
                    "metadata": {"image_id": im.ctx.image_id, "task": task, **im.meta[task]},
                }
            )
    out.jsonl(QUESTIONS_FILE, questions)
    out.jsonl(REFERENCE_FILE, answers)
    out.jsonl(CONTEXT_FILE, contexts)
    return {name: out.sha256[name] for name in (QUESTIONS_FILE, REFERENCE_FILE, CONTEXT_FILE)}
