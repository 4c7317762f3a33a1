"""`bench build` on real COCO-MINI val2017 with the loopback OpenAI server as the teacher."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from tests.ehpaub.helpers import read_jsonl
from tests.ehpaub.replies import respond, system_of
from tests.servers import OpenAIServer

from llava_pose.cli import main
from llava_pose.coco import read_split, select_images
from llava_pose.prompts import load_prompts, pick_instruction

PAPER = load_prompts("paper")


def build(coco: Path, out: Path, server: OpenAIServer, *extra: str) -> int:
    return main(
        [
            "-q",
            "bench",
            "build",
            "--coco",
            str(coco),
            "--split",
            "val2017",
            "--out",
            str(out),
            "--teacher",
            "openai:gpt-4o",
            "--base-url",
            server.url,
            *extra,
        ]
    )


def eligible_order(coco: Path, seed: int = 0) -> list:
    """The benchmark rule written out independently: a person with >= 10 labelled keypoints
    whose box covers >= 5% of the image; then the seeded order."""
    contexts = read_split(coco, "val2017", min_keypoints=0, human_only=False).contexts
    ok = [
        c
        for c in contexts
        if any(
            sum(v > 0 for _, _, v in p.keypoints) >= 10
            and (p.box[2] - p.box[0]) * (p.box[3] - p.box[1]) >= 0.05
            for p in c.persons
        )
    ]
    return select_images(ok, len(ok), seed)


def task_of(body: dict) -> str:
    system = system_of(body)
    if system == PAPER.system["conversation"]:
        return "conversation"
    return "detail" if system == PAPER.system["detail"] else "reasoning"


def image_of(body: dict, contexts: list) -> int:
    """Which image a teacher request is about: its first caption is in the messages."""
    text = json.dumps(body["messages"])
    return next(c.image_id for c in contexts if json.dumps(c.captions[0])[1:-1] in text)


def test_build_writes_the_benchmark_in_llava_bench_shape(
    openai_server, coco_mini, tmp_path
) -> None:
    out = tmp_path / "ehpaub"
    assert build(coco_mini, out, openai_server, "--images", "4") == 0
    order = eligible_order(coco_mini)
    assert len(order) == 9  # COCO-MINI val2017 (tests/data/coco-mini) under the benchmark rule
    chosen = order[:4]
    assert len(openai_server.requests) == 12
    assert {task_of(r.body) for r in openai_server.requests} == {
        "conversation",
        "detail",
        "reasoning",
    }

    questions = read_jsonl(out / "questions.jsonl")
    refs = read_jsonl(out / "answers_ref.jsonl")
    contexts = read_jsonl(out / "context.jsonl")
    assert [q["question_id"] for q in questions] == list(range(12))
    assert [q["category"] for q in questions] == ["conv", "detail", "complex"] * 4
    assert [q["image"] for q in questions] == [c.image for c in chosen for _ in range(3)]
    assert all((coco_mini / q["image"]).is_file() for q in questions)
    for i, ctx in enumerate(chosen):
        conv, detail, complex_ = questions[3 * i : 3 * i + 3]
        assert conv["text"] in {"How do they seem?", "Is anyone else around?"} or conv[
            "text"
        ].startswith("What is the person doing (")
        assert detail["text"] == pick_instruction(PAPER, ctx.image_id, 0)
        assert complex_["text"].startswith("Why is the person standing still (")
        assert refs[3 * i + 1]["text"].startswith("A person is in the scene")
        assert (
            refs[3 * i + 2]["text"]
            == "They are waiting for the ball and keep their weight balanced."
        )
    assert all(r["model_id"] == "openai:gpt-4o" and r["metadata"]["attempt"] == 0 for r in refs)
    assert [r["question_id"] for r in refs] == list(range(12))
    # the judge context: LLaVA's captions + instances, each person with 17 keypoints
    assert [c["image"] for c in contexts] == [c.image for c in chosen]
    first = contexts[0]
    assert first["captions"] == list(chosen[0].captions)
    persons = [i for i in first["instances"] if i["category"] == "person"]
    assert len(persons) == len(chosen[0].persons) and all(
        len(p["keypoints"]) == 17 for p in persons
    )
    assert all(len(i["bbox"]) == 4 for i in first["instances"])

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["images"] == 4 and manifest["questions"] == 12
    assert manifest["seed"] == 0 and manifest["split"] == "val2017"
    assert manifest["image_root"] == str(coco_mini.resolve())
    assert manifest["teacher"] == "openai:gpt-4o"
    assert (
        manifest["selection"]["images_eligible"] == 9
        and manifest["selection"]["min_keypoints"] == 10
    )
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    assert manifest["requests"]["called"] == 12 and manifest["cost_usd"]["this_run"] > 0


def test_rebuild_resumes_from_the_cache_and_is_reproducible(
    openai_server, coco_mini, tmp_path
) -> None:
    out = tmp_path / "a"
    assert build(coco_mini, out, openai_server, "--images", "3") == 0
    files = {
        n: (out / n).read_bytes() for n in ("questions.jsonl", "answers_ref.jsonl", "context.jsonl")
    }
    assert len(openai_server.completed) == 9
    assert build(coco_mini, out, openai_server, "--images", "3") == 0
    assert len(openai_server.completed) == 9  # nothing paid twice
    assert {n: (out / n).read_bytes() for n in files} == files
    # elsewhere, with a fresh cache: the same benchmark
    assert build(coco_mini, tmp_path / "b", openai_server, "--images", "3") == 0
    assert (tmp_path / "b" / "questions.jsonl").read_bytes() == files["questions.jsonl"]
    # another seed picks other images
    assert build(coco_mini, tmp_path / "c", openai_server, "--images", "3", "--seed", "1") == 0
    images = {q["image"] for q in read_jsonl(tmp_path / "c" / "questions.jsonl")}
    assert images != {q["image"] for q in read_jsonl(out / "questions.jsonl")}
    assert images == {c.image for c in eligible_order(coco_mini, seed=1)[:3]}


@pytest.mark.parametrize("mode", ["online", "batch"])
def test_unusable_replies_are_reasked_then_the_image_is_replaced(
    openai_server, coco_mini, tmp_path, mode: str
) -> None:
    """The same re-ask loop online and through the batch API (--wait: each round of re-asks
    is one more batch)."""
    order = eligible_order(coco_mini)
    bad, flaky = order[0].image_id, order[1].image_id
    seen: set[int] = set()

    def teacher(body: dict) -> str:
        image, task = image_of(body, order), task_of(body)
        if image == bad and task == "conversation":
            return "I am sorry, I cannot help with that."  # never a Q/A pair
        if image == flaky and task == "detail" and flaky not in seen:
            seen.add(flaky)
            return "The keypoints show a person at 0.45, 0.62."  # dropped by the filters once
        return respond(body)

    openai_server.responder = teacher
    out = tmp_path / "ehpaub"
    batch = ("--batch", "--wait", "--poll-interval", "0.01") if mode == "batch" else ()
    assert build(coco_mini, out, openai_server, "--images", "4", *batch) == 0
    bodies = [r.body for r in openai_server.requests] + [
        item.body for b in openai_server.batches for item in b.items
    ]
    if mode == "batch":
        assert len(openai_server.batches) == 4 and not openai_server.requests
    questions = read_jsonl(out / "questions.jsonl")
    # image 0 is gone; images 1-3 keep their order and image 4 takes the free place
    assert [q["image"] for q in questions[::3]] == [c.image for c in order[1:5]]
    conv_asks = [b for b in bodies if image_of(b, order) == bad and task_of(b) == "conversation"]
    assert len(conv_asks) == 3 and len({b["seed"] for b in conv_asks}) == 3
    rejected = read_jsonl(out / "rejected.jsonl")
    assert sorted((r["image_id"], r["task"], r["attempt"]) for r in rejected) == sorted(
        [
            (bad, "conversation", 0),
            (bad, "conversation", 1),
            (bad, "conversation", 2),
            (flaky, "detail", 0),
        ]
    )
    assert all(r["reason"].startswith("unusable reply") for r in rejected)
    assert {r["reason"] for r in rejected if r["image_id"] == flaky} == {
        "unusable reply (mentions_source)"
    }
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["rejected_replies"] == 4
    assert [d["image_id"] for d in manifest["dropped_images"]] == [bad]
    assert manifest["filtered"]["malformed"] == 3
    refs = read_jsonl(out / "answers_ref.jsonl")
    assert (
        refs[1]["metadata"]["attempt"] == 1 and refs[1]["metadata"]["seed"] != 0
    )  # flaky's detail


def test_too_few_images_is_an_incomplete_benchmark(
    openai_server, coco_mini, tmp_path, capsys
) -> None:
    out = tmp_path / "ehpaub"
    assert build(coco_mini, out, openai_server, "--images", "20", "--concurrency", "32") == 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert (
        manifest["complete"] is False
        and manifest["images"] == 9
        and manifest["images_requested"] == 20
    )
    assert len(read_jsonl(out / "questions.jsonl")) == 27
    assert "only 9 of 20 images" in capsys.readouterr().err


def test_dry_run_budget_and_missing_source(openai_server, coco_mini, tmp_path, capsys) -> None:
    assert build(coco_mini, tmp_path / "d", openai_server, "--images", "4", "--dry-run") == 0
    assert "requests: 12" in capsys.readouterr().out
    assert openai_server.requests == [] and not (tmp_path / "d").exists()
    out = tmp_path / "b"
    assert build(coco_mini, out, openai_server, "--images", "4", "--max-cost", "0.0001") == 3
    assert not (out / "questions.jsonl").exists() and not (out / "manifest.json").exists()
    rc = main(
        [
            "-q",
            "bench",
            "build",
            "--split",
            "val2017",
            "--teacher",
            "rules",
            "--out",
            str(tmp_path / "x"),
        ]
    )
    assert rc == 2 and "--coco: required" in capsys.readouterr().err


def test_the_offline_teacher_builds_a_benchmark_without_a_network(coco_mini, tmp_path) -> None:
    out = tmp_path / "ehpaub"
    rc = main(
        [
            "-q",
            "bench",
            "build",
            "--coco",
            str(coco_mini),
            "--split",
            "val2017",
            "--images",
            "3",
            "--teacher",
            "rules",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    questions = read_jsonl(out / "questions.jsonl")
    assert len(questions) == 9 and all(q["text"] for q in questions)
    assert all(r["text"] for r in read_jsonl(out / "answers_ref.jsonl"))
