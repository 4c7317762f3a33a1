"""How a sentence holds each of its predicates: asserted, negated, not checkable (a past or
changed state, a hedge, a habit), or not a claim about the picture at all (advice, a plan,
a claim about nobody).

The picture shows one present moment, so "was sitting", "stopped raising his arms", "might
be sitting" and "hardly ever faces away" say nothing it can contradict; "does not have his
arms raised" and "has no arm raised" are checked with their polarity. Where a negation might
or might not reach a claim ("not standing with his arms raised"), the claim is unverifiable:
a true sentence is never contradicted. The markers and clause breaks are package data
(``data/verify/claims.yaml``, where the rules are spelled out); one scan of the sentence finds
them, and each predicate's reading is a few binary searches over prefix counts, so a sentence
of any length costs linear time.
"""

from __future__ import annotations

import functools
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .predicates import Found
from .subjects import Mention
from .text import PUNCTUATION, match, vocab

# Markers that make a claim unverifiable, and how the reason names them.
UNSURE = {
    "past": "a past state",
    "change": "a changed state",
    "hedge": "a guess",
    "frequency": "a habit",
}


@dataclass(frozen=True)
class Reading:
    """One predicate as its sentence holds it."""

    negated: bool = False
    skip: bool = False  # advice, a plan, "nobody ...": no claim about the picture
    unsure: str = ""  # why the picture cannot check it ("" when it can)
    # negated, and more words follow in the clause that the negation may be on instead:
    # "not sitting on the couch" can be supported, never contradicted
    loose: bool = False


@functools.cache
def _by_first_word() -> dict[str, tuple[tuple[tuple[str, ...], str], ...]]:
    """Every marker phrase under its first word, longest first across all kinds."""
    index: dict[str, list[tuple[tuple[str, ...], str]]] = {}
    for kind, phrases in vocab().markers.items():
        for p in phrases:
            index.setdefault(p[0], []).append((p, kind))
    return {w: tuple(sorted(ps, key=lambda x: -len(x[0]))) for w, ps in index.items()}


@functools.cache
def _breaks() -> dict[str, str]:
    return {p[0]: kind for kind, phrases in vocab().clause_breaks.items() for p in phrases}


def markers(words: Sequence[str]) -> dict[str, list[tuple[int, int]]]:
    """(start, end) token indices of each marker of the sentence, by kind, left to right."""
    v = vocab()
    index = _by_first_word()
    out: dict[str, list[tuple[int, int]]] = {}
    i, n = 0, len(words)
    while i < n:
        w = words[i]
        step = 1
        if w == "to" and i + 1 < n and words[i + 1] in v.advice_to_verbs:
            out.setdefault("advice", []).append((i, i + 1))
        else:
            for phrase, kind in index.get(w, ()):
                if match(words, i, phrase):
                    if phrase == ("no",) and i + 1 < n and words[i + 1] in PUNCTUATION:
                        break  # "No, ...": an answer, not a negation
                    out.setdefault(kind, []).append((i, i + len(phrase)))
                    step = len(phrase)
                    break
        i += step
    return out


class _Positions:
    """Sorted token positions, counted in a range in log time."""

    def __init__(self, positions: Iterable[int]):
        self.at = sorted(positions)

    def count(self, lo: int, hi: int) -> int:
        """How many positions are in [lo, hi)."""
        return max(0, bisect_left(self.at, hi) - bisect_left(self.at, lo))

    def last_before(self, hi: int) -> int | None:
        i = bisect_left(self.at, hi)
        return self.at[i - 1] if i else None


