"""The tiny preset, the trainable split (frozen tower), LoRA targets, and loading errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llava_pose.errors import ConfigError
from llava_pose.train.config import DEEPSPEED_PRESETS
from llava_pose.train.data import count_image_tokens
from llava_pose.train.model import (
    build_tiny,
    build_tiny_tokenizer,
    check_trainable,
    load_model,
    load_pretrained,
    setup_trainable,
    trainable_summary,
)

pytestmark = pytest.mark.train

REPO = Path(__file__).resolve().parents[2]


def test_tiny_preset_is_a_consistent_llava() -> None:
    import torch

    model, processor = build_tiny(seed=0)
    token_id, n = count_image_tokens(processor)
    assert token_id == model.config.image_token_id
    assert n == model.config.image_seq_length == 16
    side = processor.image_processor.crop_size["height"]
    features = model.model.get_image_features(
        pixel_values=torch.zeros(1, 3, side, side)
    ).pooler_output
    assert features[0].shape == (n, model.config.text_config.hidden_size)
    tokenizer = processor.tokenizer
    for special in ("<image>", "<pad>", "</s>", "<s>", "<unk>"):
        assert (
            tokenizer.convert_tokens_to_ids(special) != tokenizer.unk_token_id or special == "<unk>"
        )
    assert len(tokenizer) <= model.config.text_config.vocab_size
    # byte fallback: any text encodes and decodes back, even characters never seen in training
    text = "Der Läufer hebt das linke Knie ☃"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_tiny_preset_is_reproducible() -> None:
    first, second = build_tiny_tokenizer(), build_tiny_tokenizer()
    assert first.get_vocab() == second.get_vocab()
    a, _ = build_tiny(seed=3)
    b, _ = build_tiny(seed=3)
    c, _ = build_tiny(seed=4)
    pa, pb, pc = (dict(m.named_parameters()) for m in (a, b, c))
    name = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert (pa[name] == pb[name]).all() and not (pa[name] == pc[name]).all()


def test_full_fine_tuning_freezes_only_the_vision_tower() -> None:
    model, _ = build_tiny()
    model = setup_trainable(model)
    summary = trainable_summary(model)
    assert summary["vision"][0] == 0 and summary["vision"][1] > 0
    assert summary["connector"][0] == summary["connector"][1] > 0
    assert summary["language"][0] == summary["language"][1] > 0
    next(model.model.vision_tower.parameters()).requires_grad_(True)
    with pytest.raises(RuntimeError, match="vision-tower parameters are trainable"):
        check_trainable(model, lora=False)


def test_lora_adapts_language_linears_and_trains_the_connector_in_full() -> None:
    model, _ = build_tiny()
    model = setup_trainable(model, lora=True, r=4, alpha=8)
    names = [n for n, _ in model.named_parameters()]
    lora = [n for n in names if "lora_" in n]
    assert lora and all(".language_model." in n for n in lora)
    for proj in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert any(f".{proj}.lora_A" in n for n in lora), proj
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n for n in trainable if "lora_" not in n} == {
        n for n in names if "multi_modal_projector.modules_to_save" in n
    }
    summary = trainable_summary(model)
    assert summary["language"][0] == 0 and summary["vision"][0] == 0
    assert summary["connector"][0] == summary["connector"][1] > 0


def test_uncached_hub_id_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import huggingface_hub.constants

    # no network here; offline mode makes the hub lookup fail at once instead of after retries
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError) as e:
        load_model("llava-pose-tests/not-cached-anywhere")
    message = str(e.value)
    assert "\n" not in message and "not a local folder" in message
    assert "hf download llava-pose-tests/not-cached-anywhere" in message
    with pytest.raises(ConfigError, match=r"no-such-run: no such model folder$"):
        load_pretrained(str(tmp_path / "no-such-run"))


def test_unfinished_run_names_its_last_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "checkpoint-5").mkdir()
    (tmp_path / "checkpoint-12").mkdir()
    with pytest.raises(ConfigError, match="checkpoint-12"):
        load_pretrained(str(tmp_path))


def test_training_refuses_architectures_outside_the_registry(tmp_path: Path) -> None:
    from transformers import LlamaConfig

    LlamaConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    ).save_pretrained(tmp_path)
    with pytest.raises(ConfigError) as e:
        load_model(str(tmp_path))
    message = str(e.value)
    assert "\n" not in message and f"{tmp_path}: model_type 'llama' is not in" in message
    assert "qwen2_5_vl" in message and "gemma3" in message  # the ones there are


def test_shipped_deepspeed_configs() -> None:
    stages = {"zero2": 2, "zero3": 3, "zero3_offload": 3}
    for name in DEEPSPEED_PRESETS:
        config = json.loads((REPO / "configs" / "deepspeed" / f"{name}.json").read_text())
        assert config["zero_optimization"]["stage"] == stages[name]
        # no optimizer/scheduler sections: the Trainer builds them, keeping --projector-lr's groups
        assert "optimizer" not in config and "scheduler" not in config
        assert (
            config["bf16"]["enabled"] == "auto"
            and config["train_micro_batch_size_per_gpu"] == "auto"
        )
        if stages[name] == 3:
            assert config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    offload = json.loads((REPO / "configs" / "deepspeed" / "zero3_offload.json").read_text())[
        "zero_optimization"
    ]
    assert offload["offload_optimizer"]["device"] == offload["offload_param"]["device"] == "cpu"


def test_recipes_are_the_papers() -> None:
    from llava_pose.config import load_config
    from llava_pose.train.config import TrainConfig

    full = load_config(TrainConfig, {"config": str(REPO / "configs" / "llava_pose_full.yaml")})
    assert (full.model, full.lr, full.epochs, full.batch_size, full.grad_accum) == (
        "llava-hf/llava-1.5-7b-hf", 2e-5, 1.0, 8, 2,
    )  # fmt: skip
    assert (full.warmup_ratio, full.weight_decay, full.lr_scheduler, full.max_length) == (
        0.03,
        0.0,
        "cosine",
        2048,
    )
    assert (
        full.precision == "bf16"
        and full.gradient_checkpointing
        and full.pad_to_square
        and not full.lora
    )
    assert full.deepspeed == "zero3"
    lora = load_config(
        TrainConfig, {"config": str(REPO / "configs" / "llava_pose_lora.yaml"), "output": "x"}
    )
    assert (lora.lora, lora.lora_r, lora.lora_alpha, lora.lr, lora.projector_lr) == (
        True,
        128,
        256,
        2e-4,
        2e-5,
    )
    assert lora.output == "x"  # flags override the file
    defaults = TrainConfig()
    assert (defaults.lr, defaults.batch_size, defaults.grad_accum, defaults.max_length) == (
        2e-5,
        8,
        2,
        2048,
    )
    assert defaults.model == "llava-hf/llava-1.5-7b-hf" and defaults.method == "sft"
    assert defaults.pad_to_square is None  # the family's: llava pads, as LLaVA-1.5


def test_the_modern_recipe_is_the_lora_recipe_on_qwen2_5_vl() -> None:
    """configs/qwen2_5_vl_lora.yaml changes the model and nothing of the recipe but LLaVA's
    square padding (left to the family, which does not pad) and ZeRO (one GPU)."""
    import yaml

    from llava_pose.config import load_config
    from llava_pose.train.config import TrainConfig

    def read(name: str) -> dict:
        return yaml.safe_load((REPO / "configs" / name).read_text())

    modern, lora = read("qwen2_5_vl_lora.yaml"), read("llava_pose_lora.yaml")
    assert modern.pop("model") == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert {k: v for k, v in lora.items() if k not in modern} == {
        "model": "llava-hf/llava-1.5-7b-hf",
        "deepspeed": "zero3",
        "pad_to_square": True,
    }
    assert all(lora[k] == v for k, v in modern.items() if k != "output")
    cfg = load_config(TrainConfig, {"config": str(REPO / "configs" / "qwen2_5_vl_lora.yaml")})
    assert cfg.pad_to_square is None and cfg.lora and cfg.deepspeed is None
