"""Pose predicates in a sentence ("his left arm is raised", "sitting", "facing the camera",
"on the left of the picture", "to the left of"), found by the vocabulary, before anyone
decides whom they are about or whether the sentence asserts them."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from .text import ClaimKind, match, match_any, vocab


@dataclass(frozen=True)
class Found:
    """A predicate found in a sentence, before its subject is judged."""

    kind: ClaimKind
    start: int  # tokens of the predicate
    end: int
    predicate: str
    args: dict[str, Any]
    owner: int | None = None  # token index of a possessive owner ("his left arm")


SIDES = ("left", "right")


def _limb_phrase(
    words: list[str], i: int, nouns: dict[str, int]
) -> tuple[int, int, str, bool] | None:
    """(start, end, which, said) of "(his) (left|right|both|one|no) arm(s)" ending at noun
    index i; `said`: "both" or "two" is written out (a plain "his arms" is not, which matters
    under a negation: "not both arms raised" is not "his arms are not raised")."""
    if words[i] not in nouns:
        return None
    start = i
    which = "both" if nouns[words[i]] == 2 else "any"
    if i >= 3 and words[i - 3 : i - 1] == ["one", "of"]:
        return i - 3, i + 1, "any", False  # "one of his arms"
    if i and words[i - 1] in SIDES:
        return i - 1, i + 1, words[i - 1], False
    if i and words[i - 1] in ("both", "two"):
        return i - 1, i + 1, "both", True
    if i and words[i - 1] in ("one", "a", "no"):
        return i - 1, i + 1, "any", False  # "no arm raised": a negated "an arm raised"
    return start, i + 1, which, False


def _owner_before(words: list[str], start: int) -> int | None:
    """Index of a possessive right before a limb phrase: his/her/their or X's."""
    j = start - 1
    if j >= 0 and words[j] in ("his", "her", "their", "its"):
        return j
    if j >= 0 and words[j] == "'s":
        return j - 1
    return None


@functools.cache
def _first_words() -> dict[str, frozenset[str]]:
    """The words a facing, posture or place phrase can start with: any other word is skipped
    at once (most words of a text start none)."""
    v = vocab()

    def firsts(*groups: dict[str, tuple[tuple[str, ...], ...]]) -> frozenset[str]:
        return frozenset(p[0] for g in groups for ps in g.values() for p in ps if p)

    return {
        "facing": firsts(v.facing),
        "posture": firsts(v.posture),
        "place": firsts(v.order, v.placement),
    }


