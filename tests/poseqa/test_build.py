"""PoseQA build: questions of constructed images (pure), then the CLI on COCO-MINI."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from tests.conftest import one_line_error
from tests.poseqa.people import RIGHT_ARM_UP, SITTING, STANDING, image, person

from llava_pose.cli import main
from llava_pose.poseqa.build import balance, baseline, finalize, image_drafts


def three_people() -> object:
    return image(person(STANDING, dx=-0.3), person(SITTING), person(RIGHT_ARM_UP, dx=0.35))


def test_drafts_of_three_clear_people() -> None:
    drafts = image_drafts(three_people())  # type: ignore[arg-type]
    got = {(d.family, d.question, d.answer) for d in drafts}
    assert ("posture", "Is the person in the middle sitting?", "yes") in got
    assert ("posture", "Is the person in the middle standing?", "no") in got
    assert ("posture", "Is the person furthest to the left sitting?", "no") in got
    assert (
        "which_arm",
        "Which arm is the person furthest to the right raising above the shoulder?",
        "their own right arm",
    ) in got
    assert (
        "posture_choice",
        "Which of these people is sitting?",
        "the person in the middle",
    ) in got
    assert (
        "facing",
        "Which way is the person in the middle facing?",
        "towards the right side of the picture",
    ) in got
    # The sitting person's right arm is unlabelled: nobody can count raised arms.
    assert not any(d.family == "count" for d in drafts)
    # Nobody is named except by position: no "who is further left" question.
    assert not any(d.family == "position" for d in drafts)


def test_count_and_position_when_everyone_is_clear() -> None:
    small = person({k: (0.8 + (x - 0.5) / 4, 0.6 + y / 4) for k, (x, y) in RIGHT_ARM_UP.items()})
    from llava_pose.records import Obj

    kite = Obj("kite", (0.74, 0.57, 0.8, 0.63))  # in the small person's raised right hand
    ctx = image(person(STANDING, dx=-0.2), small, objects=(kite,))
    drafts = {d.family: d for d in image_drafts(ctx)}
    assert drafts["count"].answer == "1"
    position = drafts["position"]
    assert position.question == "Who is further to the left in the picture?"
    assert position.options == ("the largest person", "the person holding the kite")
    assert position.answer == "the largest person"


def test_crowd_image_asks_nothing() -> None:
    assert image_drafts(image(person(STANDING)), crowd=True) == []


def test_finalize_shuffles_by_seed_and_balances_yes_no() -> None:
    ctx = three_people()
    rows = finalize([(ctx, image_drafts(ctx))], seed=0)  # type: ignore[arg-type]
    for r in rows:
        if r["answer_type"] == "choice":
            letter = "ABCD".index(r["answer"])
            assert f"({r['answer']}) {r['choices'][letter]}" in r["text"]
            assert r["text"].endswith("Answer with the option's letter.")
        if r["answer_type"] == "yes/no":
            assert r["text"].endswith("\nAnswer yes or no.")
    by_family: dict[str, Counter[str]] = {}
    for r in rows:
        if r["answer_type"] == "yes/no":
            by_family.setdefault(r["category"], Counter())[r["answer"]] += 1
    assert by_family and all(c["yes"] == c["no"] for c in by_family.values())
    # arm_raised had 2 no and 1 yes: one no was dropped
    assert by_family["arm_raised"] == Counter(yes=1, no=1)
    assert len({r["question_id"] for r in rows}) == len(rows)


def test_balance_drops_the_surplus_deterministically() -> None:
    rows = [
        {"question_id": f"q{i}", "category": "f", "answer_type": "yes/no", "answer": a}
        for i, a in enumerate(["yes"] * 5 + ["no"] * 2)
    ]
    kept = balance(rows, seed=3)
    assert Counter(r["answer"] for r in kept) == Counter(yes=2, no=2)
    assert balance(rows, seed=3) == kept and balance(list(reversed(rows)), 3) == list(
        reversed(kept)
    )


def choice_row(i: int, family: str, correct: str, options: list[str]) -> dict[str, object]:
    return {
        "question_id": f"q{i}",
        "category": family,
        "answer_type": "choice",
        "answer": "ABCD"[options.index(correct)],
        "choices": options,
        "fact": {},
    }


def test_balance_own_left_right_by_correct_option_and_keep_facing() -> None:
    left, right = "their own left hand", "their own right hand"
    hands = [choice_row(i, "higher_hand", left, [left, right]) for i in range(3)]
    # the letters are shuffled: balance goes by the option, not by the letter
    hands.append(choice_row(3, "higher_hand", right, [left, right]))
    hands.append(choice_row(4, "higher_hand", right, [right, left]))
    arms = [choice_row(5 + i, "which_arm", "their own left arm", ["their own left arm",
            "their own right arm"]) for i in range(2)]  # fmt: skip
    facing = ["towards the camera", "away from the camera"]
    faces = [choice_row(7 + i, "facing", facing[0], facing) for i in range(3)]
    kept = balance(hands + arms + faces, seed=0)
    options = Counter(
        (r["category"], r["choices"]["ABCD".index(r["answer"])])  # type: ignore[index]
        for r in kept
    )
    # higher_hand keeps 2 of each; which_arm has only "left", cannot be balanced and goes
    # whole; facing is not a balanced family and stays as it is
    assert options == {
        ("higher_hand", left): 2,
        ("higher_hand", right): 2,
        ("facing", facing[0]): 3,
    }


def test_baseline_is_the_best_constant_reply() -> None:
    camera, away = "towards the camera", "away from the camera"
    rows = [choice_row(0, "facing", camera, [camera, away])]
    rows += [choice_row(1, "facing", camera, [away, camera])]
    rows += [choice_row(2, "facing", away, [camera, away])]
    b = baseline(rows)  # type: ignore[arg-type]
    # letters A, B, B score at most 2/3; always "towards the camera" scores 2/3 too, and says
    # why: the tie goes to the option's text
    assert (b.constant, b.constant_accuracy, b.chance) == (camera, 2 / 3, 0.5)
    assert b.baseline == 2 / 3 and b.unbalanced
    yes_no = [{"answer_type": "yes/no", "answer": a, "fact": {}} for a in ("yes", "no")]
    b = baseline(yes_no)
    assert (b.constant, b.constant_accuracy, b.baseline, b.unbalanced) == ("no", 0.5, 0.5, False)
    count = [{"answer_type": "number", "answer": "0", "fact": {"people": 2}}] * 4
    b = baseline(count)
    assert (b.constant, b.constant_accuracy, b.chance, b.unbalanced) == ("0", 1.0, 1 / 3, True)


def test_option_positions_are_spread(coco_mini: Path) -> None:
    # Over many seeds the right answer of a 4-option question lands everywhere.
    ctx = three_people()
    drafts = image_drafts(ctx)  # type: ignore[arg-type]
    letters = Counter(
        r["answer"]
        for seed in range(200)
        for r in finalize([(ctx, drafts)], seed)  # type: ignore[list-item]
        if r["category"] == "facing"
    )
    assert set(letters) == {"A", "B", "C", "D"} and min(letters.values()) > 25


def build(coco: Path, out: Path, *extra: str) -> int:
    return main(
        [
            "-q",
            "poseqa",
            "build",
            "--coco",
            str(coco),
            "--split",
            "val2017",
            "--out",
            str(out),
            *extra,
        ]
    )


def test_build_is_deterministic_and_bench_shaped(coco_mini: Path, tmp_path: Path) -> None:
    assert build(coco_mini, tmp_path / "a") == 0
    assert build(coco_mini, tmp_path / "b") == 0
    for name in ("questions.jsonl", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    rows = [json.loads(line) for line in (tmp_path / "a" / "questions.jsonl").open()]
    assert rows
    for r in rows:
        assert {"question_id", "image", "text", "category", "answer", "choices"} <= set(r)
        assert (coco_mini / r["image"]).is_file()
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["split"] == "val2017"
    assert manifest["image_root"] == str(coco_mini.resolve())
    assert manifest["margins"]["STAND_KNEE_MIN"] == 165.0
    import hashlib

    digest = hashlib.sha256((tmp_path / "a" / "questions.jsonl").read_bytes()).hexdigest()
    assert manifest["files"]["questions.jsonl"] == digest
    assert sum(f["questions"] for f in manifest["families"].values()) == len(rows)
    # Another seed changes the option order, not which facts are asked.
    assert build(coco_mini, tmp_path / "c", "--seed", "7") == 0
    other = [json.loads(line) for line in (tmp_path / "c" / "questions.jsonl").open()]
    assert {r["question_id"] for r in other} == {r["question_id"] for r in rows}


def test_missing_coco_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["poseqa", "build", "--out", str(tmp_path / "p")])
    one_line_error(capsys, rc, "--coco")
    rc = build(tmp_path / "nowhere", tmp_path / "p")
    one_line_error(capsys, rc, "captions_val2017.json", "not found")
    assert not (tmp_path / "p").exists()
