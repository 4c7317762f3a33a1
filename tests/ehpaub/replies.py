"""Scripted replies of the loopback servers when they play teacher, answerer or judge.

The judge scores by markers in the answers, so expected scores can be computed by hand:
a reference (no marker) gets 8, ``WEAK`` 5, ``STRONG`` 7, ``GARBLED`` makes the judge reply
without scores. Under ``BIAS`` in the model name the judge adds 1 to Assistant 1.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

SCORES = {"WEAK": 5, "STRONG": 7}
REFERENCE_SCORE = 8
JUDGE_MARK = "[Assistant 1]"
_SECTION = re.compile(r"\[Assistant (\d)\]\n(.*?)\n\n\[End of Assistant \1\]", re.S)


def _text(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(b.get("text", "") for b in content if isinstance(b, dict))
    return str(content or "")


def system_of(body: dict) -> str:
    if body.get("system"):
        return _text(body["system"])
    first = body["messages"][0]
    return _text(first["content"]) if first["role"] == "system" else ""


def last_user(body: dict) -> str:
    for m in reversed(body["messages"]):
        if m["role"] == "user":
            return _text(m["content"])
    return ""


def score_of(answer: str) -> int:
    for marker, score in SCORES.items():
        if marker in answer:
            return score
    return REFERENCE_SCORE


def judge_reply(body: dict) -> str:
    sections = dict(_SECTION.findall(last_user(body)))
    a1, a2 = sections["1"], sections["2"]
    if "GARBLED" in a1 + a2:
        return "I would rather not give numbers here."
    s1, s2 = score_of(a1), score_of(a2)
    if "BIAS" in body["model"]:
        s1 += 1
    return f"{s1} {s2}\nAssistant 1 is more precise about the pose; Assistant 2 is vaguer."


def teacher_reply(body: dict) -> str:
    """A well-formed teacher reply for the task the system prompt asks for, unique per request.
    It says nothing about bodies, so the pose filter (on for LLM teachers) keeps it."""
    system = system_of(body)
    digest = hashlib.sha256(json.dumps(body["messages"], sort_keys=True).encode()).hexdigest()
    tag = "".join(chr(97 + int(c, 16)) for c in digest[:6])  # letters: digits could be filtered
    if "Design a conversation" in system:
        return (
            f"Question:\nWhat is the person doing ({tag})?\n===\nAnswer:\nThe person is taking "
            "part in the scene.\n===\nQuestion:\nHow do they seem?\n===\nAnswer:\nThey "
            "seem calm.\n===\nQuestion:\nIs anyone else around?\n===\nAnswer:\nYes, the "
            "scene is busy."
        )
    if "describe the scene in a detailed manner" in system:
        return f"A person is in the scene, looking relaxed ({tag})."
    return (
        f"Question:\nWhy is the person standing still ({tag})?\n===\nAnswer:\nThey are waiting "
        "for the ball and keep their weight balanced."
    )


def answer_reply(body: dict) -> str:
    """What a benchmarked model says: marked by its name so the judge can score it."""
    marker = "STRONG" if "strong" in body["model"] else "WEAK"
    return f"{marker}: the person holds a steady stance ({last_user(body)[:30]})."


def respond(body: dict) -> str:
    """One responder for every role, told apart by the request."""
    if JUDGE_MARK in last_user(body):
        return judge_reply(body)
    if "You are an AI visual assistant" in system_of(body):
        return teacher_reply(body)
    return answer_reply(body)
