"""LLaVA-Bench COCO's own files (qa90_questions.jsonl, qa90_gpt4_answer.jsonl,
caps_boxes_coco2014_val_80.jsonl, rule.json, review files) run through the same tool.

LLaVA's real files, a few lines each, are in tests/data/llava-bench/ (see its README); the
end-to-end answer test writes fixtures in the same shapes from COCO-MINI images, because
LLaVA-Bench's val2014 images are not in the repository."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from tests.ehpaub.helpers import read_jsonl, write_jsonl
from tests.ehpaub.llava_scripts import LLAVA_SYSTEM, llava_review_request, llava_summarize
from tests.ehpaub.replies import judge_reply, last_user

from llava_pose.cli import main
from llava_pose.ehpaub.judge import judge_system

LLAVA_BENCH = Path(__file__).resolve().parents[1] / "data" / "llava-bench"
QUESTIONS = LLAVA_BENCH / "qa90_questions.jsonl"
REFERENCE = LLAVA_BENCH / "qa90_gpt4_answer.jsonl"
CONTEXT = LLAVA_BENCH / "caps_boxes_coco2014_val_80.jsonl"
RULE_JSON = LLAVA_BENCH / "rule.json"


def llava_answers(path: Path, marker: str, garbled: tuple[int, ...] = ()) -> Path:
    """A model's answers in the shape of LLaVA's model_vqa.py, to LLaVA's real questions."""
    rows = [
        {
            "question_id": q["question_id"],
            "prompt": q["text"],
            "text": f"{'GARBLED' if q['question_id'] in garbled else marker} answer "
            f"{q['question_id']}.",
            "answer_id": f"ans-{q['question_id']}",
            "model_id": path.stem,
            "metadata": {},
        }
        for q in read_jsonl(QUESTIONS)
    ]
    return write_jsonl(path, rows)


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def judge_llava_bench(
    answers: Path, out: Path, server, *extra: str, context: Path = CONTEXT
) -> int:
    """`bench judge` on LLaVA's real files, as the README's LLaVA-Bench command runs it."""
    return main(
        [
            "-q",
            "bench",
            "judge",
            "--questions",
            str(QUESTIONS),
            "--context",
            str(context),
            "--reference",
            str(REFERENCE),
            "--answers",
            str(answers),
            "--out",
            str(out),
            "--base-url",
            server.url,
            *extra,
        ]
    )


RULES = {
    c: {"role": "Assistant", "prompt": f"Rate the two answers ({c})."}
    for c in ("conv", "detail", "complex")
}


@pytest.fixture
def llava_bench(tmp_path: Path, val_contexts: list) -> Path:
    folder = tmp_path / "llava-bench"
    questions, answers, context = [], [], []
    for i, ctx in enumerate(val_contexts[:2]):
        name = Path(ctx.image).name  # LLaVA names images by file name in one folder
        context.append(
            {
                "id": name.removesuffix(".jpg"),
                "image": name,
                "captions": list(ctx.captions),
                "instances": [{"category": o.category, "bbox": list(o.box)} for o in ctx.objects]
                + [{"category": "person", "bbox": list(p.box)} for p in ctx.persons]
                + [{"category": "chair", "bbox": [0.0, 0.609, 0.097, 1.0]}],
            }
        )
        for k, category in enumerate(("conv", "detail", "complex")):
            qid = 3 * i + k
            questions.append(
                {
                    "question_id": qid,
                    "image": name,
                    "text": f"What about {qid}?",
                    "category": category,
                }
            )
            answers.append(
                {"question_id": qid, "text": f"GPT-4 answer {qid}.", "category": category}
            )
    write_jsonl(folder / "qa90_questions.jsonl", questions)
    write_jsonl(folder / "qa90_gpt4_answer.jsonl", answers)
    write_jsonl(folder / "caps_boxes_coco2014_val_80.jsonl", context)
    (folder / "rule.json").write_text(json.dumps(RULES))
    return folder


def llava_content(ctx: dict, question: dict, ans1: str, ans2: str, rule: dict) -> str:
    """What LLaVA's eval_gpt_review_visual.py sends, rewritten from its source."""
    cap_str = "\n".join(ctx["captions"])
    box_str = "\n".join(
        [f"{instance['category']}: {instance['bbox']}" for instance in ctx["instances"]]
    )
    role = rule["role"]
    return (
        f"[Context]\n{cap_str}\n\n{box_str}\n\n"
        f"[Question]\n{question['text']}\n\n"
        f"[{role} 1]\n{ans1}\n\n[End of {role} 1]\n\n"
        f"[{role} 2]\n{ans2}\n\n[End of {role} 2]\n\n"
        f"[System]\n{rule['prompt']}\n\n"
    )


