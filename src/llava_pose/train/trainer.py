"""What every training method shares (`--method`: train/config.py METHODS; SFT is `sft.py`).

A method is a module with `run(cfg) -> int`, built from the pieces here:

* `start`: the output folder (refuse to overwrite; the checkpoint to resume), DeepSpeed,
  precision, QLoRA's quantization, the seed; the model's family and its processor, loaded first
  so that the data can be checked before the (slow) weights load.
* `common_args`: the TrainingArguments of the paper's recipe (batch, schedule, precision,
  checkpointing, saving, logging); a method adds its own and builds its config class from them
  BEFORE `load_for_training`: under DeepSpeed ZeRO-3 the arguments register the config, so
  that weights are partitioned while loading.
* `load_for_training`: the weights (a preset's start kept in OUTPUT/base-model, so LoRA
  adapters have a base and a resumed run the same start), the paper's split per family (tower
  frozen; connector and language model, or LoRA adapters, trained: `model.setup_trainable`).
* `recipe_trainer(Base)`: a Trainer subclass (any of transformers' or TRL's) with what the
  recipe adds: the connector's own learning rate (`--projector-lr`, LLaVA's mm_projector_lr);
  batches without an image still run the (frozen) tower and the connector on a blank image with
  a zero-weighted loss, as LLaVA does, so that every rank makes the same collective calls under
  ZeRO-3 and the connector always receives a gradient under DDP; length-grouped sampling from
  the lengths the validation pass measured.
* `attach_logging`: samples/s and tokens/s in every log line and in OUTPUT/train_log.jsonl.
* `finish`: the final model (or adapters) with the processor and its chat template, and
  OUTPUT/llava_pose_run.json.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, LlavaPoseError
from ..io import append_jsonl, write_json
from ..vlm.families import CONNECTOR, Family, family_for, presets
from ..vlm.images import mean_colour
from ..vlm.load import BASE_DIR, RUN_FILE, load_config, load_processor, quiet_transformers
from ..vlm.tiny import build_tiny_processor
from .config import DEEPSPEED_PRESETS, METHODS, TrainConfig
from .model import load_model, quantization_skip, setup_trainable, trainable_summary

log = logging.getLogger("llava_pose.train")

REPO_CONFIGS = Path(__file__).resolve().parents[3] / "configs"
LOG_FILE = "train_log.jsonl"
BAD_FILE = "bad_records.jsonl"


def run_train(cfg: TrainConfig) -> int:
    """The whole of `llava-pose train`: the method's `run`."""
    return int(importlib.import_module(METHODS[cfg.method]).run(cfg))


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


def ensure_single_process_env() -> None:
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


# -- start ----------------------------------------------------------------------------------------


@dataclass
class Setup:
    """What `start` resolved, for the method and for `finish`."""

    precision: str
    deepspeed: str | None
    resume_from: str | None
    source: str  # what to load: the model given, or a preset's saved start when resuming
    family: Family
    processor: Any  # loaded before the weights, for the data check
    quantization: Any = None
    pad_to_square: bool = False

    @property
    def pad_colour(self) -> tuple[int, int, int] | None:
        return mean_colour(self.processor.image_processor) if self.pad_to_square else None


def processor_and_family(source: str) -> tuple[Any, Family]:
    """The processor and family of a checkpoint or preset, without its weights."""
    if source in presets():
        family = presets()[source]
        return build_tiny_processor(family=family.name), family
    config = load_config(source)
    family = family_for(config, source)
    return load_processor(source, config), family


def start(cfg: TrainConfig, *, check_only: bool = False) -> Setup:
    """Resolve the run's options and load the processor; `check_only` (--check) resolves only
    what the data check needs, writing nothing."""
    if cfg.qlora:
        cfg.lora = True
    quiet_transformers()
    if check_only:
        processor, family = processor_and_family(cfg.model)
        pad = family.pad_to_square if cfg.pad_to_square is None else cfg.pad_to_square
        return Setup("fp32", None, None, cfg.model, family, processor, pad_to_square=pad)
    import torch

    resume_from = check_output(cfg)
    deepspeed = resolve_deepspeed(cfg.deepspeed)
    precision = resolve_precision(cfg.precision)
    source = cfg.model
    base_dir = Path(cfg.output) / BASE_DIR
    if cfg.model in presets() and resume_from and base_dir.is_dir():
        source = str(base_dir)  # the same random start and tokenizer as the first attempt
    processor, family = processor_and_family(source)
    quantization = _qlora_config(precision, deepspeed, family) if cfg.qlora else None
    if torch.cuda.device_count() > 1 and "WORLD_SIZE" not in os.environ and is_main_process():
        log.warning(
            "%d GPUs are visible but this is one process: launch with `accelerate launch` or `torchrun` to use them all",
            torch.cuda.device_count(),
        )
    if deepspeed:
        ensure_single_process_env()
    from transformers import set_seed

    set_seed(cfg.seed)
    pad = family.pad_to_square if cfg.pad_to_square is None else cfg.pad_to_square
    return Setup(precision, deepspeed, resume_from, source, family, processor, quantization, pad)


