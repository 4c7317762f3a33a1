"""Every architecture family of the registry (data/vlm/families.yaml) on its tiny preset, through
the real CLI: it learns a memorisation set, its tower stays bit-identical, only the answers
carry loss, validation measures what TRL batches, and the saved run answers in `chat` and as
`bench answer --model hf:RUN` with the template it was trained with. (llava, the paper's
family, has the other files of this folder.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.train.llava_records import TEXT_ONLY, coco_records, train_args, write_records

from llava_pose.cli import main
from llava_pose.vlm.families import families, presets

pytestmark = pytest.mark.train

FAMILIES = [name for name in presets() if name != "tiny"]
QUESTION = "What is happening in this image?"


def _args(data: Path, coco: Path, out: Path, preset: str, *extra: str) -> list[str]:
    args = train_args(data, coco, out, "--batch-size", "2", *extra)
    args[args.index("tiny")] = preset
    return args


@pytest.fixture(scope="module")
def memorise(tmp_path_factory: pytest.TempPathFactory, coco_mini: Path) -> Path:
    """Two one-turn records, two real images: what is happening, in the images' own captions."""
    rows = coco_records(coco_mini, 2)
    for row in rows:
        row["conversations"] = row["conversations"][:2]
    return write_records(tmp_path_factory.mktemp("data") / "memorise.json", rows)


@pytest.fixture(scope="module", params=FAMILIES)
def run(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    memorise: Path,
    coco_mini: Path,
) -> tuple[str, Path]:
    """A full fine-tune of the preset on the memorisation set, 30 steps, through the CLI."""
    out = tmp_path_factory.mktemp("runs") / request.param
    assert main(_args(memorise, coco_mini, out, request.param, "--max-steps", "30")) == 0
    return request.param, out


def _by_part(folder: Path, preset: str) -> dict[str, dict[str, Any]]:
    from transformers import AutoModelForImageTextToText

    family = presets()[preset]
    model = AutoModelForImageTextToText.from_pretrained(folder)
    parts: dict[str, dict[str, Any]] = {}
    for name, p in model.named_parameters():
        parts.setdefault(family.part_of(name), {})[name] = p.detach().clone()
    return parts


@pytest.mark.slow
def test_the_family_learns_and_never_touches_its_tower(run: tuple[str, Path]) -> None:
    import torch

    preset, out = run
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    losses = [float(r["loss"]) for r in log if "loss" in r]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.3 * sum(losses[:5]) / 5, losses  # memorised
    before, after = _by_part(out / "base-model", preset), _by_part(out, preset)
    assert set(before) == {"vision", "connector", "language"}  # every parameter has a part
    assert all(torch.equal(before["vision"][k], v) for k, v in after["vision"].items())
    assert all(not torch.equal(before["connector"][k], v) for k, v in after["connector"].items())
    assert all(not torch.equal(before["language"][k], v) for k, v in after["language"].items())
    recorded = json.loads((out / "llava_pose_run.json").read_text())
    assert recorded["family"] == presets()[preset].name and recorded["steps"] == 30


@pytest.mark.slow
def test_the_run_answers_in_chat_and_as_hf_with_its_training_template(
    run: tuple[str, Path],
    memorise: Path,
    coco_mini: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from llava_pose.train.sft import training_template
    from llava_pose.vlm.generate import Conversation, load, render_prompt
    from llava_pose.vlm.tiny import build_tiny_processor

    preset, out = run
    family = presets()[preset]
    rows = json.loads(memorise.read_text())
    images = [str(coco_mini / row["image"]) for row in rows]
    capsys.readouterr()
    assert main(["chat", "--model", str(out), "--image", images[0], QUESTION]) == 0
    said = capsys.readouterr().out.split("ASSISTANT:", 1)[1].strip()
    caption = rows[0]["conversations"][1]["value"]
    assert said.split()[:3] == caption.split()[:3], said  # what it learned about this image

    # the hf: answerer, through `bench answer`, answers the same, with the same prompt
    questions = tmp_path / "questions.jsonl"
    questions.write_text(
        "".join(
            json.dumps(
                {"question_id": i, "image": row["image"], "text": QUESTION, "category": "conv"}
            )
            + "\n"
            for i, row in enumerate(rows)
        )
    )
    answers = tmp_path / "answers" / f"{preset}.jsonl"
    args = ["-q", "bench", "answer", "--questions", str(questions), "--model", f"hf:{out}"]
    args += ["--image-root", str(coco_mini), "--out", str(answers), "--max-tokens", "512"]
    assert main(args) == 0
    texts = [json.loads(line)["text"] for line in answers.read_text().splitlines()]
    assert texts[0] == said and all(texts)

    # the run carries the template it was trained with; asking renders a prefix of training's
    loaded = load(str(out), device="cpu")
    trained = training_template(build_tiny_processor(family=family.name), family)
    assert loaded.template == trained == loaded.processor.chat_template
    asked = render_prompt(loaded, Conversation([("user", QUESTION)], images[0]))
    learned = loaded.processor.apply_chat_template(
        [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]},
            {"role": "assistant", "content": [{"type": "text", "text": caption}]},
        ],
        chat_template=trained,
        tokenize=False,
    )
    assert learned.startswith(asked) and caption in learned[len(asked) :]