def test_llava_bench_coco_runs_through_answer_judge_and_report(
    openai_server, llava_bench, coco_mini, tmp_path
) -> None:
    files = llava_bench
    answers = tmp_path / "answers" / "llava-v1.5-13b.jsonl"
    rc = main(
        [
            "-q",
            "bench",
            "answer",
            "--bench",
            str(files / "qa90_questions.jsonl"),
            "--image-root",
            str(coco_mini / "val2017"),
            "--model",
            "openai:llava-v1.5-13b",
            "--base-url",
            openai_server.url,
            "--out",
            str(answers),
        ]
    )
    assert rc == 0 and len(read_jsonl(answers)) == 6
    openai_server.reset()

    reviews = tmp_path / "reviews"
    rc = main(
        [
            "-q",
            "bench",
            "judge",
            "--questions",
            str(files / "qa90_questions.jsonl"),
            "--context",
            str(files / "caps_boxes_coco2014_val_80.jsonl"),
            "--reference",
            str(files / "qa90_gpt4_answer.jsonl"),
            "--rules",
            str(files / "rule.json"),
            "--answers",
            str(answers),
            "--out",
            str(reviews),
            "--base-url",
            openai_server.url,
        ]
    )
    assert rc == 0
    questions = {q["text"]: q for q in read_jsonl(files / "qa90_questions.jsonl")}
    contexts = {c["image"]: c for c in read_jsonl(files / "caps_boxes_coco2014_val_80.jsonl")}
    model_answers = {a["question_id"]: a["text"] for a in read_jsonl(answers)}
    assert len(openai_server.requests) == 6
    for r in openai_server.requests:
        content = last_user(r.body)
        q = next(q for text, q in questions.items() if f"[Question]\n{text}\n" in content)
        expected = llava_content(
            contexts[q["image"]],
            q,
            f"GPT-4 answer {q['question_id']}.",
            model_answers[q["question_id"]],
            RULES[q["category"]],
        )
        assert content == expected  # byte for byte LLaVA's prompt
        assert r.body["messages"][0]["content"] == judge_system()
    lines = read_jsonl(reviews / "llava-v1.5-13b.jsonl")
    assert all(
        line["tuple"] == [8.0, 5.0] and line["answer1_id"] == line["question_id"] for line in lines
    )
    assert json.loads((reviews / "judge.json").read_text())["rules"].endswith("rule.json")

    report = tmp_path / "report"
    rc = main(
        [
            "-q",
            "bench",
            "report",
            "--questions",
            str(files / "qa90_questions.jsonl"),
            "--reviews",
            str(reviews),
            "--out",
            str(report),
        ]
    )
    assert rc == 0
    assert "| llava-v1.5-13b | 62.5 | 62.5 | 62.5 | 62.5 |" in (report / "index.md").read_text()


def test_llava_rule_json_and_system_reproduce_llavas_judge_request(openai_server, tmp_path) -> None:
    answers = llava_answers(tmp_path / "answers" / "llava-v1.5-13b.jsonl", "STRONG")
    out = tmp_path / "reviews"
    rc = judge_llava_bench(
        answers,
        out,
        openai_server,
        "--rules",
        str(RULE_JSON),
        "--system",
        "llava",
        "--judge",
        "openai:gpt-4-0314",
    )
    assert rc == 0
    rule_dict = json.loads(RULE_JSON.read_text())
    contexts = {c["image"]: c for c in read_jsonl(CONTEXT)}
    questions = read_jsonl(QUESTIONS)
    references = read_jsonl(REFERENCE)
    ours = read_jsonl(answers)
    expected = [
        llava_review_request(q, contexts[q["image"]], ref, ans, rule_dict)
        for q, ref, ans in zip(questions, references, ours, strict=True)
    ]
    sent = sorted(openai_server.requests, key=lambda r: last_user(r.body))
    expected.sort(key=lambda body: body["messages"][1]["content"])
    assert len(sent) == len(expected) == 6
    for r, body in zip(sent, expected, strict=True):
        # LLaVA's request exactly, plus the seed that makes reviews reproducible
        assert r.body == {**body, "seed": 0}
    # and the review lines carry LLaVA's fields with the values its script writes
    by_qid = {line["question_id"]: line for line in read_jsonl(out / "llava-v1.5-13b.jsonl")}
    for idx, (q, ref, ans) in enumerate(zip(questions, references, ours, strict=True)):
        line = by_qid[q["question_id"]]
        request = llava_review_request(q, contexts[q["image"]], ref, ans, rule_dict)
        review = judge_reply(request)
        llava_line = {
            "id": idx + 1,
            "question_id": q["question_id"],
            "answer1_id": ref.get("answer_id", ref["question_id"]),
            "answer2_id": ans.get("answer_id", ans["answer_id"]),
            "category": q["category"],
            "content": review,
            "tuple": [float(v) for v in review.split("\n")[0].split(" ")],
        }
        assert {k: line[k] for k in llava_line} == llava_line
    meta = json.loads((out / "judge.json").read_text())
    assert meta["system"] == LLAVA_SYSTEM and meta["rules"] == str(RULE_JSON)


