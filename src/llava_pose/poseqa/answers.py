"""The tolerant answer parser: a model's free text -> "yes"/"no", an option letter or a number.

Models rarely answer with the bare token asked for ("Yes, he is.", "B) the man on the left",
"The answer is B.", "two"), and exact match after this parser is the whole score, so it reads
what a reply *commits to* and credits it only when that is exactly one answer. Everything
else is unparseable (None), counted and shown, never guessed:

* a hedge: "Yes or no", "(A) or (B)", "A, or maybe B", "I cannot tell", "It depends";
* a list or a range: "(A) (B) (C) (D)", "zero, one, two, three", "1-2", "between 0 and 4";
* an answer under negation: "not away from the camera", "I would not say yes", "not 2";
* a self-correction: "No. Actually yes.", "A, I mean B";
* a reply cut off inside the question it echoes ("Is he sitting? Answer yes or").

The echoed question is dropped first ("Is he sitting? Answer yes or no. Yes." is yes). A
reply naming one of two options with the opposite of the question's comparative ("Their own
left hand is lower" to "which hand is higher") is read for what it says: the other option.

Pure, standard library only, self-contained: `bench export` copies this file verbatim into
the lmms-eval task (poseqa_answers.py) so that lmms-eval scores exactly as `poseqa score`;
that is why its vocabularies are the constants below and not package data files.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# -- vocabularies (here, not package data: see the module docstring) ---------------------------

NUMBER_WORDS = {
    "zero": 0,
    "none": 0,
    "nobody": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
}
# Dropped before matching an option's text: articles, possessives, and the filler of
# "is facing towards ...", so "his right arm" matches "their own right arm".
_FILLER_WORDS = "the a an his her their its own is are was to towards toward of from in picture"
_FILLER_WORDS += " image photo side facing faces face he she they it person's"
FILLER = frozenset(_FILLER_WORDS.split(" "))
# An answer of at most this many words may name an option by part of its text.
SHORT_ANSWER = 3
# Words and phrases of a reply that does not commit, for every kind of question ...
HEDGES = (
    "maybe", "perhaps", "possibly", "possible", "impossible", "either", "neither",
    "depends", "depending", "might", "may", "could be", "unsure", "not sure", "uncertain",
    "unclear", "not clear", "ambiguous", "unknown", "unable", "no idea", "don't know",
    "do not know", "can't tell", "cannot tell", "can not tell", "can't say", "cannot say",
    "can't determine", "cannot determine", "can't be determined", "cannot be determined",
    "hard to", "difficult to",
)  # fmt: skip
# ... for a choice among options ("Both", "None of them") ...
CHOICE_HEDGES = ("both", "none", "all of them", "all of the", "any of them", "each of them")
# ... and for a count ("at least one", "a few").
NUMBER_HEDGES = (
    "at least", "at most", "more than", "less than", "fewer than", "up to", "about", "around",
    "approximately", "roughly", "or so", "several", "a few", "some", "multiple", "couple",
)  # fmt: skip
# A reply that takes back what it said; "actually" only where it opens a clause ("No.
# Actually yes."), since "he is actually sitting" takes nothing back.
CORRECTIONS = ("i mean", "i meant", "wait", "correction", "on second thought", "scratch that",
               "or rather", "let me correct")  # fmt: skip
CLAUSE_CORRECTIONS = ("actually",)
# Words that put what their clause names under negation ("not away from the camera"); any
# word ending in n't counts too.
NEGATIONS = frozenset({"not", "no", "never", "neither", "nor", "cannot", "without"})
# A reply ending on one of these was cut off or leaves the choice open ("yes or").
DANGLING = frozenset({"or", "and", "nor", "either", "neither", "between", "versus", "vs"})
# Words that may follow a capital "A" that is the option letter, not the article ("A or B",
# "A is right"; "A person ..." is the article).
LETTER_FOLLOWERS = frozenset(
    {"or", "and", "nor", "but", "is", "was", "seems", "looks", "would", "could", "should",
     "because", "since", "then", "vs", "versus", "to"}
)  # fmt: skip
# Comparatives and their opposites: to "Which hand is higher?", "the left hand is lower"
# names the right hand.
ANTONYMS = {
    "higher": "lower",
    "lower": "higher",
    "above": "below",
    "below": "above",
    "left": "right",
    "right": "left",
}
# Capitals read as option letters (at least these, more for more options): one past the
# question's options names none ("D" to three options); others ("I") are not letters.
LETTERS = string.ascii_uppercase[:4]

_LEAD = re.compile(
    r"^(?:(?:the\s+)?(?:correct\s+)?(?:answer|option|choice)(?:\s+is)?\s*[:\-]?\s*)", re.I
)
_MARKUP = re.compile(r"[*_`#>]")
_CLAUSE = re.compile(r"[.;:!?,\n]+|\s[-\u2013\u2014]+\s")


def _phrases(words: Iterable[str]) -> re.Pattern[str]:
    alternatives = (r"\s+".join(map(re.escape, w.split())) for w in words)
    return re.compile(r"(?<![\w'])(?:" + "|".join(alternatives) + r")(?![\w'])", re.I)


_HEDGE = {
    "yes/no": _phrases(HEDGES),
    "choice": _phrases(HEDGES + CHOICE_HEDGES),
    "number": _phrases(HEDGES + NUMBER_HEDGES),
}
_CORRECTION = re.compile(
    _phrases(CORRECTIONS).pattern
    + r"|(?:^|[.;:!?,\n(]\s*)(?:"
    + "|".join(CLAUSE_CORRECTIONS)
    + r")\b",
    re.I,
)


def _clean(text: str) -> str:
    return _MARKUP.sub("", text.replace("\u2019", "'")).strip()


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def _negated(words: Iterable[str]) -> bool:
    return any(w in NEGATIONS or w.endswith("n't") for w in words)


def _clauses(text: str) -> list[str]:
    return [c for c in _CLAUSE.split(text) if c.strip()]


# -- what the reply says, once the echoed question is gone -------------------------------------


def drop_echo(text: str, question_text: str | None) -> str:
    """The reply without the question as asked, its first line or its instruction (its last
    line) wherever they are repeated, and without a trailing start of any of them (a reply
    cut off inside the echo: "Is he sitting? Answer yes or", "Which hand ...? (A) their own
    left hand"). Option lines alone stay: "(A) their own left hand" is an answer."""
    if not question_text:
        return text
    lines = [" ".join(line.split()) for line in question_text.splitlines() if line.strip()]
    for line in dict.fromkeys([" ".join(lines), *lines[:1], *lines[-1:]]):
        text = re.sub(r"\s+".join(map(re.escape, line.split())), " ", text, flags=re.I)
        for m in list(re.finditer(r"\S+", text))[-len(line.split()) :]:
            tail = " ".join(text[m.start() :].split()).lower()
            if len(tail.split()) >= 2 and line.lower().startswith(tail):
                text = text[: m.start()]
                break
    return text


def committed(text: str, kind: str, question_text: str | None = None) -> str | None:
    """The reply, echo dropped, or None when it does not commit: a hedge, a self-correction,
    or an ending that leaves the choice open."""
    body = drop_echo(_clean(text), question_text).strip()
    words = _words(body)
    if not words or words[-1] in DANGLING:
        return None
    if _HEDGE[kind].search(body) or _CORRECTION.search(body):
        return None
    return body


def parse_yes_no(text: str, question_text: str | None = None) -> str | None:
    """Yes or no, when the reply says one and not the other. A "no" is the answer when it
    opens the reply, ends its clause ("I think no, ...") or stands by a connective ("yes or
    no"), not as the determiner of "no doubt"; an answer under negation ("I would not say
    yes") makes the reply unparseable."""
    body = committed(text, "yes/no", question_text)
    if body is None:
        return None
    body = _LEAD.sub("", body).lower()
    said = set()
    for n, clause in enumerate(_clauses(body)):
        for m in re.finditer(r"\b(yes|no)\b", clause):
            before, after = clause[: m.start()], clause[m.end() :]
            if m.group(1) == "no" and not (
                (n == 0 and not before.strip())
                or not _words(after)
                or re.match(r"\s*(?:or|and|nor|but)\b", after)
                or re.search(r"(?:\b(?:or|and|nor)\s*|/\s*)$", before)
            ):
                continue
            if _negated(_words(before)):
                return None
            said.add(m.group(1))
    return said.pop() if len(said) == 1 else None


# -- choices ----------------------------------------------------------------------------------


def _core(text: str) -> tuple[str, ...]:
    return tuple(w for w in _words(text) if w not in FILLER)


def _contains(hay: tuple[str, ...], needle: tuple[str, ...]) -> bool:
    n = len(needle)
    return n > 0 and any(hay[i : i + n] == needle for i in range(len(hay) - n + 1))


def _text_hits(said: tuple[str, ...], cores: list[tuple[str, ...]]) -> set[int]:
    """The options whose words ``said`` contains (an option inside another one, as "camera"
    in "away camera", counts only when the longer one is absent)."""
    hits = [k for k, c in enumerate(cores) if _contains(said, c)]
    return {k for k in hits if not any(h != k and _contains(cores[h], cores[k]) for h in hits)}


def _letters(clause: str) -> set[str]:
    """Letters written as letters: "(B)", "B)", "B", "B.", "answer: b"; a lone lower-case
    letter only as the whole clause ("b"), and a capital "A" before a word only when that
    word is one of LETTER_FOLLOWERS ("A or B", not "A person")."""
    found = {m.group(1).upper() for m in re.finditer(r"\(\s*([A-Za-z])\s*\)", clause)}
    found |= {m.group(1) for m in re.finditer(r"(?<![\w('])([A-Z])\)", clause)}
    for m in re.finditer(r"(?<![\w('])([A-Z])(?![\w'])", clause):
        follower = re.match(r"\s+([A-Za-z]+)", clause[m.end() :])
        if m.group(1) == "A" and follower and follower.group(1).lower() not in LETTER_FOLLOWERS:
            continue
        found.add(m.group(1))
    lone = re.fullmatch(r"\s*\(?([a-z])\)?\s*", _LEAD.sub("", clause.strip()), re.I)
    if lone:
        found.add(lone.group(1).upper())
    return found


def _comparative(question_text: str | None, cores: list[tuple[str, ...]]) -> str | None:
    """The one comparative of the question ("higher" in "Which hand is higher?"), not counting
    words of the options ("left" of "their own left hand")."""
    if not question_text:
        return None
    option_words = {w for c in cores for w in c}
    line = question_text.strip().splitlines()[0]
    found = {w for w in _words(line) if w in ANTONYMS and w not in option_words}
    return found.pop() if len(found) == 1 else None


def parse_choice(text: str, choices: Sequence[str], question_text: str | None = None) -> str | None:
    """The one option the reply names, by letter, by its text or both; None when it names
    several, names one under negation, or names none."""
    letters = string.ascii_uppercase[: len(choices)]
    body = committed(text, "choice", question_text) if letters else None
    if body is None:
        return None
    pool = string.ascii_uppercase[: max(len(LETTERS), len(letters))]
    cores = [_core(c) for c in choices]
    comparative = _comparative(question_text, cores)
    named: set[int] = set()
    named_in: set[int] = set()  # the clauses that name an option
    opposite_in: set[int] = set()  # the clauses with the comparative or its opposite
    flip = False
    for n, clause in enumerate(_clauses(body)):
        words = _words(clause)
        here = {pool.index(x) for x in _letters(clause) if x in pool}
        here |= _text_hits(_core(clause), cores)
        if here and _negated(words):
            return None
        if here:
            named |= here
            named_in.add(n)
        if comparative and (comparative in words or ANTONYMS[comparative] in words):
            opposite_in.add(n)
            flip = flip or ANTONYMS[comparative] in words
    if not named:
        said = _core(body)
        if 0 < len(said) <= SHORT_ANSWER and not _negated(_words(body)):  # "Left."
            named = {k for k, c in enumerate(cores) if _contains(c, said)}
    if len(named) != 1 or min(named) >= len(letters):
        return None
    (k,) = named
    if flip:
        # Read as the other option only when that is unambiguous: two options, one clause
        # naming the option with the opposite comparative, and no other comparative.
        if len(choices) != 2 or named_in != opposite_in or len(named_in) != 1:
            return None
        (clause,) = (c for n, c in enumerate(_clauses(body)) if n in named_in)
        if comparative in _words(clause):
            return None
        k = 1 - k
    return letters[k]


# -- numbers ----------------------------------------------------------------------------------


def parse_number(text: str, question_text: str | None = None) -> str | None:
    """The one number the reply gives, as digits or a word ("No one", "none" are 0); None for
    two numbers (a list, a range), a number under negation, or none."""
    body = committed(text, "number", question_text)
    if body is None:
        return None
    body = re.sub(r"\bno\s+(?:one|people|person|body)\b", " zero ", body.lower())
    said = set()
    for clause in _clauses(body):
        tokens = re.findall(r"\d+|[a-z']+", clause)
        here = {
            int(t) if t.isdigit() else NUMBER_WORDS[t]
            for t in tokens
            if t in NUMBER_WORDS or t.isdigit()
        }
        if here and _negated(tokens):
            return None
        said |= here
    return str(said.pop()) if len(said) == 1 else None


def parse_answer(text: str, question: Mapping[str, Any]) -> str | None:
    """A model's answer to one PoseQA question, normalized as ``question["answer"]`` is
    written, or None when it does not commit to exactly one answer. ``question["text"]``,
    when given, is the question as asked, for dropping its echo."""
    kind = question["answer_type"]
    asked = question.get("text")
    if kind == "yes/no":
        return parse_yes_no(text, asked)
    if kind == "choice":
        return parse_choice(text, question["choices"] or [], asked)
    if kind == "number":
        return parse_number(text, asked)
    raise ValueError(f"unknown answer_type {kind!r}")
