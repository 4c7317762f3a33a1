"""Names a vision model can follow: "the person", "the person on the left", "the largest
person", "the person holding the kite". A person that cannot be named unambiguously gets no
name and no question.

Every annotated person counts, with or without keypoints: the model sees them all. An image
with a crowd region (unannotated people) gets no names at all, since nobody can say who is
"furthest to the left" among people nobody counted. Wording is package data
(``data/names.yaml``); margins are here. Pure.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from .pose import pose_facts
from .records import ImageContext, Person

# Order from the left is used only with 2-4 people, each at least this tall (fraction of the
# image height, so nobody small in the distance is missed or miscounted) ...
ORDER_MIN_HEIGHT = 0.2
ORDER_MAX_PERSONS = 4
# ... and neighbours' box centres at least this far apart (fraction of the width; pose.py
# calls people side by side under 0.05).
ORDER_GAP = 0.1
# "the largest person": box area at least this many times every other person's.
LARGEST_RATIO = 2.0

NAME_MARGINS: dict[str, float] = {
    "ORDER_MIN_HEIGHT": ORDER_MIN_HEIGHT,
    "ORDER_MAX_PERSONS": float(ORDER_MAX_PERSONS),
    "ORDER_GAP": ORDER_GAP,
    "LARGEST_RATIO": LARGEST_RATIO,
}


@functools.cache
def wording() -> dict[str, Any]:
    text = resources.files("llava_pose").joinpath("data/names.yaml").read_text("utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def _centre(p: Person) -> float:
    return (p.box[0] + p.box[2]) / 2


def _area(p: Person) -> float:
    return max(0.0, p.box[2] - p.box[0]) * max(0.0, p.box[3] - p.box[1])


@dataclass(frozen=True)
class Names:
    """Per person index: its names, positional (order from the left) and not."""

    positional: dict[int, str]
    other: dict[int, str]  # by size or by what they hold: usable to ask where someone is

    def best(self, i: int) -> str | None:
        return self.positional.get(i) or self.other.get(i)


def order_names(ctx: ImageContext) -> dict[int, str]:
    """Names by order from the left, when that order is clear (see the margins)."""
    persons = ctx.persons
    n = len(persons)
    if n == 1:
        return {0: str(wording()["lone"])}
    if not 2 <= n <= ORDER_MAX_PERSONS:
        return {}
    if any(p.box[3] - p.box[1] < ORDER_MIN_HEIGHT for p in persons):
        return {}
    order = sorted(range(n), key=lambda i: _centre(persons[i]))
    gaps = [_centre(persons[b]) - _centre(persons[a]) for a, b in itertools.pairwise(order)]
    if min(gaps) < ORDER_GAP:
        return {}
    words = wording()["order"][n]
    return {i: str(words[k]) for k, i in enumerate(order)}


def largest_name(ctx: ImageContext) -> dict[int, str]:
    persons = ctx.persons
    if len(persons) < 2:
        return {}
    areas = sorted(((_area(p), i) for i, p in enumerate(persons)), reverse=True)
    if areas[0][0] < LARGEST_RATIO * areas[1][0]:
        return {}
    return {areas[0][1]: str(wording()["largest"])}


def holding_names(ctx: ImageContext) -> dict[int, str]:
    """ "the person holding the X": X is the only object of its kind, held by one person only."""
    kinds: dict[str, int] = {}
    for o in ctx.objects:
        kinds[o.category] = kinds.get(o.category, 0) + 1
    holders: dict[str, set[int]] = {}
    for i, p in enumerate(ctx.persons):
        if p.num_labelled == 0:
            continue
        facts = pose_facts(p, ctx.width, ctx.height, ctx.objects, i)
        for c in facts.contacts:
            if c.kind in ("holding", "touching", "near"):
                holders.setdefault(c.category, set()).add(i)
    out: dict[int, str] = {}
    for category in sorted(holders):
        who = holders[category]
        if kinds.get(category) != 1 or len(who) != 1:
            continue
        (i,) = who
        facts = pose_facts(ctx.persons[i], ctx.width, ctx.height, ctx.objects, i)
        if any(c.kind == "holding" and c.category == category for c in facts.contacts):
            out.setdefault(i, str(wording()["holding"]).format(obj=category))
    return out


def name_people(ctx: ImageContext, crowd: bool = False) -> Names:
    """Every nameable person of the image; nobody when a crowd region hides uncounted people."""
    if crowd or not ctx.persons:
        return Names({}, {})
    other = {**largest_name(ctx)}
    for i, name in holding_names(ctx).items():
        other.setdefault(i, name)
    return Names(order_names(ctx), other)
