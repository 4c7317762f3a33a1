"""Pose claims in free English text, checked against one image's keypoints.

`check_text(text, context)` finds the sentences that say something about a body (posture,
arms, legs, facing, place in the picture, order among people, which hand or foot is higher),
resolves who each one is about, and labels it supported, contradicted or unverifiable with
the geometry of `llava_pose.pose`. `summarize(claims)` counts them.

"Contradicted" throws paid data away, so it is said only when the geometry clearly says the
opposite, with margins wider than the ones `pose.py` uses to say a fact: a foreshortened limb,
a hidden (v=1) joint, a subject that might be someone else, a posture the text and a photo
routinely disagree on (a surfer "standing" in a crouch) all give "unverifiable". The parser
is a small pattern matcher over the vocabulary in ``data/verify/*.yaml``, not a grammar: it
skips what it cannot place (advice, plans, questions) rather than guess.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any, Literal

import yaml

from . import pose
from .records import ImageContext

Verdict = Literal["supported", "contradicted", "unverifiable"]
ClaimKind = Literal["posture", "arm", "leg", "facing", "placement", "order", "higher"]
VERDICTS: tuple[Verdict, ...] = ("supported", "contradicted", "unverifiable")
KINDS: tuple[ClaimKind, ...] = ("posture", "arm", "leg", "facing", "placement", "order", "higher")
# What the geometry says about one claim for one person: clearly true, probably true,
# clearly false, or nothing (None). Only "yes"/"no" may contradict a (negated) claim.
Truth = Literal["yes", "likely", "no"] | None

# -- margins on top of pose.py's thresholds (scale units / degrees / image fractions) ---------

# A standing posture contradicts "sitting" only with both legs fully seen, knees locked and
# thighs long in the picture (a seated person facing the camera has short, straight-looking
# thighs: the pose.py posture bug of COCO train2017 463557).
STRONG_STAND_KNEE = 160.0
STRONG_STAND_THIGH = 0.55
STRONG_STAND_TILT = 20.0
# "bending over" is contradicted by an upright torso that is not foreshortened.
UPRIGHT_TORSO_MIN = 0.8
# An arm is clearly not raised when the wrist AND the elbow are this far below the shoulder.
NOT_RAISED = 0.3
# A wrist clearly above the shoulder is not hanging.
NOT_HANGING = 0.3
# A limb angle this sharp, with both segments this long, is bent in 3-D too; this straight,
# with both segments long, is not clearly bent.
CLEARLY_BENT_MAX = 90.0
CLEARLY_BENT_SEGMENT = 0.3
CLEARLY_STRAIGHT_MIN = 172.0
CLEARLY_STRAIGHT_SEGMENT = 0.5
KNEE_CLEARLY_BENT_MAX = 110.0
# Feet this close sideways, seen from the front or back: legs together.
FEET_TOGETHER = 0.15
# Facing front/back is contradicted only with the shoulders this far apart and the face agreeing;
# a profile only with the nose this far in front of the ears.
FACING_SHOULDERS = 0.35
FACING_PROFILE_NOSE = 0.2
# One wrist/ankle higher than the other (scale units): said / contradicted.
HIGHER_SAID = 0.15
HIGHER_CONTRADICTED = 0.3
FOOT_CONTRADICTED = 0.4
# Placement in the picture (box centre as a fraction of the width).
PLACE_OPPOSITE = 0.6
PLACE_CENTRE_OFF = 0.2
ORDER_CONTRADICTED = 0.1


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


# -- vocabulary --------------------------------------------------------------------------------


def _load(name: str) -> dict[str, Any]:
    text = resources.files("llava_pose").joinpath(f"data/verify/{name}").read_text("utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


_TOKEN = re.compile(r"[a-z0-9]+?(?=n't\b)|n't|[a-z0-9]+(?:-[a-z0-9]+)*|'s|[.,;:!?]")


def _words(phrase: str) -> tuple[str, ...]:
    return tuple(m.group(0) for m in _TOKEN.finditer(phrase.lower().replace("’", "'")))


def _phrases(items: Iterable[str]) -> tuple[tuple[str, ...], ...]:
    """Token tuples, longest first, so "bending over" wins over "bending"."""
    return tuple(sorted({_words(p) for p in items}, key=lambda w: (-len(w), w)))


@dataclass(frozen=True)
class Vocab:
    posture: dict[str, tuple[tuple[str, ...], ...]]
    posture_not_after: tuple[tuple[str, ...], ...]
    posture_not_before: frozenset[str]
    posture_contradicted_by: dict[str, frozenset[str]]
    arm_state: dict[str, tuple[tuple[str, ...], ...]]
    leg_state: dict[str, tuple[tuple[str, ...], ...]]
    facing: dict[str, tuple[tuple[str, ...], ...]]
    facing_contradicted_by: dict[str, frozenset[str]]
    placement: dict[str, tuple[tuple[str, ...], ...]]
    picture_words: frozenset[str]
    body_parts: tuple[tuple[str, ...], ...]
    order: dict[str, tuple[tuple[str, ...], ...]]
    higher: tuple[tuple[str, ...], ...]
    lower: tuple[tuple[str, ...], ...]
    foot_lifted: tuple[tuple[str, ...], ...]
    negation: tuple[tuple[str, ...], ...]
    nobody: tuple[tuple[str, ...], ...]
    modal: frozenset[str]
    modal_to_verbs: frozenset[str]
    person_nouns: dict[str, str | None]  # noun -> gender
    group_nouns: frozenset[str]
    roles: dict[tuple[str, ...], tuple[frozenset[str], frozenset[str]]]
    pronouns: dict[str, str]  # pronoun -> male/female/plural
    numbers: dict[str, int]
    ordinals: dict[str, int]
    position: dict[str, tuple[tuple[str, ...], ...]]
    max_people_for_position: int


@functools.cache
def vocab() -> Vocab:
    """The checker's word lists (package data), parsed once."""
    c, s = _load("claims.yaml"), _load("subjects.yaml")

    def group(d: dict[str, list[str]]) -> dict[str, tuple[tuple[str, ...], ...]]:
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
        facing=group(c["facing"]),
        facing_contradicted_by={k: frozenset(v) for k, v in c["facing_contradicted_by"].items()},
        placement=group(c["placement"]),
        picture_words=frozenset(c["picture_words"]),
        body_parts=_phrases(c["body_parts"]),
        order=group(c["order"]),
        higher=_phrases(c["higher"]),
        lower=_phrases(c["lower"]),
        foot_lifted=_phrases(c["foot_lifted"]),
        negation=_phrases(c["negation"]),
        nobody=_phrases(c["nobody"]),
        modal=frozenset(c["modal"]),
        modal_to_verbs=frozenset(c["modal_to_verbs"]),
        person_nouns=nouns,
        group_nouns=frozenset(s["group_nouns"]),
        roles={
            _words(k): (frozenset(v["kinds"]), frozenset(v["objects"]))
            for k, v in s["roles"].items()
        },
        pronouns={w: kind for kind, words in s["pronouns"].items() for w in words},
        numbers={str(k): int(v) for k, v in s["numbers"].items()},
        ordinals={str(k): int(v) for k, v in s["ordinals"].items()},
        position=group(s["position"]),
        max_people_for_position=int(s["max_people_for_position"]),
    )


