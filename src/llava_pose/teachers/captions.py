"""The offline teacher's reading of an image's human-written scene descriptions.

Five people describe each COCO image, with typos ("whiile"), missing articles ("baby brushing
teeth") and disagreements ("a man on skis" vs "a person riding a snowboard"). The teacher
repeats a description only when it is tidy and agrees with the rest: `read_captions` tidies
each one (`normalise`), drops those with a word that is no English word nor used by another
description, lets the descriptions vote on what they cannot both be right about (a group of
``data/rules/captions.yaml``: ski or snowboard; for a lone person, man or woman, child or
adult, sitting or standing), drops the outvoted ones, and ranks the rest by how much of what
they say the others say too. It also tells who the commentary is for (a baby, a child, an
adult) and which pronouns fit a noun. Pure: words are package data.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from ..filters import check_text
from ..records import ImageContext
from .wording import HE, SHE, THEY, Pronouns

__all__ = [
    "Captions",
    "agree",
    "caption_activity",
    "clean_caption",
    "known_word",
    "normalise",
    "person_nouns",
    "pronouns_for",
    "read_captions",
]

# Descriptions within this much of the best one's agreement (the share of its content words
# another description also uses) are repeated; the rest say too much that nobody else saw.
AGREEMENT_SLACK = 0.2
# A description repeated must be this many words long (shorter says nothing) and no longer
# than the second number (longer ones ramble).
MIN_WORDS, MAX_WORDS = 3, 30


@functools.cache
def _c() -> dict[str, Any]:
    text = resources.files("llava_pose").joinpath("data/rules/captions.yaml").read_text("utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


@functools.cache
def _words() -> frozenset[str]:
    text = resources.files("llava_pose").joinpath("data/rules/words.txt").read_text("utf-8")
    listed = (w.strip() for w in text.splitlines() if w and not w.startswith("#"))
    return frozenset([*listed, *_c()["extra_words"]])


def person_nouns() -> list[str]:
    """Nouns that may name the lone person of an image ("the skier")."""
    return list(_c()["person_nouns"])


def known_word(word: str) -> bool:
    """Whether `word` (lower case, letters only) is English the teacher may repeat."""
    return word in _words()


def _tokens(text: str) -> list[str]:
    """Lower-case words, a possessive's "'s" dropped ("ski's" -> "ski")."""
    return re.findall(r"[a-z]+", re.sub(r"'s\b", "", text.lower()))


def _stem(word: str) -> str:
    """'skateboards' -> 'skateboard': enough for descriptions to agree on a noun."""
    for suffix in ("es", "s"):
        if len(word) > 4 and word.endswith(suffix) and not word.endswith("ss"):
            return word[: -len(suffix)]
    return word


# -- one description --------------------------------------------------------------------------


def clean_caption(text: str) -> str | None:
    """A description's text fit to build on, lower-cased and without its lead-in; else None.

    Collapses spaces and doubled words ("on a a road"); rejects digits, text the quality
    filter drops, and lengths outside MIN_WORDS..MAX_WORDS. Spelling is `normalise`'s job.
    """
    c = re.sub(r"\s+", " ", text).strip().rstrip(".!? ").strip()
    c = re.sub(r"\b(\w+) \1\b", r"\1", c, flags=re.IGNORECASE)
    if not c or re.search(r"\d", c) or check_text(c) is not None:
        return None
    letters = [ch for ch in c if ch.isalpha()]
    if letters and sum(ch.isupper() for ch in letters) > 0.6 * len(letters):
        c = c.lower()
    c = c[:1].lower() + c[1:]
    for prefix in _c()["lead_ins"]:
        if c.lower().startswith(prefix):
            c = c[len(prefix) :]
            break
    if not MIN_WORDS <= len(c.split()) <= MAX_WORDS:
        return None
    return c


