"""Who a sentence is about: person mentions ("the man on the left", "the batter", "both
players", "he") resolved to person indices of the image, or to nobody for sure."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from typing import Any

from .. import pose
from ..records import ImageContext
from .text import Truth, match, match_any, vocab


@dataclass(frozen=True)
class Mention:
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
class Scene:
    context: ImageContext
    facts: pose.SceneFacts
    order: tuple[int, ...]
    # The latest topic (what "they" follows), and the latest one-person topic of each stated
    # gender (None: none stated) with its turn, for "he"/"she": constant work a pronoun
    # however long the text (a list searched backwards made long texts quadratic).
    last_topic: Mention | None = None
    latest: dict[str | None, tuple[int, Mention]] = field(default_factory=dict)
    turns: int = 0
    # what the geometry said, by (predicate, person, negated): a long text repeats claims
    truths: dict[tuple[Any, ...], tuple[Truth, str]] = field(default_factory=dict)
    bodies: dict[int, pose.Body] = field(default_factory=dict)

    def body(self, i: int) -> pose.Body:
        """Person `i`'s body (made once per text)."""
        got = self.bodies.get(i)
        if got is None:
            p = self.context.persons[i]
            got = self.bodies[i] = pose.make_body(p, self.context.width, self.context.height)
        return got

    def add_topic(self, m: Mention) -> None:
        """`m` becomes what the next pronoun may refer to."""
        self.last_topic = m
        self.turns += 1
        if not m.group:
            self.latest[m.gender] = (self.turns, m)

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


def centre(ctx: ImageContext, i: int) -> float:
    b = ctx.persons[i].box
    return (b[0] + b[2]) / 2


def rank(scene: Scene, side: str, k: int) -> int | None:
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


def _middle(scene: Scene) -> int | None:
    if scene.n % 2 == 0 or scene.n < 3:
        return None
    return rank(scene, "left", scene.n // 2 + 1)


def _role_person(scene: Scene, kinds: frozenset[str], objects: frozenset[str]) -> int | None:
    hits = [
        f.index
        for f in scene.facts.persons
        if any(c.kind in kinds and c.category in objects for c in f.contacts)
    ]
    if len(hits) == 1:
        return hits[0]
    return None


def mentions_of(words: list[str], scene: Scene) -> list[Mention]:
    """Every person mention of a sentence, left to right, resolved where unambiguous."""
    v = vocab()
    out: list[Mention] = []
    i = 0
    n_all = scene.n
    while i < len(words):
        w = words[i]
        # pronouns
        if w in v.pronouns:
            kind = v.pronouns[w]
            out.append(Mention(i, i + 1, w, None, gender=kind, pronoun=True))
            i += 1
            continue
        # groups: "both (of them|players)", "all (three) (men)", "the two men", "everyone"
        if w in ("both", "all", "everyone", "everybody", "each"):
            j = i + 1
            if j < len(words) and (words[j] in v.arm_nouns or words[j] in v.leg_nouns):
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
            out.append(Mention(i, j, " ".join(words[i:j]), members, "plural", True, why=why))
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
            out.append(Mention(i, i + 2, f"{w} {words[i + 1]}", members, "plural", True, why=why))
            i += 2
            continue
        # ordinals: "the second person from the left"
        if w in v.ordinals and i + 4 < len(words) + 1:
            k = v.ordinals[w]
            j = i + 1
            if j < len(words) and (words[j] in v.person_nouns or words[j] in ("one",)):
                j += 1
            if match(words, j, ("from", "the")) and j + 2 < len(words):
                side = words[j + 2]
                if side in ("left", "right"):
                    who = rank(scene, side, k)
                    out.append(
                        Mention(
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
            who = rank(scene, "left" if w.startswith("left") else "right", 1)
            out.append(
                Mention(
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
        role = match_any(words, i, _roles_longest_first())
        if role is not None or w in v.person_nouns:
            length = len(role) if role is not None else 1
            end = i + length
            noun = " ".join(words[i:end])
            gender = v.person_nouns.get(noun)
            prev = words[i - 1] if i else ""
            possessive = end < len(words) and words[end] == "'s"
            who: int | None = None
            why = ""
            pos = None if possessive else match_any(words, end, _all_positions())
            if prev in ("other", "another", "some", "many", "several", "no", "any", "every"):
                why = f"'{prev} {noun}' names nobody in particular"
            elif pos is not None:
                side = _position_side(pos)
                who = _middle(scene) if side == "middle" else rank(scene, side, 1)
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
                Mention(
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


def resolve_pronoun(m: Mention, scene: Scene) -> Mention:
    """He/she: the latest topic of that gender; they: the latest group; else the only person."""
    t = scene.last_topic
    if m.gender == "plural" and t is not None:
        # "they": the latest topic, a group or a person of no stated gender (singular they)
        if t.group:
            return replace(m, persons=t.persons, group=True, why=t.why or "")
        if t.gender is None:
            why = "" if t.persons else f"'{m.text}' refers to '{t.text}': {t.why}"
            return replace(m, persons=t.persons, why=why)
        return replace(m, why=f"'{m.text}' after '{t.text}'")
    hits = [scene.latest[g] for g in {None, m.gender} if g in scene.latest]
    if hits:
        t = max(hits, key=lambda h: h[0])[1]
        why = "" if t.persons else f"'{m.text}' refers to '{t.text}': {t.why}"
        return replace(m, persons=t.persons, why=why)
    only = scene.only_person()
    if only is not None and m.gender != "plural":
        return replace(m, persons=(only,))
    if only is not None and m.gender == "plural" and scene.n == 1:
        return replace(m, persons=(only,))
    return replace(m, why=f"nobody earlier for '{m.text}'")
