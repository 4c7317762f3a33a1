"""`rules`: the built-in offline teacher. No network, no key, no cost.

It writes the same three kinds of instruction data as a paid teacher, grounded only in what
the annotations support: the pose facts of `llava_pose.pose` (keypoint geometry, worded by
`llava_pose.teachers.wording`) for the people, and the human-written scene descriptions for
everything else. It exists so that the whole pipeline (generate -> train -> bench) runs and is
testable offline, and as a cheap, fully reproducible baseline dataset; a real LLM writes
richer text.

It is a teacher, not a language model: it writes each reply straight from (context, task,
seed) and reads no prompt, so prompt options (``--format``, ``--fewshot``, ``--cues``) are an
error with it rather than silently ignored. Output shapes are those the parser expects from
any teacher:

* conversation: ``Question:\\n<q>\\n===\\nAnswer:\\n<a>`` pairs joined by ``\\n===\\n`` (3-6 pairs);
* detail: a paragraph per person a vision model can find by name, then the others together;
* reasoning: one ``Question:\\n<q>\\n===\\nAnswer:\\n<a>`` pair.

Text that reads true against the picture, not just against the annotations:

* people are named by PoseQA's rule (`llava_pose.names`), never "the sixth person from
  the right" in a crowd; whoever that rule cannot name is described with the others;
* where there is a crowd (a dozen people annotated, or the descriptions say so) no count is
  given, and "all of them are clear" is said only when every person is named and posed;
* the scene descriptions are repeated only tidied and when they agree with the others
  (`teachers.captions`), never two that contradict each other;
* advice and commentary suit who the descriptions say the person is (baby, child, adult);
* a person's pronouns follow from the noun that names them ("the man ... his feet").

Answers never quote numbers from the context (counts are spelled out) and never name the
annotation itself. The wording varies with the seed and the image id, and is identical for the
same context and seed. Phrases live in ``data/rules/*.yaml``.
"""

from __future__ import annotations

import contextlib
import functools
import random
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .. import pose
from ..confidence import trusted
from ..errors import ConfigError
from ..llm.pricing import Price, PriceTable
from ..llm.results import Result, RunStats
from ..llm.runner import ModelOptions
from ..names import name_people
from ..pose import PoseFacts, SceneFacts
from ..progress import progress_bar
from ..records import ChatRequest, Completion, ImageContext
from ..tasks import BY_NAME, task_type
from ..verify import check_text as check_claims
from . import captions, wording
from .wording import Pronouns

__all__ = [
    "DESCRIPTION",
    "SPEC",
    "RulesTeacher",
    "person_names",
    "write",
]

SPEC = "rules"
DESCRIPTION = (
    "rules (built-in offline teacher: grounded in keypoint geometry and captions, no network)"
)
MIN_PAIRS, MAX_PAIRS = 3, 6
# At most this many object kinds are listed in a description: a list of ten things is noise.
MAX_OBJECT_KINDS = 5
# A caption noun names a lone person only when this many of the (usually five) agree.
NOUN_AGREEMENT = 3
# This many people annotated one by one: COCO stops there and marks the rest as a crowd.
CROWD_MIN_PERSONS = 10


class RulesTeacher:
    """The offline teacher: each reply is `write(request.context, task, request.seed)`.

    It takes the pipeline's requests so that generate and bench build treat every teacher
    alike, but reads only their context, task and seed; nothing is cached (it is instant and
    deterministic) and nothing costs."""

    spec = SPEC
    model = ""
    free = True
    reads_prompt = False

    def describe(self) -> str:
        return DESCRIPTION

    def price(self, prices: PriceTable) -> Price:
        return Price(0.0, 0.0)

    def warm(self) -> None:
        """Nothing to load: it calls nothing."""

    def write(self, context: ImageContext, task: str, seed: int = 0) -> str:
        """The reply for one image and task: same context and seed, same text."""
        return write(context, task, seed)

    @staticmethod
    def answer(request: ChatRequest) -> Result:
        """The reply to one request, or why it cannot be written."""
        task = request.meta.get("task")
        if request.context is None:
            error = (
                f"{request.id}: the rules teacher needs the image's annotations "
                "(request.context) and this request carries none"
            )
        elif task not in BY_NAME:
            error = f"{request.id}: the rules teacher writes {', '.join(BY_NAME)}, not {task!r}"
        else:
            text = write(request.context, task, request.seed or 0)
            completion = Completion(text=text, finish_reason="stop", model=SPEC)
            return Result(request.id, completion=completion)
        return Result(request.id, error=error, kind="failed")

    @contextlib.contextmanager
    def open(
        self,
        cfg: ModelOptions,
        default_cache: str | Path,
        progress: str,
        prices: PriceTable | None = None,
    ) -> Iterator[RulesRun]:
        if cfg.batch or cfg.wait:
            flag = "--batch" if cfg.batch else "--wait"
            raise ConfigError(f"{flag}: the offline teacher (rules) calls no API; drop it")
        yield RulesRun(progress)


