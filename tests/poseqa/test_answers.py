"""The tolerant answer parser, by equality on many real-looking answers."""

from __future__ import annotations

import pytest

from llava_pose.poseqa.answers import parse_answer
from llava_pose.poseqa.build import question_text, wording

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


# -- answers that never commit to one option (issue 16) ----------------------------------------


def asked(family: str, answer_type: str, choices: list[str] | None, **names: str) -> dict:
    """A question worded as `poseqa build` words it (questions.yaml), with its text."""
    ask = wording()["families"][family]["ask"].format(name="the person", **names)
    return {
        "answer_type": answer_type,
        "choices": choices,
        "text": question_text(ask, answer_type, choices),
    }


def cut(question: dict, words: int = 1) -> str:
    """The question echoed and cut off `words` words before its end."""
    return question["text"].rsplit(" ", words)[0]


SITTING = asked("posture", "yes/no", ["yes", "no"], posture="sitting")
RAISED = asked("arm_raised", "yes/no", ["yes", "no"])
HAND = asked("higher_hand", "choice", ["their own left hand", "their own right hand"])
ARM = asked("which_arm", "choice", ["their own right arm", "their own left arm"])
FACE = asked(
    "facing",
    "choice",
    [
        "away from the camera",
        "towards the camera",
        "towards the left side of the picture",
        "towards the right side of the picture",
    ],
)
WHO = asked(
    "posture_choice",
    "choice",
    ["the person on the left", "the person on the right"],
    posture="sitting",
)
LEFTMOST = asked("position", "choice", ["the largest person", "the person holding the kite"])
HOW_MANY = asked("count", "number", None)


@pytest.mark.parametrize(
    ("text", "question", "want"),
    [
        # hedges between yes and no, and a yes/no under negation
        ("Yes and no.", SITTING, None),
        ("yes/no", SITTING, None),
        ("Yes or no", SITTING, None),
        ("Yes, or maybe no.", RAISED, None),
        ("I would not say yes.", SITTING, None),
        ("Not no.", RAISED, None),
        ("It is not possible to tell from one image", SITTING, None),
        ("Neither.", RAISED, None),
        ("It depends on the angle.", RAISED, None),
        # self-corrections
        ("No. Actually yes.", SITTING, None),
        ("Yes. No, wait.", SITTING, None),
        ("No, I mean yes.", RAISED, None),
        # cut off inside the echoed question
        (cut(SITTING), SITTING, None),
        ("Answer yes or", SITTING, None),
        ("Yes or", RAISED, None),
        # ... while these commit
        ("Yes, no doubt about it.", RAISED, "yes"),
        ("No, no one is sitting.", SITTING, "no"),
        ("Yes, he is actually sitting on a bench.", SITTING, "yes"),
        (SITTING["text"] + "\nNo.", SITTING, "no"),
        ("Is the person sitting? Yes, he is.", SITTING, "yes"),
        # several options, listed or hedged
        ("(A) or (B)", HAND, None),
        ("A. or B.", HAND, None),
        ("A or B", HAND, None),
        ("The answer is A, or maybe B", HAND, None),
        ("(A) (B)", HAND, None),
        ("(A) (B) (C) (D)", FACE, None),
        ("A, B, C or D", FACE, None),
        ("their own left hand, their own right hand", HAND, None),
        (", ".join(FACE["choices"]), FACE, None),
        ("Both.", WHO, None),
        ("Neither hand.", HAND, None),
        ("None of them.", WHO, None),
        ("C", HAND, None),  # past the options
        # an option under negation
        ("not away from the camera", FACE, None),
        ("The person is not facing away from the camera.", FACE, None),
        ("Not (A).", HAND, None),
        ("The person on the left is not sitting.", WHO, None),
        ("Their own left hand is not lower.", HAND, None),
        # the opposite comparative, read for what it says where that is unambiguous
        ("Their own left hand is lower", HAND, "B"),
        ("Their own right hand is lower.", HAND, "A"),
        ("Their own left hand is higher", HAND, "A"),
        ("Their own left arm is below the shoulder.", ARM, "A"),
        ("The person holding the kite is on the right.", LEFTMOST, "A"),
        ("The largest person is further to the left.", LEFTMOST, "A"),
        ("Their own left hand. It is lower.", HAND, None),  # "it" is not said to be the hand
        ("Their own left hand is higher, their own right hand is lower.", HAND, None),
        ("Their own right arm, the left one is below the shoulder.", ARM, None),
        # self-corrections
        ("A. Actually, B.", HAND, None),
        ("A, I mean B", HAND, None),
        ("(B), no wait, (A)", FACE, None),
        # hedges and cut-off echoes
        ("It is not possible to tell from one image", FACE, None),
        ("I cannot tell which hand is higher.", HAND, None),
        ("Possibly the person on the left.", WHO, None),
        (cut(HAND), HAND, None),
        (HAND["text"].splitlines()[0] + "\n(A) their own left hand", HAND, None),
        ("The answer is A or", HAND, None),
        # ... while these commit
        (HAND["text"] + "\n(B)", HAND, "B"),
        ("(A) their own left hand, the right one is down.", HAND, "A"),
        ("B) the person on the right, who is not standing", WHO, "B"),
        ("A person on the left is sitting: the person on the left.", WHO, "A"),
        # numbers: ranges, lists, hedges, negation, corrections, cut-off echoes
        ("two or three", HOW_MANY, None),
        ("1-2", HOW_MANY, None),
        ("2 to 3", HOW_MANY, None),
        ("Between 0 and 4", HOW_MANY, None),
        ("zero, one, two, three", HOW_MANY, None),
        ("It is not possible to tell from one image", HOW_MANY, None),
        ("At least one.", HOW_MANY, None),
        ("A few people.", HOW_MANY, None),
        ("Not 0.", HOW_MANY, None),
        ("Two. Actually three.", HOW_MANY, None),
        ("One, I mean two.", HOW_MANY, None),
        (cut(HOW_MANY), HOW_MANY, None),
        (cut(HOW_MANY, 3), HOW_MANY, None),
        # ... while these commit
        ("No one has an arm raised.", HOW_MANY, "0"),
        ("Zero, nobody does.", HOW_MANY, "0"),
        ("One person, the man on the left.", HOW_MANY, "1"),
        (HOW_MANY["text"] + " 2", HOW_MANY, "2"),
    ],
)
def test_answers_that_do_not_commit(text: str, question: dict, want: str | None) -> None:
    assert parse_answer(text, question) == want
