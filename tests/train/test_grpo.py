"""`llava-pose train --method grpo` through the real CLI: prompts from PoseQA and from the
detail and reasoning records, both rewards, the per-step log, the refusal of evaluation images,
and the reward-improvement measurement (perf/grpo_reward_cpu.py) on a fixed COCO-MINI task."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import one_line_error, perf_script
from tests.train.llava_records import coco_records, write_records

from llava_pose.cli import main

pytestmark = pytest.mark.train

REPO = Path(__file__).resolve().parents[2]


def ok(*args: str) -> None:
    assert main(list(args)) == 0, args


@pytest.fixture(scope="module")
def poseqa_train(tmp_path_factory: pytest.TempPathFactory, coco_mini: Path) -> Path:
    """PoseQA built from COCO-MINI's training split: the prompts."""
    out = tmp_path_factory.mktemp("poseqa") / "train"
    ok("poseqa", "build", "--coco", str(coco_mini), "--split", "train2017", "--out", str(out))
    return out


@pytest.fixture(scope="module")
def poseqa_val(tmp_path_factory: pytest.TempPathFactory, coco_mini: Path) -> Path:
    out = tmp_path_factory.mktemp("poseqa") / "val"
    ok("poseqa", "build", "--coco", str(coco_mini), "--split", "val2017", "--out", str(out))
    return out


@pytest.fixture(scope="module")
def free_text(tmp_path_factory: pytest.TempPathFactory, coco_mini: Path) -> Path:
    """The offline teacher's detail and reasoning records of COCO-MINI train2017 (and its
    conversations, which GRPO leaves out)."""
    out = tmp_path_factory.mktemp("generate")
    ok("generate", "--coco", str(coco_mini), "--split", "train2017", "--out", str(out))
    return out / "llava_pose_all.json"


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def check_args(coco: Path, *extra: str) -> list[str]:
    """`--check`: the prompts read and checked, no weights loaded."""
    return [
        "train", "-q", "--method", "grpo", "--model", "tiny", "--image-root", str(coco), "--check", *extra,
    ]  # fmt: skip