def test_system_message_is_ours_by_default_or_any_text(openai_server, tmp_path) -> None:
    answers = llava_answers(tmp_path / "m.jsonl", "WEAK")
    assert judge_llava_bench(answers, tmp_path / "r1", openai_server) == 0
    assert {r.body["messages"][0]["content"] for r in openai_server.requests} == {judge_system()}
    assert judge_system() != LLAVA_SYSTEM
    openai_server.reset()
    assert judge_llava_bench(answers, tmp_path / "r2", openai_server, "--system", "Be fair.") == 0
    assert {r.body["messages"][0]["content"] for r in openai_server.requests} == {"Be fair."}
    openai_server.reset()
    assert judge_llava_bench(answers, tmp_path / "r3", openai_server, "--system", " ") == 2
    assert openai_server.requests == [] and not (tmp_path / "r3").exists()


def test_llavas_summarizer_reads_a_review_folder_with_a_failed_review(
    openai_server, tmp_path
) -> None:
    answers = llava_answers(tmp_path / "answers" / "llava-v1.5-13b.jsonl", "STRONG", garbled=(1,))
    out = tmp_path / "reviews"
    extra = ("--rules", str(RULE_JSON), "--system", "llava", "--max-attempts", "1")
    assert judge_llava_bench(answers, out, openai_server, *extra) == 1  # one review failed
    failed = read_jsonl(out / "unscored" / "llava-v1.5-13b.jsonl")
    assert [(f["question_id"], f["status"], f["tuple"]) for f in failed] == [(1, "failed", None)]

    # LLaVA's summarize_gpt_review.py, on the folder (-d) and on the file (-f): 5 scored
    # answers, reference 8 and model 7 each; question 1 (detail) is not among them
    expected = {"all": (87.5, 80.0, 70.0)}
    expected |= {c: (87.5, 80.0, 70.0) for c in ("conv", "detail", "complex")}
    assert llava_summarize(directory=out) == {"llava-v1.5-13b": expected}
    assert llava_summarize(files=[out / "llava-v1.5-13b.jsonl"]) == {"llava-v1.5-13b": expected}
    # the copy is faithful: it crashes, as the original does, on a null tuple in the file
    old = write_jsonl(
        tmp_path / "old" / "review.jsonl", [*read_jsonl(out / "llava-v1.5-13b.jsonl"), *failed]
    )
    with pytest.raises((TypeError, ValueError)):
        llava_summarize(files=[old])

    report = tmp_path / "report"
    rc = main(
        [
            "-q",
            "bench",
            "report",
            "--questions",
            str(QUESTIONS),
            "--reviews",
            str(out),
            "--out",
            str(report),
        ]
    )
    assert rc == 0
    scores = {r["category"]: r for r in csv_rows(report / "scores.csv")}
    assert (scores["all"]["relative"], scores["all"]["scored"], scores["all"]["failed"]) == (
        "87.5",
        "5",
        "1",
    )
    assert scores["detail"]["failed"] == "1" and scores["conv"]["failed"] == "0"
    assert "| review failed (no readable scores) | 1 | 1 |" in (report / "index.md").read_text()
    # given the review file rather than its folder, the report finds its unscored lines too
    one = tmp_path / "report-file"
    review_file = out / "llava-v1.5-13b.jsonl"
    assert main(["-q", "bench", "report", "--reviews", str(review_file), "--out", str(one)]) == 0
    (row,) = [r for r in csv_rows(one / "scores.csv") if r["category"] == "all"]
    assert (row["scored"], row["failed"]) == ("5", "1")


def test_without_keypoints_the_box_rules_are_chosen(openai_server, tmp_path) -> None:
    answers = llava_answers(tmp_path / "m.jsonl", "STRONG")
    assert judge_llava_bench(answers, tmp_path / "r", openai_server) == 0
    assert json.loads((tmp_path / "r" / "judge.json").read_text())["rules"] == "boxes"
    content = last_user(openai_server.requests[0].body)
    assert "bounding box" in content and "keypoint" not in content


def test_llava_bench_in_the_wild_caption_field(openai_server, tmp_path) -> None:
    # LLaVA-Bench in-the-wild's context.jsonl: {"image", "caption": "..."} and no instances
    wild = [{"image": c["image"], "caption": " ".join(c["captions"])} for c in read_jsonl(CONTEXT)]
    context = write_jsonl(tmp_path / "context.jsonl", wild)
    answers = llava_answers(tmp_path / "m.jsonl", "WEAK")
    assert judge_llava_bench(answers, tmp_path / "r", openai_server, context=context) == 0
    starts = {last_user(r.body).split("[Question]")[0] for r in openai_server.requests}
    assert starts == {f"[Context]\n{w['caption']}\n\n\n\n" for w in wild}
