"""`llava-pose train`: validate the data, set up the model, run the transformers Trainer.

Order matters for DeepSpeed ZeRO-3: the TrainingArguments (which register the DeepSpeed
config) are built before the model is loaded, so that weights are partitioned while loading.

What the Trainer does not do by itself, done here:
* a separate learning rate for the connector (`--projector-lr`, as LLaVA's mm_projector_lr);
* text-only batches still run the (frozen) vision tower and connector on a blank image with a
  zero-weighted loss, as LLaVA does, so that every rank makes the same collective calls under
  ZeRO-3 and the connector always receives a gradient under DDP;
* throughput (samples/s, tokens/s) in every log line and in OUTPUT/train_log.jsonl;
* a validation pass before anything heavy, reporting bad records with their reasons.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError, LlavaPoseError
from ..io import append_jsonl, write_json, write_jsonl
from .config import DEEPSPEED_PRESETS, TrainConfig
from .data import (
    Collator,
    DataReport,
    Encoder,
    LlavaDataset,
    count_image_tokens,
    load_records,
    validate,
)
from .model import (
    BASE_DIR,
    CONNECTOR,
    TINY,
    build_tiny_processor,
    load_config,
    load_model,
    load_processor,
    quiet_transformers,
    setup_trainable,
)

log = logging.getLogger("llava_pose.train")

REPO_CONFIGS = Path(__file__).resolve().parents[3] / "configs"
RUN_FILE = "llava_pose_run.json"
LOG_FILE = "train_log.jsonl"
BAD_FILE = "bad_records.jsonl"


class BadDataError(LlavaPoseError):
    """The validation pass rejected records and --skip-bad was not given."""


# -- options that need resolving ------------------------------------------------------------------


def resolve_deepspeed(value: str | None) -> str | None:
    """A shipped preset name or a JSON path -> the path; DeepSpeed must be importable."""
    if not value:
        return None
    if value in DEEPSPEED_PRESETS:
        candidates = [
            REPO_CONFIGS / "deepspeed" / f"{value}.json",
            Path("configs/deepspeed") / f"{value}.json",
        ]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise ConfigError(
                f"--deepspeed {value}: the shipped file configs/deepspeed/{value}.json is not here "
                "(install from a clone of the repository) - or pass the path of a DeepSpeed JSON"
            )
    else:
        path = Path(value)
        if not path.is_file():
            raise ConfigError(
                f"--deepspeed {value}: no such file (presets: {', '.join(DEEPSPEED_PRESETS)})"
            )
    try:
        json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: invalid JSON ({e})") from None
    if importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(
            "--deepspeed needs DeepSpeed, which is not installed: pip install -e '.[deepspeed]' (on a CUDA machine)"
        )
    return str(path.resolve())


def resolve_precision(precision: str) -> str:
    import torch

    cuda = torch.cuda.is_available()
    if precision == "auto":
        return "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
    if precision in ("bf16", "fp16") and not cuda:
        raise ConfigError(f"--precision {precision} needs a CUDA GPU; on a CPU use fp32 (or auto)")
    return precision


def _ensure_single_process_env() -> None:
    """DeepSpeed wants a process group even for one process started without a launcher."""
    if "WORLD_SIZE" in os.environ:
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", LOCAL_RANK="0", WORLD_SIZE="1"
    )


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def check_output(cfg: TrainConfig) -> str | None:
    """The checkpoint to resume from, or None; refuse to overwrite a run by accident."""
    from transformers.trainer_utils import get_last_checkpoint

    out = Path(cfg.output)
    last = get_last_checkpoint(str(out)) if out.is_dir() else None
    if cfg.resume:
        if last is None:
            raise ConfigError(f"--resume: {cfg.output} holds no checkpoint-* folder to resume from")
        return last
    if last is not None:
        raise ConfigError(
            f"{cfg.output} already holds checkpoints (last: {Path(last).name}): "
            "add --resume to continue that run, or choose another --output"
        )
    if (out / RUN_FILE).is_file():
        raise ConfigError(f"{cfg.output} already holds a finished run: choose another --output")
    return None


def build_training_args(
    cfg: TrainConfig, *, precision: str, deepspeed: str | None, **overrides: Any
) -> Any:
    """TrainingArguments for the recipe; built before the model (ZeRO-3 needs that)."""
    import torch
    from transformers import TrainingArguments

    kwargs: dict[str, Any] = dict(
        output_dir=cfg.output,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps if cfg.max_steps is not None else -1,
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio,  # a float below 1 is a ratio of the total steps
        lr_scheduler_type=cfg.lr_scheduler,
        max_grad_norm=cfg.max_grad_norm,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        activation_checkpointing=cfg.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False},
        deepspeed=deepspeed,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        seed=cfg.seed,
        data_seed=cfg.seed,
        dataloader_num_workers=min(cfg.num_workers, os.cpu_count() or 1),  # no more than the cores
        remove_unused_columns=False,
        label_names=["labels"],
        report_to=[]
        if cfg.report_to in ("none", "")
        else [r.strip() for r in cfg.report_to.split(",")],
        include_num_input_tokens_seen="non_padding",
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        ddp_find_unused_parameters=False,
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
    )
    kwargs.update(overrides)
    try:
        return TrainingArguments(**kwargs)
    except ValueError as e:
        raise ConfigError(f"training options: {e}") from None


# -- the Trainer --------------------------------------------------------------------------------


def _trainer_cls() -> type:
    from transformers import Trainer

    class LlavaPoseTrainer(Trainer):
        """Trainer + connector learning rate, length-grouped sampling from precomputed lengths,
        and the vision pass for text-only batches."""

        def __init__(
            self,
            *args: Any,
            projector_lr: float | None = None,
            lengths: list[int] | None = None,
            **kwargs: Any,
        ) -> None:
            super().__init__(*args, **kwargs)
            self.samples_seen = 0  # this process's training samples, for samples/s
            self.projector_lr = projector_lr
            self.lengths = lengths

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            if self.args.train_sampling_strategy == "group_by_length" and self.lengths:
                from transformers.trainer_pt_utils import LengthGroupedSampler

                # lengths from the validation pass: the default would load every image to measure
                return LengthGroupedSampler(
                    self.args.train_batch_size * self.args.gradient_accumulation_steps,
                    lengths=self.lengths,
                )
            return super()._get_train_sampler(train_dataset)

        def create_optimizer(self, model: Any = None) -> Any:
            if self.optimizer is not None:
                return self.optimizer
            opt_model = self.model if model is None else model
            decay = set(self.get_decay_parameter_names(opt_model))
            connector_lr = (
                self.projector_lr if self.projector_lr is not None else self.args.learning_rate
            )
            groups: dict[tuple[bool, bool], list[Any]] = {}
            for name, p in opt_model.named_parameters():
                if p.requires_grad:
                    groups.setdefault((CONNECTOR in name, name in decay), []).append(p)
            param_groups = [
                {
                    "params": params,
                    "weight_decay": self.args.weight_decay if with_decay else 0.0,
                    "lr": connector_lr if is_connector else self.args.learning_rate,
                }
                for (is_connector, with_decay), params in sorted(groups.items())
            ]
            ds = getattr(self.args, "hf_deepspeed_config", None)
            if ds is not None and ds.is_offload():
                # ZeRO-Offload refuses torch's AdamW; DeepSpeed's CPU Adam keeps the groups
                from deepspeed.ops.adam import DeepSpeedCPUAdam

                self.optimizer = DeepSpeedCPUAdam(
                    param_groups,
                    lr=self.args.learning_rate,
                    betas=(self.args.adam_beta1, self.args.adam_beta2),
                    eps=self.args.adam_epsilon,
                    weight_decay=self.args.weight_decay,
                )
            else:
                optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(
                    self.args, opt_model
                )
                self.optimizer = optimizer_cls(param_groups, **optimizer_kwargs)
            return self.optimizer

        def compute_loss(
            self,
            model: Any,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            if model.training:
                self.samples_seen += len(inputs["input_ids"])
            blank = (
                self._blank_vision_loss(model)
                if "pixel_values" not in inputs and model.training
                else None
            )
            result = super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
            if blank is None:
                return result
            if return_outputs:
                return result[0] + blank, result[1]
            return result + blank

        def _blank_vision_loss(self, model: Any) -> Any:
            import torch

            llava = self.accelerator.unwrap_model(model)
            if hasattr(llava, "get_base_model"):
                llava = llava.get_base_model()
            vision = llava.config.vision_config
            param = next(llava.model.vision_tower.parameters())
            blank = torch.zeros(
                1,
                3,
                vision.image_size,
                vision.image_size,
                dtype=param.dtype,
                device=self.args.device,
            )
            features = llava.model.get_image_features(pixel_values=blank).pooler_output
            return sum(f.float().sum() for f in features) * 0.0

    return LlavaPoseTrainer


def _throughput_callback(output: str, samples_seen: Callable[[], int]) -> Any:
    from transformers import TrainerCallback

    class Throughput(TrainerCallback):
        """Adds samples/s and tokens/s (all processes) to every log; one line per log on rank 0
        and OUTPUT/train_log.jsonl for plotting."""

        def __init__(self) -> None:
            self.mark = (time.perf_counter(), 0, 0, 0)

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.mark = (
                time.perf_counter(),
                state.global_step,
                state.num_input_tokens_seen,
                samples_seen(),
            )

        def on_log(
            self,
            args: Any,
            state: Any,
            control: Any,
            logs: dict[str, Any] | None = None,
            **kwargs: Any,
        ) -> None:
            if logs is None:
                return
            now = time.perf_counter()
            then, step, tokens, samples = self.mark
            if state.global_step > step and now > then:
                # tokens are gathered over processes by the Trainer; samples are counted here
                # and scaled (exact unless the processes' last batches differ in size)
                seen = samples_seen()
                logs["samples_per_s"] = round((seen - samples) * args.world_size / (now - then), 3)
                logs["tokens_per_s"] = round(
                    (state.num_input_tokens_seen - tokens) / (now - then), 1
                )
                self.mark = (now, state.global_step, state.num_input_tokens_seen, seen)
            if not state.is_world_process_zero:
                return
            append_jsonl(Path(output) / LOG_FILE, {"step": state.global_step, **logs})
            if "loss" in logs:
                log.info(
                    "step %d/%d  loss %.4f  lr %.3g  %s samples/s  %s tokens/s",
                    state.global_step, state.max_steps, logs["loss"], logs.get("learning_rate", 0.0),
                    logs.get("samples_per_s", "-"), logs.get("tokens_per_s", "-"),
                )  # fmt: skip
            elif "train_runtime" in logs:
                log.info(
                    "trained %d steps in %.1fs (%.3g samples/s), mean loss %.4f",
                    state.global_step, logs["train_runtime"], logs.get("train_samples_per_second", 0.0),
                    logs.get("train_loss", float("nan")),
                )  # fmt: skip

    return Throughput()


def make_trainer(
    model: Any,
    processor: Any,
    dataset: Any,
    args: Any,
    *,
    projector_lr: float | None = None,
    lengths: list[int] | None = None,
    pad_token_id: int | None = None,
) -> Any:
    """The Trainer with our collator, optimizer groups and throughput logging. The processor
    is saved with every checkpoint; without one, give the pad token id."""
    from transformers import PrinterCallback

    pad = pad_token_id if pad_token_id is not None else processor.tokenizer.pad_token_id
    trainer = _trainer_cls()(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=Collator(pad),
        processing_class=processor,
        projector_lr=projector_lr,
        lengths=lengths,
    )
    trainer.remove_callback(PrinterCallback)  # our callback prints one readable line per log
    throughput = _throughput_callback(args.output_dir, lambda: trainer.samples_seen)
    trainer.callback_handler.callbacks.insert(0, throughput)  # first: the others see the rates
    return trainer


# -- the command --------------------------------------------------------------------------------


def prepare_model(model: Any, cfg: TrainConfig, *, deepspeed: str | None) -> Any:
    """The paper's trainable split on a loaded model, ready for the Trainer."""
    import torch

    model.config.use_cache = model.config.text_config.use_cache = False
    model = setup_trainable(
        model, lora=cfg.lora, qlora=cfg.qlora, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
        gradient_checkpointing=cfg.gradient_checkpointing,
    )  # fmt: skip
    if (
        not deepspeed
    ):  # DeepSpeed keeps fp32 master weights itself; otherwise trainable ones are fp32
        for p in model.parameters():
            if p.requires_grad and p.dtype != torch.float32:
                p.data = p.data.float()
    return model


