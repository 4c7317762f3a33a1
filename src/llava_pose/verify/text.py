"""The checker's words: its vocabulary (package data), tokens, sentences and phrase matching."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

import yaml

Verdict = Literal["supported", "contradicted", "unverifiable"]
ClaimKind = Literal["posture", "arm", "leg", "facing", "placement", "order", "higher"]
VERDICTS: tuple[Verdict, ...] = ("supported", "contradicted", "unverifiable")
KINDS: tuple[ClaimKind, ...] = ("posture", "arm", "leg", "facing", "placement", "order", "higher")
# What the geometry says about one claim for one person: clearly true, probably true,
# clearly false, or nothing (None). Only "yes"/"no" may contradict a (negated) claim.
Truth = Literal["yes", "likely", "no"] | None
Phrases = tuple[tuple[str, ...], ...]


def _load(name: str) -> dict[str, Any]:
    text = resources.files("llava_pose").joinpath(f"data/verify/{name}").read_text("utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


_TOKEN = re.compile(r"[a-z0-9]+?(?=n't\b)|n't|[a-z0-9]+(?:-[a-z0-9]+)*|'s|[.,;:!?]")
PUNCTUATION = frozenset(".,;:!?")


def words_of(phrase: str) -> tuple[str, ...]:
    """The tokens of a vocabulary entry, as `tokens` splits a text."""
    return tuple(m.group(0) for m in _TOKEN.finditer(phrase.lower().replace("’", "'")))


def _phrases(items: Iterable[str]) -> Phrases:
    """Token tuples, longest first, so "bending over" wins over "bending"."""
    return tuple(sorted({words_of(p) for p in items}, key=lambda w: (-len(w), w)))


@dataclass(frozen=True)
class Vocab:
    """The word lists of ``data/verify/claims.yaml`` and ``subjects.yaml``, as token tuples
    (longest first) and sets, so matching never re-reads or re-splits them."""

    posture: dict[str, Phrases]
    posture_not_after: Phrases
    posture_not_before: frozenset[str]
    posture_contradicted_by: dict[str, frozenset[str]]
    arm_state: dict[str, Phrases]
    leg_state: dict[str, Phrases]
    arm_nouns: dict[str, int]
    leg_nouns: dict[str, int]
    limb_filler: frozenset[str]
    facing: dict[str, Phrases]
    facing_contradicted_by: dict[str, frozenset[str]]
    placement: dict[str, Phrases]
    picture_words: frozenset[str]
    body_parts: Phrases
    order: dict[str, Phrases]
    higher: Phrases
    lower: Phrases
    foot_lifted: Phrases
    # sentence markers (verify.scope): kind -> phrases; "to" + one of advice_to_verbs
    markers: dict[str, Phrases]
    advice_to_verbs: frozenset[str]
    negation_reaches: frozenset[str]
    negation_tail: frozenset[str]
    clause_breaks: dict[str, Phrases]
    person_nouns: dict[str, str | None]  # noun -> gender
    group_nouns: frozenset[str]
    roles: dict[tuple[str, ...], tuple[frozenset[str], frozenset[str]]]
    pronouns: dict[str, str]  # pronoun -> male/female/plural
    object_pronouns: frozenset[str]
    numbers: dict[str, int]
    ordinals: dict[str, int]
    position: dict[str, Phrases]
    max_people_for_position: int


MARKER_KINDS = (
    "negation",
    "not_negation",
    "hedge",
    "frequency",
    "past",
    "change",
    "present",
    "advice",
    "nobody",
)


@functools.cache
def vocab() -> Vocab:
    """The checker's word lists (package data), parsed once."""
    c, s = _load("claims.yaml"), _load("subjects.yaml")

    def group(d: dict[str, list[str]]) -> dict[str, Phrases]:
        return {k: _phrases(v) for k, v in d.items()}

    nouns: dict[str, str | None] = {}
    for gender, words in s["person_nouns"].items():
        for w in words:
            nouns[w] = None if gender == "none" else gender
    return Vocab(
        posture=group(c["posture"]),
        posture_not_after=_phrases(c["posture_not_after"]),
        posture_not_before=frozenset(c["posture_not_before"]),
        posture_contradicted_by={k: frozenset(v) for k, v in c["posture_contradicted_by"].items()},
        arm_state=group(c["arm_state"]),
        leg_state=group(c["leg_state"]),
        arm_nouns={str(k): int(v) for k, v in c["arm_nouns"].items()},
        leg_nouns={str(k): int(v) for k, v in c["leg_nouns"].items()},
        limb_filler=frozenset(c["limb_filler"]),
        facing=group(c["facing"]),
        facing_contradicted_by={k: frozenset(v) for k, v in c["facing_contradicted_by"].items()},
        placement=group(c["placement"]),
        picture_words=frozenset(c["picture_words"]),
        body_parts=_phrases(c["body_parts"]),
        order=group(c["order"]),
        higher=_phrases(c["higher"]),
        lower=_phrases(c["lower"]),
        foot_lifted=_phrases(c["foot_lifted"]),
        markers={k: _phrases(c[k]) for k in MARKER_KINDS},
        advice_to_verbs=frozenset(c["advice_to_verbs"]),
        negation_reaches=frozenset(c["negation_reaches"]),
        negation_tail=frozenset(w for p in c["negation_tail"] for w in words_of(p)),
        clause_breaks=group(c["clauses"]),
        person_nouns=nouns,
        group_nouns=frozenset(s["group_nouns"]),
        roles={
            words_of(k): (frozenset(v["kinds"]), frozenset(v["objects"]))
            for k, v in s["roles"].items()
        },
        pronouns={w: kind for kind, words in s["pronouns"].items() for w in words},
        object_pronouns=frozenset(s["object_pronouns"]),
        numbers={str(k): int(v) for k, v in s["numbers"].items()},
        ordinals={str(k): int(v) for k, v in s["ordinals"].items()},
        position=group(s["position"]),
        max_people_for_position=int(s["max_people_for_position"]),
    )


