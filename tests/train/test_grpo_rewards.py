"""The GRPO rewards (`llava_pose.train.rewards`) on real data: PoseQA's questions about COCO-MINI
and the keypoints of its images. No torch: they are plain functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from llava_pose.cli import main
from llava_pose.coco import load_split
from llava_pose.poseqa.files import read_questions
from llava_pose.records import ImageContext
from llava_pose.train.rewards import (
    ClaimTally,
    PromptTask,
    claims_reward,
    exact_match,
    pose_claims,
    poseqa_exact_match,
    tally_claims,
)
from llava_pose.verify import check_text

BOY = "train2017/000000037666.jpg"  # one boy, standing, facing the picture's left


@pytest.fixture(scope="module")
def questions(tmp_path_factory: pytest.TempPathFactory, coco_mini: Path) -> list[dict[str, Any]]:
    """Every PoseQA question of COCO-MINI, both splits: yes/no, choice and number."""
    out = []
    for split in ("train2017", "val2017"):
        folder = tmp_path_factory.mktemp(f"poseqa-{split}")
        args = ["poseqa", "build", "--coco", str(coco_mini), "--split", split, "--out", str(folder)]
        assert main(args) == 0
        out += [msgspec.structs.asdict(q) for q in read_questions(folder / "questions.jsonl")]
    assert {q["answer_type"] for q in out} == {"yes/no", "choice", "number"}
    return out


@pytest.fixture(scope="module")
def boy(coco_mini: Path) -> ImageContext:
    contexts = load_split(coco_mini, "train2017", human_only=False, check_images=False)
    return next(c for c in contexts if c.image == BOY)


def _words(n: int) -> str:
    return ["zero", "one", "two", "three", "four", "five"][n]


def _gold_replies(q: dict[str, Any]) -> list[str]:
    """The gold answer as models write it."""
    answer = q["answer"]
    if q["answer_type"] == "yes/no":
        return [answer, f"{answer.capitalize()}.", f"{q['text']} {answer}"]
    if q["answer_type"] == "choice":
        option = q["choices"]["ABCD".index(answer)]
        return [answer, f"({answer})", f"The answer is {answer}.", f"({answer}) {option}"]
    return [answer, f"{_words(int(answer))}."]


def _other(q: dict[str, Any]) -> str:
    """A committed answer that is not the gold one."""
    if q["answer_type"] == "yes/no":
        return "no" if q["answer"] == "yes" else "yes"
    if q["answer_type"] == "choice":
        return next(L for L in "ABCD"[: len(q["choices"])] if q["answer"] != L)
    return str(int(q["answer"]) + 1)


def test_exact_match_pays_the_gold_answer_only(questions: list[dict[str, Any]]) -> None:
    for q in questions:
        for reply in _gold_replies(q):
            assert exact_match(reply, q) == 1.0, (q["question_id"], reply)
        assert exact_match(_other(q), q) == 0.0, q["question_id"]


def test_a_hedged_or_unparseable_answer_earns_nothing(questions: list[dict[str, Any]]) -> None:
    for q in questions:
        gold, other = q["answer"], _other(q)
        for reply in (
            f"{gold} or {other}",  # a hedge between two answers
            f"maybe {gold}",
            f"{gold}. Actually {other}.",  # a self-correction
            "I cannot tell from the picture.",
            "",
            f"{q['text'].splitlines()[0]} Answer",  # the question echoed, no answer
        ):
            assert exact_match(reply, q) == 0.0, (q["question_id"], reply)


def test_claims_earn_cost_or_are_neutral(boy: ImageContext) -> None:
    def verdicts(text: str) -> list[str]:
        return [c.verdict for c in check_text(text, boy)]

    supported, contradicted = "The boy is standing.", "The boy is facing right."
    unverifiable, none = "The boy is sitting.", "The boy looks happy."
    # what verify says of each on the boy's real keypoints
    assert verdicts(supported) == ["supported"]
    assert verdicts(contradicted) == ["contradicted"]
    assert verdicts(unverifiable) == ["unverifiable"]
    assert verdicts(none) == []
    assert claims_reward(supported, boy) == 1.0
    assert claims_reward(contradicted, boy) == -1.0
    assert claims_reward(f"{supported} {contradicted}", boy) == 0.0
    assert claims_reward(f"{supported} {unverifiable}", boy) == 1.0  # unverifiable: neutral
    assert claims_reward(none, boy) == claims_reward(unverifiable, boy) == 0.0
    assert tally_claims(
        f"{supported} {supported} {contradicted} {unverifiable}", boy
    ) == ClaimTally(supported=2, contradicted=1, unverifiable=1)
    assert claims_reward(f"{supported} {supported} {contradicted}", boy) == pytest.approx(1 / 3)


def test_the_rules_teachers_description_earns(
    boy: ImageContext, coco_mini: Path, tmp_path: Path
) -> None:
    """The offline teacher writes from the keypoints: what it says of the boy is supported."""
    import json

    out = tmp_path / "gen"
    args = ["generate", "--coco", str(coco_mini), "--split", "train2017", "--out", str(out)]
    args += ["--tasks", "detail"]
    assert main(args) == 0
    text = next(
        r["conversations"][1]["value"]
        for r in json.loads((out / "detail.json").read_text())
        if r["image"] == BOY
    )
    tally = tally_claims(text, boy)
    assert tally.supported > 0 and tally.contradicted == 0
    assert claims_reward(text, boy) == 1.0


def test_trl_reward_functions_score_their_own_prompts_and_log_per_family(
    questions: list[dict[str, Any]], boy: ImageContext
) -> None:
    q = questions[0]
    tasks = [
        PromptTask(q["category"], question=q),
        PromptTask(q["category"], question=q),
        PromptTask("detail", context=boy),
        PromptTask("reasoning", context=boy),
    ]
    completions = [
        [{"role": "assistant", "content": q["answer"]}],
        [{"role": "assistant", "content": _other(q)}],
        [{"role": "assistant", "content": [{"type": "text", "text": "The boy is standing."}]}],
        [{"role": "assistant", "content": "The boy is facing right. The boy is sitting."}],
    ]
    logged: list[tuple[str, float]] = []
    log = lambda name, value: logged.append((name, value))  # noqa: E731
    scored = poseqa_exact_match(completions, tasks, log_metric=log, trainer_state=None)
    assert scored == [1.0, 0.0, None, None]
    assert logged == [(f"reward/{q['category']}", 0.5)]
    logged.clear()
    assert pose_claims(completions, tasks, log_metric=log) == [None, None, 1.0, -1.0]
    assert dict(logged) == {
        "reward/detail": 1.0,
        "reward/reasoning": -1.0,
        "claims/per_answer": 3 / 2,
        # of the 3 claims: 1 supported, 1 contradicted, 1 neither
        "claims/contradicted_rate": 1 / 3,
        "claims/supported_rate": 1 / 3,
    }
    logged.clear()  # answers without any claim: the rates are 0, not missing
    assert pose_claims(["The boy looks happy."], [tasks[2]], log_metric=log) == [0.0]
    assert dict(logged)["claims/per_answer"] == dict(logged)["claims/contradicted_rate"] == 0.0
    # plain-text completions (a model trained without a chat template) score the same
    assert pose_claims(["The boy is standing."], [tasks[2]]) == [1.0]
