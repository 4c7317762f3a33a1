"""The five commands of the benchmark end to end on COCO-MINI val2017: the loopback OpenAI server
is teacher, answerer and first judge, the loopback Anthropic server the second judge."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from tests.ehpaub.helpers import KEY, read_jsonl

from llava_pose.cli import main


def run(*args: object) -> int:
    return main(["-q", *map(str, args)])


def test_build_answer_judge_judge_report(
    openai_server, anthropic_server, coco_mini, tmp_path
) -> None:
    bench, answers = tmp_path / "ehpaub", tmp_path / "answers"
    oa = ("--base-url", openai_server.url)
    assert (
        run(
            "bench",
            "build",
            "--coco",
            coco_mini,
            "--split",
            "val2017",
            "--images",
            "5",
            "--seed",
            "0",
            "--teacher",
            "openai:gpt-4o",
            "--out",
            bench,
            *oa,
        )
        == 0
    )
    # two "models" behind the OpenAI-compatible endpoint; the judge scores them 5 and 7
    assert (
        run(
            "bench",
            "answer",
            "--bench",
            bench,
            "--model",
            "openai:gpt-4o-mini",
            "--out",
            answers / "gpt-4o-mini.jsonl",
            "--image-root",
            coco_mini,
            *oa,
        )
        == 0
    )
    assert (
        run(
            "bench",
            "answer",
            "--bench",
            bench,
            "--model",
            "openai:my-strong-vlm",
            "--out",
            answers / "my-strong-vlm.jsonl",
            "--image-root",
            coco_mini,
            *oa,
        )
        == 0
    )
    files = sorted(answers.glob("*.jsonl"))
    assert (
        run(
            "bench",
            "judge",
            "--bench",
            bench,
            "--answers",
            *files,
            "--judge",
            "openai:gpt-4o",
            "--out",
            tmp_path / "reviews",
            "--swap",
            *oa,
        )
        == 0
    )
    assert (
        run(
            "bench",
            "judge",
            "--bench",
            bench,
            "--answers",
            *files,
            "--judge",
            "anthropic:claude-sonnet-4-20250514",
            "--out",
            tmp_path / "reviews-claude",
            "--base-url",
            anthropic_server.url,
        )
        == 0
    )
    report = tmp_path / "report"
    assert (
        run(
            "bench",
            "report",
            "--bench",
            bench,
            "--reviews",
            tmp_path / "reviews",
            tmp_path / "reviews-claude",
            "--out",
            report,
        )
        == 0
    )

    assert len(read_jsonl(bench / "questions.jsonl")) == 15
    assert len(read_jsonl(tmp_path / "reviews" / "gpt-4o-mini.jsonl")) == 15
    with (report / "scores.csv").open() as f:
        scores = {(r["judge"], r["model"], r["category"]): r for r in csv.DictReader(f)}
    for judge in ("openai:gpt-4o", "anthropic:claude-sonnet-4-20250514"):
        for category in ("conv", "detail", "complex", "all"):
            assert scores[(judge, "gpt-4o-mini", category)]["relative"] == "62.5"  # 5 / 8
            assert scores[(judge, "my-strong-vlm", category)]["relative"] == "87.5"  # 7 / 8
        assert scores[(judge, "gpt-4o-mini", "all")]["scored"] == "15"
    index = (report / "index.md").read_text()
    assert (
        "## Judge: openai:gpt-4o" in index
        and "## Judge: anthropic:claude-sonnet-4-20250514" in index
    )
    assert "| gpt-4o-mini | 62.5 | 62.5 |" in index  # one column per judge
    assert "Every question of every model was scored by every judge." in index
    assert "5 images of COCO val2017, seed 0, questions and references by openai:gpt-4o" in index
    (agree,) = list(csv.DictReader((report / "agreement.csv").open()))
    assert agree["kendall_tau"] == "1.000000" and agree["answers"] == "30"
    assert float(agree["pearson"]) == 1.0
    for png in ("chart_openai-gpt-4o.png", "chart_anthropic-claude-sonnet-4-20250514.png"):
        assert (report / png).stat().st_size > 1000
    # no key anywhere in what the commands wrote
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix in (".jsonl", ".json", ".md", ".csv"):
            assert KEY not in path.read_text(), path
    assert json.loads((tmp_path / "reviews" / "judge.json").read_text())["swap"] is True


def test_bench_without_a_step_prints_its_help(capsys) -> None:
    assert main(["bench"]) == 2
    out = capsys.readouterr().out
    assert all(step in out for step in ("build", "answer", "judge", "report"))


def test_the_cli_stays_light() -> None:
    code = (
        "import sys; from llava_pose.cli import build_parser; build_parser(); "
        "heavy = [m for m in ('torch', 'transformers', 'matplotlib', 'numpy') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_folder_given_to_images_says_where_a_folder_goes(tmp_path, capsys) -> None:
    # --images is the benchmark's size here, the folder source of the other commands is
    # --image-folder: a newcomer who types the other commands' spelling is told so
    with pytest.raises(SystemExit) as e:
        main(["bench", "build", "--images", str(tmp_path), "--out", str(tmp_path / "b")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "invalid int value" in err and "--image-folder DIR" in err
    assert not (tmp_path / "b").exists()
