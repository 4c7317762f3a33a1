"""The GPU throughput script cannot run here: prove its code path on the CPU (--dry-run), its
refusal without CUDA, and that its configurations are LLaVA-1.5-7B's and Qwen2.5-VL-7B's size;
its GRPO step (generation, scoring and update timed apart) runs in the same dry run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import perf_script

pytestmark = [pytest.mark.train, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "perf" / "train_throughput_gpu.py"


@pytest.fixture(scope="module")
def dry_run() -> subprocess.CompletedProcess[str]:
    """Every model and variant in one run (the slow part: torch and two models' setups)."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--variant", "all", "--completion-len", "6"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_dry_run_trains_every_model_and_variant_through_the_real_code(
    dry_run: subprocess.CompletedProcess[str],
) -> None:
    done = dry_run
    lines = {line.split(":")[0]: line for line in done.stdout.splitlines()}
    for model in ("llava-1.5-7b", "qwen2.5-vl-7b"):
        for variant in ("lora (dry run)", "full-offload (dry run, no DeepSpeed)"):
            line = lines.get(f"{model} {variant}", "")
            assert "samples/s" in line and "tokens/s" in line, done.stdout
            # the synthetic samples are as long as asked, as the template and processor make them
            assert 180 <= int(line.split(" tokens/sample")[0].rsplit(" ", 1)[1]) <= 200, line
    assert "0.0M trainable" not in done.stdout


def test_dry_run_times_generation_and_update_of_a_grpo_step(
    dry_run: subprocess.CompletedProcess[str],
) -> None:
    """Both models, one GRPO step through `llava-pose train --method grpo`'s trainer,
    generation and update timed apart, the answers as long as asked."""
    done = dry_run
    lines = {line.split(":")[0]: line for line in done.stdout.splitlines()}
    for model in ("llava-1.5-7b", "qwen2.5-vl-7b"):
        line = lines.get(f"{model} grpo (dry run)", "")
        assert "answers of 6 tokens per step" in line, done.stdout  # min_new_tokens held
        parts = re.search(
            r"step ([\d.]+)s = generation ([\d.]+)s \((\d+) tokens/s\) \+ scoring ([\d.]+)s .* "
            r"\+ update ([\d.]+)s",
            line,
        )
        assert parts, line
        _, generation, tokens_per_s, scoring, update = map(float, parts.groups())
        # the rollout (generation, then scoring) lies inside the step, the update after it
        assert generation > 0 and scoring > 0 and update > 0 and tokens_per_s > 0
        assert "M trainable" in line and "(0.0M trainable)" not in line
        assert re.search(r"\d+-token prompts", line), line


def test_without_a_gpu_it_says_so() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the script would run for real")
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 2 and "needs a CUDA GPU" in done.stderr and "--dry-run" in done.stderr


def test_the_7b_configuration_is_llava_1_5_7b() -> None:
    import torch
    from transformers import LlavaForConditionalGeneration

    module = perf_script("train_throughput_gpu")
    with torch.device("meta"):
        model = LlavaForConditionalGeneration._from_config(
            module.llava_7b_config(), dtype=torch.bfloat16
        )
    count = lambda key: sum(p.numel() for n, p in model.named_parameters() if key in n)  # noqa: E731
    assert round(count("") / 1e9, 2) == 7.06
    assert round(count("vision_tower") / 1e6) == 304  # CLIP ViT-L/14-336
    assert round(count("multi_modal_projector") / 1e6) == 21  # 1024 -> 4096 -> 4096 MLP
    assert module.llava_7b_config().image_seq_length == (336 // 14) ** 2 == 576


def test_the_qwen_configuration_is_qwen2_5_vl_7b() -> None:
    import torch
    from transformers import AutoModelForImageTextToText

    module = perf_script("train_throughput_gpu")
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(
            module.qwen2_5_vl_7b_config(), dtype=torch.bfloat16
        )
    count = lambda key: sum(p.numel() for n, p in model.named_parameters() if key in n)  # noqa: E731
    assert round(count("") / 1e9, 2) == 8.29  # Qwen2.5-VL-7B-Instruct's model card: 8.29B
    assert round(count("visual.merger") / 1e6, 1) == 44.6  # 2x2 patches: 5120 -> 5120 -> 3584 MLP
    assert round(count("language_model") / 1e9, 2) == 7.07
