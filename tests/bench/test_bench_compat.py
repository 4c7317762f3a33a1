"""LLaVA-Bench COCO's own file shapes (qa90_questions.jsonl, qa90_gpt4_answer.jsonl,
caps_boxes_coco2014_val_80.jsonl, model_vqa answer files, rule.json) run through the same tool.
The fixtures are written here in those shapes, from COCO-MINI images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.bench.helpers import read_jsonl, write_jsonl
from tests.bench.replies import last_user

from llava_pose.bench.judge import judge_system
from llava_pose.cli import main

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


def test_without_keypoints_the_box_rules_are_chosen(openai_server, llava_bench, tmp_path) -> None:
    answers = write_jsonl(
        tmp_path / "m.jsonl", [{"question_id": q, "text": "STRONG"} for q in range(6)]
    )
    rc = main(
        [
            "-q",
            "bench",
            "judge",
            "--questions",
            str(llava_bench / "qa90_questions.jsonl"),
            "--context",
            str(llava_bench / "caps_boxes_coco2014_val_80.jsonl"),
            "--reference",
            str(llava_bench / "qa90_gpt4_answer.jsonl"),
            "--answers",
            str(answers),
            "--out",
            str(tmp_path / "r"),
            "--base-url",
            openai_server.url,
        ]
    )
    assert rc == 0
    assert json.loads((tmp_path / "r" / "judge.json").read_text())["rules"] == "boxes"
    content = last_user(openai_server.requests[0].body)
    assert "bounding box" in content and "keypoint" not in content


def test_llava_bench_in_the_wild_caption_field(openai_server, llava_bench, tmp_path) -> None:
    # LLaVA-Bench in-the-wild's context.jsonl: {"image", "caption": "..."} and no instances
    wild = [
        {"image": c["image"], "caption": " ".join(c["captions"])}
        for c in read_jsonl(llava_bench / "caps_boxes_coco2014_val_80.jsonl")
    ]
    context = write_jsonl(tmp_path / "context.jsonl", wild)
    answers = write_jsonl(
        tmp_path / "m.jsonl", [{"question_id": q, "text": "WEAK"} for q in range(6)]
    )
    rc = main(
        [
            "-q",
            "bench",
            "judge",
            "--questions",
            str(llava_bench / "qa90_questions.jsonl"),
            "--context",
            str(context),
            "--reference",
            str(llava_bench / "qa90_gpt4_answer.jsonl"),
            "--answers",
            str(answers),
            "--out",
            str(tmp_path / "r"),
            "--base-url",
            openai_server.url,
        ]
    )
    assert rc == 0
    content = last_user(openai_server.requests[0].body)
    assert content.startswith(
        f"[Context]\n{wild[0]['caption']}\n\n\n\n[Question]"
    ) or content.startswith(f"[Context]\n{wild[1]['caption']}\n\n\n\n[Question]")
