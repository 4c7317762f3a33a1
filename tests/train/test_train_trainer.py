"""Training on the tiny preset: what changes, what must not, resuming, and save -> load -> generate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.train.llava_records import train_args

from llava_pose.cli import main
from llava_pose.train.config import TrainConfig
from llava_pose.train.data import Record

pytestmark = [pytest.mark.train, pytest.mark.slow]

TEXT_RECORD = Record("t", "t.json", None, (("human", "Hi"), ("gpt", "Hello.")))


def _tensors(path: Path) -> dict[str, object]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _log(run: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def test_full_fine_tuning_learns_and_never_touches_the_vision_tower(full_run: Path) -> None:
    import torch

    rows = [r for r in _log(full_run) if "loss" in r]
    losses = [float(r["loss"]) for r in rows]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5, losses
    assert all(r["samples_per_s"] > 0 and r["tokens_per_s"] > 0 for r in rows[1:])

    before = _tensors(full_run / "base-model" / "model.safetensors")
    after = _tensors(full_run / "model.safetensors")
    assert before.keys() == after.keys()
    # saved in llava-hf's on-disk layout
    vision = [k for k in before if k.startswith("vision_tower.")]
    connector = [k for k in before if k.startswith("multi_modal_projector.")]
    language = [k for k in before if k.startswith("language_model.")]
    assert vision and connector and language
    assert all(torch.equal(before[k], after[k]) for k in vision)  # bit-identical
    assert all(not torch.equal(before[k], after[k]) for k in connector)
    changed = [k for k in language if not torch.equal(before[k], after[k])]
    assert len(changed) == len(language)

    run = json.loads((full_run / "llava_pose_run.json").read_text())
    assert run["steps"] == 30 and run["data"] == {"records": 9, "used": 9, "bad": 0, "truncated": 0}


def test_lora_changes_only_adapters_and_the_connector(lora_run: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import LlavaForConditionalGeneration

    assert not (lora_run / "model.safetensors").exists()
    adapter = _tensors(lora_run / "adapter_model.safetensors")
    lora_b = [k for k in adapter if "lora_B" in k]
    assert lora_b and all(adapter[k].abs().sum() > 0 for k in lora_b)  # B starts at zero
    assert any("multi_modal_projector" in k for k in adapter)

    base_dir = lora_run / "base-model"
    base = LlavaForConditionalGeneration.from_pretrained(base_dir).state_dict()
    peft = PeftModel.from_pretrained(
        LlavaForConditionalGeneration.from_pretrained(base_dir), str(lora_run)
    )
    state = {k.removeprefix("base_model.model."): v for k, v in peft.state_dict().items()}
    language = [k for k in base if ".language_model." in k or k.startswith("lm_head")]
    vision = [k for k in base if ".vision_tower." in k]
    assert language and vision
    for key in language + vision:
        stored = (
            state.get(key) if key in state else state[key.replace(".weight", ".base_layer.weight")]
        )
        assert torch.equal(stored, base[key]), key  # base weights bit-identical
    connector = [k for k in base if ".multi_modal_projector." in k]
    assert connector
    for key in connector:
        trained = state[
            key.replace("multi_modal_projector.", "multi_modal_projector.modules_to_save.default.")
        ]
        assert not torch.equal(trained, base[key]), key


def _trainer(model, processor, tmp_path: Path, **options):
    from llava_pose.train.data import sft_dataset
    from llava_pose.train.model import family_of_model
    from llava_pose.train.sft import make_trainer, sft_args

    cfg = TrainConfig(output=str(tmp_path), num_workers=0, **options)
    args = sft_args(cfg, precision="fp32", deepspeed=None, report_to=[])
    return make_trainer(
        model,
        processor,
        sft_dataset([TEXT_RECORD], None),
        args,
        family=family_of_model(model),
        projector_lr=cfg.projector_lr,
    )


def test_connector_learning_rate_is_its_own_param_group(tmp_path: Path) -> None:
    from llava_pose.train.model import build_tiny, setup_trainable

    model, processor = build_tiny()
    model = setup_trainable(model, lora=True, r=4, alpha=8)
    trainer = _trainer(model, processor, tmp_path, lr=2e-4, projector_lr=2e-5, weight_decay=0.1)
    optimizer = trainer.create_optimizer()
    names = {id(p): n for n, p in model.named_parameters()}
    seen = []
    for group in optimizer.param_groups:
        group_names = [names[id(p)] for p in group["params"]]
        seen += group_names
        is_connector = {"multi_modal_projector" in n for n in group_names}
        assert len(is_connector) == 1
        assert group["lr"] == (2e-5 if is_connector.pop() else 2e-4)
        if any(n.endswith("bias") for n in group_names):
            assert group["weight_decay"] == 0.0
    assert sorted(seen) == sorted(n for n, p in model.named_parameters() if p.requires_grad)


def test_text_only_batch_still_sends_a_gradient_through_the_connector(tmp_path: Path) -> None:
    import torch

    from llava_pose.train.model import build_tiny, setup_trainable

    model, processor = build_tiny()
    model = setup_trainable(model)
    trainer = _trainer(model, processor, tmp_path)
    ids = processor.tokenizer("USER: Hi ASSISTANT: Hello.</s>", return_tensors="pt")["input_ids"]
    batch = {"input_ids": ids, "labels": ids.clone(), "attention_mask": torch.ones_like(ids)}
    model.train()
    trainer.compute_loss(model, batch).backward()
    projector = list(model.model.multi_modal_projector.parameters())
    assert all(p.grad is not None and not p.grad.any() for p in projector)  # used, weight 0
    assert all(p.grad is None for p in model.model.vision_tower.parameters())  # frozen
    assert model.lm_head.weight.grad is not None and model.lm_head.weight.grad.any()


def test_save_load_generate_round_trip(tmp_path: Path, train_data: Path, coco_mini: Path) -> None:
    """A model trained in memory, saved as `train` saves it and loaded as `chat` loads it,
    answers exactly as before saving."""
    from llava_pose.train.data import load_records, sft_dataset
    from llava_pose.train.model import build_tiny, setup_trainable
    from llava_pose.train.sft import make_trainer, sft_args
    from llava_pose.vlm.families import families
    from llava_pose.vlm.generate import Conversation, Loaded, generate, load
    from llava_pose.vlm.images import mean_colour

    model, processor = build_tiny(seed=1)
    model = setup_trainable(model)
    template = families()["llava"].prompt_template()
    processor.chat_template = template
    cfg = TrainConfig(
        output=str(tmp_path / "run"), lr=3e-3, max_steps=8, batch_size=3, grad_accum=1,
        num_workers=0, group_by_length=False,
    )  # fmt: skip
    records, _ = load_records([str(train_data)], str(coco_mini))
    colour = mean_colour(processor.image_processor)
    args = sft_args(cfg, precision="fp32", deepspeed=None, report_to=[])
    trainer = make_trainer(
        model, processor, sft_dataset(records, colour), args, family=families()["llava"]
    )
    trainer.train()
    trainer.save_model(cfg.output)

    image = records[0].image
    conversations = [
        Conversation([("user", "What is happening in this image?")], image),
        Conversation(
            [("user", "Describe it."), ("assistant", "A street."), ("user", "Who is there?")], image
        ),
    ]
    model.eval()
    processor.tokenizer.padding_side = "left"
    in_memory = Loaded("memory", model, processor, template, colour, torch_device())
    expected = generate(in_memory, conversations, max_new_tokens=12)
    reloaded = load(cfg.output, device="cpu")
    assert reloaded.template == template and reloaded.pad_colour == colour
    assert reloaded.processor.chat_template == template  # saved with the run
    assert generate(reloaded, conversations, max_new_tokens=12) == expected
    assert any(g.output_tokens > 1 for g in expected)


def torch_device():
    import torch

    return torch.device("cpu")


def test_resume_continues_from_the_last_checkpoint(
    tmp_path: Path, train_data: Path, coco_mini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(train_args(train_data, coco_mini, out, "--resume", "--max-steps", "2")) == 2
    assert "holds no checkpoint" in capsys.readouterr().err
    assert (
        main(train_args(train_data, coco_mini, out, "--max-steps", "4", "--save-steps", "2")) == 0
    )
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert main(train_args(train_data, coco_mini, out, "--max-steps", "6")) == 2
    err = capsys.readouterr().err
    assert "already holds checkpoints" in err and "--resume" in err
    assert (
        main(
            train_args(
                train_data, coco_mini, out, "--max-steps", "6", "--save-steps", "2", "--resume"
            )
        )
        == 0
    )
    steps = [r["step"] for r in _log(out) if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]  # the second run started at step 5
    assert json.loads((out / "llava_pose_run.json").read_text())["steps"] == 6


@pytest.mark.parametrize("preset", ["tiny", "tiny-qwen2_5_vl"])
def test_a_resumed_run_ends_where_an_uninterrupted_one_does(
    preset: str, tmp_path: Path, train_data: Path, coco_mini: Path
) -> None:
    """Resuming loads the checkpoint's weights (saved in the hub layout, which the Trainer's own
    resume does not map back), optimizer and data order: the same final weights, bit for bit."""
    import shutil

    import torch

    from llava_pose.vlm.load import load_pretrained

    def args(out: Path, *extra: str) -> list[str]:
        given = train_args(train_data, coco_mini, out, "--max-steps", "4", "--save-steps", "2")
        given[given.index("tiny")] = preset
        return [*given, *extra]

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(args(straight)) == 0
    resumed.mkdir()
    for part in ("checkpoint-2", "base-model"):  # as a run stopped after its second step left it
        shutil.copytree(straight / part, resumed / part)
    assert main(args(resumed, "--resume")) == 0
    losses = [[r["loss"] for r in _log(run) if "loss" in r] for run in (straight, resumed)]
    assert losses[1] == losses[0][2:]
    first, second = (load_pretrained(str(run))[0].state_dict() for run in (straight, resumed))
    assert all(torch.equal(first[k], second[k]) for k in first)