# -- arguments and the model --------------------------------------------------------------------


def common_args(cfg: TrainConfig, *, precision: str, deepspeed: str | None) -> dict[str, Any]:
    """The recipe's TrainingArguments fields; a method adds its own and builds its args class."""
    import torch

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
        gradient_checkpointing=cfg.gradient_checkpointing,
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
    return kwargs


def build_args(cls: type, kwargs: dict[str, Any]) -> Any:
    """`cls(**kwargs)` (TrainingArguments or a TRL config); a refused value is one line."""
    try:
        return cls(**kwargs)
    except ValueError as e:
        raise ConfigError(f"training options: {e}") from None


def weights_dtype(cfg: TrainConfig, precision: str, deepspeed: str | None) -> Any:
    """bf16/fp16 weights where something keeps fp32 master copies (DeepSpeed) or where they
    stay frozen (LoRA); fp32 otherwise, autocast doing the low-precision compute."""
    import torch

    low = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return low if low is not None and (deepspeed or cfg.lora) else torch.float32


def prepare_model(model: Any, cfg: TrainConfig, *, family: Family, deepspeed: str | None) -> Any:
    """The paper's trainable split on a loaded model, ready for the Trainer."""
    import torch

    model.config.use_cache = False
    model.config.get_text_config().use_cache = False
    model = setup_trainable(
        model, family=family, lora=cfg.lora, qlora=cfg.qlora, r=cfg.lora_r, alpha=cfg.lora_alpha,
        dropout=cfg.lora_dropout, gradient_checkpointing=cfg.gradient_checkpointing,
    )  # fmt: skip
    if not deepspeed:  # DeepSpeed keeps fp32 master weights itself; otherwise trainables are fp32
        for p in model.parameters():
            if p.requires_grad and p.dtype != torch.float32:
                p.data = p.data.float()
    return model


def load_for_training(cfg: TrainConfig, setup: Setup) -> tuple[Any, Any]:
    """(model with the paper's split, the processor `start` loaded); build the method's args
    before this."""
    device_map = {"": int(os.environ.get("LOCAL_RANK", "0"))} if cfg.qlora else None
    model, processor, _ = load_model(
        setup.source, dtype=weights_dtype(cfg, setup.precision, setup.deepspeed), seed=cfg.seed,
        attn_implementation=cfg.attn_implementation, quantization_config=setup.quantization,
        device_map=device_map, processor=setup.processor,
    )  # fmt: skip
    base_dir = Path(cfg.output) / BASE_DIR
    if cfg.model in presets():
        if is_main_process() and not base_dir.is_dir():
            # presets exist nowhere else: keep the start so LoRA adapters have a base and runs resume
            model.save_pretrained(base_dir)
            processor.save_pretrained(base_dir)
        model.name_or_path = str(base_dir.resolve())  # what PEFT records as the adapters' base
    model = prepare_model(model, cfg, family=setup.family, deepspeed=setup.deepspeed)
    return model, processor


def trainable_line(model: Any, family: Family | None = None) -> str:
    parts = trainable_summary(model, family)
    return ", ".join(f"{k} {t / 1e6:.2f}M/{n / 1e6:.2f}M trainable" for k, (t, n) in parts.items())


# -- the recipe on top of a Trainer -------------------------------------------------------------


TEXT_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")


def blank_vision_inputs(processor: Any, pad_colour: tuple[int, int, int] | None) -> dict[str, Any]:
    """The processor's vision inputs for one blank image (pixel values, grid, masks)."""
    from PIL import Image

    blank = Image.new("RGB", (64, 64), pad_colour or (0, 0, 0))
    out = processor(text=processor.image_token, images=[blank], return_tensors="pt")
    return {k: v for k, v in out.items() if k not in TEXT_KEYS}