def normalise(
    text: str, also_known: Callable[[str], bool] = lambda w: False, nouns: Iterable[str] = ()
) -> str | None:
    """A description the teacher may repeat, tidied; None when it cannot be trusted.

    Every word must be English (`known_word`) or `also_known` (a word another description of
    the image uses, an object category). It must open with an article or quantity word
    (``openers``), or with a noun within its first three words, which then gets its article:
    "Young toddler sitting ..." -> "a young toddler sitting ...".
    """
    c = clean_caption(text)
    if c is None:
        return None
    words = _tokens(c)
    if not words or not all(known_word(w) or also_known(w) for w in words):
        return None
    if words[0] in _c()["openers"]:
        return c
    singular = set(_c()["people_words"]) | set(nouns)
    plural = {"people", "men", "women", "children"} | {
        w for w in _c()["plural_words"] if w.endswith("s")
    }
    for w in words[:3]:
        if w in plural or (_stem(w) in singular and _stem(w) != w):
            return c  # "donuts travelling down ...": a plural needs no article
        if w in singular:
            return ("an " if c[0] in "aeiou" else "a ") + c
    return None


def _subject(words: Sequence[str]) -> list[str]:
    """The words before the verb: who a description is about ("a couple skiers")."""
    stops = {"is", "are", "was", "were", "has", "have", "that", "who", "which", "with", "while"}
    out: list[str] = []
    for w in words:
        if w in stops or (len(w) >= 5 and w.endswith("ing") and w not in _c()["not_activities"]):
            break
        out.append(w)
    return out


def caption_activity(caption: str) -> tuple[str, bool] | None:
    """('riding a wave on a surfboard', plural?) from 'two men riding a wave...', or None.

    The activity is the description from its first -ing verb on, taken only when the words
    before it name people ("a man", "two kids"), so a description of a plane is never turned
    into something a person does.
    """
    c = _c()
    words = caption.split()
    skip = set(c["not_activities"])
    for i, w in enumerate(words):
        bare = re.sub(r"[^a-z]", "", w.lower())
        if i == 0 or len(bare) < 5 or not bare.endswith("ing") or bare in skip:
            continue
        subject = {re.sub(r"[^a-z]", "", s.lower()) for s in words[:i]}
        if not subject & set(c["people_words"]):
            return None
        rest = " ".join(words[i:]).rstrip(",;:")
        # "wearing a towel is drying ...": the -ing word was part of the subject.
        if len(rest.split()) < 2 or set(rest.lower().split()) & {"is", "are", "was", "were"}:
            return None
        return rest, bool(subject & set(c["plural_words"]))
    return None


# -- pronouns ---------------------------------------------------------------------------------


def pronouns_for(noun: str, sex: str | None = None) -> Pronouns:
    """The pronouns a noun commits the text to: 'man' -> he, 'person' or 'skier' -> they,
    unless the descriptions agree on the person's sex (`Captions.sex`): then he or she."""
    table = _c()["pronouns"]
    if noun in table["he"] or (noun not in table["she"] and sex == "male"):
        return HE
    if noun in table["she"] or sex == "female":
        return SHE
    return THEY


_POSSESSIVE = ("his", "her", "their")
_OBJECT = ("him", "them")
_REFLEXIVE = ("himself", "herself", "themselves")
_SUBJECT = ("he", "she", "they")


def agree(phrase: str, pron: Pronouns) -> str | None:
    """`phrase` (part of a description) with its pronouns made those of its new subject:
    'brushing his teeth' said of 'the toddler' (they) -> 'brushing their teeth'. None when it
    holds a subject pronoun ('as he looks') that would need its verb changed too."""
    words = phrase.split(" ")
    out = []
    for i, w in enumerate(words):
        bare = w.lower().strip(",.;:")
        tail = w[len(bare) :] if w.lower().startswith(bare) else ""
        if bare in _SUBJECT and bare != pron.they:
            return None
        if bare == "her":
            # "her hair" is possessive, "holding her" (nothing or a small word after) is not.
            nxt = words[i + 1].lower() if i + 1 < len(words) else ""
            possessive = bool(nxt) and not tail and nxt not in _c()["stop_words"]
            out.append((pron.their if possessive else pron.them) + tail)
        elif bare in _POSSESSIVE:
            out.append(pron.their + tail)
        elif bare in _OBJECT:
            out.append(pron.them + tail)
        elif bare in _REFLEXIVE:
            out.append(pron.themselves + tail)
        else:
            out.append(w)
    return " ".join(out)


# -- all descriptions of an image -------------------------------------------------------------