class Sentence:
    """A sentence's markers, clause breaks and subjects, read once; then `reading(found)` for
    each of its predicates in log time."""

    def __init__(self, words: Sequence[str], mentions: Sequence[Mention], found: Sequence[Found]):
        v = vocab()
        self.n = len(words)
        marks = markers(words)
        self.marks = {kind: _Positions(a for a, _ in spans) for kind, spans in marks.items()}
        self.negation_end = dict(marks.get("negation", []))
        breaks = _breaks()
        kinds = [breaks.get(w) if k > 0 else None for k, w in enumerate(words)]
        self.breaks = _Positions(k for k, kind in enumerate(kinds) if kind is not None)
        self.contrast = _Positions(k for k, kind in enumerate(kinds) if kind == "contrast")
        self.alternative = _Positions(k for k, kind in enumerate(kinds) if kind == "alternative")
        # words a negation does not reach over, counted up to each index
        self.heavy = [0]
        # and the words after a claim that a negation may be on instead, likewise
        self.rest = [0]
        for w in words:
            self.heavy.append(self.heavy[-1] + (w not in v.negation_reaches))
            self.rest.append(self.rest[-1] + (w not in v.negation_tail and w not in PUNCTUATION))
        # where a clause names its own subject: a person, or an owner/object pronoun that opens
        # the clause ("and his arms hang", not "and raising his arms")
        self.subjects = _Positions(
            m.start
            for m in mentions
            if not (m.text in v.object_pronouns or m.text.endswith("'s"))
            or m.start == 0
            or kinds[m.start - 1] is not None
        )
        self.mention_end = {m.start: m.end for m in mentions}
        # the predicates by end: a negation is about the first predicate ending after it
        self.start_by_end: dict[int, int] = {}
        for f in found:
            self.start_by_end[f.end] = min(f.start, self.start_by_end.get(f.end, f.start))
        self.ends = sorted(self.start_by_end)

    def _count(self, kind: str, lo: int, hi: int) -> int:
        got = self.marks.get(kind)
        return got.count(lo, hi) if got else 0

    def _last(self, kind: str, hi: int) -> int | None:
        got = self.marks.get(kind)
        return got.last_before(hi) if got else None

    def reading(self, f: Found) -> Reading:
        if self._count("advice", 0, f.start) or self._count("nobody", 0, f.start):
            return Reading(skip=True)
        negated, unclear = self._negation(f)
        after = bisect_right(self.breaks.at, f.end - 1)
        clause_end = self.breaks.at[after] if after < len(self.breaks.at) else self.n
        for kind in ("past", "change", "hedge", "frequency"):
            p = self._last(kind, clause_end)
            if p is None:
                continue
            reaches = p >= f.start or self.contrast.count(p + 1, f.start) == 0
            if kind in ("past", "change") and p < f.start and self._count("present", p + 1, f.end):
                reaches = False  # "was sitting earlier, and is now standing"
            if reaches:
                return Reading(negated, unsure=f"{UNSURE[kind]}: the picture shows the present")
        if unclear:
            return Reading(unsure=unclear)
        tail = f.end
        if f.kind == "order":  # "not to the left of the woman": the woman is the claim's
            tail = self.mention_end.get(tail, self.mention_end.get(tail + 1, tail))
        loose = negated and self.rest[clause_end] - self.rest[min(tail, clause_end)] > 0
        return Reading(negated, loose=loose)

    def _negation(self, f: Found) -> tuple[bool, str]:
        """Whether a negation is on `f`, or why that is unclear ("" when it is not)."""
        neg = self.marks.get("negation")
        if neg is None:
            return False, ""
        k = bisect_left(self.ends, f.end)
        prev_end = self.ends[k - 1] if k else 0
        mine = neg.count(prev_end, f.end)
        if mine >= 2:
            return False, "two negations"
        if mine == 1:
            n = neg.at[bisect_left(neg.at, prev_end)]
            if self._reaches(n, f.start):
                return True, ""
            return False, "a negation that may be about something else"
        n_at = neg.last_before(prev_end)
        if n_at is None:
            return False, ""
        # the nearest negation before is about an earlier predicate `g`: stopped by a contrast
        # or a new subject, carried over "or"/"nor", unclear over anything else
        end = self.negation_end[n_at]
        if self.contrast.count(n_at + 1, f.start) or self.subjects.count(end, f.start):
            return False, ""
        g_end = self.ends[bisect_right(self.ends, n_at)]
        others = self.breaks.count(g_end, f.start) - self.alternative.count(g_end, f.start)
        if (
            self._reaches(n_at, self.start_by_end[g_end])
            and self.alternative.count(g_end, f.start)
            and not others
        ):
            return True, ""
        return False, "a negation nearby may or may not apply to it"

    def _reaches(self, n_at: int, start: int) -> bool:
        """Whether the negation at `n_at` reaches a predicate starting at `start`."""
        end = self.negation_end[n_at]
        return end >= start or self.heavy[start] - self.heavy[end] == 0
