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
* detail: plain paragraphs that cover every person with labelled joints;
* reasoning: one ``Question:\\n<q>\\n===\\nAnswer:\\n<a>`` pair.

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
from ..errors import ConfigError
from ..filters import check_text
from ..llm.pricing import Price, PriceTable
from ..llm.runner import ModelOptions, Result, RunStats
from ..pose import PoseFacts, SceneFacts
from ..progress import progress_bar
from ..records import ChatRequest, Completion, ImageContext
from ..tasks import BY_NAME, task_type
from ..verify import check_text as check_claims
from . import wording

__all__ = ["DESCRIPTION", "SPEC", "RulesTeacher", "write"]

SPEC = "rules"
DESCRIPTION = (
    "rules (built-in offline teacher: grounded in keypoint geometry and captions, no network)"
)
MIN_PAIRS, MAX_PAIRS = 3, 6
# At most this many object kinds are listed in a description: a list of ten things is noise.
MAX_OBJECT_KINDS = 5
# A caption noun names a lone person only when this many of the (usually five) agree.
NOUN_AGREEMENT = 3


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


# -- captions ---------------------------------------------------------------------------------


def clean_caption(text: str) -> str | None:
    """A caption fit to quote in an answer, lower-cased and without its lead-in; else None.

    Captions with digits or with words the quality filter drops are not quoted.
    """
    c = re.sub(r"\s+", " ", text).strip().rstrip(".!? ").strip()
    c = re.sub(r"\b(\w+) \1\b", r"\1", c, flags=re.IGNORECASE)  # "on a a road"
    if not c or re.search(r"\d", c) or check_text(c) is not None:
        return None
    letters = [ch for ch in c if ch.isalpha()]
    if letters and sum(ch.isupper() for ch in letters) > 0.6 * len(letters):
        c = c.lower()
    c = c[:1].lower() + c[1:]
    for prefix in _t()["caption_prefixes"]:
        if c.lower().startswith(prefix):
            c = c[len(prefix) :]
            break
    words = c.split()
    if len(words) < 3 or len(words) > 30:
        return None
    return c


def caption_activity(caption: str) -> tuple[str, bool] | None:
    """('riding a wave on a surfboard', plural?) from 'Two men riding a wave...', or None.

    The activity is the caption from its first -ing verb on, taken only when the words before
    it name people ("a man", "two kids"), so a caption about a plane is never turned into
    something a person does.
    """
    t = _t()
    words = caption.split()
    skip = set(t["not_activities"])
    for i, w in enumerate(words):
        bare = re.sub(r"[^a-z]", "", w.lower())
        if i == 0 or len(bare) < 5 or not bare.endswith("ing") or bare in skip:
            continue
        subject = {re.sub(r"[^a-z]", "", s.lower()) for s in words[:i]}
        if not subject & set(t["people_words"]):
            return None
        rest = " ".join(words[i:]).rstrip(",;:")
        if len(rest.split()) < 2:
            return None
        return rest, bool(subject & set(t["plural_words"]))
    return None


def find_activity(context: ImageContext) -> dict[str, Any] | None:
    """The first activity of teacher.yaml whose words occur in the captions or object names,
    and none of its `unless` words (a snowboarder on a slope is not skiing)."""
    text = " ".join([*context.captions, *(o.category for o in context.objects)]).lower()

    def said(words: Sequence[str]) -> bool:
        return any(re.search(rf"\b{re.escape(w)}\b", text) for w in words)

    for activity in _t()["activities"]:
        if said(activity["words"]) and not said(activity.get("unless", ())):
            return dict(activity)
    return None


def _supported(entry: str | dict[str, Any], f: PoseFacts | None, captions: str) -> bool:
    """Whether a text entry of teacher.yaml holds here: a plain string always does; a mapping
    {text, posture: [...], captions: [...]} only for those postures and when a caption says
    one of those words, so advice never tells a standing man to rest his forearms on a table."""
    if isinstance(entry, str):
        return True
    postures = entry.get("posture")
    if postures is not None and (f is None or f.posture not in postures):
        return False
    words = entry.get("captions")
    return words is None or any(re.search(rf"\b{re.escape(w)}\b", captions) for w in words)


def _texts(
    entries: str | Sequence[str | dict[str, Any]] | None, f: PoseFacts | None, captions: str
) -> list[str]:
    """The texts of `entries` that the facts and captions support."""
    if entries is None:
        return []
    if isinstance(entries, str):
        entries = [entries]
    return [e if isinstance(e, str) else e["text"] for e in entries if _supported(e, f, captions)]


