"""`llava-pose train --method sft`: supervised fine-tuning on TRL's `SFTTrainer`.

TRL does the collation: each batch's messages go through the model's own processor and chat
template (`processor.apply_chat_template`, images inside the messages), exactly as `chat` and
the hf: answerer render them, and the loss is on the answers only (``assistant_only_loss``: what
the template marks ``{% generation %}``). What the paper's recipe adds is `trainer.py`'s.

The prompt trained with (`training_template`) is saved as the run's chat template, so the run
is asked as it was taught:

1. ``--chat-template FILE``, when given;
2. the family's prompt (llava: LLaVA-1.5's Vicuna v1, the paper's);
3. the checkpoint's own chat template, if it has ``{% generation %}`` markers;
4. TRL's training version of it (the same rendering with the markers: Qwen2.5-VL, Qwen3-VL,
   Idefics3, SmolVLM, Gemma 3, LLaVA-NeXT, ...); else a one-line error asking for 1.

Records are checked first (`data.validate`: images, turns, lengths with the template), with
`--check` as a mode of its own; bad ones stop the run with their list unless --skip-bad.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..io import write_jsonl
from ..vlm.families import Family
from ..vlm.processors import own_chat_template
from .config import TrainConfig
from .data import DataReport, Encoder, image_token_counter, load_records, sft_dataset, validate
from .trainer import (
    BAD_FILE,
    BadDataError,
    Setup,
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

GENERATION = re.compile(r"\{%-?\s*generation\s*-?%\}")


def training_template(processor: Any, family: Family, given: str | None = None) -> str:
    """The chat template to train with (module docstring: the order)."""
    if given:
        path = Path(given)
        if not path.is_file():
            raise ConfigError(f"--chat-template {given}: no such file")
        text = path.read_text("utf-8")
        if not GENERATION.search(text):
            raise ConfigError(
                f"--chat-template {given}: has no {{% generation %}} markers around the answers "
                "(they say what the loss is computed on)"
            )
        return text
    own = family.prompt_template()
    if own:
        return own
    current = own_chat_template(processor)
    if not current:
        raise ConfigError(
            f"the {family.name} checkpoint has no chat template: give --chat-template FILE.jinja"
        )
    if GENERATION.search(current):
        return str(current)
    from trl.chat_template_utils import get_training_chat_template

    try:
        patched = get_training_chat_template(processor)
    except ValueError:
        raise ConfigError(
            f"the {family.name} checkpoint's chat template has no {{% generation %}} markers and "
            "TRL knows no training version of it: give --chat-template FILE.jinja, the template "
            "with {% generation %}...{% endgeneration %} around each answer"
        ) from None
    return patched or str(current)


def sft_args(cfg: TrainConfig, *, precision: str, deepspeed: str | None, **overrides: Any) -> Any:
    """TRL's SFTConfig for the recipe: assistant-only loss, no packing (images), the length cap."""
    from trl import SFTConfig

    kwargs = common_args(cfg, precision=precision, deepspeed=deepspeed)
    kwargs.update(
        assistant_only_loss=True,
        max_length=cfg.max_length,
        packing=False,
        dataset_kwargs={"skip_prepare_dataset": True},
    )
    kwargs.update(overrides)
    return build_args(SFTConfig, kwargs)


def make_trainer(
    model: Any,
    processor: Any,
    dataset: Any,
    args: Any,
    *,
    family: Family,
    projector_lr: float | None = None,
    lengths: list[int] | None = None,
    pad_colour: tuple[int, int, int] | None = None,
    chat_template: str | None = None,
) -> Any:
    """SFTTrainer with the recipe (`trainer.recipe_trainer`) and throughput logging. The
    processor is saved with every checkpoint, its chat template the one trained with
    (`chat_template`; default: `training_template`)."""
    from trl import SFTTrainer

    processor.chat_template = chat_template or training_template(processor, family)
    trainer = recipe_trainer(SFTTrainer)(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        family=family,
        projector_lr=projector_lr,
        lengths=lengths,
        blank_inputs=blank_vision_inputs(processor, pad_colour),
    )
    return attach_logging(trainer)


