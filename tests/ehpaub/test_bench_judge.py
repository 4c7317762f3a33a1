"""`bench judge`: the review prompt, the real CLI against the loopback OpenAI and Anthropic
servers (scripted judges, malformed replies), swap, samples, resume and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.ehpaub.helpers import model_answers, read_jsonl, write_jsonl
from tests.ehpaub.replies import judge_reply, last_user
from tests.servers import AnthropicServer, OpenAIServer

from llava_pose.cli import main
from llava_pose.ehpaub.judge import Rule, judge_system, load_rules, review_content
from llava_pose.records import ImageContext, Obj, Person


def judge(bench: Path, out: Path, answers: list[Path], server, *extra: str) -> int:
    return main(
        [
            "-q",
            "bench",
            "judge",
            "--bench",
            str(bench),
            "--answers",
            *map(str, answers),
            "--out",
            str(out),
            "--base-url",
            server.url,
            *extra,
        ]
    )


def reviews_by_qid(path: Path) -> dict[int, dict]:
    return {r["question_id"]: r for r in read_jsonl(path)}


def all_reviews(out: Path, name: str) -> dict[int, dict]:
    """Every question's line by id: scored ones from OUT/NAME (LLaVA's shape: a tuple on every
    line), unscored ones from OUT/unscored/NAME (no tuple)."""
    scored = read_jsonl(out / name)
    unscored_file = out / "unscored" / name
    unscored = read_jsonl(unscored_file) if unscored_file.exists() else []
    assert all(r["tuple"] is not None and r["status"] == "ok" for r in scored)
    assert all(r["tuple"] is None and r["status"] != "ok" for r in unscored)
    return {r["question_id"]: r for r in [*scored, *unscored]}


# -- pure: the prompt ---------------------------------------------------------------------------


def test_review_content_is_llavas_layout_with_keypoints() -> None:
    ctx = ImageContext(
        image_id=1,
        image="val2017/000000000001.jpg",
        width=640,
        height=480,
        captions=("A man swings a bat.", "A batter at the plate."),
        objects=(Obj("baseball bat", (0.5, 0.2, 0.6, 0.4)),),
        persons=(
            Person((0.1, 0.2, 0.3, 0.9), ((0.2, 0.25, 2),) + ((0.0, 0.0, 0),) * 16),
            Person((0.7, 0.1, 0.8, 0.5), ((0.0, 0.0, 0),) * 17),  # no labelled keypoint
        ),
    )
    rule = Rule(role="Assistant", prompt="Rate them.")
    zeros = ", ".join(["[0.0, 0.0, 0]"] * 16)
    expected = (
        "[Context]\nA man swings a bat.\nA batter at the plate.\n\n"
        "baseball bat: [0.5, 0.2, 0.6, 0.4]\n"
        f"person: [0.1, 0.2, 0.3, 0.9]\nkeypoints: [[0.2, 0.25, 2], {zeros}]\n"
        "person: [0.7, 0.1, 0.8, 0.5]\n\n"
        "[Question]\nWhat is he doing?\n\n"
        "[Assistant 1]\nSwinging.\n\n[End of Assistant 1]\n\n"
        "[Assistant 2]\nBatting.\n\n[End of Assistant 2]\n\n"
        "[System]\nRate them.\n\n"
    )
    assert review_content(ctx, "What is he doing?", "Swinging.", "Batting.", rule) == expected


def test_rules_say_what_the_context_holds(val_contexts) -> None:
    contexts = {c.image: c for c in val_contexts[:2]}
    name, pose = load_rules("auto", contexts)
    assert name == "pose" and set(pose) == {"conv", "detail", "complex"}
    assert all("keypoints" in r.prompt and "single line" in r.prompt for r in pose.values())
    boxes_only = {
        k: ImageContext(c.image_id, c.image, 1, 1, c.captions, c.objects)
        for k, c in contexts.items()
    }
    name, boxes = load_rules("auto", boxes_only)
    assert name == "boxes" and all("keypoint" not in r.prompt for r in boxes.values())


# -- through the CLI and the loopback servers ----------------------------------------------------


def test_judge_sends_the_protocol_and_scores_each_model(
    openai_server: OpenAIServer, small_bench: Path, tmp_path: Path
) -> None:
    weak = model_answers(tmp_path / "answers" / "weak.jsonl", small_bench, "WEAK")
    strong = model_answers(tmp_path / "answers" / "strong.jsonl", small_bench, "STRONG")
    out = tmp_path / "reviews"
    assert judge(small_bench, out, [weak, strong], openai_server) == 0

    requests = openai_server.requests
    assert len(requests) == 12 and all(r.completed for r in requests)
    for r in requests:
        body = r.body
        assert body["model"] == "gpt-4o" and body["temperature"] == 0.2 and body["seed"] == 0
        assert body["max_tokens"] == 1024
        assert body["messages"][0] == {"role": "system", "content": judge_system()}
        content = body["messages"][1]["content"]
        assert content.startswith("[Context]\n") and "\nkeypoints: [[" in content
        assert "[Assistant 1]\nReference answer " in content  # the reference is Assistant 1
        assert content.endswith(
            "[End of Assistant 2]\n\n[System]\n" + load_rules("pose", {})[1]["conv"].prompt + "\n\n"
        )

    weak_reviews = reviews_by_qid(out / "weak.jsonl")
    assert [r["tuple"] for r in weak_reviews.values()] == [[8.0, 5.0]] * 6
    assert [r["tuple"] for r in read_jsonl(out / "strong.jsonl")] == [[8.0, 7.0]] * 6
    first = weak_reviews[0]
    assert first["category"] == "conv" and first["status"] == "ok" and first["model_id"] == "weak"
    assert first["answer1_id"] == "ref-0" and first["content"].startswith("8 5\n")
    assert first["judge"] == "openai:gpt-4o" and first["swap"] is False and first["failures"] == []
    meta = json.loads((out / "judge.json").read_text())
    assert meta["judge"] == "openai:gpt-4o" and meta["rules"] == "pose"
    assert meta["files"]["weak.jsonl"]["ok"] == 6


def test_swap_judges_both_orders_and_maps_scores_back(
    openai_server: OpenAIServer, small_bench: Path, tmp_path: Path
) -> None:
    weak = model_answers(tmp_path / "weak.jsonl", small_bench, "WEAK")
    out = tmp_path / "reviews"
    # the judge model named BIAS adds 1 to whichever answer it is shown first
    assert (
        judge(small_bench, out, [weak], openai_server, "--swap", "--judge", "openai:gpt-4o-BIAS")
        == 0
    )
    bodies = [last_user(r.body) for r in openai_server.requests]
    assert len(bodies) == 12
    assert sum("[Assistant 1]\nWEAK" in b for b in bodies) == 6  # model shown first
    assert sum("[Assistant 2]\nWEAK" in b for b in bodies) == 6
    for review in read_jsonl(out / "weak.jsonl"):
        # ref first: 9 5; model first: 6 8 -> (8, 6); mean of the orders: (8.5, 5.5)
        assert review["tuple"] == [8.5, 5.5]
        by_order = {r["order"]: r["scores"] for r in review["reviews"]}
        assert by_order == {"ref_first": [9.0, 5.0], "model_first": [8.0, 6.0]}
        assert review["swap"] is True


def test_samples_use_distinct_seeds_and_the_median(
    openai_server: OpenAIServer, small_bench: Path, tmp_path: Path
) -> None:
    weak = model_answers(tmp_path / "weak.jsonl", small_bench, "WEAK")
    replies = iter(["4 2\nx", "9 6\nx", "8 5\nx"] * 6)  # per question: three samples in turn
    seen: dict[str, list[str]] = {}

    def scripted(body: dict) -> str:
        seen.setdefault(last_user(body), []).append(str(body["seed"]))
        return next(replies)

    openai_server.responder = scripted
    out = tmp_path / "reviews"
    assert (
        judge(small_bench, out, [weak], openai_server, "--samples", "3", "--concurrency", "1") == 0
    )
    assert len(openai_server.requests) == 18
    assert all(len(set(seeds)) == 3 and seeds[0] == "0" for seeds in seen.values())
    for review in read_jsonl(out / "weak.jsonl"):
        assert review["tuple"] == [8.0, 5.0]  # median of (4, 9, 8) and of (2, 6, 5)
        assert len(review["reviews"]) == 3


def test_unreadable_reviews_are_asked_again_then_recorded_as_failures(
    openai_server: OpenAIServer, small_bench: Path, tmp_path: Path
) -> None:
    answers = model_answers(tmp_path / "weak.jsonl", small_bench, "WEAK")
    rows = read_jsonl(answers)
    rows[1]["text"] = "GARBLED answer."  # the judge never gives this one scores
    write_jsonl(answers, rows)
    first_seen: set[str] = set()

    def flaky(body: dict) -> str:
        text = last_user(body)
        if text not in first_seen:  # every review's first reply is prose without scores
            first_seen.add(text)
            return "Both assistants did reasonably well overall."
        return judge_reply(body)

    openai_server.responder = flaky
    out = tmp_path / "reviews"
    assert judge(small_bench, out, [answers], openai_server, "--max-attempts", "3") == 1
    reviews = all_reviews(out, "weak.jsonl")
    assert [r["question_id"] for r in read_jsonl(out / "unscored" / "weak.jsonl")] == [1]
    # five reviews: first ask garbage, second ask (new seed) scored
    ok = [r for q, r in reviews.items() if q != 1]
    assert all(r["status"] == "ok" and r["tuple"] == [8.0, 5.0] for r in ok)
    for r in ok:
        assert len(r["failures"]) == 1 and r["failures"][0]["attempt"] == 0
        assert "no two scores" in r["failures"][0]["reason"]
        assert r["reviews"][0]["attempts"] == 2 and r["reviews"][0]["seed"] != 0
    failed = reviews[1]
    assert failed["status"] == "failed" and failed["tuple"] is None
    assert [f["attempt"] for f in failed["failures"]] == [0, 1, 2]
    assert len({f["seed"] for f in failed["failures"]}) == 3
    assert failed["failures"][2]["content"] == "I would rather not give numbers here."
    seeds_sent = [r.body["seed"] for r in openai_server.requests if "GARBLED" in last_user(r.body)]
    assert len(seeds_sent) == 3 and len(set(seeds_sent)) == 3
    assert len(openai_server.requests) == 5 * 2 + 3
    assert all(r["tuple"] is None or min(r["tuple"]) >= 0 for r in reviews.values())
    meta = json.loads((out / "judge.json").read_text())
    assert (
        meta["files"]["weak.jsonl"]["failed"] == 1
        and meta["files"]["weak.jsonl"]["retried_reviews"] == 5
    )


def test_rerun_pays_nothing_and_a_new_model_pays_only_its_reviews(
    openai_server: OpenAIServer, small_bench: Path, tmp_path: Path
) -> None:
    weak = model_answers(tmp_path / "weak.jsonl", small_bench, "WEAK")
    strong = model_answers(tmp_path / "strong.jsonl", small_bench, "STRONG")
    out = tmp_path / "reviews"
    assert judge(small_bench, out, [weak], openai_server, "--swap") == 0
    before = (out / "weak.jsonl").read_bytes()
    assert len(openai_server.completed) == 12
    assert judge(small_bench, out, [weak], openai_server, "--swap") == 0
    assert len(openai_server.completed) == 12 and (out / "weak.jsonl").read_bytes() == before
    assert judge(small_bench, out, [weak, strong], openai_server, "--swap") == 0
    assert len(openai_server.completed) == 24
    meta = json.loads((out / "judge.json").read_text())
    assert meta["last_run"]["cached"] == 12 and meta["last_run"]["called"] == 12
    assert set(meta["files"]) == {"weak.jsonl", "strong.jsonl"}


def test_claude_judges_with_samples(
    anthropic_server: AnthropicServer, small_bench: Path, tmp_path: Path
) -> None:
    strong = model_answers(tmp_path / "strong.jsonl", small_bench, "STRONG")
    out = tmp_path / "reviews-claude"
    rc = judge(
        small_bench,
        out,
        [strong],
        anthropic_server,
        "--judge",
        "anthropic:claude-sonnet-4-20250514",
        "--samples",
        "2",
    )
    assert rc == 0
    # no seed in Anthropic's API: the two samples are two calls all the same (distinct cache keys)
    assert len(anthropic_server.completed) == 12
    body = anthropic_server.requests[0].body
    assert body["system"] == judge_system() and body["temperature"] == 0.2
    assert all(r["tuple"] == [8.0, 7.0] for r in read_jsonl(out / "strong.jsonl"))
    assert (
        json.loads((out / "judge.json").read_text())["judge"]
        == "anthropic:claude-sonnet-4-20250514"
    )


# -- bad input ---------------------------------------------------------------------------------


def test_missing_answers_are_recorded_and_named(
    openai_server, small_bench, tmp_path, capsys
) -> None:
    weak = model_answers(tmp_path / "weak.jsonl", small_bench, "WEAK", skip=(2, 4))
    out = tmp_path / "reviews"
    assert judge(small_bench, out, [weak], openai_server) == 1
    reviews = all_reviews(out, "weak.jsonl")
    assert len(reviews) == 6 and len(openai_server.requests) == 4
    assert len(read_jsonl(out / "weak.jsonl")) == 4
    assert reviews[2]["status"] == reviews[4]["status"] == "missing_answer"
    assert reviews[2]["tuple"] is None
    err = capsys.readouterr().err
    assert "weak.jsonl: no answer for 2 of 6 questions (question_id 2, 4)" in err


def test_duplicate_and_unknown_question_ids_are_input_errors(
    openai_server, small_bench, tmp_path, capsys
) -> None:
    answers = model_answers(tmp_path / "weak.jsonl", small_bench, "WEAK")
    rows = read_jsonl(answers)
    write_jsonl(answers, [*rows, rows[3]])
    assert judge(small_bench, tmp_path / "r", [answers], openai_server) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert f"{answers}: line 7: duplicate question_id 3 (first on line 4)" in err
    write_jsonl(answers, [*rows, {"question_id": 99, "text": "?"}])
    assert judge(small_bench, tmp_path / "r", [answers], openai_server) == 2
    assert "question_id 99 is not in" in capsys.readouterr().err
    assert openai_server.requests == [] and not (tmp_path / "r" / "weak.jsonl").exists()


def test_a_judge_that_never_scores_fails_every_question_without_inventing_scores(
    openai_server, small_bench, tmp_path
) -> None:
    openai_server.responder = lambda body: "As an AI, I prefer not to rate."
    weak = model_answers(tmp_path / "weak.jsonl", small_bench, "WEAK")
    out = tmp_path / "reviews"
    assert judge(small_bench, out, [weak], openai_server, "--max-attempts", "2") == 1
    assert read_jsonl(out / "weak.jsonl") == []  # LLaVA's summarizer reads an empty file fine
    reviews = list(all_reviews(out, "weak.jsonl").values())
    assert len(reviews) == 6
    assert all(r["status"] == "failed" and len(r["failures"]) == 2 for r in reviews)
    assert len(openai_server.requests) == 12


def test_other_input_errors(openai_server, small_bench, tmp_path, capsys) -> None:
    weak = model_answers(tmp_path / "weak.jsonl", small_bench, "WEAK")
    out = tmp_path / "reviews"
    assert judge(small_bench, out, [weak], openai_server) == 0
    # one folder, one judge
    assert judge(small_bench, out, [weak], openai_server, "--judge", "openai:gpt-4o-mini") == 2
    assert "holds reviews by openai:gpt-4o" in capsys.readouterr().err
    # a question without a reference answer
    refs = read_jsonl(small_bench / "answers_ref.jsonl")
    write_jsonl(small_bench / "answers_ref.jsonl", refs[:-1])
    assert judge(small_bench, tmp_path / "r2", [weak], openai_server) == 2
    assert "no reference answer for 1 question(s), e.g. question_id 5" in capsys.readouterr().err
    write_jsonl(small_bench / "answers_ref.jsonl", refs)
    # a category the rules do not cover
    questions = read_jsonl(small_bench / "questions.jsonl")
    questions[0]["category"] = "trivia"
    write_jsonl(small_bench / "questions.jsonl", questions)
    assert judge(small_bench, tmp_path / "r3", [weak], openai_server) == 2
    assert "category 'trivia' has no judge rule" in capsys.readouterr().err
    questions[0]["category"] = "conv"
    # a duplicate question id in the benchmark itself
    write_jsonl(small_bench / "questions.jsonl", [*questions, questions[2]])
    assert judge(small_bench, tmp_path / "r5", [weak], openai_server) == 2
    assert (
        "questions.jsonl: line 7: duplicate question_id 2 (first on line 3)"
        in capsys.readouterr().err
    )
    # an image without a context line
    questions[5]["image"] = "val2017/000000000000.jpg"
    write_jsonl(small_bench / "questions.jsonl", questions)
    assert judge(small_bench, tmp_path / "r6", [weak], openai_server) == 2
    err = capsys.readouterr().err
    assert "questions.jsonl: line 6: image: image 'val2017/000000000000.jpg' has no line in" in err
    # two answers files with one name
    other = model_answers(tmp_path / "x" / "weak.jsonl", small_bench, "STRONG")
    assert judge(small_bench, tmp_path / "r4", [weak, other], openai_server) == 2
    assert "two files are named weak.jsonl" in capsys.readouterr().err


def test_dry_run_calls_nothing(openai_server, small_bench, tmp_path, capsys) -> None:
    weak = model_answers(tmp_path / "weak.jsonl", small_bench, "WEAK")
    assert judge(small_bench, tmp_path / "r", [weak], openai_server, "--swap", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "requests: 12" in out and "cost: ~$" in out
    assert openai_server.requests == [] and not (tmp_path / "r").exists()


@pytest.mark.parametrize("flag", ["--samples", "--max-attempts"])
def test_counts_must_be_positive(small_bench, tmp_path, flag, capsys) -> None:
    weak = model_answers(tmp_path / "weak.jsonl", small_bench, "WEAK")
    rc = main(
        ["-q", "bench", "judge", "--bench", str(small_bench), "--answers", str(weak), flag, "0"]
    )
    assert rc == 2 and flag in capsys.readouterr().err