# -- tokens and sentences ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Tok:
    text: str
    start: int
    end: int


def _tokens(text: str) -> list[_Tok]:
    low = text.lower().replace("’", "'")
    out = []
    for m in _TOKEN.finditer(low):
        word = "not" if m.group(0) == "n't" else m.group(0)
        out.append(_Tok(word, m.start(), m.end()))
    return out


def _sentences(toks: list[_Tok]) -> list[list[_Tok]]:
    out: list[list[_Tok]] = []
    cur: list[_Tok] = []
    for t in toks:
        cur.append(t)
        if t.text in (".", "!", "?", ";"):
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


def _match(words: Sequence[str], i: int, phrase: Sequence[str]) -> bool:
    # The first word settles almost every comparison: checked before slicing (the pose check
    # runs this ~700 times a reply, while the next calls wait).
    n = len(phrase)
    if n and 0 <= i < len(words) and words[i] != phrase[0]:
        return False
    return tuple(words[i : i + n]) == tuple(phrase)


def _match_any(
    words: Sequence[str], i: int, phrases: Iterable[Sequence[str]]
) -> tuple[str, ...] | None:
    for p in phrases:
        if _match(words, i, p):
            return tuple(p)
    return None


# -- subjects ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Mention:
    """Words naming one person or a group, and whom they resolve to (None: nobody for sure)."""

    start: int  # token indices in the sentence
    end: int
    text: str
    persons: tuple[int, ...] | None
    gender: str | None = None  # male/female/plural/None
    group: bool = False
    pronoun: bool = False
    why: str = ""


@dataclass
class _Scene:
    context: ImageContext
    facts: pose.SceneFacts
    order: tuple[int, ...]
    topics: list[_Mention] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.context.persons)

    def labelled(self) -> list[int]:
        return [i for i, p in enumerate(self.context.persons) if p.num_labelled > 0]

    def only_person(self) -> int | None:
        """The one person a bare "the man" can mean: the only labelled person, and also the
        largest one in the picture (a labelled figure behind a bigger unlabelled one is not
        what a text means by "the man")."""
        labelled = self.labelled()
        if len(labelled) != 1:
            return None
        i = labelled[0]

        def area(k: int) -> float:
            b = self.context.persons[k].box
            return (b[2] - b[0]) * (b[3] - b[1])

        if any(area(k) > area(i) for k in range(self.n) if k != i):
            return None
        return i


def _centre(ctx: ImageContext, i: int) -> float:
    b = ctx.persons[i].box
    return (b[0] + b[2]) / 2


def _rank(scene: _Scene, side: str, k: int) -> int | None:
    """The k-th person (1-based) from the picture's `side`, when clearly apart from the
    neighbours that decide the rank; None in a crowd or a tie."""
    v = vocab()
    if scene.n < k or scene.n > v.max_people_for_position or scene.n < 2:
        return None
    order = list(scene.order if side == "left" else reversed(scene.order))
    ctx = scene.context
    i = order[k - 1]
    for j in (k - 2, k):
        if (
            0 <= j < len(order)
            and pose.relative_side(ctx.persons[i], ctx.persons[order[j]]) is None
        ):
            return None
    return i


