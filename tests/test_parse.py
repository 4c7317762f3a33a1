"""The Q/A parser accepts what real teachers write without few-shot guidance."""

from __future__ import annotations

import pytest

from llava_pose.parse import QAPair, parse_description, parse_qa

TWO = (QAPair("What is he doing?", "He is skiing."), QAPair("Where is the dog?", "To his left."))

FORMATS = {
    "llava": "Question:\nWhat is he doing?\n===\nAnswer:\nHe is skiing.\n===\nQuestion:\nWhere is the dog?\n===\nAnswer:\nTo his left.",
    "qa": "Q: What is he doing?\nA: He is skiing.\n\nQ: Where is the dog?\nA: To his left.",
    "numbered_qa": "Q1: What is he doing?\nA1: He is skiing.\nQ2: Where is the dog?\nA2: To his left.",
    "bold": "Sure! Here are some questions.\n\n**Question 1:** What is he doing?\n**Answer:** He is skiing.\n\n"
    "**Question 2:** Where is the dog?\n**Answer:** To his left.",
    "numbered_bold": "1. **Q:** What is he doing?\n   **A:** He is skiing.\n2. **Q:** Where is the dog?\n   **A:** To his left.",
    "headings": "### Question 1\nWhat is he doing?\n### Answer\nHe is skiing.\n\n### Question 2\nWhere is the dog?\n### Answer\nTo his left.",
    "bullets": "- **Question:** What is he doing?\n  - **Answer:** He is skiing.\n- **Question:** Where is the dog?\n  - **Answer:** To his left.",
    "roles": "User: What is he doing?\nAssistant: He is skiing.\nUser: Where is the dog?\nAssistant: To his left.",
    "dashes": "Question: What is he doing?\n---\nAnswer: He is skiing.\n---\nQuestion: Where is the dog?\n---\nAnswer: To his left.",
    "crlf": "Question:\r\nWhat is he doing?\r\n===\r\nAnswer:\r\nHe is skiing.\r\n===\r\nQuestion:\r\nWhere is the dog?\r\n===\r\nAnswer:\r\nTo his left.",
}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_formats_parse_to_the_same_pairs(name: str) -> None:
    parsed = parse_qa(FORMATS[name])
    assert parsed.pairs == TWO
    assert parsed.problem is None


def test_multiline_answers_keep_their_paragraphs() -> None:
    parsed = parse_qa("Question:\nWhy?\n===\nAnswer:\nFirst paragraph.\n\nSecond paragraph.\n")
    assert parsed.pairs == (QAPair("Why?", "First paragraph.\n\nSecond paragraph."),)


def test_a_sentence_starting_with_a_is_not_a_label() -> None:
    parsed = parse_qa("Q: What is here?\nA: A man.\nA dog sits near him.")
    assert parsed.pairs == (QAPair("What is here?", "A man.\nA dog sits near him."),)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Just prose about the image.", "no question/answer pairs found"),
        ("Answer: orphan\nQuestion: Why?\nAnswer: Because.", "answer without a question"),
        ("Question: Why?\nAnswer: Because.\nQuestion: And then?", "last question has no answer"),
        ("Question: One?\nQuestion: Two?\nAnswer: Yes.", "question without an answer"),
    ],
)
def test_malformed_structure_is_reported(text: str, problem: str) -> None:
    parsed = parse_qa(text)
    assert parsed.problem == problem


def test_a_cut_off_reply_keeps_its_complete_pairs() -> None:
    parsed = parse_qa("Question: Why?\nAnswer: Because.\nQuestion: And then?\nAnswer: He")
    assert parsed.pairs[0] == QAPair("Why?", "Because.")
    assert len(parsed.pairs) == 2


def test_description_is_the_prose_without_labels_or_separators() -> None:
    assert parse_description("The man skis.\n\nHe smiles.") == "The man skis.\n\nHe smiles."
    assert parse_description("Answer:\nThe man skis.\n===\n") == "The man skis."