@pytest.mark.parametrize("preset", FAMILIES)
def test_only_the_answers_carry_loss(preset: str, coco_mini: Path, tmp_path: Path) -> None:
    """The batches SFTTrainer trains on: every label is an answer's token or its end of turn;
    system line, questions, image tokens and padding are -100."""
    from llava_pose.train.config import TrainConfig
    from llava_pose.train.data import IGNORE_INDEX, load_records, sft_dataset
    from llava_pose.train.model import build_tiny
    from llava_pose.train.sft import make_trainer, sft_args

    family = presets()[preset]
    rows = [*coco_records(coco_mini, 2), TEXT_ONLY]
    records, _ = load_records([str(write_records(tmp_path / "d.json", rows))], str(coco_mini))
    model, processor = build_tiny(family=family.name)
    args = sft_args(
        TrainConfig(output=str(tmp_path / "r"), num_workers=0), precision="fp32", deepspeed=None
    )
    trainer = make_trainer(model, processor, sft_dataset(records, None), args, family=family)
    dataset = trainer.train_dataset
    batch = trainer.data_collator([dataset[i] for i in range(len(records))])
    tokenizer = processor.tokenizer
    image_id = tokenizer.convert_tokens_to_ids(processor.image_token)
    for k, record in enumerate(records):
        ids, labels = batch["input_ids"][k], batch["labels"][k]
        learned = labels != IGNORE_INDEX
        assert (labels[learned] == ids[learned]).all()
        assert not learned[ids == image_id].any()  # image tokens never
        spans, current = [], []
        for token, label in zip(ids.tolist(), labels.tolist(), strict=True):
            if label != IGNORE_INDEX:
                current.append(token)
            elif current:
                spans.append(current)
                current = []
        if current:
            spans.append(current)
        answers = [text for speaker, text in record.turns if speaker == "gpt"]
        assert len(spans) == len(answers)
        for span, answer in zip(spans, answers, strict=True):
            decoded = tokenizer.decode(span, skip_special_tokens=False)
            assert decoded.strip().startswith(answer) and decoded.strip() != answer  # + its end
        questions = [
            text.replace("<image>", "").strip() for s, text in record.turns if s == "human"
        ]
        prompt = tokenizer.decode(ids[~learned & (batch["attention_mask"][k] == 1)])
        assert all(q in prompt for q in questions)


@pytest.mark.parametrize("preset", FAMILIES)
def test_validation_measures_what_trl_batches(preset: str, coco_mini: Path, tmp_path: Path) -> None:
    """The lengths the validation pass reports (and --max-length checks) are the batches'
    lengths, image tokens of every image size included."""
    from PIL import Image
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from llava_pose.train.data import Encoder, image_token_counter, load_records, sft_dataset
    from llava_pose.train.sft import training_template
    from llava_pose.vlm.tiny import build_tiny_processor

    family = presets()[preset]
    processor = build_tiny_processor(family=family.name)
    template = training_template(processor, family)
    rows = [*coco_records(coco_mini, 6), TEXT_ONLY]
    records, _ = load_records([str(write_records(tmp_path / "d.json", rows))], str(coco_mini))
    sizes = [Image.open(r.image).size if r.image else None for r in records]
    assert len({s for s in sizes if s}) > 1  # COCO's images differ in size
    tokenizer = processor.tokenizer
    encoder = Encoder(
        tokenizer,
        image_token_id=tokenizer.convert_tokens_to_ids(processor.image_token),
        num_image_tokens=image_token_counter(processor),
        max_length=4096,
        chat_template=template,
    )
    collate = DataCollatorForVisionLanguageModeling(
        processor=processor, assistant_only_loss=True, chat_template=template
    )
    dataset = sft_dataset(records, None)
    batch = collate([dataset[i] for i in range(len(records))])
    for k, (record, size) in enumerate(zip(records, sizes, strict=True)):
        encoded = encoder.encode(record, size)
        assert encoded.full_length == int(batch["attention_mask"][k].sum()), (record.id, size)
        assert sum(label != -100 for label in encoded.labels) == int(
            (batch["labels"][k] != -100).sum()
        )