def _middle(scene: _Scene) -> int | None:
    if scene.n % 2 == 0 or scene.n < 3:
        return None
    return _rank(scene, "left", scene.n // 2 + 1)


def _role_person(scene: _Scene, kinds: frozenset[str], objects: frozenset[str]) -> int | None:
    hits = [
        f.index
        for f in scene.facts.persons
        if any(c.kind in kinds and c.category in objects for c in f.contacts)
    ]
    if len(hits) == 1:
        return hits[0]
    return None


def _mentions(words: list[str], scene: _Scene) -> list[_Mention]:
    """Every person mention of a sentence, left to right, resolved where unambiguous."""
    v = vocab()
    out: list[_Mention] = []
    i = 0
    n_all = scene.n
    while i < len(words):
        w = words[i]
        # pronouns
        if w in v.pronouns:
            kind = v.pronouns[w]
            out.append(_Mention(i, i + 1, w, None, gender=kind, pronoun=True))
            i += 1
            continue
        # groups: "both (of them|players)", "all (three) (men)", "the two men", "everyone"
        if w in ("both", "all", "everyone", "everybody", "each"):
            j = i + 1
            if j < len(words) and (words[j] in _ARM_NOUNS or words[j] in _LEG_NOUNS):
                i += 1  # "both arms": a limb, not a group of people
                continue
            count = 2 if w == "both" else None
            if j < len(words) and words[j] in v.numbers:
                count = v.numbers[words[j]]
                j += 1
            if j + 1 < len(words) and words[j] == "of" and words[j + 1] in ("them", "the"):
                j += 2
            if j < len(words) and words[j] in v.group_nouns:
                j += 1
            elif w == "each" and j == i + 1:
                i += 1
                continue
            if w in ("all",) and j == i + 1:
                i += 1
                continue
            members = tuple(range(n_all)) if count in (None, n_all) and n_all >= 2 else None
            why = "" if members else f"{count} named, {n_all} in the image"
            out.append(_Mention(i, j, " ".join(words[i:j]), members, "plural", True, why=why))
            i = j
            continue
        if (
            w in v.numbers
            and v.numbers[w] >= 2
            and i + 1 < len(words)
            and words[i + 1] in v.group_nouns
        ):
            count = v.numbers[w]
            members = tuple(range(n_all)) if count == n_all else None
            why = "" if members else f"{count} named, {n_all} in the image"
            out.append(_Mention(i, i + 2, f"{w} {words[i + 1]}", members, "plural", True, why=why))
            i += 2
            continue
        # ordinals: "the second person from the left"
        if w in v.ordinals and i + 4 < len(words) + 1:
            k = v.ordinals[w]
            j = i + 1
            if j < len(words) and (words[j] in v.person_nouns or words[j] in ("one",)):
                j += 1
            if _match(words, j, ("from", "the")) and j + 2 < len(words):
                side = words[j + 2]
                if side in ("left", "right"):
                    who = _rank(scene, side, k)
                    out.append(
                        _Mention(
                            i,
                            j + 3,
                            " ".join(words[i : j + 3]),
                            None if who is None else (who,),
                            why="" if who is not None else "no clear rank",
                        )
                    )
                    i = j + 3
                    continue
        # "leftmost person"
        if (
            w in ("leftmost", "rightmost", "left-most", "right-most")
            and i + 1 < len(words)
            and words[i + 1] in v.person_nouns
        ):
            who = _rank(scene, "left" if w.startswith("left") else "right", 1)
            out.append(
                _Mention(
                    i,
                    i + 2,
                    f"{w} {words[i + 1]}",
                    None if who is None else (who,),
                    v.person_nouns[words[i + 1]],
                )
            )
            i += 2
            continue
        # roles, then plain nouns
        role = _match_any(words, i, _roles_longest_first())
        if role is not None or w in v.person_nouns:
            length = len(role) if role is not None else 1
            end = i + length
            noun = " ".join(words[i:end])
            gender = v.person_nouns.get(noun)
            prev = words[i - 1] if i else ""
            possessive = end < len(words) and words[end] == "'s"
            who: int | None = None
            why = ""
            pos = None if possessive else _match_any(words, end, _all_positions())
            if prev in ("other", "another", "some", "many", "several", "no", "any", "every"):
                why = f"'{prev} {noun}' names nobody in particular"
            elif pos is not None:
                side = _position_side(pos)
                who = _middle(scene) if side == "middle" else _rank(scene, side, 1)
                if who is None:
                    why = f"'{noun} {' '.join(pos)}' is not one clear person"
                end += len(pos)
            elif role is not None:
                kinds, objects = v.roles[role]
                who = _role_person(scene, kinds, objects)
                if who is None:
                    who = scene.only_person()
                if who is None:
                    why = f"no single person is at a {'/'.join(sorted(objects))}"
            else:
                who = scene.only_person()
                if who is None:
                    why = f"{len(scene.labelled())} labelled people: '{noun}' is ambiguous"
            if possessive:
                end += 1
            out.append(
                _Mention(
                    i, end, " ".join(words[i:end]), None if who is None else (who,), gender, why=why
                )
            )
            i = end
            continue
        i += 1
    return out


@functools.cache
def _roles_longest_first() -> tuple[tuple[str, ...], ...]:
    return tuple(sorted(vocab().roles, key=len, reverse=True))


@functools.cache
def _all_positions() -> tuple[tuple[str, ...], ...]:
    v = vocab()
    return tuple(sorted({p for ps in v.position.values() for p in ps}, key=len, reverse=True))


def _position_side(phrase: tuple[str, ...]) -> str:
    for side, ps in vocab().position.items():
        if phrase in ps:
            return side
    raise KeyError(phrase)


def _resolve_pronoun(m: _Mention, scene: _Scene) -> _Mention:
    """He/she: the latest topic of that gender; they: the latest group; else the only person."""
    if m.gender == "plural" and scene.topics:
        # "they": the latest topic, a group or a person of no stated gender (singular they)
        t = scene.topics[-1]
        if t.group:
            return replace(m, persons=t.persons, group=True, why=t.why or "")
        if t.gender is None:
            why = "" if t.persons else f"'{m.text}' refers to '{t.text}': {t.why}"
            return replace(m, persons=t.persons, why=why)
        return replace(m, why=f"'{m.text}' after '{t.text}'")
    for t in reversed(scene.topics):
        if t.group:
            continue
        if t.gender in (None, m.gender):
            why = "" if t.persons else f"'{m.text}' refers to '{t.text}': {t.why}"
            return replace(m, persons=t.persons, why=why)
    only = scene.only_person()
    if only is not None and m.gender != "plural":
        return replace(m, persons=(only,))
    if only is not None and m.gender == "plural" and scene.n == 1:
        return replace(m, persons=(only,))
    return replace(m, why=f"nobody earlier for '{m.text}'")


# -- claims ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Found:
    """A predicate found in a sentence, before its subject is judged."""

    kind: ClaimKind
    start: int  # tokens of the predicate
    end: int
    predicate: str
    args: dict[str, Any]
    owner: int | None = None  # token index of a possessive owner ("his left arm")


_ARM_NOUNS = {"arm": 1, "arms": 2, "hand": 1, "hands": 2, "elbow": 1, "elbows": 2}
_LEG_NOUNS = {"leg": 1, "legs": 2, "knee": 1, "knees": 2, "feet": 2, "foot": 1}
_FILLER = frozenset(
    [
        "is",
        "are",
        "was",
        "were",
        "be",
        "being",
        "been",
        "appears",
        "appear",
        "seems",
        "seem",
        "to",
        "held",
        "kept",
        "both",
        "also",
        "still",
        "slightly",
        "fully",
        "clearly",
        "partly",
        "partially",
        "and",
        "high",
        "straight",
        "not",
        "never",
    ]
)
_SIDES = ("left", "right")


def _limb_phrase(words: list[str], i: int, nouns: dict[str, int]) -> tuple[int, int, str] | None:
    """(start, end, which) of "(his) (left|right|both|one) arm(s)" ending at noun index i."""
    if words[i] not in nouns:
        return None
    start = i
    which = "both" if nouns[words[i]] == 2 else "any"
    if i >= 3 and words[i - 3 : i - 1] == ["one", "of"]:
        return i - 3, i + 1, "any"  # "one of his arms"
    if i and words[i - 1] in _SIDES:
        which = words[i - 1]
        start = i - 1
    elif i and words[i - 1] in ("both", "two"):
        which = "both"
        start = i - 1
    elif i and words[i - 1] in ("one", "a"):
        which = "any"
        start = i - 1
    return start, i + 1, which


def _owner_before(words: list[str], start: int) -> int | None:
    """Index of a possessive right before a limb phrase: his/her/their or X's."""
    j = start - 1
    if j >= 0 and words[j] in ("his", "her", "their", "its"):
        return j
    if j >= 0 and words[j] == "'s":
        return j - 1
    return None


def _find(words: list[str]) -> list[_Found]:
    v = vocab()
    found: list[_Found] = []
    taken: set[int] = set()

    def add(f: _Found) -> None:
        found.append(f)
        taken.update(range(f.start, f.end))

    # limbs first: "his right arm is raised", "raising both hands", "bent knees"
    for i in range(len(words)):
        for nouns, states, kind in (
            (_ARM_NOUNS, v.arm_state, "arm"),
            (_LEG_NOUNS, v.leg_state, "leg"),
        ):
            lp = _limb_phrase(words, i, nouns)
            if lp is None:
                continue
            start, end, which = lp
            noun = words[i]
            # higher/lower than the other
            if noun in ("hand", "arm", "foot", "wrist") and which in _SIDES:
                j = end
                while j < len(words) and words[j] in _FILLER | {"raised", "held", "lifted"}:
                    j += 1
                hi = _match_any(words, j, v.higher)
                lo = None if hi else _match_any(words, j, v.lower)
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
                            _Found(
                                "higher",
                                start,
                                k,
                                f"{part}: {higher} higher",
                                {"part": part, "side": higher},
                                _owner_before(words, start),
                            )
                        )
                        break
            if noun in ("foot", "leg") and which in _SIDES:
                j = end
                while j < len(words) and words[j] in _FILLER:
                    j += 1
                lift = _match_any(words, j, v.foot_lifted)
                before = [
                    k
                    for k in range(max(0, start - 3), start)
                    if words[k] in ("lifts", "lifting", "raises", "raising", "lifted", "raised")
                ]
                if lift or before:
                    add(
                        _Found(
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
            while j < len(words) and j < end + 4 and words[j] in _FILLER - {"straight", "high"}:
                j += 1
            for name, phrases in states.items():
                if name in allowed and _match_any(words, j, phrases):
                    p = _match_any(words, j, phrases)
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
                _Found(
                    kind,  # type: ignore[arg-type]
                    min(pstart, start),
                    max(send, end),
                    f"{which if which in _SIDES else ('both' if which == 'both' else 'an')} "
                    f"{'arm' if kind == 'arm' else 'leg'}{'s' if which == 'both' else ''} {name.replace('_', ' ')}",
                    {"side": which, "state": name},
                    owner,
                )
            )
            break
    for i in range(len(words)):
        if i in taken:
            continue
        for name, phrases in v.facing.items():
            p = _match_any(words, i, phrases)
            if p:
                add(_Found("facing", i, i + len(p), f"facing {name}", {"facing": name}))
                break
    for i in range(len(words)):
        if i in taken:
            continue
        for name, phrases in v.posture.items():
            p = _match_any(words, i, phrases)
            if not p:
                continue
            if any(i - len(a) >= 0 and _match(words, i - len(a), a) for a in v.posture_not_after):
                break
            nxt = words[i + len(p)] if i + len(p) < len(words) else ""
            if nxt in v.posture_not_before:
                break
            add(_Found("posture", i, i + len(p), name, {"posture": name}))
            break
    for i in range(len(words)):
        if i in taken:
            continue
        for side, phrases in v.order.items():
            p = _match_any(words, i, phrases)
            rest = words[i + len(p) : i + len(p) + 2] if p else []
            if p and rest and rest[-1] not in v.picture_words:
                add(_Found("order", i, i + len(p), f"{side} of", {"side": side}))
                break
        else:
            for side, phrases in v.placement.items():
                p = _match_any(words, i, phrases)
                if not p:
                    continue
                end = i + len(p)
                picture = False
                if _match_any(words, end, v.body_parts):
                    break  # "in the left hand": the person's own side, not the picture's
                if _match(words, end, ("side",)):
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
                    _Found(
                        "placement",
                        i,
                        end,
                        f"on the {side}" + (" of the picture" if picture else ""),
                        {"side": side, "picture": picture},
                    )
                )
                break
    return sorted(found, key=lambda f: f.start)