def find_predicates(words: list[str]) -> list[Found]:
    """Every pose predicate of a sentence, left to right (limbs first where words overlap)."""
    v = vocab()
    found: list[Found] = []
    taken: set[int] = set()

    filler_higher = v.limb_filler | {"raised", "held", "lifted"}
    filler_state = v.limb_filler - {"straight", "high"}

    def add(f: Found) -> None:
        found.append(f)
        taken.update(range(f.start, f.end))

    # limbs first: "his right arm is raised", "raising both hands", "bent knees"
    for i in range(len(words)):
        for nouns, states, kind in (
            (v.arm_nouns, v.arm_state, "arm"),
            (v.leg_nouns, v.leg_state, "leg"),
        ):
            lp = _limb_phrase(words, i, nouns)
            if lp is None:
                continue
            start, end, which, said = lp
            noun = words[i]
            # higher/lower than the other
            if noun in ("hand", "arm", "foot", "wrist") and which in SIDES:
                j = end
                while j < len(words) and words[j] in filler_higher:
                    j += 1
                hi = match_any(words, j, v.higher)
                lo = None if hi else match_any(words, j, v.lower)
                if (hi or lo) and j + len(hi or lo or ()) < len(words):
                    k = j + len(hi or lo or ())
                    other = ("other", "right" if which == "left" else "left")
                    if words[k] == "than" or (
                        (hi == ("above",) or lo == ("below",))
                        and any(w in other for w in words[k : k + 3])
                    ):
                        part = "foot" if noun == "foot" else "hand"
                        higher = which if hi else ("right" if which == "left" else "left")
                        add(
                            Found(
                                "higher",
                                start,
                                k,
                                f"{part}: {higher} higher",
                                {"part": part, "side": higher},
                                _owner_before(words, start),
                            )
                        )
                        break
            if noun in ("foot", "leg") and which in SIDES:
                j = end
                while j < len(words) and words[j] in v.limb_filler:
                    j += 1
                lift = match_any(words, j, v.foot_lifted)
                before = [
                    k
                    for k in range(max(0, start - 3), start)
                    if words[k] in ("lifts", "lifting", "raises", "raising", "lifted", "raised")
                ]
                if lift or before:
                    add(
                        Found(
                            "higher",
                            start,
                            j + len(lift or ()),
                            f"foot: {which} lifted",
                            {"part": "foot", "side": which},
                            _owner_before(words, start),
                        )
                    )
                    continue
            if noun in ("feet", "foot") and kind == "leg":
                allowed = {"apart"}
            elif noun in ("hand", "hands"):
                allowed = {"raised", "above_head", "hanging", "extended"}
            elif noun in ("elbow", "elbows"):
                allowed = {"bent"}
            elif noun in ("knee", "knees"):
                allowed = {"bent", "straight"}
            else:
                allowed = set(states)
            # state after: "arm is raised", state before: "raised arm", "raising his arm"
            state = None
            j = end
            while j < len(words) and j < end + 4 and words[j] in filler_state:
                j += 1
            for name, phrases in states.items():
                if name in allowed and match_any(words, j, phrases):
                    p = match_any(words, j, phrases)
                    assert p is not None
                    state = (name, j + len(p))
                    break
            pstart = start
            if state is None:
                owner = _owner_before(words, start)
                k = (owner if owner is not None else start) - 1
                if k >= 0 and words[k] == "the" and owner is None:
                    k -= 1
                for name, phrases in states.items():
                    if name not in allowed or name == "hanging":
                        continue
                    for p in phrases:
                        if len(p) == 1 and k >= 0 and words[k] == p[0]:
                            state = (name, end)
                            pstart = k
                            break
                    if state:
                        break
            if state is None:
                continue
            name, send = state
            owner = _owner_before(words, start)
            add(
                Found(
                    kind,  # type: ignore[arg-type]
                    min(pstart, start),
                    max(send, end),
                    f"{which if which in SIDES else ('both' if which == 'both' else 'an')} "
                    f"{'arm' if kind == 'arm' else 'leg'}{'s' if which == 'both' else ''} {name.replace('_', ' ')}",
                    {"side": which, "state": name, "said": said},
                    owner,
                )
            )
            break
    starts = _first_words()
    for i in range(len(words)):
        if i in taken or words[i] not in starts["facing"]:
            continue
        for name, phrases in v.facing.items():
            p = match_any(words, i, phrases)
            if p:
                add(Found("facing", i, i + len(p), f"facing {name}", {"facing": name}))
                break
    for i in range(len(words)):
        if i in taken or words[i] not in starts["posture"]:
            continue
        for name, phrases in v.posture.items():
            p = match_any(words, i, phrases)
            if not p:
                continue
            if any(i - len(a) >= 0 and match(words, i - len(a), a) for a in v.posture_not_after):
                break
            nxt = words[i + len(p)] if i + len(p) < len(words) else ""
            if nxt in v.posture_not_before:
                break
            add(Found("posture", i, i + len(p), name, {"posture": name}))
            break
    for i in range(len(words)):
        if i in taken or words[i] not in starts["place"]:
            continue
        for side, phrases in v.order.items():
            p = match_any(words, i, phrases)
            rest = words[i + len(p) : i + len(p) + 2] if p else []
            if p and rest and rest[-1] not in v.picture_words:
                add(Found("order", i, i + len(p), f"{side} of", {"side": side}))
                break
        else:
            for side, phrases in v.placement.items():
                p = match_any(words, i, phrases)
                if not p:
                    continue
                end = i + len(p)
                picture = False
                if match_any(words, end, v.body_parts):
                    break  # "in the left hand": the person's own side, not the picture's
                if match(words, end, ("side",)):
                    end += 1
                if end < len(words) and words[end] == "of":
                    k = end + 1
                    if k < len(words) and words[k] in ("the", "this"):
                        k += 1
                    if k < len(words) and words[k] in v.picture_words:
                        picture = True
                        end = k + 1
                    else:
                        break  # the left of an object: not a place in the picture
                add(
                    Found(
                        "placement",
                        i,
                        end,
                        f"on the {side}" + (" of the picture" if picture else ""),
                        {"side": side, "picture": picture},
                    )
                )
                break
    return sorted(found, key=lambda f: f.start)