def prepare_data(cfg: TrainConfig, setup: Setup, template: str) -> tuple[list[Any], DataReport]:
    """Read, validate and report; stop with exit 2 on bad records unless --skip-bad."""
    processor = setup.processor
    records, structural = load_records(cfg.data, cfg.image_root, cfg.max_samples)
    tokenizer = processor.tokenizer
    encoder = Encoder(
        tokenizer,
        image_token_id=tokenizer.convert_tokens_to_ids(processor.image_token),
        num_image_tokens=image_token_counter(processor, setup.pad_to_square),
        max_length=cfg.max_length,
        chat_template=template,
    )
    started = time.perf_counter()
    kept, report = validate(records, encoder, structural=structural)
    main = is_main_process()
    if main:
        log.info("data: %s (checked in %.1fs)", report.summary(), time.perf_counter() - started)
    if report.bad:
        bad_file = Path(cfg.output) / BAD_FILE
        if main:
            write_jsonl(bad_file, [b.row() for b in report.bad])
            for b in report.bad[:10]:
                log.warning("  bad record %s", b)
            if len(report.bad) > 10:
                log.warning("  ... %d more", len(report.bad) - 10)
        if not cfg.skip_bad and not cfg.check:
            hint = ""
            with_image = [r for r in records if r.image]
            if with_image and sum(
                b.reason.startswith("image not found") for b in report.bad
            ) == len(with_image):
                hint = (
                    f" (no image was found under --image-root {cfg.image_root})"
                    if cfg.image_root
                    else " (no image was found: paths are joined to the data file's folder; "
                    "pass --image-root, e.g. your COCO folder)"
                )
            raise BadDataError(
                f"{len(report.bad)} of {report.records} records are bad (all listed in {bad_file}){hint}: "
                "fix them, or rerun with --skip-bad to train without them"
            )
    if not kept:
        raise BadDataError("no usable records left to train on")
    return kept, report


def run(cfg: TrainConfig) -> int:
    """`llava-pose train --method sft`."""
    setup = start(cfg, check_only=cfg.check)
    template = training_template(setup.processor, setup.family, cfg.chat_template)
    if cfg.check:
        _, report = prepare_data(cfg, setup, template)
        print(report.summary())
        return 2 if report.bad else 0
    args = sft_args(
        cfg, precision=setup.precision, deepspeed=setup.deepspeed
    )  # before the weights: ZeRO-3 partitions them while loading
    # the data is checked before the (slow) weights load: bad records stop the run in seconds
    records, report = prepare_data(cfg, setup, template)
    model, processor = load_for_training(cfg, setup)
    summary = trainable_line(model, setup.family)
    dataset = sft_dataset(records, setup.pad_colour)
    trainer = make_trainer(
        model, processor, dataset, args, family=setup.family, projector_lr=cfg.projector_lr,
        lengths=report.lengths, pad_colour=setup.pad_colour, chat_template=template,
    )  # fmt: skip
    if is_main_process():
        log.info("model: %s (%s)", summary, setup.family.name)
        world = args.world_size
        log.info(
            "training %s on %d samples: batch %d x %d accumulation x %d process(es) = %d per step, lr %g%s, %s%s",
            "LoRA adapters + connector" if cfg.lora else "connector + language model",
            len(records), cfg.batch_size, cfg.grad_accum, world, cfg.batch_size * cfg.grad_accum * world, cfg.lr,
            f" (connector {cfg.projector_lr:g})" if cfg.projector_lr is not None else "", setup.precision,
            f", DeepSpeed {Path(setup.deepspeed).name}" if setup.deepspeed else "",
        )  # fmt: skip
    # the validation pass used the tokenizer's threads; data workers are forked processes
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    trainer.train(resume_from_checkpoint=setup.resume_from)
    finish(
        trainer,
        cfg,
        setup,
        data={
            "records": report.records,
            "used": len(records),
            "bad": len(report.bad),
            "truncated": report.truncated,
        },
        trainable=summary,
    )
    return 0