# -- geometry ----------------------------------------------------------------------------------


def _seg(body: pose.Body, a: pose.Joint, b: pose.Joint) -> float:
    return float(((a.x - b.x) ** 2 + (a.y - b.y) ** 2) ** 0.5) / body.scale


def _seen(*joints: pose.Joint | None) -> bool:
    return all(j is not None and j.v == 2 for j in joints)


def _strong_standing(body: pose.Body) -> bool:
    if body.torso_tilt is None or body.torso_tilt > STRONG_STAND_TILT:
        return False
    for side in _SIDES:
        hip, knee, ankle = (body.j(f"{side} {p}") for p in ("hip", "knee", "ankle"))
        if not _seen(hip, knee, ankle):
            return False
        assert hip is not None and knee is not None and ankle is not None
        angle = pose.limb_angle(body, hip, knee, ankle)
        if angle is None or angle < STRONG_STAND_KNEE or _seg(body, hip, knee) < STRONG_STAND_THIGH:
            return False
    return True


def _posture_truth(body: pose.Body, claimed: str) -> tuple[Truth, str]:
    v = vocab()
    got, hidden = pose.posture_of(body)
    tilt = body.torso_tilt
    if claimed == "bending":
        if got == "bending":
            return ("likely" if hidden else "yes"), "torso horizontal over straight legs"
        sh = [body.j("left shoulder"), body.j("right shoulder")]
        hp = [body.j("left hip"), body.j("right hip")]
        if tilt is not None and tilt <= pose.UPRIGHT_MAX and _seen(*sh, *hp):
            assert sh[0] and sh[1] and hp[0] and hp[1]
            mid_s = pose.Joint((sh[0].x + sh[1].x) / 2, (sh[0].y + sh[1].y) / 2, 2)
            mid_h = pose.Joint((hp[0].x + hp[1].x) / 2, (hp[0].y + hp[1].y) / 2, 2)
            if _seg(body, mid_s, mid_h) >= UPRIGHT_TORSO_MIN:
                return "no", f"torso upright ({tilt:.0f} deg from vertical) at full length"
        return None, "torso angle inside the margin" if tilt is not None else "no torso"
    if got is None:
        return None, "posture not clear from the keypoints"
    if got == claimed:
        if claimed == "standing" and not _strong_standing(body):
            return "likely", "standing (legs not fully seen)"
        return ("likely" if hidden else "yes"), f"keypoints say {got}"
    if got in v.posture_contradicted_by.get(claimed, frozenset()):
        if hidden:
            return None, f"keypoints say {got}, but through hidden joints"
        if got == "standing" and not _strong_standing(body):
            return None, "keypoints say standing, but not by the margin"
        return "no", f"keypoints say {got}"
    return None, f"keypoints say {got}, too close to {claimed} to call"