def _tensor_sum(value: Any) -> Any:
    """The float sum of every floating tensor in a (nested) model output."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.float().sum() if value.is_floating_point() else None
    items = (
        value.values()
        if isinstance(value, dict)
        else value
        if isinstance(value, list | tuple)
        else ()
    )
    total = None
    for item in items:
        part = _tensor_sum(item)
        if part is not None:
            total = part if total is None else total + part
    return total


def recipe_trainer(base: type) -> type:
    """`base` (a transformers Trainer subclass: Trainer, TRL's SFTTrainer, ...) with what the
    paper's recipe adds (module docstring). Extra keyword arguments: family, projector_lr,
    lengths (per sample, for length grouping), blank_inputs (`blank_vision_inputs`)."""

    class RecipeTrainer(base):  # type: ignore[valid-type,misc]
        def __init__(
            self,
            *args: Any,
            family: Family,
            projector_lr: float | None = None,
            lengths: list[int] | None = None,
            blank_inputs: dict[str, Any] | None = None,
            **kwargs: Any,
        ) -> None:
            super().__init__(*args, **kwargs)
            self.family = family
            self.samples_seen = 0  # this process's training samples, for samples/s
            self.projector_lr = projector_lr
            self.lengths = lengths
            self.blank_inputs = blank_inputs

        def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
            """A full model's checkpoint is saved in its hub layout (transformers 5 renames
            modules in memory: llava's vision_tower is model.vision_tower, Qwen's
            model.layers model.language_model.layers), which the Trainer's own resume loads by
            name and so silently skips; loading it as from_pretrained does maps the names."""
            target = self.model if model is None else model
            weights = Path(resume_from_checkpoint) / "model.safetensors"
            plain = not hasattr(target, "get_base_model") and not self.is_deepspeed_enabled
            if not (plain and weights.is_file() and not self.is_fsdp_enabled):
                return super()._load_from_checkpoint(resume_from_checkpoint, model)
            from transformers import AutoModelForImageTextToText

            dtype = next(p for p in target.parameters() if p.is_floating_point()).dtype
            saved = AutoModelForImageTextToText.from_pretrained(resume_from_checkpoint, dtype=dtype)
            target.load_state_dict(saved.state_dict(), strict=True)

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
                    is_connector = self.family.part_of(name) == CONNECTOR
                    groups.setdefault((is_connector, name in decay), []).append(p)
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
            ids = inputs.get("input_ids", inputs.get("prompt_ids"))  # SFT's, or GRPO's
            if model.training and ids is not None:
                self.samples_seen += len(ids)
            blank = (
                self._blank_vision_loss(model)
                if "pixel_values" not in inputs and model.training and self.blank_inputs
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
            """The tower and connector on a blank image, weighted 0: same calls, zero gradient."""
            inner = self.accelerator.unwrap_model(model)
            if hasattr(inner, "get_base_model"):
                inner = inner.get_base_model()
            assert self.blank_inputs is not None
            wanted = inspect.signature(inner.get_image_features).parameters
            dtype = next(p for p in inner.parameters() if p.is_floating_point()).dtype
            kwargs = {
                k: v.to(self.args.device, dtype)
                if v.is_floating_point()
                else v.to(self.args.device)
                for k, v in self.blank_inputs.items()
                if k in wanted
            }
            return _tensor_sum(inner.get_image_features(**kwargs)) * 0.0

    RecipeTrainer.__name__ = RecipeTrainer.__qualname__ = f"Recipe{base.__name__}"
    return RecipeTrainer


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


def attach_logging(trainer: Any) -> Any:
    """One readable line per log and OUTPUT/train_log.jsonl, with samples/s and tokens/s."""
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    throughput = _throughput_callback(trainer.args.output_dir, lambda: trainer.samples_seen)
    trainer.callback_handler.callbacks.insert(0, throughput)  # first: the others see the rates
    return trainer


def finish(trainer: Any, cfg: TrainConfig, setup: Setup, **record: Any) -> None:
    """Save the model (or adapters) with its processor and the run's record."""
    trainer.save_model(cfg.output)  # full model or adapters, plus the processor
    if not trainer.is_world_process_zero():
        return
    config = {**vars(cfg), "pad_to_square": setup.pad_to_square}
    write_json(
        Path(cfg.output) / RUN_FILE,
        {
            "config": config,
            "family": setup.family.name,
            **record,
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


def _qlora_config(precision: str, deepspeed: str | None, family: Family | None) -> Any:
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

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16 if precision == "bf16" else torch.float16,
        llm_int8_skip_modules=quantization_skip(family) if family else None,
    )
