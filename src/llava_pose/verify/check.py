"""The checker: each sentence's predicates, whom they are about, how the sentence holds them
(`scope`), and a verdict from the geometry. Work per sentence is linear in its length."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

from .. import pose
from ..confidence import trusted
from ..records import ImageContext
from .geometry import order_truth, truth, verdict_of
from .predicates import Found, find_predicates
from .scope import Reading, Sentence
from .subjects import Mention, Scene, mentions_of, resolve_pronoun
from .text import ClaimKind, Verdict, sentences, tokens


@dataclass(frozen=True)
class Claim:
    """One pose claim of a text and its verdict.

    `span` is the sentence (character offsets into the checked text); `subject` the words
    naming who it is about; `person` the resolved person index (None for a group or when
    unresolved) and `persons` every resolved index (a group claim holds for each)."""

    span: tuple[int, int]
    kind: ClaimKind
    subject: str
    person: int | None
    predicate: str
    verdict: Verdict
    reason: str
    negated: bool = False
    persons: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "span": list(self.span),
            "kind": self.kind,
            "subject": self.subject,
            "person": self.person,
            "persons": list(self.persons),
            "predicate": ("not " if self.negated else "") + self.predicate,
            "verdict": self.verdict,
            "reason": self.reason,
        }


class _Mentions:
    """A sentence's mentions (left to right), searchable by position in log time."""

    def __init__(self, items: list[Mention]):
        self.items = items
        self.ends = [m.end for m in items]  # non-decreasing: mentions do not overlap
        self.starts = [m.start for m in items]

    def last_ending_by(self, k: int) -> Mention | None:
        i = bisect_left(self.ends, k + 1)
        return self.items[i - 1] if i else None

    def first_starting_from(self, k: int) -> Mention | None:
        i = bisect_left(self.starts, k)
        return self.items[i] if i < len(self.items) else None

    def holding(self, k: int) -> Mention | None:
        i = bisect_left(self.starts, k + 1) - 1
        if i >= 0 and self.items[i].start <= k < self.items[i].end:
            return self.items[i]
        return None


def _subject(found: Found, ms: _Mentions, words: list[str]) -> Mention | None:
    """The mention a predicate is about."""
    if found.owner is not None:
        m = ms.holding(found.owner)
        if m is not None:
            return m
    before = ms.last_ending_by(found.start)
    if before is not None:
        return before
    # A sentence opening with the predicate: "Standing on the left, the man ..."
    if found.start == 0:
        after = ms.first_starting_from(found.end)
        if after is not None and "," in words[found.end : after.start]:
            return after
    return None


def check_text(text: str, context: ImageContext) -> list[Claim]:
    """Every pose claim of `text` (free English about the image of `context`), judged. A pose
    model's low-confidence joints count as hidden (`confidence.trusted`): no verdict stands on
    them."""
    context = trusted(context)
    scene = Scene(context, pose.scene_facts(context), pose.left_to_right(context.persons))
    claims: list[Claim] = []
    for sentence in sentences(tokens(text)):
        words = [t.text for t in sentence]
        if words and words[-1] == "?":
            continue
        span = (sentence[0].start, sentence[-1].end)
        found_mentions = mentions_of(words, scene)
        resolved = [resolve_pronoun(m, scene) if m.pronoun else m for m in found_mentions]
        ms = _Mentions(resolved)
        firsts = [m for m in resolved if not m.pronoun]
        inside = {k for m in firsts for k in range(m.start, m.end)}
        # a position inside a name ("the man on the left") is no predicate
        found = [
            f for f in find_predicates(words) if not any(k in inside for k in range(f.start, f.end))
        ]
        held = Sentence(words, resolved, found)
        added: list[Mention] = []
        for f in found:
            reading = held.reading(f)
            if reading.skip:
                continue
            subj = _subject(f, ms, words)
            claims.append(_judge(scene, f, subj, reading, ms, span))
            if subj is not None and subj.persons is not None:
                scene.add_topic(subj)
                added.append(subj)
        # the sentence's first named person stays the topic for the next "he"/"she"
        if firsts and not any(t is firsts[0] for t in added):
            scene.add_topic(firsts[0])
    return claims


def _judge(
    scene: Scene,
    found: Found,
    subj: Mention | None,
    reading: Reading,
    ms: _Mentions,
    span: tuple[int, int],
) -> Claim:
    negated = reading.negated

    def claim(verdict: Verdict, reason: str, persons: tuple[int, ...] = ()) -> Claim:
        return Claim(
            span,
            found.kind,
            subj.text if subj else "",
            persons[0] if len(persons) == 1 and not (subj and subj.group) else None,
            found.predicate,
            verdict,
            reason,
            negated,
            persons,
        )

    if subj is None:
        return claim("unverifiable", "no subject found")
    if subj.persons is None:
        return claim("unverifiable", subj.why or f"'{subj.text}' is not one known person")
    if reading.unsure:
        return claim("unverifiable", reading.unsure, subj.persons)
    if found.kind == "order":
        b = ms.first_starting_from(found.end)
        if b is None or b.start > found.end + 1:
            return claim("unverifiable", "the other person is not named", subj.persons)
        if b.persons is None or len(b.persons) != 1 or subj.group:
            return claim(
                "unverifiable", b.why or f"'{b.text}' is not one known person", subj.persons
            )
        got, reason = order_truth(scene, subj.persons[0], b.persons[0], found.args["side"])
        verdict: Verdict = verdict_of(got, negated)
    else:
        verdict, reason = _joint(scene, found, subj, negated)
    if verdict == "contradicted" and reading.loose:
        verdict, reason = "unverifiable", f"{reason}; the negation may be on the words after it"
    return claim(verdict, reason, subj.persons)


def _joint(scene: Scene, found: Found, subj: Mention, negated: bool) -> tuple[Verdict, str]:
    """One claim about each of the subject's persons, as one verdict and its reasons."""
    verdicts = []
    reasons = []
    for i in subj.persons:
        got, why = truth(scene, found, i, negated)
        verdicts.append(verdict_of(got, negated))
        reasons.append(why if len(subj.persons) == 1 else f"person {i}: {why}")
    if negated and subj.group:
        # "both men are not sitting": every one of them, or not both: only what holds
        # either way is said
        verdict: Verdict = verdicts[0] if len(set(verdicts)) == 1 else "unverifiable"
    elif "contradicted" in verdicts:
        verdict = "contradicted"
    elif all(v == "supported" for v in verdicts):
        verdict = "supported"
    else:
        verdict = "unverifiable"
    return verdict, "; ".join(reasons)