def _lone_noun(context: ImageContext) -> str:
    """'skier' when one person is annotated and most captions call them that; else 'person'."""
    if len(context.persons) != 1:
        return "person"
    counts: Counter[str] = Counter()
    for c in context.captions:
        words = set(re.findall(r"[a-z]+", c.lower()))
        counts.update(n for n in _t()["person_nouns"] if n in words)
    if counts:
        noun, n = counts.most_common(1)[0]
        if n >= NOUN_AGREEMENT:
            return str(noun)
    return "person"


def person_names(context: ImageContext) -> list[str]:
    """A unique name per person, by place in the frame ('the second person from the left')."""
    names_t = _t()["names"]
    order = pose.left_to_right(context.persons)
    n = len(order)
    noun = _lone_noun(context)
    names = [""] * n
    for rank, i in enumerate(order):
        if n == 1:
            names[i] = names_t["only"].format(noun=noun)
        elif n == 2:
            names[i] = names_t["two"][rank].format(noun=noun)
        elif rank == 0:
            names[i] = names_t["leftmost"].format(noun=noun)
        elif rank == n - 1:
            names[i] = names_t["rightmost"].format(noun=noun)
        elif rank < n / 2:
            names[i] = names_t["from_left"].format(noun=noun, ordinal=_ordinal(rank + 1))
        else:
            names[i] = names_t["from_right"].format(noun=noun, ordinal=_ordinal(n - rank))
    return names


def _ordinal(k: int) -> str:
    ordinals: list[str] = _t()["ordinals"]
    return ordinals[k - 1] if k <= len(ordinals) else "next"


# -- the scene every task draws on ------------------------------------------------------------


