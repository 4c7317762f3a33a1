"""`bench report` on hand-written review files: every number below is computed by hand."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest
from tests.ehpaub.helpers import read_jsonl, write_jsonl
from tests.ehpaub.llava_scripts import llava_summarize

from llava_pose.cli import main

# small_bench: question ids 0-5, categories conv, detail, complex, conv, detail, complex
CATEGORY = ["conv", "detail", "complex"] * 2


LLAVA_BENCH = Path(__file__).resolve().parents[1] / "data" / "llava-bench"


def ours(path: Path, model: str, tuples: dict[int, list[float] | str]) -> None:
    """Review lines as `bench judge` writes them; a str value is a status without scores, and
    such lines go to unscored/NAME beside the file."""
    rows = []
    for qid, t in tuples.items():
        status = t if isinstance(t, str) else "ok"
        rows.append(
            {
                "id": qid + 1,
                "question_id": qid,
                "category": CATEGORY[qid],
                "content": "...",
                "tuple": None if isinstance(t, str) else t,
                "status": status,
                "model_id": model,
                "judge": "openai:gpt-4o",
                "failures": [],
            }
        )
    write_jsonl(path, [r for r in rows if r["tuple"] is not None])
    write_jsonl(path.parent / "unscored" / path.name, [r for r in rows if r["tuple"] is None])


def llava(path: Path, tuples: dict[int, list[float]]) -> None:
    """Review lines as LLaVA's eval_gpt_review_visual.py writes them ([-1, -1]: its parser failed)."""
    write_jsonl(
        path,
        [
            {
                "id": q + 1,
                "question_id": q,
                "answer1_id": q,
                "answer2_id": q,
                "category": CATEGORY[q],
                "content": "8 7\n...",
                "tuple": t,
            }
            for q, t in tuples.items()
        ],
    )


