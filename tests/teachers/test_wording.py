"""The offline teacher's English for pose facts: what each fact reads as, and that an unknown
fact is never worded. The facts come from the constructed poses of tests/test_pose.py."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from tests.test_pose import FRONT, LYING, SEATED, H, W, facts, moved, person, without

from llava_pose import pose
from llava_pose.coco import load_split
from llava_pose.records import Obj, Person
from llava_pose.teachers import wording


def test_standing_front_person() -> None:
    text = wording.describe_person(facts(FRONT))
    assert text.startswith("The person is standing")
    assert "facing the camera" in text
    assert "Both arms are hanging down by the side." in text
    assert "Both legs are straight." in text


def test_raised_arms() -> None:
    f = facts(
        moved(
            right_elbow=(160, 60), right_wrist=(158, 10), left_elbow=(268, 95), left_wrist=(300, 78)
        )
    )
    text = wording.phrase_arms(f) or ""
    assert "right arm is raised above the head" in text
    assert "left arm is raised above shoulder height" in text


def test_arm_out_sideways_and_bent_elbow() -> None:
    f = facts(moved(left_elbow=(280, 100), left_wrist=(330, 102), right_wrist=(205, 130)))
    text = wording.phrase_arms(f) or ""
    assert "left arm is stretched out to the side" in text
    assert "right arm is bent at the elbow" in text


def test_bent_knee_straight_leg_and_lifted_foot() -> None:
    text = wording.phrase_legs(facts(moved(left_knee=(270, 250), left_ankle=(225, 300)))) or ""
    assert "the left knee is bent" in text.lower()
    assert "the right leg is straight" in text.lower()
    lifted = facts(moved(left_knee=(235, 255), left_ankle=(228, 300)))
    assert "left foot is lifted off the ground" in (wording.phrase_legs(lifted) or "")


def test_postures_and_facing() -> None:
    assert (wording.phrase_posture(facts(SEATED), "the person") or "").startswith(
        "The person is sitting"
    )
    assert "lying" in (wording.phrase_posture(facts(LYING), "the person") or "")
    back = {k: (W - x, y) for k, (x, y) in FRONT.items()}
    away = facts(back, v={"nose": 0, "left eye": 0, "right eye": 0})
    assert "away from the camera" in (wording.phrase_posture(away, "the person") or "")


def test_an_unknown_fact_is_never_worded() -> None:
    text = wording.describe_person(facts(without(FRONT, "right elbow", "right wrist")))
    assert "right arm" not in text and "Both arms" not in text
    assert "left arm" in text.lower()
    legless = facts(without(FRONT, "left knee", "right knee", "left ankle", "right ankle"))
    text = wording.describe_person(legless).lower()
    for word in ("leg", "knee", "foot", "feet", "stride", "standing", "sitting"):
        assert word not in text
    nobody = Person(box=(0.1, 0.1, 0.3, 0.6), keypoints=((0.0, 0.0, 0),) * 17)
    blank = pose.pose_facts(nobody, W, H)
    assert wording.describe_person(blank) == ""
    assert wording.phrase_posture(blank, "the person") is None


def test_occluded_joints_are_hedged() -> None:
    f = facts(FRONT, v={"left knee": 1})
    text = wording.describe_person(f)
    assert "appears to be standing" in text or "seems to be standing" in text
    assert "appear to be straight" in (wording.phrase_legs(f) or "")


def test_contacts() -> None:
    racket = Obj("tennis racket", (250 / W, 180 / H, 290 / W, 230 / H))
    board = Obj("skateboard", (150 / W, 330 / H, 260 / W, 360 / H))
    f = facts(moved(left_wrist=(260, 200)), objects=(racket, board))
    text = wording.phrase_contacts(f, "the person") or ""
    assert "holding a tennis racket in the left hand" in text
    assert "skateboard" in text
    bat = Obj("baseball bat", (150 / W, 190 / H, 250 / W, 210 / H))
    text = wording.phrase_contacts(facts(FRONT, objects=(bat,)), "the person") or ""
    assert text.count("baseball bat") == 1 and "both hands" in text  # said once
    assert wording.phrase_contacts(facts(FRONT), "the person") is None


def test_articles_and_places() -> None:
    assert [wording.article(n) for n in ("umbrella", "cup", "skis")] == [
        "an umbrella",
        "a cup",
        "a pair of skis",
    ]
    near = pose.pose_facts(person(FRONT, box=(0.6, 0.1, 0.9, 0.9)), W, H)
    assert wording.position_words(near, sep=" and ") == (
        "on the right side of the picture and close to the camera in the foreground"
    )
    assert wording.depth_words(near) == "close to the camera in the foreground"
    middle = pose.pose_facts(person(FRONT, box=(0.4, 0.4, 0.6, 0.6)), W, H)
    assert (middle.depth, wording.depth_words(middle)) == (None, None)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_variants_are_picked_with_the_rng_and_the_first_without(seed: int) -> None:
    f = facts(FRONT)
    assert wording.describe_person(f, "the person", random.Random(seed)) == wording.describe_person(
        f, "the person", random.Random(seed)
    )
    texts = {wording.describe_person(f, "the person", random.Random(s)) for s in range(12)}
    assert len(texts) >= 2
    assert wording.describe_person(f) == wording.describe_person(f, "the person", None)


def test_real_coco_wording_is_clean_and_says_nothing_of_unknown_arms(coco_mini: Path) -> None:
    checked = 0
    for split in ("train2017", "val2017"):
        for ctx in load_split(coco_mini, split, human_only=False, check_images=False):
            for f in pose.scene_facts(ctx).persons:
                for arm in f.arms:
                    if not arm.known:
                        assert f"{arm.side} arm" not in (wording.phrase_arms(f) or "")
                text = wording.describe_person(f, "the person", random.Random(checked))
                assert "  " not in text and ".." not in text and "{" not in text
                checked += 1
    assert checked > 100


# -- feet apart: planted only when both are down (pose.feet_planted, wording.stance_key) ------

WIDE = moved(
    left_ankle=(262, 340), right_ankle=(138, 340), left_knee=(240, 270), right_knee=(160, 270)
)


def test_feet_planted_only_when_both_ankles_are_down_at_one_level() -> None:
    wide = facts(WIDE)
    assert (wide.posture, wide.stride, wide.planted) == ("standing", True, True)
    assert pose.feet_planted(pose.make_body(person(WIDE), W, H), "standing") is True
    # the left foot 0.11 leg lengths up (a leg: 1.8 torsos, 180 px): not planted, not lifted
    step = facts({**WIDE, "left ankle": (262, 320)})
    assert step.planted is False and not any(leg.lifted for leg in step.legs)
    raised = facts({**WIDE, "left ankle": (262, 300)})
    assert raised.planted is False and raised.legs[0].lifted
    # an ankle not labelled, or not standing (a rider's feet rest on pegs): unknown
    assert facts(without(WIDE, "left ankle")).planted is None
    body = pose.make_body(person(WIDE), W, H)
    assert pose.feet_planted(body, "sitting") is None and pose.feet_planted(body, None) is None
    assert pose.leg_length(body) == pytest.approx(180.0)


def test_a_raised_foot_is_never_worded_as_planted() -> None:
    wide = wording.phrase_legs(facts(WIDE)) or ""
    assert "planted wide apart" in wide and wording.stance_key(facts(WIDE)) == "stance"
    step = facts({**WIDE, "left ankle": (262, 320)})
    assert wording.stance_key(step) == "apart"
    assert "planted" not in (wording.phrase_legs(step) or "") and "apart" in (
        wording.phrase_legs(step) or ""
    )
    raised = facts({**WIDE, "left ankle": (262, 300)})
    legs = wording.phrase_legs(raised) or ""
    assert wording.stance_key(raised) is None
    assert "left foot is lifted" in legs and "planted" not in legs and "apart" not in legs


def test_pronouns_follow_the_noun_that_named_the_person() -> None:
    wide = facts(WIDE)
    he = [wording.describe_person(wide, "the man", random.Random(s), wording.HE) for s in range(20)]
    they = [wording.describe_person(wide, "the person", random.Random(s)) for s in range(20)]
    assert any(" his " in t or t.startswith("His") for t in he)
    assert not any(re.search(r"\b(their|they|them)\b", t, re.IGNORECASE) for t in he)
    assert any(re.search(r"\btheir\b", t, re.IGNORECASE) for t in they)
    assert not any(re.search(r"\b(his|he|him)\b", t, re.IGNORECASE) for t in they)
    she = wording.fill("{They} {are} ready; {their} arms and {them}", wording.SHE)
    assert she == "She is ready; her arms and her"