def test_check_counts_prompts_of_both_kinds(
    poseqa_train: Path, free_text: Path, coco_mini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = check_args(coco_mini, "--poseqa", str(poseqa_train), "--data", str(free_text))
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out
    questions = _lines(poseqa_train / "questions.jsonl")
    records = json.loads(free_text.read_text())
    free = [r for r in records if r["id"].endswith(("-detail", "-reasoning"))]
    assert any(r["id"].endswith("-conv") for r in records)  # there are conversations to leave out
    images = {q["image"] for q in questions} | {r["image"] for r in free}
    assert f"{len(questions) + len(free)} prompts about {len(images)} images" in out
    assert f"{len(questions)} PoseQA (exact match), {len(free)} free text (claims)" in out


def test_a_benchmark_sharing_images_refuses_the_run(
    poseqa_train: Path,
    poseqa_val: Path,
    free_text: Path,
    coco_mini: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # the training questions given as the evaluation: every prompt leaks
    n = len(_lines(poseqa_train / "questions.jsonl"))
    rc = main(
        check_args(coco_mini, "--poseqa", str(poseqa_train), "--eval-bench", str(poseqa_train))
    )
    err = one_line_error(
        capsys,
        rc,
        "--eval-bench",
        f"{n} training prompt(s) are about {n} of its images",
        "e.g. train2017/",
    )
    assert str(poseqa_train) in err
    # an E-HPAUB built from the same split as the free-text prompts, 2014 names for the same ids
    ehpaub = tmp_path / "ehpaub"
    ok("bench", "build", "--coco", str(coco_mini), "--split", "train2017", "--images", "2",
       "--teacher", "rules", "--out", str(ehpaub))  # fmt: skip
    capsys.readouterr()
    leaked = {q["image"] for q in _lines(ehpaub / "questions.jsonl")}
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    (renamed / "questions.jsonl").write_text(
        "".join(
            json.dumps({**q, "image": "val2014/COCO_val2014_" + Path(q["image"]).name}) + "\n"
            for q in _lines(ehpaub / "questions.jsonl")
        )
    )
    records = [
        r for r in json.loads(free_text.read_text()) if r["id"].endswith(("-detail", "-reasoning"))
    ]
    expected = sum(r["image"] in leaked for r in records)
    for bench in (ehpaub, renamed):
        rc = main(
            check_args(
                coco_mini, "--data", str(free_text), "--eval-bench", str(poseqa_val), str(bench)
            )
        )
        one_line_error(
            capsys,
            rc,
            str(bench),
            f"{expected} training prompt(s) are about {len(leaked)} of its images",
        )
    # a real run refuses before it loads anything or writes its output folder
    out = tmp_path / "run"
    rc = main(["train", "-q", "--method", "grpo", "--model", "tiny", "--poseqa", str(poseqa_train),
               "--eval-bench", str(poseqa_train), "--output", str(out)])  # fmt: skip
    one_line_error(capsys, rc, "leaks it")
    assert not out.exists()
    # a disjoint benchmark (val2017) is accepted
    ok(*check_args(coco_mini, "--poseqa", str(poseqa_train), "--eval-bench", str(poseqa_val)))
    # a folder that is no benchmark is one line too
    rc = main(check_args(coco_mini, "--poseqa", str(poseqa_train), "--eval-bench", str(tmp_path)))
    one_line_error(capsys, rc, "not a PoseQA or E-HPAUB folder")


def test_prompts_of_an_evaluation_split_are_refused(
    poseqa_val: Path, coco_mini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(check_args(coco_mini, "--poseqa", str(poseqa_val)))
    one_line_error(capsys, rc, "evaluation split", "e.g. val2017/", "--split train2017")


def test_prompt_errors_are_one_line(
    coco_mini: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one_line_error(capsys, main(check_args(coco_mini)), "--poseqa DIR", "--data FILE.json")
    conversations = write_records(tmp_path / "conv.json", coco_records(coco_mini, 2))
    rc = main(check_args(coco_mini, "--data", str(conversations)))
    one_line_error(
        capsys, rc, "conv.json", "none of the 2 records of --data is a detail or reasoning record"
    )
    rc = main(check_args(coco_mini, "--poseqa", str(tmp_path)))
    one_line_error(capsys, rc, "not a PoseQA folder")


def test_prompts_with_a_bad_image_stop_the_run_or_are_left_out(
    poseqa_train: Path, coco_mini: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    questions = _lines(poseqa_train / "questions.jsonl")
    root = tmp_path / "root"  # the first question's image only
    (root / Path(questions[0]["image"]).parent).mkdir(parents=True)
    (root / questions[0]["image"]).write_bytes((coco_mini / questions[0]["image"]).read_bytes())
    args = [*check_args(root, "--poseqa", str(poseqa_train))]
    missing = len(questions) - 1
    one_line_error(
        capsys, main(args), f"{missing} of {len(questions)} prompts have a bad image", "--skip-bad"
    )
    assert main([*args, "--skip-bad"]) == 0
    assert capsys.readouterr().out.startswith("1 prompts about 1 images")


@pytest.mark.slow
def test_grpo_runs_with_both_rewards_and_logs_every_step(
    poseqa_train: Path, free_text: Path, coco_mini: Path, tmp_path: Path
) -> None:
    """LoRA, PoseQA's two questions and the first detail and reasoning prompts in every step."""
    out = tmp_path / "run"
    args = [
        "train", "--method", "grpo", "--model", "tiny", "--poseqa", str(poseqa_train), "--data", str(free_text),
        "--image-root", str(coco_mini), "--max-samples", "4", "--output", str(out), "--lora", "--lora-r", "8",
        "--lora-alpha", "16", "--batch-size", "16", "--grad-accum", "1", "--num-generations", "4",
        "--max-completion-length", "12", "--max-steps", "2", "--logging-steps", "1", "--num-workers", "0",
        "--lr", "1e-3", "--no-gradient-checkpointing",
    ]  # fmt: skip
    assert main(args) == 0
    steps = [row for row in _lines(out / "train_log.jsonl") if "reward" in row]
    assert [row["step"] for row in steps] == [1, 2]
    questions = _lines(poseqa_train / "questions.jsonl")
    families = {f"reward/{q['category']}" for q in questions}
    families |= {"reward/detail", "reward/reasoning"}
    for row in steps:
        assert families <= set(row), row
        for key in ("kl", "claims/contradicted_rate", "claims/per_answer",
                    "rewards/poseqa_exact_match/mean", "rewards/pose_claims/mean", "samples_per_s"):  # fmt: skip
            assert row.get(key) is not None, (key, row)
        assert 0.0 <= row["claims/contradicted_rate"] <= 1.0
    assert (out / "adapter_config.json").is_file() and not (out / "ref").exists()
    run = json.loads((out / "llava_pose_run.json").read_text())
    assert run["config"]["method"] == "grpo" and run["prompts"]["total"] == 4
    # the run is asked as it was trained: the family's template is its chat template
    from llava_pose.vlm.families import families as registry

    assert (out / "chat_template.jinja").read_text() == registry()["llava"].prompt_template()


@pytest.mark.slow
def test_the_reward_rises_on_a_fixed_coco_mini_task(coco_mini: Path, tmp_path: Path) -> None:
    """The same prompts, the same sampling seed: the GRPO run earns more than its start. The
    loop learns; a tiny model on two questions says nothing about real models."""
    result = perf_script("grpo_reward_cpu").measure(
        tmp_path, coco_mini, steps=20, samples=16, seed=0
    )
    assert result["after"] >= result["before"] + 0.15, result
    curve = result["curve"]
    assert [p["step"] for p in curve] == list(range(1, 21))
    first, last = curve[0]["reward"], sum(p["reward"] for p in curve[-5:]) / 5
    assert last > first, curve  # the rewards of the run's own samples rise too
    assert curve[0]["kl"] == 0.0 and max(p["kl"] for p in curve) > 0.0  # it moved from the start
    assert all(row.get("reward/facing") is not None for row in result["log"] if "reward" in row)