@dataclass
class Scene:
    context: ImageContext
    facts: SceneFacts
    names: list[str]
    captions: list[str]
    activity: dict[str, Any] | None
    rng: random.Random

    @classmethod
    def of(cls, context: ImageContext, rng: random.Random) -> Scene:
        # Captions disagree with each other ("standing behind a car", "sitting on a pole"): one
        # the keypoints contradict is never quoted or turned into an activity.
        captions = [
            c
            for c in (clean_caption(x) for x in context.captions)
            if c and not any(k.verdict == "contradicted" for k in check_claims(c, context))
        ]
        return cls(
            context,
            pose.scene_facts(context),
            person_names(context),
            captions,
            find_activity(context),
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

    def pick(self, options: str | Sequence[str]) -> str:
        return _pick(self.rng, options)

    @property
    def caption_text(self) -> str:
        return " ".join(self.context.captions).lower()

    def scene_sentence(self) -> str | None:
        if not self.captions:
            return None
        return self.pick(_t()["scene"]).format(c=self.rng.choice(self.captions))

    def activity_sentence(self, subject: str | None = None) -> str | None:
        """'The skier seems to be going down a hill.' from a caption that says so."""
        found = [a for a in (caption_activity(c) for c in self.captions) if a]
        if not found:
            return None
        text, plural = self.rng.choice(found)
        t = _t()["activity"]
        if subject is not None and not plural and self.facts.count == 1:
            return _cap(self.pick(t["one"]).format(S=subject, a=text))
        if not plural and self.facts.count > 1:
            return self.pick(t["some"]).format(a=text)
        return self.pick(t["many"]).format(a=text)

    def count_sentences(self) -> str:
        t = _t()["count"]
        n = self.facts.count
        k = len(self.described)
        if n == 0:
            return self.pick(t["zero"])
        out = [self.pick(t["one"]) if n == 1 else self.pick(t["many"]).format(n=number_word(n))]
        if n > 1 and k == n:
            out.append(self.pick(t["all_clear"]))
        elif n > 1 and k > 0:
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
        """The opening sentence about a person: posture, else where they are."""
        name = self.names[f.index]
        return wording.phrase_posture(f, name, self.rng) or _cap(f"{name} is {self.position(f)}.")


# -- detail -----------------------------------------------------------------------------------


def write_detail(scene: Scene) -> str:
    intro = [scene.scene_sentence(), scene.count_sentences(), scene.objects_sentence()]
    paragraphs = [" ".join(s for s in intro if s)]
    t = _t()
    order = scene.facts.left_to_right
    for i in order:
        f = scene.facts.persons[i]
        if f.num_labelled == 0:
            continue
        name = scene.names[i]
        # "The person on the left, in the foreground, is standing ...": place and pose at once.
        # A name that already says "left"/"right" needs only the depth.
        extreme = scene.facts.count > 1 and i in (order[0], order[-1])
        place = scene.position(f, " and ")
        if extreme:
            place = wording.depth_words(f, scene.rng) or ""
        placed = f"{name}, {place}," if place else name
        posture = wording.phrase_posture(f, placed, scene.rng)
        if posture is None:
            posture = _cap(f"{name} is {scene.position(f)}.")
        rest = [
            wording.phrase_arms(f, scene.rng),
            wording.phrase_legs(f, scene.rng),
            wording.phrase_contacts(f, name, scene.rng),
        ]
        if f.has_pose or any(rest):
            paragraphs.append(" ".join([posture, *(s for s in rest if s)]))
        else:
            paragraphs.append(
                scene.pick(t["unclear_person"]).format(S=_cap(name), pos=scene.position(f))
            )
    unclear = sum(1 for f in scene.facts.persons if f.num_labelled == 0)
    closing = []
    if unclear:
        others = t["others_unclear"]
        closing.append(
            scene.pick(others["one"])
            if unclear == 1
            else scene.pick(others["many"]).format(k=number_word(unclear))
        )
    lone = scene.names[0] if scene.facts.count == 1 else None
    activity = scene.activity_sentence(lone)
    if activity:
        closing.append(activity)
    if closing:
        paragraphs.append(" ".join(closing))
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
    q = _t()["questions"]
    a = _t()["answers"]
    name = scene.names[f.index]
    pick = scene.pick
    out: list[QA] = []

    def ask(aspect: str, options: str | Sequence[str], answer: str) -> None:
        out.append(QA(aspect, f.index, _cap(pick(options).format(S=name)), answer))

    posture = wording.phrase_posture(f, name, scene.rng)
    if f.posture is not None and posture:
        options = list(q["posture"])
        if f.posture not in ("standing", "sitting"):
            options = [o for o in options if "standing or sitting" not in o]
        ask("posture", options, posture)
    if f.facing is not None:
        facing = wording.phrase_posture(_only(f, facing=True), name, scene.rng)
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
    arms = wording.phrase_arms(f, scene.rng)
    if arms:
        ask("arms", q["arms"], f"{scene.lead(f)} {arms}")
    legs = wording.phrase_legs(f, scene.rng)
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
        text = wording.phrase_contacts(sub, name, scene.rng)
        assert text is not None
        ask("holding", q["holding"], text)
    supports = [c for c in f.contacts if c.kind in ("on_feet", "riding", "seated", "lying_on")]
    if supports:
        sub = replace(f, contacts=tuple(supports))
        text = wording.phrase_contacts(sub, name, scene.rng)
        assert text is not None
        ask(
            "support",
            q["support"],
            f"{text} {wording.phrase_posture(f, name, scene.rng) or ''}".strip(),
        )
    where = _cap(f"{name} is {scene.position(f)}.")
    others = [
        (o, pose.relative_side(scene.context.persons[f.index], scene.context.persons[o.index]))
        for o in scene.facts.persons
        if o.index != f.index
    ]
    beside = [(o, side) for o, side in others if side is not None]
    if beside and scene.facts.count <= 4:
        o, side = scene.rng.choice(beside)
        where += f" {_cap(name)} is to the {side} of {scene.names[o.index]}."
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
    lone = scene.names[0] if n == 1 else None
    activity = scene.activity_sentence(lone)
    if activity:
        if lone is not None:
            f = scene.facts.persons[0]
            lead = wording.phrase_posture(f, lone, scene.rng)
            question = _cap(pick(q["activity_one"]).format(S=lone))
            out.append(QA("activity", None, question, " ".join(s for s in (activity, lead) if s)))
        else:
            scene_s = scene.scene_sentence()
            answer = " ".join(s for s in (activity, scene_s) if s)
            out.append(QA("activity", None, pick(q["activity_many"]), answer))
    labelled = scene.facts.labelled
    raised = [
        scene.names[f.index]
        for f in labelled
        if any(arm.height in ("above_head", "above_shoulder") for arm in f.arms)
    ]
    every_arm_known = (
        n > 0 and len(labelled) == n and all(arm.height for f in labelled for arm in f.arms)
    )
    if raised:
        answer = pick(a["raised_yes"]).format(
            list=_join(raised), has="has" if len(raised) == 1 else "have"
        )
        out.append(QA("raised", None, pick(q["raised"]), _cap(answer)))
    elif every_arm_known:
        out.append(QA("raised", None, pick(q["raised"]), pick(a["raised_no"])))
    postures = Counter(f.posture for f in labelled if f.posture is not None)
    if len(postures) >= 2:
        unique = [p for p, k in postures.items() if k == 1]
        if unique:
            p = scene.rng.choice(sorted(unique))
            f = next(f for f in labelled if f.posture == p)
            question = pick(q["compare"]).format(p=_GERUND[p])
            answer = pick(a["compare"]).format(S=scene.names[f.index], p=_GERUND[p])
            out.append(QA("compare", f.index, question, _cap(answer)))
    return out


def write_conversation(scene: Scene) -> str:
    rng = scene.rng
    general = _scene_questions(scene)
    per_person: list[QA] = []
    for f in scene.facts.persons:
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
    described = scene.described
    if not described:
        return "Not really: no one is shown clearly enough to tell how they are holding their body."
    names = _join([scene.names[f.index] for f in described])
    return _cap(f"Only partly: the posture of {names} can be made out, the rest is unclear.")


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
    if f.stride:
        cues.append(("stride", None))
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
    specific: dict[str, str] = (scene.activity or {}).get("cues", {})
    ranked = sorted(_cues(f), key=lambda cue: cue[0] not in specific)
    out = []
    for key, obj in ranked:
        supported = _texts(specific.get(key), f, scene.caption_text)
        text = supported[0] if supported else generic.get(key)
        if not text or ("{obj}" in text and obj is None):
            continue
        out.append(text.format(obj=obj))
        if len(out) >= limit:
            break
    return out


def _next_step(scene: Scene, f: PoseFacts) -> str:
    g = _t()["generic"]["next"]
    supported = _texts((scene.activity or {}).get("next"), f, scene.caption_text)
    if supported:
        return scene.pick(supported)
    if f.stride:
        return scene.pick(g["moving"])
    return scene.pick(g.get(f.posture or "unknown", g["unknown"]))


def _advice(scene: Scene, f: PoseFacts) -> list[str]:
    g: dict[str, str] = _t()["generic"]["advice"]
    out = []
    supported = _texts((scene.activity or {}).get("advice"), f, scene.caption_text)
    if supported:
        out.append(scene.pick(supported))
    keys = [k for k, _ in _cues(f)] + ([f.posture] if f.posture else [])
    for key in ("lean_forward", "knees_bent", "arm_raised", "sitting", "crouching", "standing"):
        if key in keys and key in g:
            out.append(g[key])
            break
    return out or [g["default"]]


def _main_person(scene: Scene) -> PoseFacts | None:
    """The most telling person: known pose, most facts, then the biggest in the frame."""
    described = scene.described

    def size(f: PoseFacts) -> float:
        x1, y1, x2, y2 = scene.context.persons[f.index].box
        return (x2 - x1) * (y2 - y1)

    if not described:
        return None
    return max(described, key=lambda f: (len(_cues(f)) >= 2, size(f), -f.index))


def write_reasoning(scene: Scene) -> str:
    t = _t()["reasoning"]
    rng = scene.rng
    main = _main_person(scene)
    kinds: list[str] = []
    if main is not None:
        kinds += ["why", "next", "advice"]
    if len(scene.described) >= 3:
        kinds.append("group")
    if not kinds:
        return _scene_reasoning(scene)
    kind = rng.choice(kinds)
    if kind == "group":
        return _qa(scene.pick(t["questions"]["group"]), _group_answer(scene))
    assert main is not None
    name = scene.names[main.index]
    question = _cap(scene.pick(t["questions"][kind]).format(S=name))
    body = wording.describe_person(main, name, rng)
    parts = [_cap(scene.pick(t["open"]).format(obs=body[:1].lower() + body[1:]))]
    context = (
        scene.activity_sentence(name if scene.facts.count == 1 else None) or scene.scene_sentence()
    )
    if context:
        parts.append(context)
    reasons = _reasons(scene, main, 3 if kind == "why" else 2)
    if kind == "why":
        parts += reasons
        doing = (scene.activity or {}).get("doing")
        if doing:
            parts.append(f"Taken together, the pose is what you would expect from someone {doing}.")
        else:
            parts.append("Taken together, the pose matches what is going on around them.")
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
    key = "group_open" if n == scene.facts.count else "group_open_some"
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
    for f in described[:3]:
        lead = wording.phrase_posture(f, scene.names[f.index], scene.rng)
        if lead:
            parts.append(lead)
    parts.append(scene.pick(t["group_close"]))
    return " ".join(parts)


def _scene_reasoning(scene: Scene) -> str:
    """No one's pose is known: reason about the scene from what it shows."""
    question = "What can you tell about what the people in this scene are doing?"
    parts = [scene.count_sentences()]
    for s in (scene.activity_sentence(), scene.scene_sentence(), scene.objects_sentence()):
        if s:
            parts.append(s)
    parts.append(
        "Nobody is shown clearly enough to read their posture, so any guess about their "
        "movements rests on the setting rather than on their bodies."
    )
    return _qa(question, " ".join(parts))


def _qa(question: str, answer: str) -> str:
    return f"Question:\n{question}\n===\nAnswer:\n{answer}"


# -- entry point ------------------------------------------------------------------------------


def write(context: ImageContext, task: str, seed: int = 0) -> str:
    """The teacher's reply for one image and task: same context and seed, same text."""
    rng = random.Random(f"rules|{seed}|{context.image_id}|{task}")
    return task_type(task).load_writer()(Scene.of(context, rng))