def _limbs(body: pose.Body, facts: pose.PoseFacts) -> pose.Body:
    """The frame pose_facts judges limbs in: the body's own when lying, else the picture's."""
    if facts.posture == "lying":
        return body
    return replace(body, up=(0.0, -1.0), right=(1.0, 0.0))


def _arm_truth(body: pose.Body, facts: pose.PoseFacts, side: str, state: str) -> tuple[Truth, str]:
    limbs = _limbs(body, facts)
    arm = facts.arms[0 if side == "left" else 1]
    sh, el, wr = (body.j(f"{side} {p}") for p in ("shoulder", "elbow", "wrist"))
    if sh is None or wr is None:
        return None, f"{side} shoulder or wrist not labelled"
    hidden = not _seen(sh, wr, el) if el is not None else not _seen(sh, wr)
    rise = limbs.height_of((wr.x, wr.y), (sh.x, sh.y))
    rise_el = limbs.height_of((el.x, el.y), (sh.x, sh.y)) if el is not None else None
    hint = f"{side} wrist {rise:+.2f} torso above the shoulder"
    if state in ("raised", "above_head"):
        want = ("above_head",) if state == "above_head" else ("above_head", "above_shoulder")
        if arm.height in want:
            return ("likely" if hidden else "yes"), hint
        low = -NOT_RAISED if state == "raised" else 0.0
        if rise < low and (rise_el is None or rise_el < 0) and not hidden:
            return "no", hint
        return None, hint + " (inside the margin)"
    if state == "hanging":
        if arm.hanging:
            return ("likely" if hidden else "yes"), f"{side} arm hangs straight down"
        if rise > NOT_HANGING and not hidden:
            return "no", hint
        return None, f"{side} arm neither clearly hanging nor raised"
    angle = arm.elbow_angle
    if angle is None or el is None:
        return None, f"{side} elbow angle unknown"
    segs = min(_seg(body, sh, el), _seg(body, el, wr))
    if state == "extended":
        if arm.reach is not None or (
            angle >= pose.ELBOW_STRAIGHT_MIN and arm.height != "below_shoulder"
        ):
            return ("likely" if hidden else "yes"), f"{side} elbow {angle:.0f} deg"
        if angle <= CLEARLY_BENT_MAX and segs >= CLEARLY_BENT_SEGMENT and not hidden:
            return "no", f"{side} elbow bent to {angle:.0f} deg"
        return None, f"{side} elbow {angle:.0f} deg (inside the margin)"
    return _bend_truth(state, f"{side} elbow", angle, segs, hidden, 0.0, pose.ELBOW_BENT_MAX, 0.0)


