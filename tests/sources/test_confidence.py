"""Low-confidence joints are hidden: the offline teacher, `verify`, PoseQA and the --cues an LLM
teacher reads take an estimated joint scored below its visible threshold exactly as a joint
nobody labelled, and PoseQA asks nothing about a joint below its own floor. Real COCO people,
given scores as a model would."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from llava_pose.coco import load_split
from llava_pose.context import pose_cues
from llava_pose.poseqa.build import image_drafts
from llava_pose.poseqa.facts import KEYPOINT_SCORE_MIN
from llava_pose.records import Estimate, ImageContext, Person
from llava_pose.teachers.rules import write
from llava_pose.verify import check_text

WRIST = {"left": 9, "right": 10}


def _scored(person: Person, scores: list[float]) -> Person:
    return msgspec.structs.replace(
        person,
        estimate=Estimate(
            model="test",
            detector="test",
            version="0",
            score=0.95,
            keypoint_scores=tuple(scores),
            thresholds=(0.3, 0.5),
        ),
    )


def _with(ctx: ImageContext, i: int, person: Person) -> ImageContext:
    persons = list(ctx.persons)
    persons[i] = person
    return msgspec.structs.replace(ctx, persons=tuple(persons))


@pytest.fixture(scope="module")
def higher(coco_mini: Path) -> tuple[ImageContext, int, str]:
    """A COCO image where PoseQA asks which of someone's hands is higher, that person and the
    higher hand's side."""
    for ctx in load_split(coco_mini, "val2017", check_images=False):
        for d in image_drafts(ctx):
            if d.family == "higher_hand":
                return ctx, d.persons[0], d.fact["higher"]
    pytest.fail("COCO-MINI val2017 has no clearly higher hand")


def test_a_low_confidence_joint_reads_as_an_unlabelled_one(
    higher: tuple[ImageContext, int, str],
) -> None:
    ctx, i, side = higher
    person = ctx.persons[i]
    scores = [0.95] * 17
    scores[WRIST[side]] = 0.45  # placed, and the file may say v=2, but not confidently
    low = _with(ctx, i, _scored(person, scores))
    points = list(person.keypoints)
    points[WRIST[side]] = (0.0, 0.0, 0)
    unlabelled = _with(
        ctx, i, _scored(msgspec.structs.replace(person, keypoints=tuple(points)), scores)
    )
    confident = _with(ctx, i, _scored(person, [0.95] * 17))

    text = f"Their {side} hand is higher than the other hand."
    assert check_text(text, low) == check_text(text, unlabelled)
    assert check_text(text, confident) == check_text(text, ctx)  # confident: as annotated
    assert [c.verdict for c in check_text(text, ctx)] == ["supported"]
    assert [c.verdict for c in check_text(text, low)] == ["unverifiable"]
    for task in ("conversation", "detail", "reasoning"):
        assert write(low, task) == write(unlabelled, task)
    assert pose_cues(low) == pose_cues(unlabelled) != pose_cues(confident)  # --cues for LLMs
    assert write(confident, "detail") == write(ctx, "detail")

    asked = {(d.family, d.persons) for d in image_drafts(ctx)}
    assert ("higher_hand", (i,)) in asked
    assert image_drafts(low) == image_drafts(unlabelled)
    assert ("higher_hand", (i,)) not in {(d.family, d.persons) for d in image_drafts(low)}


def test_poseqa_asks_nothing_below_its_own_floor(higher: tuple[ImageContext, int, str]) -> None:
    ctx, i, side = higher
    scores = [0.95] * 17
    scores[WRIST[side]] = (0.5 + KEYPOINT_SCORE_MIN) / 2  # visible, yet not sure enough to ask
    between = _with(ctx, i, _scored(ctx.persons[i], scores))
    text = f"Their {side} hand is higher than the other hand."
    assert check_text(text, between) == check_text(text, ctx)  # verify still reads it
    asked = {(d.family, d.persons) for d in image_drafts(between)}
    assert ("higher_hand", (i,)) not in asked
    estimated = _with(ctx, i, _scored(ctx.persons[i], [0.95] * 17))
    assert ("higher_hand", (i,)) in {(d.family, d.persons) for d in image_drafts(estimated)}
    assert any(d.family == "count" for d in image_drafts(ctx))  # annotated: all are there
    assert not any(
        d.family == "count" for d in image_drafts(estimated)
    )  # a detector can miss someone