@dataclass(frozen=True)
class Captions:
    """What the teacher takes from an image's descriptions.

    `texts`: the descriptions it may repeat, tidied, best-agreeing first. `subjects`: who the
    commentary is about, from the age words (for a lone person the winning one; with several
    people every one mentioned: a man with his daughter makes the advice fit a child too).
    `sex`: the sex words' winner for a lone person, so that the text does not call "a boy"
    'their' after the descriptions it repeats said "his".
    """

    texts: tuple[str, ...]
    subjects: frozenset[str]
    sex: str | None = None  # for a lone person, what the descriptions agree on: male, female


def _vote(option_words: dict[str, Sequence[str]], words: set[str]) -> str | None:
    said = [o for o, ws in option_words.items() if words & set(ws)]
    return said[0] if len(said) == 1 else None


def _outvoted(
    context: ImageContext, tokens: Sequence[set[str]]
) -> tuple[set[int], set[str], str | None]:
    """Indices of descriptions outvoted by the others, the age words' winners, the sex's."""
    c = _c()
    lone = len(context.persons) == 1
    objects = {o.category for o in context.objects}
    dropped: set[int] = set()
    ages: set[str] = set()
    sex: str | None = None
    for name, group in c["groups"].items():
        if group.get("lone") and not lone:
            if name == "age":
                ages.update(o for o, ws in group["options"].items() for t in tokens if t & set(ws))
            continue
        votes = [_vote(group["options"], t) for t in tokens]
        tally: Counter[str] = Counter(v for v in votes if v)
        for option, categories in group.get("objects", {}).items():
            if objects & set(categories):
                tally[option] += int(c["object_votes"])
        if not tally:
            continue
        ranked = tally.most_common()
        winner = ranked[0][0] if len(ranked) == 1 or ranked[0][1] > ranked[1][1] else None
        dropped.update(i for i, v in enumerate(votes) if v is not None and v != winner)
        if name == "age" and winner:
            ages.add(winner)
        if name == "sex":
            sex = winner
    return dropped, ages, sex


def _number_wrong(context: ImageContext, words: Sequence[str]) -> bool:
    """Whether a description's subject miscounts the people: 'a couple skiers' for the one
    person annotated, 'four people' for twelve (perhaps the four in front, but the teacher
    would then say twelve and four of the same crowd)."""
    c = _c()
    subject = _subject(words)
    if not set(subject) & set(c["people_words"]):
        return False
    n = len(context.persons)
    numbers = [c["number_words"][w] for w in subject if w in c["number_words"]]
    if n == 1 and (numbers or set(subject) & set(c["plural_words"])):
        return True
    return bool(numbers) and numbers[0] != n


def read_captions(
    context: ImageContext,
    contradicted: Callable[[str], bool] = lambda text: False,
) -> Captions:
    """The descriptions the teacher may repeat and who its commentary is for.

    `contradicted(text)`: whether the keypoints contradict a description (the claim checker),
    which is then never repeated either.
    """
    tokens = [set(_tokens(t)) for t in context.captions]
    dropped, ages, sex = _outvoted(context, tokens)
    categories = {w for o in context.objects for w in _tokens(o.category)}

    def used_elsewhere(i: int) -> Callable[[str], bool]:
        """Whether a word is another description's or an object category's (a brand, a name)."""
        others = set().union(*(t for j, t in enumerate(tokens) if j != i)) if tokens else set()
        return lambda w: w in others or _stem(w) in categories or w in categories

    stops = set(_c()["stop_words"])
    stems = [{_stem(w) for w in t - stops} for t in tokens]
    kept: list[tuple[float, int, str]] = []
    for i, raw in enumerate(context.captions):
        if i in dropped:
            continue
        text = normalise(raw, used_elsewhere(i), categories)
        if text is None or _number_wrong(context, _tokens(text)) or contradicted(text):
            continue
        content = stems[i]
        others = set().union(*(s for j, s in enumerate(stems) if j != i))
        share = len(content & others) / len(content) if content else 0.0
        kept.append((share, i, text))
    if kept:
        best = max(share for share, _, _ in kept)
        kept = sorted((k for k in kept if k[0] >= best - AGREEMENT_SLACK), key=lambda k: -k[0])
    return Captions(tuple(text for _, _, text in kept), frozenset(ages), sex)