def _leg_truth(body: pose.Body, facts: pose.PoseFacts, side: str, state: str) -> tuple[Truth, str]:
    if state == "apart":
        la, ra = body.j("left ankle"), body.j("right ankle")
        if la is None or ra is None:
            return None, "ankles not labelled"
        if facts.stride:
            return "yes", "feet well apart"
        gap = abs(la.x - ra.x) / body.scale
        if gap < FEET_TOGETHER and facts.facing in ("camera", "away") and _seen(la, ra):
            return (
                "no",
                f"feet {gap:.2f} torso apart, seen from the {'front' if facts.facing == 'camera' else 'back'}",
            )
        return None, "feet spacing inside the margin"
    hip, knee, ankle = (body.j(f"{side} {p}") for p in ("hip", "knee", "ankle"))
    angle = pose.limb_angle(body, hip, knee, ankle)
    if angle is None or hip is None or knee is None or ankle is None:
        return None, f"{side} knee angle unknown"
    hidden = not _seen(hip, knee, ankle)
    segs = min(_seg(body, hip, knee), _seg(body, knee, ankle))
    return _bend_truth(
        state,
        f"{side} knee",
        angle,
        segs,
        hidden,
        pose.KNEE_STRAIGHT_MIN,
        pose.KNEE_BENT_MAX,
        KNEE_CLEARLY_BENT_MAX,
    )


def _bend_truth(
    state: str,
    joint: str,
    angle: float,
    segs: float,
    hidden: bool,
    straight_min: float,
    bent_max: float,
    clearly_bent_max: float,
) -> tuple[Truth, str]:
    """Whether a limb is "straight" or "bent": said at pose.py's thresholds, contradicted only
    past the clear margins with both segments long and every joint seen."""
    if state == "straight":
        if angle >= straight_min:
            return ("likely" if hidden else "yes"), f"{joint} {angle:.0f} deg"
        if angle <= clearly_bent_max and segs >= CLEARLY_BENT_SEGMENT and not hidden:
            return "no", f"{joint} bent to {angle:.0f} deg"
        return None, f"{joint} {angle:.0f} deg (inside the margin)"
    if angle < bent_max:
        return ("likely" if hidden else "yes"), f"{joint} {angle:.0f} deg"
    if angle >= CLEARLY_STRAIGHT_MIN and segs >= CLEARLY_STRAIGHT_SEGMENT and not hidden:
        return "no", f"{joint} straight ({angle:.0f} deg) at full length"
    return None, f"{joint} {angle:.0f} deg (inside the margin)"


def _facing_truth(body: pose.Body, facts: pose.PoseFacts, claimed: str) -> tuple[Truth, str]:
    got = facts.facing
    if got is None:
        return None, "facing not clear from the keypoints"
    if got == claimed:
        return "yes", f"keypoints say facing {got}"
    if got not in vocab().facing_contradicted_by.get(claimed, frozenset()):
        return None, f"keypoints say facing {got}, too close to {claimed} to call"
    ls, rs, nose = body.j("left shoulder"), body.j("right shoulder"), body.j("nose")
    eyes = [body.j("left eye"), body.j("right eye")]
    if got in ("camera", "away"):
        if ls is None or rs is None:
            return None, "facing from the face alone"
        sep = body.across((ls.x, ls.y), (rs.x, rs.y))
        face = _seen(nose, *eyes)
        no_face = all(j is None or j.v != 2 for j in (nose, *eyes))
        clear = (got == "camera" and sep >= FACING_SHOULDERS and face) or (
            got == "away" and sep <= -FACING_SHOULDERS and no_face
        )
        if clear and _seen(ls, rs):
            return "no", f"keypoints say facing {got} (shoulders {sep:+.2f} torso apart)"
        return None, f"keypoints say facing {got}, inside the margin"
    ears = [e for e in (body.j("left ear"), body.j("right ear")) if e is not None]
    if nose is None or not ears or nose.v != 2:
        return None, f"keypoints say facing {got}, inside the margin"
    ref = (sum(e.x for e in ears) / len(ears), sum(e.y for e in ears) / len(ears))
    off = body.across((nose.x, nose.y), ref)
    if abs(off) >= FACING_PROFILE_NOSE:
        return "no", f"nose {abs(off):.2f} torso to the picture's {got} of the ears"
    return None, f"keypoints say facing {got}, inside the margin"


