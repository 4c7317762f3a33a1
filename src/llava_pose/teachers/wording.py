"""Pose facts in plain English: the offline teacher's wording of `llava_pose.pose`.

Geometry decides what is true; this module only says it. Every word comes from
``data/rules/phrases.yaml`` (lists are variants, picked with the caller's `rng`; without one,
the first), so wording can change without touching a threshold, and a fact that is unknown
(None) is never phrased.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from ..pose import ArmFacts, Contact, PoseFacts, Side


@dataclass(frozen=True)
class Pronouns:
    """How a person is referred to once named: the noun decides ('the man' is 'his', never
    'their'); the fields fill the {they} {them} {their} {themselves} {are} of the phrases."""

    they: str = "they"
    them: str = "them"
    their: str = "their"
    themselves: str = "themselves"
    are: str = "are"

    def fields(self) -> dict[str, str]:
        """Template fields, each also capitalised: {their}, {Their}, {are} ..."""
        out = {k: getattr(self, k) for k in ("they", "them", "their", "themselves", "are")}
        out.update({k[:1].upper() + k[1:]: v[:1].upper() + v[1:] for k, v in list(out.items())})
        return out


THEY = Pronouns()
HE = Pronouns("he", "him", "his", "himself", "is")
SHE = Pronouns("she", "her", "her", "herself", "is")


def fill(template: str, pron: Pronouns = THEY, **fields: str) -> str:
    """`template` with its pronoun fields and `fields` filled in."""
    return template.format(**pron.fields(), **fields)


@functools.cache
def _phrases() -> dict[str, Any]:
    text = resources.files("llava_pose").joinpath("data/rules/phrases.yaml").read_text("utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def _pick(options: str | list[str], rng: random.Random | None) -> str:
    if isinstance(options, str):
        return options
    return options[0] if rng is None else rng.choice(options)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def article(noun: str) -> str:
    """The category with its indefinite article ('an umbrella', 'a pair of skis')."""
    special = _phrases()["articles"].get(noun)
    if special:
        return str(special)
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def phrase_posture(
    f: PoseFacts, subject: str, rng: random.Random | None = None, pron: Pronouns = THEY
) -> str | None:
    """'The person is standing upright, facing the camera.' or None when nothing is known."""
    p = _phrases()
    parts: list[str] = []
    verb = _pick(p["verb"]["hedged" if f.posture_occluded else "plain"], rng)
    if f.posture is not None:
        parts.append(fill(_pick(p["posture"][f.posture], rng), pron))
    if f.lean is not None:
        parts.append(_pick(p["lean"][f.lean], rng))
    if f.facing is not None:
        parts.append(fill(_pick(p["facing"][f.facing], rng), pron))
    if not parts:
        return None
    if f.posture is None:
        verb = _pick(p["verb"]["plain"], rng)
    return _cap(f"{subject} {verb} " + ", ".join(parts)) + "."


def _arm_words(a: ArmFacts, rng: random.Random | None, pron: Pronouns = THEY) -> list[str]:
    p = _phrases()["arm"]
    words: list[str] = []
    if a.hanging:
        return [_pick(p["hanging"], rng)]
    if a.height in ("above_head", "above_shoulder"):
        words.append(_pick(p[a.height], rng))
    if a.reach is not None:
        words.append(fill(_pick(p["reach"][a.reach], rng), pron))
    if a.elbow is not None and a.reach is None:
        words.append(_pick(p["elbow"][a.elbow], rng))
    elif a.height == "below_shoulder" and not words:
        words.append(_pick(p["below_shoulder"], rng))
    return words


def phrase_arms(
    f: PoseFacts, rng: random.Random | None = None, pron: Pronouns = THEY
) -> str | None:
    """What the arms do, both together when they match; None when no arm is known."""
    p = _phrases()
    left, right = f.arms
    lw, rw = _arm_words(left, None), _arm_words(right, None)
    if lw and lw == rw:
        words = _arm_words(left, rng, pron)
        verb = p["verb"]["hedged_plural" if left.occluded or right.occluded else "plural"]
        both = fill(_pick(p["arm"]["both"], rng), pron)
        return _cap(f"{both} {_pick(verb, rng)} {_join(words)}") + "."
    sentences = []
    for a, w in ((left, lw), (right, rw)):
        if not w:
            continue
        words = _arm_words(a, rng, pron)
        verb = p["verb"]["hedged" if a.occluded else "plain"]
        owner = fill(_pick(p["arm"]["one"], rng), pron, side=a.side)
        sentences.append(_cap(f"{owner} {_pick(verb, rng)} {_join(words)}") + ".")
    return " ".join(sentences) or None


def phrase_legs(
    f: PoseFacts, rng: random.Random | None = None, pron: Pronouns = THEY
) -> str | None:
    """Knees, a lifted foot, and feet apart: a stride side-on; from the front or back a wide
    stance, "planted" only when both feet are down (a raised foot is never planted); None
    when no leg is known."""
    p = _phrases()
    out: list[str] = []
    left, right = f.legs
    if left.knee is not None and left.knee == right.knee:
        verb = p["verb"]["hedged_plural" if left.occluded or right.occluded else "plural"]
        out.append(
            _cap(_pick(p["knee"]["both"][left.knee], rng).format(are=_pick(verb, rng))) + "."
        )
    else:
        for leg in (left, right):
            if leg.knee is None:
                continue
            verb = p["verb"]["hedged" if leg.occluded else "plain"]
            text = _pick(p["knee"]["one"][leg.knee], rng).format(
                side=leg.side, is_=_pick(verb, rng)
            )
            out.append(_cap(text) + ".")
    for leg in (left, right):
        if leg.lifted:
            out.append(_cap(_pick(p["lifted"], rng).format(side=leg.side)) + ".")
    key = stance_key(f)
    if key is not None:
        out.append(_cap(fill(_pick(p[key], rng), pron)) + ".")
    return " ".join(out) or None


def stance_key(f: PoseFacts) -> str | None:
    """How feet that are well apart are worded: 'stride' (side-on), 'stance' (planted wide
    apart, both feet down), 'apart' (neither raised nor known to be down); None otherwise."""
    if not f.stride:
        return None
    if f.facing in ("left", "right"):
        return "stride"
    if f.planted:
        return "stance"
    if any(leg.lifted for leg in f.legs) or f.posture != "standing":
        return None
    return "apart"


def _other(side: Side) -> Side:
    return "right" if side == "left" else "left"


def phrase_contacts(
    f: PoseFacts, subject: str, rng: random.Random | None = None, pron: Pronouns = THEY
) -> str | None:
    """Objects in hand, underfoot or ridden; None when there are none."""
    p = _phrases()["contact"]
    out = []
    for c in f.contacts:
        both = c.side is not None and Contact(c.kind, c.category, _other(c.side)) in f.contacts
        if both and c.side == "right":
            continue  # said with the left hand, as "both hands"
        key = f"{c.kind}_both" if both else c.kind
        text = fill(
            _pick(p[key], rng),
            pron,
            S=subject,
            obj=c.category,
            a_obj=article(c.category),
            side=c.side or "",
        )
        out.append(_cap(text) + ".")
    return " ".join(out) or None


def position_words(f: PoseFacts, rng: random.Random | None = None, sep: str = ", ") -> str:
    """'on the left side of the picture, in the foreground' (no subject)."""
    p = _phrases()["position"]
    text = _pick(p["x"][f.frame_x], rng)
    if f.depth is not None:
        text += sep + _pick(p["depth"][f.depth], rng)
    return text


def depth_words(f: PoseFacts, rng: random.Random | None = None) -> str | None:
    """'in the foreground' / 'small in the distance', or None in the middle ground."""
    return None if f.depth is None else _pick(_phrases()["position"]["depth"][f.depth], rng)


def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def describe_person(
    f: PoseFacts,
    subject: str = "the person",
    rng: random.Random | None = None,
    pron: Pronouns = THEY,
) -> str:
    """Every known fact about one person, in a few sentences (empty when nothing is known)."""
    parts = [
        phrase_posture(f, subject, rng, pron),
        phrase_arms(f, rng, pron),
        phrase_legs(f, rng, pron),
        phrase_contacts(f, subject, rng, pron),
    ]
    return " ".join(s for s in parts if s)