@pytest.fixture
def two_judges(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "reviews-a", tmp_path / "reviews-b"
    a.mkdir()
    (a / "judge.json").write_text(json.dumps({"judge": "openai:gpt-4o", "files": {}}))
    ours(a / "m1.jsonl", "m1", {0: [8, 6], 1: [9, 7], 2: [7, 7], 3: [8, 4], 4: [6, 6], 5: "failed"})
    ours(a / "m2.jsonl", "m2", {0: [8, 8], 1: [8, 10], 2: [8, 6], 3: [8, 8], 4: "missing_answer"})
    llava(b / "m1.jsonl", {0: [8, 5], 1: [8, 7], 2: [-1, -1], 3: [8, 5], 4: [8, 5], 5: [8, 6]})
    llava(b / "m2.jsonl", {0: [8, 8], 1: [8, 8], 2: [8, 7], 3: [8, 8], 4: [8, 10], 5: [8, 9]})
    return a, b


def rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_tables_agreement_missing_and_charts(two_judges, small_bench, tmp_path) -> None:
    a, b = two_judges
    out = tmp_path / "report"
    rc = main(
        [
            "-q",
            "bench",
            "report",
            "--bench",
            str(small_bench),
            "--reviews",
            str(a),
            str(b),
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    scores = {(r["judge"], r["model"], r["category"]): r for r in rows(out / "scores.csv")}
    expected = {
        # judge A, m1: conv (8,6),(8,4) -> 5/8; detail (9,7),(6,6) -> 6.5/7.5; complex (7,7);
        # all: 30/5 over 38/5 = 6.0/7.6
        ("openai:gpt-4o", "m1"): {
            "conv": "62.5",
            "detail": "86.7",
            "complex": "100.0",
            "all": "78.9",
        },
        # m2: detail (8,10) only; complex (8,6); all 32/4 over 8
        ("openai:gpt-4o", "m2"): {
            "conv": "100.0",
            "detail": "125.0",
            "complex": "75.0",
            "all": "100.0",
        },
        # judge B (LLaVA's files, named by their folder): m1 q2 is [-1, -1] and left out
        ("reviews-b", "m1"): {"conv": "62.5", "detail": "75.0", "complex": "75.0", "all": "70.0"},
        # m2: all = round(50/6, 3) / 8 = 8.333 / 8
        ("reviews-b", "m2"): {
            "conv": "100.0",
            "detail": "112.5",
            "complex": "100.0",
            "all": "104.2",
        },
    }
    for (judge, model), cells in expected.items():
        for category, relative in cells.items():
            assert scores[(judge, model, category)]["relative"] == relative, (
                judge,
                model,
                category,
            )
    row = scores[("openai:gpt-4o", "m1", "all")]
    assert (row["reference_x10"], row["model_x10"], row["scored"]) == ("76.0", "60.0", "5")
    assert row["failed"] == "1" and row["missing_answer"] == "0"
    row = scores[("openai:gpt-4o", "m2", "all")]
    assert (row["missing_answer"], row["unreviewed"], row["scored"]) == ("1", "1", "4")
    assert scores[("openai:gpt-4o", "m2", "detail")]["missing_answer"] == "1"
    assert scores[("reviews-b", "m1", "complex")]["failed"] == "1"

    table = rows(out / "table_openai-gpt-4o.csv")
    assert table[0] == {
        "model": "m1",
        "conv": "62.5",
        "detail": "86.7",
        "complex": "100.0",
        "all": "78.9",
    }

    (agree,) = rows(out / "agreement.csv")
    assert agree["judge_a"] == "openai:gpt-4o" and agree["judge_b"] == "reviews-b"
    assert float(agree["kendall_tau"]) == 1.0 and agree["models"] == "2"
    # model scores of the answers both judged: m1 q0,q1,q3,q4 and m2 q0-q3
    # A: 6 7 4 6 8 10 6 8; B: 5 7 5 5 8 8 7 8 -> sxy 14.625, sxx 22.875, syy 13.875
    assert agree["answers"] == "8"
    assert float(agree["pearson"]) == pytest.approx(14.625 / math.sqrt(22.875 * 13.875), abs=1e-6)
    assert -1 <= float(agree["spearman"]) <= 1

    index = (out / "index.md").read_text()
    assert "| m1 | 62.5 | 86.7 | 100.0 | 78.9 |" in index
    assert (
        "| m1 | 50.0 / 80.0 (n=2) | 65.0 / 75.0 (n=2) | 70.0 / 70.0 (n=1) | 60.0 / 76.0 (n=5) |"
        in index
    )
    assert "| m1 | 78.9 | 70.0 |" in index  # one column per judge
    assert "| openai:gpt-4o | m1 | review failed (no readable scores) | 1 | 5 |" in index
    assert "| openai:gpt-4o | m2 | no answer from the model | 1 | 4 |" in index
    assert "| openai:gpt-4o | m2 | no review line at all | 1 | 5 |" in index
    assert "| reviews-b | m1 | review failed (no readable scores) | 1 | 2 |" in index
    assert (
        "Benchmark: 6 questions (2 conversation, 2 detail description, 2 complex reasoning)"
        in index
    )
    for chart in ("chart_openai-gpt-4o.png", "chart_reviews-b.png"):
        assert f"]({chart})" in index
        assert (out / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_without_a_benchmark_and_bad_review_files(two_judges, tmp_path, capsys) -> None:
    a, _ = two_judges
    out = tmp_path / "report"
    assert main(["-q", "bench", "report", "--reviews", str(a), "--out", str(out)]) == 0
    assert "no --bench" in capsys.readouterr().err
    assert "no review line at all" not in (out / "index.md").read_text()
    assert not (out / "agreement.csv").exists()  # one judge: nothing to compare
    bad = tmp_path / "bad"
    llava(bad / "m.jsonl", {0: [8, 5], 1: [8, 7]})
    lines = (bad / "m.jsonl").read_text().splitlines()
    (bad / "m.jsonl").write_text("\n".join([*lines, lines[0]]) + "\n")
    assert main(["-q", "bench", "report", "--reviews", str(bad), "--out", str(out)]) == 2
    assert "m.jsonl: duplicate question_id 0" in capsys.readouterr().err
    assert (
        main(["-q", "bench", "report", "--reviews", str(tmp_path / "nowhere"), "--out", str(out)])
        == 2
    )
    assert "review folder or file not found" in capsys.readouterr().err


def test_llavas_older_review_files_with_score_are_read_not_failed(tmp_path: Path) -> None:
    source = LLAVA_BENCH / "review_alpaca-13b_vicuna-13b.jsonl"  # LLaVA's own, first 3 lines
    folder = tmp_path / "reviews-gpt4"
    folder.mkdir()
    shutil.copy(source, folder / source.name)
    lines = read_jsonl(folder / source.name)
    assert all("score" in line and "tuple" not in line for line in lines)
    out = tmp_path / "report"
    assert main(["-q", "bench", "report", "--reviews", str(folder), "--out", str(out)]) == 0
    (row,) = rows(out / "scores.csv")  # no category in these lines: one column, "all"
    # three reviews of [8.0, 9.0]: 9 / 8 = 112.5 %
    assert (row["category"], row["relative"], row["reference_x10"], row["model_x10"]) == (
        "all",
        "112.5",
        "80.0",
        "90.0",
    )
    assert (row["scored"], row["failed"]) == ("3", "0")
    # the same numbers as LLaVA's summarize_gpt_review.py prints for the file
    assert llava_summarize(files=[folder / source.name]) == {
        source.stem: {"all": (112.5, 80.0, 90.0)}
    }


def test_a_question_in_both_the_review_and_its_unscored_file_is_an_input_error(
    two_judges, tmp_path, capsys
) -> None:
    a, _ = two_judges
    unscored = a / "unscored" / "m1.jsonl"
    line = read_jsonl(unscored)[0]
    write_jsonl(unscored, [line, {**line, "question_id": 0}])  # 0 is scored in m1.jsonl
    rc = main(["-q", "bench", "report", "--reviews", str(a), "--out", str(tmp_path / "r")])
    assert rc == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"llava-pose: error: {unscored}: duplicate question_id 0 (also in ")
    assert "rerun `bench judge`" in last


def test_pose_faithfulness_is_counted_from_the_answers_without_a_judge(
    two_judges, small_bench, tmp_path
) -> None:
    from llava_pose.ehpaub.files import load_bench
    from llava_pose.verify import check_text

    texts = {
        0: "Everyone has both arms raised above the head.",
        1: "The person is standing with the left arm raised.",
        2: "It is a sunny day.",
        3: "Everyone has both arms raised above the head, facing away from the camera.",
        4: "Nobody is sitting.",
        5: "The people are lying on the grass.",
    }
    answers = write_jsonl(
        tmp_path / "answers" / "m1.jsonl",
        [{"question_id": q, "text": t, "model_id": "m1"} for q, t in texts.items()],
    )
    out = tmp_path / "report"
    args = ["-q", "bench", "report", "--reviews", str(two_judges[0]), "--bench", str(small_bench)]
    assert main([*args, "--answers", str(answers), "--out", str(out)]) == 0
    bench = load_bench(small_bench, need_reference=False)
    by_category: dict[str, list[int]] = {}
    for q in bench.questions:  # the expectation, one answer at a time
        verdicts = [c.verdict for c in check_text(texts[q.question_id], bench.contexts[q.image])]
        claims, contra = by_category.setdefault(q.category, [0, 0])
        by_category[q.category] = [claims + len(verdicts), contra + verdicts.count("contradicted")]
    table = {(r["model"], r["category"]): r for r in rows(out / "faithfulness.csv")}
    assert sum(c for c, _ in by_category.values()) > 0 and any(k for _, k in by_category.values())
    for category, (claims, contra) in by_category.items():
        row = table[("m1", category)]
        assert (int(row["answers"]), int(row["claims"]), int(row["contradicted"])) == (
            2,
            claims,
            contra,
        )
    total = table[("m1", "all")]
    assert int(total["claims"]) == sum(c for c, _ in by_category.values())
    assert "## Pose faithfulness (judge-free)" in (out / "index.md").read_text()


def test_faithfulness_needs_the_benchmark(two_judges, tmp_path, capsys) -> None:
    args = ["bench", "report", "--reviews", str(two_judges[0]), "--answers", "a.jsonl"]
    assert main([*args, "--out", str(tmp_path / "r")]) == 2
    assert "--answers: needs --bench" in capsys.readouterr().err
