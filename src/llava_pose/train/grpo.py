"""`llava-pose train --method grpo`: reinforcement from verifiable pose rewards, on TRL's
`GRPOTrainer`.

The model (a base checkpoint, a preset or an SFT run) samples ``--num-generations`` answers
to each prompt; each answer is scored against the keypoints (`rewards`), and the answers
better than their group's mean are made more likely, with a KL term (``--beta``) to the
starting model. Two kinds of prompt, mixed in one run:

* PoseQA questions (``--poseqa DIR``, a folder of `poseqa build`), rewarded by exact match
  through PoseQA's strict parser;
* the detail and reasoning records of ``--data`` (LLaVA JSON, as `generate` writes them: ids
  ``{image_id}-detail``, ``{image_id}-reasoning``; conversation records are multi-turn and
  left out), their first question the prompt, rewarded by the pose claims `verify` finds in
  the answer, checked against the image's keypoints (``--contexts FILE`` or ``--split`` under
  ``--image-root``).

**Never the evaluation split.** A prompt whose image is in a folder named as one of COCO's
evaluation splits (``val2017``, ``val2014``, ``test2017``, ...) refuses the run, and so does a
prompt about any image of a benchmark given with ``--eval-bench DIR`` (PoseQA or E-HPAUB,
repeatable): images are compared by COCO image id (2014 and 2017 names alike) or, for other
images, by their path under the image root. The error names the count and one example.

The run is `trainer.py`'s: `start`, the arguments (before the weights, for ZeRO-3), the
weights with the paper's split, the recipe on top of the Trainer, OUTPUT/train_log.jsonl. Each
logged step holds TRL's metrics (``reward``, ``reward_std``, ``kl`` when ``--beta`` > 0,
``rewards/<function>/mean``, completion lengths) and ours: ``reward/<family>`` per PoseQA
category and free-text task, and ``claims/per_answer``, ``claims/contradicted_rate`` and
``claims/supported_rate`` of the free-text answers (`rewards`). The run saves the training
template as its chat template, as SFT does, so it is asked as it was trained.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..coco import image_id_of, load_split, match_context, read_contexts
from ..ehpaub.files import read_questions as read_bench_questions
from ..errors import ConfigError, InputError
from ..images import probe
from ..io import read_json, write_jsonl
from ..poseqa.build import MANIFEST_FILE, QUESTIONS_FILE
from ..poseqa.files import read_questions
from ..tasks import TASK_TYPES
from ..vlm.families import Family, presets
from ..vlm.images import load_image
from ..vlm.load import BASE_DIR
from .config import TrainConfig
from .data import IMAGE_TOKEN, load_records
from .rewards import REWARDS, PromptTask
from .sft import training_template
from .trainer import (
    BAD_FILE,
    BadDataError,
    attach_logging,
    blank_vision_inputs,
    build_args,
    common_args,
    finish,
    is_main_process,
    load_for_training,
    recipe_trainer,
    start,
    trainable_line,
)

log = logging.getLogger("llava_pose.train")

# COCO's evaluation splits, as folder names: a training prompt's image is never under one.
EVALUATION_SPLIT = re.compile(r"(?:val|test)20\d\d")
# The free-text task types, by the short id `generate` writes in record ids.
FREE_TEXT = {t.short: t.name for t in TASK_TYPES if not t.multi_turn}


@dataclass(frozen=True)
class Prompt:
    """One GRPO prompt: its question, its image (a path to open, and `image_name`: as its
    file names it, relative to the image root) and what its answers are scored against."""

    id: str
    source: str
    image: str
    image_name: str
    text: str
    task: PromptTask


# -- prompts ------------------------------------------------------------------------------------


def poseqa_prompts(folder: str, image_root: str | None) -> list[Prompt]:
    """The questions of a PoseQA folder as prompts; images under `image_root`, else under
    the root its manifest recorded."""
    path = Path(folder)
    if not (path / QUESTIONS_FILE).is_file():
        raise InputError(
            path, f"no {QUESTIONS_FILE}: not a PoseQA folder (`llava-pose poseqa build`)"
        )
    manifest = read_json(path / MANIFEST_FILE) if (path / MANIFEST_FILE).is_file() else {}
    if not isinstance(manifest, dict) or manifest.get("benchmark", "PoseQA") != "PoseQA":
        raise InputError(path / MANIFEST_FILE, "not a PoseQA manifest (--poseqa)")
    root = image_root or manifest.get("image_root")
    if not root:
        raise ConfigError(
            f"--poseqa {folder}: its manifest records no image root: give --image-root DIR"
        )
    prompts = []
    for q in read_questions(path / QUESTIONS_FILE):
        question = {
            "answer": q.answer, "answer_type": q.answer_type, "choices": q.choices, "text": q.text,
        }  # fmt: skip
        prompts.append(
            Prompt(
                id=q.question_id,
                source=str(path / QUESTIONS_FILE),
                image=str(Path(root) / q.image),
                image_name=q.image,
                text=q.text,
                task=PromptTask(q.category, question=question),
            )
        )
    return prompts


def _record_task(rid: str) -> str | None:
    """The free-text task a record id names (``397133-detail``, ``397133-reasoning#2``)."""
    base = rid.split("#", 1)[0]
    return FREE_TEXT.get(base.rsplit("-", 1)[-1]) if "-" in base else None


def _contexts(cfg: TrainConfig) -> list[Any]:
    if cfg.contexts:
        return read_contexts(cfg.contexts)
    if not cfg.image_root:
        raise ConfigError(
            "--method grpo with --data: the claims reward needs the images' keypoints: give "
            "--image-root (a COCO root, with --split) or --contexts FILE"
        )
    return load_split(cfg.image_root, cfg.split, human_only=False, check_images=False)


def free_text_prompts(cfg: TrainConfig) -> list[Prompt]:
    """The detail and reasoning records of --data as prompts, each with its image's context."""
    records, bad = load_records(cfg.data, cfg.image_root)
    if bad:
        raise InputError(
            bad[0].source, f"{bad[0].reason} ({len(bad)} bad record(s))", f"[{bad[0].index}]"
        )
    chosen = [(r, _record_task(r.id)) for r in records]
    chosen = [(r, task) for r, task in chosen if task is not None and r.image]
    skipped = len(records) - len(chosen)
    if not chosen:
        raise InputError(
            cfg.data[0],
            f"none of the {len(records)} records of --data is a detail or reasoning record with "
            "an image (ids {image_id}-detail or {image_id}-reasoning, as `generate` writes them)",
        )
    contexts = _contexts(cfg)
    by_path = {c.image: c for c in contexts}
    by_id = {c.image_id: c for c in contexts}
    prompts, without = [], 0
    for record, task in chosen:
        assert record.image is not None
        root = Path(cfg.image_root) if cfg.image_root else Path(record.source).resolve().parent
        name = Path(os.path.relpath(record.image, root.resolve())).as_posix()
        ctx = match_context(name, by_path, by_id)
        if ctx is None:
            without += 1
            continue
        text = record.turns[0][1].replace(IMAGE_TOKEN, "").strip()
        prompts.append(
            Prompt(
                record.id, record.source, record.image, name, text, PromptTask(task, context=ctx)
            )
        )
    if skipped or without:
        log.info(
            "--data: %d free-text prompts; %d records left out (conversations, no image), %d "
            "without keypoints in %s",
            len(prompts), skipped, without, cfg.contexts or f"{cfg.split} of {cfg.image_root}",
        )  # fmt: skip
    if not prompts:
        raise InputError(
            cfg.data[0],
            f"none of its detail or reasoning records has an image in "
            f"{cfg.contexts or f'split {cfg.split} of {cfg.image_root}'}: pass the --split its "
            "images come from (or --contexts)",
        )
    return prompts


# -- never the evaluation split -----------------------------------------------------------------


def image_key(image: str) -> str:
    """An image's identity across benchmarks: its COCO id (2014 and 2017 names alike), else
    its path under the image root."""
    path = PurePosixPath(image.replace("\\", "/"))
    image_id = image_id_of(path.name)
    return f"coco:{image_id}" if image_id is not None else f"path:{os.path.normpath(path)}"


def check_training_split(prompts: list[Prompt]) -> None:
    """Refuse a prompt whose image lies in a folder named as a COCO evaluation split."""
    hits = [
        p
        for p in prompts
        if any(EVALUATION_SPLIT.fullmatch(part) for part in PurePosixPath(p.image_name).parts[:-1])
    ]
    if hits:
        first = hits[0]
        raise InputError(
            first.source,
            f"{len(hits)} training prompt(s) are about images of an evaluation split (e.g. "
            f"{first.image_name}): GRPO never trains on them; build the prompts from a training "
            "split (poseqa build --split train2017)",
            f"{first.id}: image",
        )


def check_disjoint(prompts: list[Prompt], benchmarks: list[str]) -> None:
    """Refuse prompts about any image of the evaluation benchmarks (PoseQA or E-HPAUB)."""
    keys: dict[str, list[Prompt]] = {}
    for p in prompts:
        keys.setdefault(image_key(p.image_name), []).append(p)
    for bench in benchmarks:
        questions = Path(bench) / QUESTIONS_FILE
        if not questions.is_file():
            raise InputError(
                bench, f"no {QUESTIONS_FILE}: not a PoseQA or E-HPAUB folder (--eval-bench)"
            )
        shared = sorted(
            {k for q in read_bench_questions(questions) if (k := image_key(q.image)) in keys}
        )
        if shared:
            example = keys[shared[0]][0]
            count = sum(len(keys[k]) for k in shared)
            raise InputError(
                bench,
                f"{count} training prompt(s) are about {len(shared)} of its images (e.g. "
                f"{example.image_name}, prompt {example.id} of {example.source}): training on "
                "the evaluation's images leaks it; build the prompts from another split",
                "--eval-bench",
            )


def check_images(prompts: list[Prompt], cfg: TrainConfig) -> list[Prompt]:
    """Every prompt's image, checked by its header (once an image: a PoseQA folder asks several
    questions of each); bad ones stop the run unless --skip-bad."""
    problems: dict[str, str | None] = {}
    for image in dict.fromkeys(p.image for p in prompts):
        try:
            probe(image)
            problems[image] = None
        except InputError as e:
            problems[image] = e.problem
    kept, bad = [], []
    for p in prompts:
        problem = problems[p.image]
        if problem is not None:
            bad.append({"id": p.id, "file": p.source, "image": p.image, "reason": problem})
        else:
            kept.append(p)
    if bad:
        bad_file = Path(cfg.output) / BAD_FILE
        if is_main_process() and not cfg.check:
            write_jsonl(bad_file, bad)
        if not cfg.skip_bad:
            first = bad[0]
            raise BadDataError(
                f"{len(bad)} of {len(prompts)} prompts have a bad image (first: {first['image']}: "
                f"{first['reason']}, prompt {first['id']} of {first['file']}): fix them, pass "
                "--image-root, or rerun with --skip-bad to train without them"
            )
        log.warning("%d prompts with a bad image left out (listed in %s)", len(bad), bad_file)
    return kept


def read_prompts(cfg: TrainConfig) -> list[Prompt]:
    """Every prompt of --poseqa and --data, checked: training split, evaluation overlap, images."""
    if not cfg.poseqa and not cfg.data:
        raise ConfigError(
            "--method grpo: give --poseqa DIR (PoseQA questions of a training split) and/or "
            "--data FILE.json (detail and reasoning records) for the prompts"
        )
    prompts = [p for folder in cfg.poseqa for p in poseqa_prompts(folder, cfg.image_root)]
    if cfg.data:
        prompts += free_text_prompts(cfg)
    check_training_split(prompts)
    check_disjoint(prompts, cfg.eval_bench)
    if cfg.max_samples is not None:
        prompts = prompts[: cfg.max_samples]
    return check_images(prompts, cfg)


def summary(prompts: list[Prompt]) -> str:
    families = Counter(p.task.family for p in prompts)
    kinds = Counter(p.task.kind for p in prompts)
    per = ", ".join(f"{f} {n}" for f, n in sorted(families.items()))
    return (
        f"{len(prompts)} prompts about {len({image_key(p.image_name) for p in prompts})} images: "
        f"{kinds['exact_match']} PoseQA (exact match), {kinds['claims']} free text (claims); {per}"
    )


# -- the trainer --------------------------------------------------------------------------------


def grpo_dataset(prompts: list[Prompt], pad_colour: tuple[int, int, int] | None) -> Any:
    """The prompts as TRL's conversational vision form (``prompt`` with an image placeholder,
    ``images``) plus ``task`` for the rewards; images opened when a batch is made."""
    from datasets import Dataset

    def rows(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        chosen = [prompts[i] for i in batch["index"]]
        return {
            "prompt": [
                [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": p.text}]}]
                for p in chosen
            ],
            "images": [[load_image(p.image, pad_colour)] for p in chosen],
            "task": [p.task for p in chosen],
        }

    return Dataset.from_dict({"index": list(range(len(prompts)))}).with_transform(rows)


def grpo_args(cfg: TrainConfig, *, precision: str, deepspeed: str | None, **overrides: Any) -> Any:
    """TRL's GRPOConfig for the recipe: the group size, sampling, the KL weight."""
    from trl import GRPOConfig

    kwargs = common_args(cfg, precision=precision, deepspeed=deepspeed)
    kwargs.update(
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        beta=cfg.beta,
        train_sampling_strategy="random",  # GRPO's own sampler keeps each prompt's group together
        include_num_input_tokens_seen="no",  # GRPO counts prompt and completion tokens itself
        label_names=[],
    )
    kwargs.update(overrides)
    return build_args(GRPOConfig, kwargs)


def _reward_log_callback() -> Any:
    from transformers import TrainerCallback

    class RewardLine(TrainerCallback):
        """One line per logged step: the reward, per family, the KL and the contradicted rate."""

        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any
        ) -> None:
            if not logs or "reward" not in logs or not state.is_world_process_zero:
                return
            families = " ".join(
                f"{k.split('/', 1)[1]} {v:.3f}"
                for k, v in sorted(logs.items())
                if k.startswith("reward/") and v is not None
            )
            extra = [f"kl {logs['kl']:.4f}"] if logs.get("kl") is not None else []
            if logs.get("claims/contradicted_rate") is not None:
                extra.append(f"contradicted {logs['claims/contradicted_rate']:.1%}")
            log.info(
                "step %d/%d  reward %.3f (%s)  %s",
                state.global_step, state.max_steps, logs["reward"], families, "  ".join(extra),
            )  # fmt: skip

    return RewardLine()


def make_trainer(
    model: Any,
    processor: Any,
    dataset: Any,
    args: Any,
    *,
    family: Family,
    kinds: set[str],
    projector_lr: float | None = None,
    pad_colour: tuple[int, int, int] | None = None,
    chat_template: str,
) -> Any:
    """GRPOTrainer with the recipe (`trainer.recipe_trainer`), the rewards of the prompts'
    `kinds` and the logging; the processor is saved with its training chat template."""
    from trl import GRPOTrainer

    processor.chat_template = chat_template
    processor.tokenizer.padding_side = "left"  # the prompts of a group end where answers begin
    trainer = recipe_trainer(GRPOTrainer)(
        model=model,
        reward_funcs=[fn for kind, fn in REWARDS.items() if kind in kinds],
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        family=family,
        projector_lr=projector_lr,
        blank_inputs=blank_vision_inputs(processor, pad_colour),
    )
    inner = trainer.accelerator.unwrap_model(trainer.model)
    if "ref" in getattr(inner, "peft_config", {}):
        # Our adapters always start at zero (a resumed run's are loaded after this), so the
        # model with adapters off is the start: TRL's copy of them as a "ref" adapter would
        # only double them in memory and in every checkpoint.
        inner.delete_adapter("ref")
    attach_logging(trainer)
    trainer.add_callback(_reward_log_callback())
    return trainer


def run(cfg: TrainConfig) -> int:
    """`llava-pose train --method grpo`."""
    setup = start(cfg, check_only=cfg.check)
    template = training_template(setup.processor, setup.family, cfg.chat_template)
    prompts = read_prompts(cfg)  # before anything loads: a leak or a bad image stops here
    if is_main_process():
        log.info("prompts: %s", summary(prompts))
    if cfg.check:
        print(summary(prompts))
        return 0
    args = grpo_args(cfg, precision=setup.precision, deepspeed=setup.deepspeed)
    model, processor = load_for_training(cfg, setup)
    # the KL term's reference: TRL loads it again from this (a preset's saved start, or the
    # model given), so it is the weights the run started from, even when it resumes
    start_from = Path(cfg.output) / BASE_DIR if cfg.model in presets() else Path(cfg.model)
    model.config._name_or_path = str(start_from.resolve()) if start_from.is_dir() else cfg.model
    line = trainable_line(model, setup.family)
    trainer = make_trainer(
        model, processor, grpo_dataset(prompts, setup.pad_colour), args, family=setup.family,
        kinds={p.task.kind for p in prompts}, projector_lr=cfg.projector_lr,
        pad_colour=setup.pad_colour, chat_template=template,
    )  # fmt: skip
    if is_main_process():
        log.info("model: %s (%s)", line, setup.family.name)
        log.info(
            "GRPO on %d prompts: %d answers each, %d answers per step (batch %d x %d accumulation "
            "x %d process(es)), beta %g, lr %g, %s",
            len(prompts), cfg.num_generations, args.generation_batch_size, cfg.batch_size,
            cfg.grad_accum, args.world_size, cfg.beta, cfg.lr, setup.precision,
        )  # fmt: skip
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    trainer.train(resume_from_checkpoint=setup.resume_from)
    finish(
        trainer, cfg, setup,
        prompts={"total": len(prompts), **Counter(p.task.family for p in prompts)},
        trainable=line,
    )  # fmt: skip
    return 0