def _placement_truth(scene: _Scene, i: int, side: str, picture: bool) -> tuple[Truth, str]:
    cx = _centre(scene.context, i)
    where = f"box centre at {cx:.2f} of the width"
    if side == "centre":
        if 1 / 3 <= cx <= 2 / 3:
            return "yes", where
        if cx < PLACE_CENTRE_OFF or cx > 1 - PLACE_CENTRE_OFF:
            return "no", where
        return None, where
    on_side = cx < 1 / 3 if side == "left" else cx > 2 / 3
    opposite = cx > PLACE_OPPOSITE if side == "left" else cx < 1 - PLACE_OPPOSITE
    extreme = _rank(scene, side, 1) == i
    if on_side or (not picture and extreme):
        return "yes", where
    if opposite:
        other = "right" if side == "left" else "left"
        if picture or scene.n == 1 or _rank(scene, other, 1) == i:
            return "no", where
    return None, where


def _order_truth(scene: _Scene, a: int, b: int, side: str) -> tuple[Truth, str]:
    if a == b:
        return None, "both sides name the same person"
    ctx = scene.context
    got = pose.relative_side(ctx.persons[a], ctx.persons[b])
    gap = abs(_centre(ctx, a) - _centre(ctx, b))
    why = f"person {a} at {_centre(ctx, a):.2f}, person {b} at {_centre(ctx, b):.2f} of the width"
    if got is None:
        return None, why
    if got == side:
        return "yes", why
    return ("no" if gap >= ORDER_CONTRADICTED else None), why


def _higher_truth(
    body: pose.Body, facts: pose.PoseFacts, part: str, side: str
) -> tuple[Truth, str]:
    if facts.posture == "lying" or (
        body.torso_tilt is not None and body.torso_tilt >= pose.LYING_TILT
    ):
        return None, "not upright: higher in the picture is not higher on the body"
    joint = "wrist" if part == "hand" else "ankle"
    other = "right" if side == "left" else "left"
    a, b = body.j(f"{side} {joint}"), body.j(f"{other} {joint}")
    if a is None or b is None:
        return None, f"{joint}s not both labelled"
    diff = (b.y - a.y) / body.scale
    said = pose.LIFT_MIN if part == "foot" else HIGHER_SAID
    against = FOOT_CONTRADICTED if part == "foot" else HIGHER_CONTRADICTED
    why = f"{side} {joint} {diff:+.2f} torso above the {other}"
    if diff >= said:
        return ("yes" if _seen(a, b) else "likely"), why
    if diff <= -against and _seen(a, b):
        return "no", why
    return None, why + " (inside the margin)"


def _truth(scene: _Scene, f: _Found, i: int) -> tuple[Truth, str]:
    """What the geometry says about predicate `f` for person `i`."""
    ctx = scene.context
    p = ctx.persons[i]
    if f.kind == "placement":
        return _placement_truth(scene, i, f.args["side"], f.args["picture"])
    if p.num_labelled == 0:
        return None, f"person {i} has no labelled keypoint"
    facts = scene.facts.persons[i]
    body = pose.make_body(p, ctx.width, ctx.height)
    if f.kind == "posture":
        return _posture_truth(body, f.args["posture"])
    if f.kind == "facing":
        return _facing_truth(body, facts, f.args["facing"])
    if f.kind == "higher":
        return _higher_truth(body, facts, f.args["part"], f.args["side"])
    side, state = f.args["side"], f.args["state"]
    judge = _arm_truth if f.kind == "arm" else _leg_truth
    if side in _SIDES or state == "apart":
        return judge(body, facts, side if side in _SIDES else "left", state)
    results = [judge(body, facts, s, state) for s in _SIDES]
    truths = [t for t, _ in results]
    why = "; ".join(w for _, w in results)
    if side == "both":
        # Both limbs: false if either clearly is not; true only if both are.
        if "no" in truths:
            return "no", why
        if all(t in ("yes", "likely") for t in truths):
            return ("yes" if truths == ["yes", "yes"] else "likely"), why
        return None, why
    # One unnamed limb: true if either is; false only if both clearly are not.
    if "yes" in truths:
        return "yes", why
    if "likely" in truths:
        return "likely", why
    if truths == ["no", "no"]:
        return "no", why
    return None, why


def _verdict(truth: Truth, negated: bool) -> Verdict:
    if truth is None:
        return "unverifiable"
    if negated:
        return (
            "contradicted" if truth == "yes" else "supported" if truth == "no" else "unverifiable"
        )
    return "supported" if truth in ("yes", "likely") else "contradicted"


# -- the checker -------------------------------------------------------------------------------


def _negated(words: list[str], lo: int, hi: int) -> bool:
    v = vocab()
    return any(_match_any(words, k, v.negation) for k in range(max(lo, 0), hi))


def _modal(words: list[str], lo: int, hi: int) -> bool:
    v = vocab()
    for k in range(max(lo, 0), hi):
        w = words[k]
        if w == "to":
            if k + 1 < len(words) and words[k + 1] in v.modal_to_verbs:
                return True
            continue
        if w in v.modal:
            return True
    return False


def _subject(
    found: _Found, mentions: list[_Mention], words: list[str]
) -> tuple[_Mention | None, int]:
    """The mention a predicate is about, and where the words between them start."""
    if found.owner is not None:
        for m in mentions:
            if m.start <= found.owner < m.end:
                return m, m.end
    before = [m for m in mentions if m.end <= found.start]
    if before:
        return before[-1], before[-1].end
    # A sentence opening with the predicate: "Standing on the left, the man ..."
    if found.start == 0 and mentions:
        after = [m for m in mentions if m.start >= found.end]
        if after and "," in words[found.end : after[0].start]:
            return after[0], found.end
    return None, found.start