@pytest.mark.parametrize("name", list(families()))
def test_every_registry_entry_splits_its_tiny_model(name: str) -> None:
    """check_trainable asserts the paper's split for every family, full and LoRA: every
    parameter in a part, the tower frozen, the connector trained in full (under LoRA, less
    the bare parameters the entry leaves as they are: LLaVA-OneVision's image_newline)."""
    from llava_pose.train.model import (
        build_tiny,
        check_trainable,
        setup_trainable,
        trainable_summary,
    )

    family = families()[name]
    for lora in (False, True):
        model, _ = build_tiny(family=name)
        model = setup_trainable(model, family=family, lora=lora, r=4, alpha=8)
        summary = check_trainable(model, lora=lora, family=family)
        held = {n: p for n, p in model.named_parameters() if family.frozen_under_lora(n)}
        assert not lora or not any(p.requires_grad for p in held.values())
        left = sum(p.numel() for p in held.values()) if lora else 0
        assert summary["vision"][0] == 0 < summary["vision"][1]
        assert summary["connector"][0] == summary["connector"][1] - left > 0
        assert "other" not in trainable_summary(model, family)
    if family.frozen_with_lora:  # and a full fine-tune trains them
        model, _ = build_tiny(family=name)
        model = setup_trainable(model, family=family)
        trained = [p.requires_grad for n, p in model.named_parameters()]
        assert all(trained[i] for i, (n, _) in enumerate(model.named_parameters())
                   if family.frozen_under_lora(n))  # fmt: skip