class RulesRun:
    """One run of the offline teacher: the runner's interface (`run`, `stats`), no runner."""

    def __init__(self, progress: str | None = None) -> None:
        self.progress = progress
        self.stats = RunStats()

    def run(
        self,
        requests: Sequence[ChatRequest],
        on_result: Callable[[ChatRequest, Result], None] | None = None,
    ) -> list[Result]:
        """A result per request, in order; one it cannot answer fails alone, with its reason."""
        bar = progress_bar(len(requests), self.progress, unit="req")
        results = []
        self.stats.requests += len(requests)
        for request in requests:
            result = RulesTeacher.answer(request)
            if result.ok:
                self.stats.called += 1
            else:
                self.stats.failed += 1
            results.append(result)
            if on_result:
                on_result(request, result)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        return results


# -- package data -----------------------------------------------------------------------------


@functools.cache
def _t() -> dict[str, Any]:
    text = resources.files("llava_pose").joinpath("data/rules/teacher.yaml").read_text("utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def _pick(rng: random.Random, options: str | Sequence[str]) -> str:
    return options if isinstance(options, str) else rng.choice(list(options))


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def number_word(n: int) -> str:
    """Counts are spelled out: a digit in an answer reads as a copied coordinate."""
    words: list[str] = _t()["number_words"]
    return words[n] if 0 <= n < len(words) else "many"


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


_PLURALS = {
    "bus": "buses",
    "sheep": "sheep",
    "mouse": "mice",
    "knife": "knives",
    "broccoli": "pieces of broccoli",
}


def _counted(category: str, n: int) -> str:
    if n == 1:
        return wording.article(category)
    head, _, last = category.rpartition(" ")
    if last in _PLURALS:
        plural = _PLURALS[last]
    elif last in ("skis", "scissors"):
        return f"{number_word(n)} sets of {category}"
    elif last.endswith(("s", "ch", "sh", "x")):
        plural = last + "es"
    else:
        plural = last + "s"
    return f"{number_word(n)} {(head + ' ' if head else '')}{plural}"


# -- captions and names -----------------------------------------------------------------------


def find_activity(
    context: ImageContext, texts: Sequence[str] | None = None
) -> dict[str, Any] | None:
    """The first activity of teacher.yaml whose words occur in `texts` (the descriptions the
    teacher trusts; all of them by default) or the object names, and none of its `unless` words in those descriptions
    (a snowboarder on a slope is not skiing; a phone booth is no phone call). Objects do not
    rule an activity out: skis and a snowboard lie about on any slope, and which one the
    people use is what the descriptions voted on."""
    said_text = " ".join(context.captions if texts is None else texts).lower()
    text = " ".join([said_text, *(o.category for o in context.objects)]).lower()

    def said(words: Sequence[str], where: str) -> bool:
        return any(re.search(rf"\b{re.escape(w)}\b", where) for w in words)

    for activity in _t()["activities"]:
        if said(activity["words"], text) and not said(activity.get("unless", ()), said_text):
            return dict(activity)
    return None


def _supported(
    entry: str | dict[str, Any],
    f: PoseFacts | None,
    captions: str,
    subjects: frozenset[str] = frozenset(),
) -> bool:
    """Whether a text entry of teacher.yaml holds here: a plain string always does; a mapping
    {text, posture: [...], captions: [...], subjects: [...]} only for those postures, when a
    caption says one of those words, and when every subject the descriptions name (an
    unnamed one counts as an adult) is one of `subjects`: advice never tells a standing man to
    rest his forearms on a table, nor a child to sit like an office worker."""
    if isinstance(entry, str):
        return True
    postures = entry.get("posture")
    if postures is not None and (f is None or f.posture not in postures):
        return False
    allowed = entry.get("subjects")
    if allowed is not None and not (subjects or frozenset({"adult"})) <= set(allowed):
        return False
    words = entry.get("captions")
    return words is None or any(re.search(rf"\b{re.escape(w)}\b", captions) for w in words)


def _texts(
    entries: str | Sequence[str | dict[str, Any]] | None,
    f: PoseFacts | None,
    captions: str,
    subjects: frozenset[str] = frozenset(),
) -> list[str]:
    """The texts of `entries` that the facts, captions and subjects support."""
    if entries is None:
        return []
    if isinstance(entries, str):
        entries = [entries]
    return [
        e if isinstance(e, str) else e["text"]
        for e in entries
        if _supported(e, f, captions, subjects)
    ]


def _lone_noun(context: ImageContext) -> str:
    """'skier' when one person is annotated and most captions call them that; else 'person'."""
    if len(context.persons) != 1:
        return "person"
    counts: Counter[str] = Counter()
    for c in context.captions:
        words = set(re.findall(r"[a-z]+", c.lower()))
        counts.update(n for n in captions.person_nouns() if n in words)
    if counts:
        noun, n = counts.most_common(1)[0]
        if n >= NOUN_AGREEMENT:
            return str(noun)
    return "person"


def person_names(context: ImageContext, noun: str | None = None) -> list[str | None]:
    """Each person's name, by PoseQA's rule (`llava_pose.names`): one a vision model can follow
    ("the person on the left", "the largest person", "the person holding the kite"), or None
    for someone it cannot single out, who is then only described with the others. A lone
    person is named by the noun most descriptions agree on ("the skier"; `noun`, when the
    caller has it)."""
    n = len(context.persons)
    if n == 1:
        return [_t()["names"]["only"].format(noun=noun or _lone_noun(context))]
    found = name_people(context)
    return [found.best(i) for i in range(n)]


def is_crowd(context: ImageContext) -> bool:
    """Whether more people are in the picture than were annotated one by one: COCO marks a
    crowd region instead of annotating past about a dozen people (the context does not carry
    that region), and descriptions say "crowd", "fans", "as others look on"."""
    if len(context.persons) >= CROWD_MIN_PERSONS:
        return True
    text = " ".join(context.captions).lower()
    return any(re.search(rf"\b{re.escape(w)}\b", text) for w in _t()["crowd_words"])


# -- the scene every task draws on ------------------------------------------------------------


@dataclass
class Scene:
    context: ImageContext
    facts: SceneFacts
    names: list[str | None]  # None: not nameable, described only with the others
    prons: list[Pronouns]
    captions: list[str]  # descriptions fit to repeat, best-agreeing first
    subjects: frozenset[str]  # who the descriptions say the people are: baby, child, adult
    crowd: bool
    activity: dict[str, Any] | None
    rng: random.Random

    @classmethod
    def of(cls, context: ImageContext, rng: random.Random) -> Scene:
        # A description the keypoints contradict ("sitting on a small pole" for a man
        # standing) is never repeated or turned into an activity.
        read = captions.read_captions(
            context,
            contradicted=lambda c: any(
                k.verdict == "contradicted" for k in check_claims(c, context)
            ),
        )
        if len(context.persons) == 1:
            noun = _lone_noun(context)
            names = person_names(context, noun)
            prons = [captions.pronouns_for(noun, read.sex)]
        else:
            names = person_names(context)
            prons = [wording.THEY] * len(names)
        return cls(
            context,
            pose.scene_facts(context),
            names,
            prons,
            list(read.texts),
            read.subjects,
            is_crowd(context),
            find_activity(context, read.texts),
            rng,
        )

    @property
    def described(self) -> list[PoseFacts]:
        """Persons with a known pose, left to right."""
        return [
            self.facts.persons[i]
            for i in self.facts.left_to_right
            if self.facts.persons[i].has_pose
        ]

    @property
    def named_described(self) -> list[PoseFacts]:
        """Persons with a known pose and a name, left to right."""
        return [f for f in self.described if self.names[f.index]]

    def name(self, f: PoseFacts) -> str:
        """The name of a person the caller knows is named."""
        name = self.names[f.index]
        assert name is not None
        return name

    def fill(self, template: str, f: PoseFacts | None = None, **fields: str) -> str:
        """`template` with `fields` and the pronouns of person `f` ("they" for nobody)."""
        pron = self.prons[f.index] if f is not None else wording.THEY
        return wording.fill(template, pron, **fields)

    def pick(self, options: str | Sequence[str]) -> str:
        return _pick(self.rng, options)

    @property
    def caption_text(self) -> str:
        return " ".join(self.captions).lower()

    def scene_sentence(self) -> str | None:
        if not self.captions:
            return None
        return self.pick(_t()["scene"]).format(c=self.rng.choice(self.captions[:3]))

    def activity_sentence(self, subject: PoseFacts | None = None) -> str | None:
        """'The skier seems to be going down a hill.' from a description that says so, its
        pronouns made those of whoever it is now said of ('brushing his teeth' of the toddler:
        'their teeth')."""
        t = _t()["activity"]
        lone = subject is not None and self.facts.count == 1
        found = []
        for text, plural in (a for a in map(captions.caption_activity, self.captions) if a):
            pron = self.prons[subject.index] if lone and subject and not plural else wording.THEY
            agreed = captions.agree(text, pron)
            if agreed is not None:
                found.append((agreed, plural))
        if not found:
            return None
        text, plural = self.rng.choice(found)
        if lone and subject is not None and not plural:
            return _cap(self.pick(t["one"]).format(S=self.name(subject), a=text))
        if not plural and self.facts.count > 1:
            return self.pick(t["some"]).format(a=text)
        return self.pick(t["many"]).format(a=text)

    def count_sentences(self) -> str:
        """How many people, without a count where there is a crowd, and how many of them
        can be described: "all" only when every one is named and posed."""
        t = _t()["count"]
        n = self.facts.count
        if n == 0:
            return self.pick(t["zero"])
        k = len(self.described)
        named = [self.name(f) for f in self.named_described]
        if self.crowd:
            out = [self.pick(t["crowd"])]
            if named:
                stands = "stands" if len(named) == 1 else "stand"
                out.append(self.pick(t["crowd_some"]).format(list=_join(named), stands=stands))
            else:
                out.append(self.pick(t["crowd_none"]))
            return " ".join(out)
        out = [self.pick(t["one"]) if n == 1 else self.pick(t["many"]).format(n=number_word(n))]
        if n > 1 and len(named) == n:
            out.append(self.pick(t["all_clear"]))
        elif n > 1 and 0 < k < n:
            out.append(self.pick(t["partly"]).format(k=number_word(k)))
        return " ".join(out)

    def objects_sentence(self) -> str | None:
        counts = Counter(o.category for o in self.context.objects if o.category != "person")
        if not counts:
            return None
        items = [_counted(c, n) for c, n in counts.most_common(MAX_OBJECT_KINDS)]
        return self.pick(_t()["objects"]).format(list=_join(items))

    def position(self, f: PoseFacts, sep: str = ", ") -> str:
        """'on the left side of the picture, in the foreground' (no subject)."""
        return wording.position_words(f, self.rng, sep)

    def lead(self, f: PoseFacts) -> str:
        """The opening sentence about a named person: posture, else where they are."""
        name = self.name(f)
        posture = wording.phrase_posture(f, name, self.rng, self.prons[f.index])
        return posture or _cap(f"{name} is {self.position(f)}.")

    def others_sentences(self) -> str | None:
        """The people who cannot be named, described together: how many, what most of them
        do, and how many are too small or hidden to tell."""
        t = _t()["others"]
        others = [self.facts.persons[i] for i in self.facts.left_to_right if not self.names[i]]
        k = len(others)
        if not k:
            return None
        key = "open_all" if k == self.facts.count else "open_one" if k == 1 else "open"
        if self.crowd:
            key = "open_crowd_all" if k == self.facts.count else "open_crowd"
        out = [_cap(self.pick(t[key]).format(k=number_word(k), K=_cap(number_word(k))))]
        posed = [f for f in others if f.has_pose]
        for attr in ("posture", "facing"):
            counts = Counter(getattr(f, attr) for f in posed if getattr(f, attr))
            if counts:
                top, m = counts.most_common(1)[0]
                if m >= 2 and m * 2 > len(posed) and top in t[attr]:
                    out.append(t[attr][top])
        unclear = k - len(posed)
        if unclear and unclear == k:
            key = "all" if k > 1 else "single"
        elif self.crowd and unclear:
            key = "most" if unclear * 2 > k else "some"
        else:
            key = "one" if unclear == 1 else "many" if unclear > 1 else ""
        if key:
            out.append(self.pick(t["unclear"][key]).format(K=_cap(number_word(unclear))))
        return " ".join(out)


# -- detail -----------------------------------------------------------------------------------


def write_detail(scene: Scene) -> str:
    intro = [scene.scene_sentence(), scene.count_sentences(), scene.objects_sentence()]
    paragraphs = [" ".join(s for s in intro if s)]
    t = _t()
    order = [i for i in scene.facts.left_to_right if scene.names[i]]
    for i in order:
        f = scene.facts.persons[i]
        name, pron = scene.name(f), scene.prons[i]
        # "The person on the left, in the foreground, is standing ...": place and pose at once.
        # A name that already says "left"/"right" needs only the depth.
        place = scene.position(f, " and ")
        if re.search(r"\b(left|right)\b", name):
            place = wording.depth_words(f, scene.rng) or ""
        placed = f"{name}, {place}," if place else name
        posture = wording.phrase_posture(f, placed, scene.rng, pron)
        if posture is None:
            posture = _cap(f"{name} is {scene.position(f)}.")
        rest = [
            wording.phrase_arms(f, scene.rng, pron),
            wording.phrase_legs(f, scene.rng, pron),
            wording.phrase_contacts(f, name, scene.rng, pron),
        ]
        if f.has_pose or any(rest):
            paragraphs.append(" ".join([posture, *(s for s in rest if s)]))
        else:
            text = scene.pick(t["unclear_person"])
            paragraphs.append(scene.fill(text, f, S=_cap(name), pos=scene.position(f)))
    closing = [scene.others_sentences()]
    lone = scene.facts.persons[0] if scene.facts.count == 1 else None
    closing.append(scene.activity_sentence(lone))
    paragraphs.append(" ".join(s for s in closing if s))
    return "\n\n".join(p for p in paragraphs if p)


# -- conversation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class QA:
    aspect: str  # what the question is about, to keep a conversation varied
    person: int | None
    question: str
    answer: str


def _only(f: PoseFacts, **keep: Any) -> PoseFacts:
    """`f` with posture, lean and facing cleared except those named, to phrase one of them."""
    cleared = {"posture": None, "lean": None, "facing": None}
    cleared.update({k: getattr(f, k) for k in keep})
    return replace(f, **cleared)


def _person_questions(scene: Scene, f: PoseFacts) -> list[QA]:
    """Questions about one named person."""
    q = _t()["questions"]
    a = _t()["answers"]
    name = scene.name(f)
    pron = scene.prons[f.index]
    pick = scene.pick
    out: list[QA] = []

    def ask(aspect: str, options: str | Sequence[str], answer: str) -> None:
        out.append(QA(aspect, f.index, _cap(scene.fill(pick(options), f, S=name)), answer))

    posture = wording.phrase_posture(f, name, scene.rng, pron)
    if f.posture is not None and posture:
        options = list(q["posture"])
        if f.posture not in ("standing", "sitting"):
            options = [o for o in options if "standing or sitting" not in o]
        ask("posture", options, posture)
    if f.facing is not None:
        facing = wording.phrase_posture(_only(f, facing=True), name, scene.rng, pron)
        assert facing is not None
        question = pick(q["facing"])
        if "facing the camera?" in question:
            answer = (
                a["facing_yes"].format(S=name)
                if f.facing == "camera"
                else a["facing_no"].format(sentence=facing)
            )
        else:
            answer = facing
        out.append(QA("facing", f.index, _cap(question.format(S=name)), _cap(answer)))
    arms = wording.phrase_arms(f, scene.rng, pron)
    if arms:
        ask("arms", q["arms"], f"{scene.lead(f)} {arms}")
    legs = wording.phrase_legs(f, scene.rng, pron)
    if legs:
        question = pick(q["legs"])
        if "knees" in question and "bent" in question:
            known = [leg.knee for leg in f.legs if leg.knee is not None]
            if known:
                yes = any(k != "straight" for k in known)
                legs = ("Yes. " if yes else "No. ") + f"{scene.lead(f)} {legs}"
            else:
                question = q["legs"][0]
                legs = f"{scene.lead(f)} {legs}"
        else:
            legs = f"{scene.lead(f)} {legs}"
        out.append(QA("legs", f.index, _cap(question.format(S=name)), legs))
    contacts = [c for c in f.contacts if c.kind == "holding"]
    if contacts:
        sub = replace(f, contacts=tuple(contacts))
        text = wording.phrase_contacts(sub, name, scene.rng, pron)
        assert text is not None
        ask("holding", q["holding"], text)
    supports = [c for c in f.contacts if c.kind in ("on_feet", "riding", "seated", "lying_on")]
    if supports:
        sub = replace(f, contacts=tuple(supports))
        text = wording.phrase_contacts(sub, name, scene.rng, pron)
        assert text is not None
        posture = wording.phrase_posture(f, name, scene.rng, pron) or ""
        ask("support", q["support"], f"{text} {posture}".strip())
    where = _cap(f"{name} is {scene.position(f)}.")
    others = [
        (o, pose.relative_side(scene.context.persons[f.index], scene.context.persons[o.index]))
        for o in scene.facts.persons
        if o.index != f.index and scene.names[o.index]
    ]
    beside = [(o, side) for o, side in others if side is not None]
    if beside and scene.facts.count <= 4:
        o, side = scene.rng.choice(beside)
        where += f" {_cap(name)} is to the {side} of {scene.name(o)}."
    ask("where", q["where"], where)
    return out


_GERUND = {
    "standing": "standing",
    "sitting": "sitting down",
    "crouching": "crouching",
    "kneeling": "kneeling",
    "lying": "lying down",
    "bending": "bending over",
}


def _scene_questions(scene: Scene) -> list[QA]:
    q = _t()["questions"]
    a = _t()["answers"]
    out: list[QA] = []
    pick = scene.pick
    n = scene.facts.count
    if n:
        answer = scene.count_sentences()
        out.append(QA("count", None, pick(q["count"]), answer))
    lone = scene.facts.persons[0] if n == 1 else None
    activity = scene.activity_sentence(lone)
    if activity:
        if lone is not None:
            name = scene.name(lone)
            lead = wording.phrase_posture(lone, name, scene.rng, scene.prons[0])
            question = _cap(pick(q["activity_one"]).format(S=name))
            out.append(QA("activity", None, question, " ".join(s for s in (activity, lead) if s)))
        else:
            scene_s = scene.scene_sentence()
            answer = " ".join(s for s in (activity, scene_s) if s)
            out.append(QA("activity", None, pick(q["activity_many"]), answer))
    labelled = scene.facts.labelled
    raised = [
        f for f in labelled if any(arm.height in ("above_head", "above_shoulder") for arm in f.arms)
    ]
    every_arm_known = (
        n > 0
        and not scene.crowd
        and len(labelled) == n
        and all(arm.height for f in labelled for arm in f.arms)
    )
    if raised and all(scene.names[f.index] for f in raised):
        names = [scene.name(f) for f in raised]
        answer = pick(a["raised_yes"]).format(
            list=_join(names), has="has" if len(names) == 1 else "have"
        )
        out.append(QA("raised", None, pick(q["raised"]), _cap(answer)))
    elif raised:
        out.append(QA("raised", None, pick(q["raised"]), pick(a["raised_some"])))
    elif every_arm_known:
        # A lone person is not "none of them".
        no = pick(a["raised_no"] if lone is None else a["raised_no_one"])
        answer = no.format(S=scene.name(lone)) if lone is not None else no
        out.append(QA("raised", None, pick(q["raised"]), _cap(answer)))
    postures = Counter(f.posture for f in labelled if f.posture is not None)
    if len(postures) >= 2 and not scene.crowd:
        unique = [p for p, k in postures.items() if k == 1]
        named = [
            p for p in unique if scene.names[next(f for f in labelled if f.posture == p).index]
        ]
        if named:
            p = scene.rng.choice(sorted(named))
            f = next(f for f in labelled if f.posture == p)
            question = pick(q["compare"]).format(p=_GERUND[p])
            answer = pick(a["compare"]).format(S=scene.name(f), p=_GERUND[p])
            out.append(QA("compare", f.index, question, _cap(answer)))
    return out


def write_conversation(scene: Scene) -> str:
    rng = scene.rng
    general = _scene_questions(scene)
    per_person: list[QA] = []
    for f in scene.facts.persons:
        if scene.names[f.index]:
            per_person.extend(_person_questions(scene, f))
    # Open with the overall picture, then a varied mix about individual people.
    chosen: list[QA] = []
    if general:
        openers = [x for x in general if x.aspect in ("activity", "count")]
        first = rng.choice(openers) if openers else general[0]
        chosen.append(first)
        general = [x for x in general if x is not first]
    pool = general + per_person
    rng.shuffle(pool)
    # Pose questions first, the plain "where is" only to fill up.
    pool.sort(key=lambda x: x.aspect == "where")
    target = rng.randint(MIN_PAIRS, MAX_PAIRS)
    aspects: Counter[str] = Counter()
    persons: Counter[int | None] = Counter()
    for qa in pool:
        if len(chosen) >= target:
            break
        if aspects[qa.aspect] >= 2 or (qa.person is not None and persons[qa.person] >= 3):
            continue
        chosen.append(qa)
        aspects[qa.aspect] += 1
        persons[qa.person] += 1
    for qa in pool:  # still short (few facts): relax the variety limits
        if len(chosen) >= MIN_PAIRS:
            break
        if qa not in chosen:
            chosen.append(qa)
    chosen.extend(_fallback_questions(scene, MIN_PAIRS - len(chosen)))
    return "\n===\n".join(f"Question:\n{x.question}\n===\nAnswer:\n{x.answer}" for x in chosen)


def _fallback_questions(scene: Scene, k: int) -> list[QA]:
    """Scene questions for images with (almost) nothing known about people."""
    if k <= 0:
        return []
    out: list[QA] = []
    scene_s = scene.scene_sentence()
    if scene_s:
        out.append(QA("scene", None, "What is happening in the picture?", scene_s))
    objects = scene.objects_sentence()
    if objects:
        out.append(QA("objects", None, "What else can be seen in the scene?", objects))
    others = scene.others_sentences()
    if others:
        out.append(QA("others", None, "What can you tell about the people in the picture?", others))
    out.append(
        QA(
            "clarity",
            None,
            "Can you make out how the people in the picture are posed?",
            _clarity_answer(scene),
        )
    )
    out.append(QA("count", None, "Is there anyone in the picture?", _presence_answer(scene)))
    return out[:k]


def _clarity_answer(scene: Scene) -> str:
    if not scene.described:
        return "Not really: no one is shown clearly enough to tell how they are holding their body."
    named = [scene.name(f) for f in scene.named_described]
    if not named:
        return "Only partly: some of them can be made out, the rest is unclear."
    return _cap(f"Only partly: the posture of {_join(named)} can be made out, the rest is unclear.")


def _presence_answer(scene: Scene) -> str:
    return scene.count_sentences() if scene.facts.count else "No, no one can be seen clearly."


# -- reasoning --------------------------------------------------------------------------------


def _cues(f: PoseFacts) -> list[tuple[str, str | None]]:
    """Pose cues of a person, most telling first, with the object a cue refers to."""
    cues: list[tuple[str, str | None]] = []
    holding = next((c.category for c in f.contacts if c.kind == "holding"), None)
    ridden = next(
        (c.category for c in f.contacts if c.kind in ("riding", "seated", "on_feet")), None
    )
    if f.posture in ("crouching", "kneeling", "sitting", "lying", "bending"):
        cues.append((f.posture, ridden))
    if any(arm.height in ("above_head", "above_shoulder") for arm in f.arms):
        cues.append(("arm_raised", None))
    if any(arm.reach for arm in f.arms):
        cues.append(("arm_reach", None))
    if any(leg.knee in ("bent", "slightly_bent") for leg in f.legs) and f.posture not in (
        "sitting",
        "lying",
    ):
        cues.append(("knees_bent", None))
    if f.lean in ("forward", "back"):
        cues.append((f"lean_{f.lean}", None))
    stance = wording.stance_key(f)
    if stance in ("stride", "stance"):
        cues.append((stance, None))
    if holding:
        cues.append(("holding", holding))
    if all(arm.hanging for arm in f.arms):
        cues.append(("arm_hanging", None))
    if f.posture == "standing" and all(leg.knee == "straight" for leg in f.legs):
        cues.append(("upright_standing", None))
    if f.facing == "camera":
        cues.append(("facing_camera", None))
    elif f.facing == "away":
        cues.append(("facing_away", None))
    return cues


def _reasons(scene: Scene, f: PoseFacts, limit: int) -> list[str]:
    generic: dict[str, str] = _t()["cues"]
    specific: dict[str, Any] = (scene.activity or {}).get("cues", {})
    ranked = sorted(_cues(f), key=lambda cue: cue[0] not in specific)
    out = []
    for key, obj in ranked:
        supported = _texts(specific.get(key), f, scene.caption_text, scene.subjects)
        text = supported[0] if supported else generic.get(key)
        if not text or ("{obj}" in text and obj is None):
            continue
        out.append(scene.fill(text, f, obj=obj or ""))
        if len(out) >= limit:
            break
    return out


def _next_step(scene: Scene, f: PoseFacts) -> str:
    g = _t()["generic"]["next"]
    supported = _texts((scene.activity or {}).get("next"), f, scene.caption_text, scene.subjects)
    if supported:
        text = scene.pick(supported)
    elif wording.stance_key(f) == "stride":
        text = scene.pick(g["moving"])
    else:
        text = scene.pick(g.get(f.posture or "unknown", g["unknown"]))
    return scene.fill(text, f)


def _advice(scene: Scene, f: PoseFacts) -> list[str]:
    """Advice that suits the person's pose, the activity and who they are (`subjects`)."""
    g: dict[str, Any] = _t()["generic"]["advice"]
    out = []
    subjects = scene.subjects
    supported = _texts((scene.activity or {}).get("advice"), f, scene.caption_text, subjects)
    if supported:
        out.append(scene.fill(scene.pick(supported), f))
    keys = [k for k, _ in _cues(f)] + ([f.posture] if f.posture else [])
    for key in ("lean_forward", "knees_bent", "arm_raised", "sitting", "crouching", "standing"):
        fitting = _texts(g.get(key), f, scene.caption_text, subjects) if key in keys else []
        if fitting:
            out.append(scene.fill(fitting[0], f))
            break
    return out or [g["default"]]


def _main_person(scene: Scene) -> PoseFacts | None:
    """The most telling named person: most facts, then the biggest in the frame."""
    named = scene.named_described

    def size(f: PoseFacts) -> float:
        x1, y1, x2, y2 = scene.context.persons[f.index].box
        return (x2 - x1) * (y2 - y1)

    if not named:
        return None
    return max(named, key=lambda f: (len(_cues(f)) >= 2, size(f), -f.index))


def write_reasoning(scene: Scene) -> str:
    t = _t()["reasoning"]
    rng = scene.rng
    main = _main_person(scene)
    kinds: list[str] = []
    if main is not None:
        kinds += ["why", "next"]
        # Posture advice to a baby or a toddler makes no sense: nobody gives it.
        if "baby" not in scene.subjects:
            kinds.append("advice")
    if len(scene.described) >= 3:
        kinds.append("group")
    if not kinds:
        return _scene_reasoning(scene)
    kind = rng.choice(kinds)
    if kind == "group":
        return _qa(scene.pick(t["questions"]["group"]), _group_answer(scene))
    assert main is not None
    name, pron = scene.name(main), scene.prons[main.index]
    question = _cap(scene.fill(scene.pick(t["questions"][kind]), main, S=name))
    body = wording.describe_person(main, name, rng, pron)
    parts = [_cap(scene.pick(t["open"]).format(obs=body[:1].lower() + body[1:]))]
    context = scene.activity_sentence(main) or scene.scene_sentence()
    if context:
        parts.append(context)
    reasons = _reasons(scene, main, 3 if kind == "why" else 2)
    if kind == "why":
        parts += reasons
        doing = (scene.activity or {}).get("doing")
        if doing:
            parts.append(f"Taken together, the pose is what you would expect from someone {doing}.")
        else:
            parts.append(
                scene.fill("Taken together, the pose matches what is going on around {them}.", main)
            )
    elif kind == "next":
        parts += reasons[:1]
        parts.append(_next_step(scene, main))
    else:
        parts += reasons[:1]
        parts += _advice(scene, main)
    return _qa(question, " ".join(parts))


def _group_answer(scene: Scene) -> str:
    t = _t()["reasoning"]
    described = scene.described
    n = len(described)
    key = "group_open" if n == scene.facts.count and not scene.crowd else "group_open_some"
    parts = [_cap(scene.pick(t[key]).format(n=number_word(n)))]
    context = scene.activity_sentence() or scene.scene_sentence()
    if context:
        parts.append(context)
    facing = Counter(f.facing for f in described if f.facing)
    if facing:
        top, k = facing.most_common(1)[0]
        if top == "camera" and k * 2 > len(described):
            parts.append(scene.pick(t["group_facing_camera"]))
        elif top == "away" and k * 2 > len(described):
            parts.append(scene.pick(t["group_facing_away"]))
        else:
            parts.append(scene.pick(t["group_mixed"]))
    postures = Counter(f.posture for f in described if f.posture)
    if postures.get("sitting"):
        parts.append(scene.pick(t["group_sitting"]).format(k=number_word(postures["sitting"])))
    elif postures.get("standing", 0) * 2 > len(described):
        parts.append(scene.pick(t["group_standing"]))
    if any(arm.height in ("above_head", "above_shoulder") for f in described for arm in f.arms):
        parts.append(scene.pick(t["group_raised"]))
    for f in scene.named_described[:3]:
        lead = wording.phrase_posture(f, scene.name(f), scene.rng, scene.prons[f.index])
        if lead:
            parts.append(lead)
    parts.append(scene.pick(t["group_close"]))
    return " ".join(parts)


def _scene_reasoning(scene: Scene) -> str:
    """No one's pose is known: reason about the scene from what it shows."""
    question = "What can you tell about what the people in this scene are doing?"
    parts = [scene.count_sentences()]
    lone = scene.facts.persons[0] if scene.facts.count == 1 else None
    for s in (scene.activity_sentence(lone), scene.scene_sentence(), scene.objects_sentence()):
        if s:
            parts.append(s)
    parts.append(
        "Nobody is shown clearly enough to read their posture, so any guess about their "
        "movements rests on the setting rather than on their bodies."
        if not scene.described
        else "Nobody stands out clearly enough to single out, so any guess about what they "
        "are doing rests on the setting and on the group as a whole."
    )
    return _qa(question, " ".join(parts))


def _qa(question: str, answer: str) -> str:
    return f"Question:\n{question}\n===\nAnswer:\n{answer}"


# -- entry point ------------------------------------------------------------------------------


def write(context: ImageContext, task: str, seed: int = 0) -> str:
    """The teacher's reply for one image and task: same context and seed, same text. A pose
    model's low-confidence joints are left out, as hidden (`confidence.trusted`)."""
    context = trusted(context)
    rng = random.Random(f"rules|{seed}|{context.image_id}|{task}")
    return task_type(task).load_writer()(Scene.of(context, rng))