def check_text(text: str, context: ImageContext) -> list[Claim]:
    """Every pose claim of `text` (free English about the image of `context`), judged."""
    scene = _Scene(context, pose.scene_facts(context), pose.left_to_right(context.persons))
    claims: list[Claim] = []
    for sentence in _sentences(_tokens(text)):
        words = [t.text for t in sentence]
        if words and words[-1] == "?":
            continue
        span = (sentence[0].start, sentence[-1].end)
        mentions = _mentions(words, scene)
        mentions = [_resolve_pronoun(m, scene) if m.pronoun else m for m in mentions]
        firsts = [m for m in mentions if not m.pronoun]
        inside = {k for m in mentions if not m.pronoun for k in range(m.start, m.end)}
        for found in _find(words):
            if any(k in inside for k in range(found.start, found.end)):
                continue  # a position inside a name ("the man on the left")
            subj, gap_start = _subject(found, mentions, words)
            lo = min(gap_start, found.start)
            if _modal(words, 0, found.start):  # advice or a plan anywhere before it
                continue
            if any(_match_any(words, k, vocab().nobody) for k in range(found.start)):
                continue  # "nobody ...": a claim about everyone at once, not checked
            negated = _negated(words, lo, found.end) or _negated(
                words, found.start - 2, found.start
            )
            claims.append(_judge(scene, found, subj, negated, mentions, words, span, text))
            if subj is not None and subj.persons is not None:
                scene.topics.append(subj)
        # the sentence's first named person stays the topic for the next "he"/"she"
        if firsts and not any(t is firsts[0] for t in scene.topics):
            scene.topics.append(firsts[0])
    return claims


def _judge(
    scene: _Scene,
    found: _Found,
    subj: _Mention | None,
    negated: bool,
    mentions: list[_Mention],
    words: list[str],
    span: tuple[int, int],
    text: str,
) -> Claim:
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
    if found.kind == "order":
        other = [m for m in mentions if m.start >= found.end and m.start <= found.end + 1]
        if not other:
            return claim("unverifiable", "the other person is not named", subj.persons)
        b = other[0]
        if b.persons is None or len(b.persons) != 1 or subj.group:
            return claim(
                "unverifiable", b.why or f"'{b.text}' is not one known person", subj.persons
            )
        results = [_order_truth(scene, a, b.persons[0], found.args["side"]) for a in subj.persons]
        truth, why = results[0]
        return claim(_verdict(truth, negated), why, subj.persons)
    verdicts = []
    reasons = []
    for i in subj.persons:
        truth, why = _truth(scene, found, i)
        verdicts.append(_verdict(truth, negated))
        reasons.append(why if len(subj.persons) == 1 else f"person {i}: {why}")
    if "contradicted" in verdicts:
        verdict: Verdict = "contradicted"
    elif all(v == "supported" for v in verdicts):
        verdict = "supported"
    else:
        verdict = "unverifiable"
    return claim(verdict, "; ".join(reasons), subj.persons)


def summarize(claims: Iterable[Claim]) -> dict[str, Any]:
    """Counts of claims by verdict and by kind and verdict (zeros included, stable keys)."""
    by_verdict: Counter[str] = Counter()
    by_kind: dict[str, Counter[str]] = {k: Counter() for k in KINDS}
    for c in claims:
        by_verdict[c.verdict] += 1
        by_kind[c.kind][c.verdict] += 1
    total = sum(by_verdict.values())
    return {
        "claims": total,
        **{v: by_verdict[v] for v in VERDICTS},
        "contradicted_share": round(by_verdict["contradicted"] / total, 4) if total else 0.0,
        "by_kind": {k: {v: by_kind[k][v] for v in VERDICTS} for k in KINDS},
    }


# -- scoring against hand labels (tests and bench/verify_precision.py) ---------------------------


def align(
    expected: Sequence[tuple[str, str]], claims: Sequence[Claim]
) -> list[tuple[str | None, str | None]]:
    """(labelled verdict, checker verdict) pairs: each labelled (kind, verdict) takes the next
    found claim of that kind; a claim nobody labelled pairs with None, and so does a label the
    checker did not find."""
    used: set[int] = set()
    pairs: list[tuple[str | None, str | None]] = []
    for kind, verdict in expected:
        k = next((i for i, c in enumerate(claims) if i not in used and c.kind == kind), None)
        if k is None:
            pairs.append((verdict, None))
        else:
            used.add(k)
            pairs.append((verdict, claims[k].verdict))
    pairs += [(None, c.verdict) for i, c in enumerate(claims) if i not in used]
    return pairs


def precision_recall(pairs: Iterable[tuple[str | None, str | None]]) -> dict[str, dict[str, Any]]:
    """Per verdict: how many the checker said, how many of those the label agrees with
    (precision), and how many labelled ones it said (recall). A claim the checker found but
    nobody labelled counts against precision; a label it missed counts against recall."""
    pairs = list(pairs)
    out: dict[str, dict[str, Any]] = {}
    for v in VERDICTS:
        said = sum(1 for _, g in pairs if g == v)
        labelled = sum(1 for e, _ in pairs if e == v)
        right = sum(1 for e, g in pairs if e == g == v)
        out[v] = {
            "said": said,
            "labelled": labelled,
            "correct": right,
            "precision": round(right / said, 3) if said else None,
            "recall": round(right / labelled, 3) if labelled else None,
        }
    return out