def test_smolvlm_checkpoints_are_the_idefics3_entry() -> None:
    """SmolVLM2 (model_type smolvlm) is Idefics3's architecture: same entry, same split."""
    import torch
    from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration

    from llava_pose.train.model import setup_trainable, trainable_summary
    from llava_pose.vlm.families import family_of

    config = SmolVLMConfig(
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        text_config={"model_type": "llama", "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 128},
    )  # fmt: skip
    torch.manual_seed(0)
    model = SmolVLMForConditionalGeneration(config)
    family = family_of("smolvlm")
    assert family is families()["idefics3"]
    summary = trainable_summary(setup_trainable(model, family=family), family)
    assert set(summary) == {"vision", "connector", "language"}


def test_a_registry_entry_that_misses_a_module_fails_the_check() -> None:
    from dataclasses import replace

    from llava_pose.train.model import build_tiny, check_trainable

    family = families()["qwen2_5_vl"]
    model, _ = build_tiny(family="qwen2_5_vl")
    broken = replace(family, language=("lm_head",))  # the language model's layers forgotten
    with pytest.raises(RuntimeError, match="in no part of the qwen2_5_vl entry") as e:
        check_trainable(model, lora=False, family=broken)
    assert "model.language_model" in str(e.value)


@pytest.mark.parametrize("preset", FAMILIES)
def test_a_text_only_batch_still_runs_the_tower_and_connector(preset: str, tmp_path: Path) -> None:
    """Under ZeRO-3 every rank must make the same calls: a batch without images runs the
    frozen tower and the connector on a blank image, weighted 0."""
    import torch

    from llava_pose.train.config import TrainConfig
    from llava_pose.train.data import Record, sft_dataset
    from llava_pose.train.model import build_tiny, setup_trainable
    from llava_pose.train.sft import make_trainer, sft_args

    family = presets()[preset]
    model, processor = build_tiny(family=family.name)
    model = setup_trainable(model, family=family)
    record = Record("t", "t.json", None, (("human", "Hi"), ("gpt", "Hello.")))
    args = sft_args(
        TrainConfig(output=str(tmp_path), num_workers=0), precision="fp32", deepspeed=None
    )
    trainer = make_trainer(model, processor, sft_dataset([record], None), args, family=family)
    batch = trainer.data_collator([trainer.train_dataset[0]])
    assert "pixel_values" not in batch
    model.train()
    trainer.compute_loss(model, batch).backward()
    parts: dict[str, list[Any]] = {}
    for name, p in model.named_parameters():
        parts.setdefault(family.part_of(name), []).append(p)
    assert all(
        p.grad is not None and not p.grad.any() for p in parts["connector"]
    )  # used, weight 0
    assert all(p.grad is None for p in parts["vision"])  # frozen
    assert any(p.grad is not None and p.grad.any() for p in parts["language"])
    del torch


@pytest.mark.slow
def test_a_lora_run_of_a_modern_family_round_trips(
    memorise: Path, coco_mini: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Qwen3-VL with LoRA: its connector (the merger and the deepstack mergers, a module list
    inside the tower) trained in full beside the adapters; chat loads the run directly and
    `export` merges it into a plain checkpoint that answers the same."""
    out = tmp_path / "lora"
    extra = ("--max-steps", "4", "--lora", "--lora-r", "8", "--lora-alpha", "16")
    assert main(_args(memorise, coco_mini, out, "tiny-qwen3_vl", *extra)) == 0
    assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()
    config = json.loads((out / "adapter_config.json").read_text())
    assert sorted(config["modules_to_save"]) == [
        "model.visual.deepstack_merger_list.0",
        "model.visual.merger",
    ]
    image = str(sorted((coco_mini / "val2017").iterdir())[0])
    ask = ["--image", image, QUESTION, "--max-new-tokens", "6"]
    capsys.readouterr()
    assert main(["chat", "--model", str(out), *ask]) == 0
    direct = capsys.readouterr().out
    merged = tmp_path / "merged"
    assert main(["export", str(out), "--output", str(merged)]) == 0
    capsys.readouterr()
    assert main(["chat", "--model", str(merged), *ask]) == 0
    assert capsys.readouterr().out == direct
    saved = json.loads((merged / "processor_config.json").read_text())
    assert saved["processor_class"] == "Qwen3VLProcessor"


def test_a_family_processor_without_torchvision_saves_a_plain_checkpoint(tmp_path: Path) -> None:
    """Qwen's processors hold a video processor, which transformers builds on torchvision only;
    ours leaves it out, and still saves the files a torchvision machine loads it from."""
    from PIL import Image

    from llava_pose.vlm.load import load_processor
    from llava_pose.vlm.processors import has_torchvision
    from llava_pose.vlm.tiny import build_tiny_processor

    if has_torchvision():
        pytest.skip("torchvision is installed: the plain processor is used")
    processor = build_tiny_processor(family="qwen2_5_vl")
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    assert saved["processor_class"] == "Qwen2_5_VLProcessor"
    video = json.loads((tmp_path / "video_preprocessor_config.json").read_text())
    assert video["video_processor_type"] == "Qwen2VLVideoProcessor"
    again = load_processor(str(tmp_path))
    assert type(again).__name__ == "Qwen2_5_VLProcessor"
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}]
    text = processor.apply_chat_template(messages, tokenize=False)
    assert again.apply_chat_template(messages, tokenize=False) == text
    image = Image.new("RGB", (64, 48), (10, 20, 30))
    first, second = (p(text=text, images=[image], return_tensors="pt") for p in (processor, again))
    assert first["input_ids"].tolist() == second["input_ids"].tolist()
    assert (first["pixel_values"] == second["pixel_values"]).all()


def test_a_template_without_generation_markers_is_refused(
    memorise: Path, coco_mini: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template = tmp_path / "plain.jinja"
    template.write_text("{% for m in messages %}{{ m['content'][0]['text'] }}{% endfor %}")
    out = tmp_path / "run"
    args = _args(memorise, coco_mini, out, "tiny-qwen2_5_vl", "--chat-template", str(template))
    assert main([*args, "--max-steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "plain.jinja: has no {% generation %} markers" in err
    assert not out.exists()