def weights_dtype(cfg: TrainConfig, precision: str, deepspeed: str | None) -> Any:
    """bf16/fp16 weights where something keeps fp32 master copies (DeepSpeed) or where they
    stay frozen (LoRA); fp32 otherwise, autocast doing the low-precision compute."""
    import torch

    low = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return low if low is not None and (deepspeed or cfg.lora) else torch.float32


def _processor_only(cfg: TrainConfig, source: str | None = None) -> Any:
    source = source or cfg.model
    if source == TINY:
        return build_tiny_processor()
    return load_processor(source, load_config(source))


def prepare_data(cfg: TrainConfig, processor: Any) -> tuple[list[Any], Encoder, DataReport]:
    """Read, validate and report; stop with exit 2 on bad records unless --skip-bad."""
    records, structural = load_records(cfg.data, cfg.image_root, cfg.max_samples)
    image_token_id, num_image_tokens = count_image_tokens(processor)
    encoder = Encoder(
        processor.tokenizer,
        image_token_id=image_token_id,
        num_image_tokens=num_image_tokens,
        max_length=cfg.max_length,
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
    return kept, encoder, report


def run_train(cfg: TrainConfig) -> int:
    """The whole of `llava-pose train`."""
    if cfg.qlora:
        cfg.lora = True
    if cfg.check:
        _, _, report = prepare_data(cfg, _processor_only(cfg))
        print(report.summary())
        return 2 if report.bad else 0
    import torch

    quiet_transformers()
    resume_from = check_output(cfg)
    deepspeed = resolve_deepspeed(cfg.deepspeed)
    precision = resolve_precision(cfg.precision)
    quantization = None
    if cfg.qlora:
        quantization = _qlora_config(precision, deepspeed)
    if torch.cuda.device_count() > 1 and "WORLD_SIZE" not in os.environ and is_main_process():
        log.warning(
            "%d GPUs are visible but this is one process: launch with `accelerate launch` or `torchrun` to use them all",
            torch.cuda.device_count(),
        )
    if deepspeed:
        _ensure_single_process_env()

    from transformers import set_seed

    set_seed(cfg.seed)
    args = build_training_args(cfg, precision=precision, deepspeed=deepspeed)

    dtype = weights_dtype(cfg, precision, deepspeed)
    source = cfg.model
    base_dir = Path(cfg.output) / BASE_DIR
    if cfg.model == TINY and resume_from and base_dir.is_dir():
        source = str(base_dir)  # the same random start and tokenizer as the first attempt
    # the data is checked before the (slow) weights load: bad records stop the run in seconds
    records, encoder, report = prepare_data(cfg, _processor_only(cfg, source))
    device_map = {"": int(os.environ.get("LOCAL_RANK", "0"))} if cfg.qlora else None
    model, processor = load_model(
        source, dtype=dtype, seed=cfg.seed, attn_implementation=cfg.attn_implementation,
        quantization_config=quantization, device_map=device_map,
    )  # fmt: skip
    if cfg.model == TINY and is_main_process() and not base_dir.is_dir():
        # presets exist nowhere else: keep the start so LoRA adapters have a base and runs resume
        model.save_pretrained(base_dir)
        processor.save_pretrained(base_dir)
    if cfg.model == TINY:
        model.name_or_path = str(base_dir.resolve())  # what PEFT records as the adapters' base
    model = prepare_model(model, cfg, deepspeed=deepspeed)
    summary = _trainable_line(model)
    dataset = LlavaDataset(
        records,
        encoder,
        processor.image_processor,
        pad_to_square=cfg.pad_to_square,
        lengths=report.lengths,
    )
    trainer = make_trainer(
        model, processor, dataset, args, projector_lr=cfg.projector_lr, lengths=report.lengths
    )
    if is_main_process():
        log.info("model: %s", summary)
        world = args.world_size
        log.info(
            "training %s on %d samples: batch %d x %d accumulation x %d process(es) = %d per step, lr %g%s, %s%s",
            "LoRA adapters + connector" if cfg.lora else "connector + language model",
            len(dataset), cfg.batch_size, cfg.grad_accum, world, cfg.batch_size * cfg.grad_accum * world, cfg.lr,
            f" (connector {cfg.projector_lr:g})" if cfg.projector_lr is not None else "", precision,
            f", DeepSpeed {Path(deepspeed).name}" if deepspeed else "",
        )  # fmt: skip
    # the validation pass used the tokenizer's threads; data workers are forked processes
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    trainer.train(resume_from_checkpoint=resume_from)
    trainer.save_model(cfg.output)  # full model or adapters, plus the processor
    if trainer.is_world_process_zero():
        write_json(
            Path(cfg.output) / RUN_FILE,
            {
                "config": {k: v for k, v in vars(cfg).items()},
                "data": {
                    "records": report.records,
                    "used": len(dataset),
                    "bad": len(report.bad),
                    "truncated": report.truncated,
                },
                "trainable": summary,
                "steps": trainer.state.global_step,
                "lora": cfg.lora,
            },
        )
        log.info(
            "saved to %s%s",
            cfg.output,
            " (LoRA adapters: chat/bench load them directly; `llava-pose export` merges)"
            if cfg.lora
            else "",
        )
    return 0


def _trainable_line(model: Any) -> str:
    from .model import trainable_summary

    parts = trainable_summary(model)
    return ", ".join(f"{k} {t / 1e6:.2f}M/{n / 1e6:.2f}M trainable" for k, (t, n) in parts.items())


def _qlora_config(precision: str, deepspeed: str | None) -> Any:
    import torch

    if not torch.cuda.is_available():
        raise ConfigError("--qlora needs a CUDA GPU (bitsandbytes 4-bit); on a CPU use --lora")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("--qlora needs bitsandbytes: pip install -e '.[qlora]'")
    if deepspeed and "zero3" in Path(deepspeed).name:
        raise ConfigError(
            "--qlora does not combine with ZeRO-3 here: use --deepspeed zero2 or none"
        )
    from transformers import BitsAndBytesConfig

    from .model import QUANT_SKIP

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16 if precision == "bf16" else torch.float16,
        llm_int8_skip_modules=QUANT_SKIP,
    )