@functools.cache
def speakers() -> tuple[frozenset[str], frozenset[str]]:
    """The names of the model's turns and of the other turns in a conversation ("from")."""
    d = _load("turns.yaml")
    return frozenset(d["model"]), frozenset(d["other"])


# -- tokens and sentences ----------------------------------------------------------------------


@dataclass(frozen=True)
class Tok:
    text: str
    start: int
    end: int


def tokens(text: str) -> list[Tok]:
    """Lower-case words and punctuation with their character offsets ("n't" reads "not")."""
    low = text.lower().replace("’", "'")
    out = []
    for m in _TOKEN.finditer(low):
        word = "not" if m.group(0) == "n't" else m.group(0)
        out.append(Tok(word, m.start(), m.end()))
    return out


def sentences(toks: list[Tok]) -> list[list[Tok]]:
    out: list[list[Tok]] = []
    cur: list[Tok] = []
    for t in toks:
        cur.append(t)
        if t.text in (".", "!", "?", ";"):
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


def match(words: Sequence[str], i: int, phrase: Sequence[str]) -> bool:
    # The first word settles almost every comparison: checked before slicing (the pose check
    # runs this ~700 times a reply, while the next calls wait).
    n = len(phrase)
    if n and 0 <= i < len(words) and words[i] != phrase[0]:
        return False
    return tuple(words[i : i + n]) == tuple(phrase)


_BY_FIRST: dict[int, tuple[Iterable[Sequence[str]], dict[str, list[tuple[str, ...]]]]] = {}


def match_any(
    words: Sequence[str], i: int, phrases: Iterable[Sequence[str]]
) -> tuple[str, ...] | None:
    """The first of `phrases` (in their order) that `words` has at `i`.

    Only the phrases that start with ``words[i]`` are compared: each phrase list is indexed
    by first word once (the vocabulary's lists live as long as the process), which makes
    finding predicates ~5x cheaper than trying every phrase at every word."""
    if not 0 <= i < len(words):
        return None
    hit = _BY_FIRST.get(id(phrases))
    if hit is None or hit[0] is not phrases:
        index: dict[str, list[tuple[str, ...]]] = {}
        for p in phrases:
            if p:
                index.setdefault(p[0], []).append(tuple(p))
        hit = _BY_FIRST[id(phrases)] = (phrases, index)
    for p in hit[1].get(words[i], ()):
        if tuple(words[i : i + len(p)]) == p:
            return p
    return None
