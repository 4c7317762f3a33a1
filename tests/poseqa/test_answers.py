"""The tolerant answer parser, by equality on many real-looking answers."""

from __future__ import annotations

import pytest

from llava_pose.poseqa.answers import parse_answer

YES_NO = {"answer_type": "yes/no", "choices": ["yes", "no"]}
PEOPLE = {
    "answer_type": "choice",
    "choices": ["the man on the left", "the person in the middle", "the man on the right"],
}
ARMS = {"answer_type": "choice", "choices": ["their own right arm", "their own left arm"]}
FACING = {
    "answer_type": "choice",
    "choices": [
        "away from the camera",
        "towards the camera",
        "towards the left side of the picture",
        "towards the right side of the picture",
    ],
}
COUNT = {"answer_type": "number", "choices": None}


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("Yes.", "yes"),
        ("yes", "yes"),
        ("yes, he is", "yes"),
        ("YES", "yes"),
        ("**Yes**, the person is sitting.", "yes"),
        ("No, she is standing", "no"),
        ("no.", "no"),
        ("The answer is yes.", "yes"),
        ("I think no, they are standing up.", "no"),
        ("Answer: No", "no"),
        ("Maybe.", None),
        ("", None),
        ("It is hard to say; yes or no depends on the angle.", None),
    ],
)
def test_yes_no(text: str, want: str | None) -> None:
    assert parse_answer(text, YES_NO) == want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("(B)", "B"),
        ("B", "B"),
        ("b", "B"),
        ("B.", "B"),
        ("B) the person in the middle", "B"),
        ("(C) the man on the right", "C"),
        ("C: the man on the right", "C"),
        ("The answer is B.", "B"),
        ("The correct option is (A).", "A"),
        ("Answer: C", "C"),
        ("the man on the left", "A"),
        ("The man on the right.", "C"),
        ("It is the person in the middle who is sitting.", "B"),
        ("A person is sitting on the bench.", None),  # "A" is an article here
        ("Either (A) or (B).", None),
        ("the man on the left or the man on the right", None),
        ("D", None),  # not an option
        ("I cannot tell.", None),
    ],
)
def test_choice_people(text: str, want: str | None) -> None:
    assert parse_answer(text, PEOPLE) == want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("His right arm.", "A"),
        ("the left arm", "B"),
        ("Left.", "B"),
        ("She is raising her own right arm above her shoulder.", "A"),
        ("The right arm, not the left arm.", None),
    ],
)
def test_choice_by_text(text: str, want: str | None) -> None:
    assert parse_answer(text, ARMS) == want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("The person is facing the camera.", "B"),
        ("Away from the camera.", "A"),
        ("Facing left.", "C"),
        ("towards the right side of the picture", "D"),
        ("(D)", "D"),
    ],
)
def test_choice_facing(text: str, want: str | None) -> None:
    assert parse_answer(text, FACING) == want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("2", "2"),
        ("Two.", "2"),
        ("There are 3 people with a raised arm.", "3"),
        ("three", "3"),
        ("None of them.", "0"),
        ("No one has an arm raised.", "0"),
        ("Zero", "0"),
        ("One person, the man on the left.", "1"),
        ("I can't tell.", None),
    ],
)
def test_number(text: str, want: str | None) -> None:
    assert parse_answer(text, COUNT) == want
