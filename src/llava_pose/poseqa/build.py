"""`llava-pose poseqa build`: PoseQA, questions whose answers come from the keypoints alone.

No teacher and no judge: every answer is a fact of the COCO keypoints that holds by a margin
(`facts`), about a person named in words a vision model can follow (`names`). Families:

* ``posture`` (yes/no): "Is the person on the left sitting?"; each clear posture gives one
  true and one false question (standing vs sitting).
* ``posture_choice``: "Which of these people is sitting?" when exactly one is.
* ``arm_raised`` (yes/no), ``which_arm`` (own left/right), ``higher_hand`` (own left/right),
  ``facing`` (camera/away/left/right), ``position`` (who is further left, people named by
  size or what they hold, never by position), ``count`` (how many have an arm raised, when
  every person of the image is clear).

Balance: yes/no families keep as many yes as no, and the own left/right families
(``which_arm``, ``higher_hand``: ``balanced: true`` in questions.yaml) as many of each correct
option; the surplus goes by a seeded hash of the question id, and a family with one answer
only is dropped whole. ``facing``, ``count``, ``posture_choice`` and ``position`` are kept as
they come: their skew is the world's (people face the camera, most raise no arm), and
balancing four directions would keep only four times the rarest. The manifest records per
family what was dropped for balance and the answer distribution, and `baseline` gives what a
guess really scores: chance (a uniform guess over the question's answers: 1/2, 1/k options,
1/(people+1) for a count), the best constant answer on the actual answers (a letter, an
option's text such as "towards the camera", "yes", "0"), the higher of the two as the
baseline, and the family flagged unbalanced when the constant beats chance by more than
UNBALANCED_MARGIN. Options are shuffled by a seeded RNG per question. Files have
LLaVA-Bench's shape plus ``answer`` and ``choices``; the same seed writes the same bytes.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import random
import string
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec
import yaml

from .. import __version__
from ..coco import filter_rule, read_split, select_images
from ..confidence import is_estimated, trusted
from ..config import option
from ..errors import EXIT_OK, ConfigError, InputError
from ..io import FileSet, read_bytes
from ..lock import hold
from ..names import NAME_MARGINS, Names, name_people
from ..records import ImageContext
from ..sources import ImageSource, PoseOptions, check, image_root, load, source_name
from .captions import posture_agreement
from .facts import MARGINS, ClearFacts, clear_facts

log = logging.getLogger("llava_pose")

QUESTIONS_FILE = "questions.jsonl"
MANIFEST_FILE = "manifest.json"
YES_NO = "yes/no"
CHOICE = "choice"
NUMBER = "number"
# Two people are asked "who is further left" only with box centres this far apart (fraction
# of the width; pose.py calls them side by side under 0.05).
POSITION_GAP = 0.15
MIN_KEYPOINTS = 5  # an image needs a person with this many labelled keypoints to be read
# A family is unbalanced when its best constant answer beats chance by more than this.
UNBALANCED_MARGIN = 0.05


@dataclass
class PoseQABuildConfig(ImageSource, PoseOptions):
    """Options of `llava-pose poseqa build`."""

    split: str = option("val2017", "COCO split to draw images from", metavar="NAME")
    out: str = option("poseqa", "output folder: questions.jsonl and manifest.json", path="dir")
    seed: int = option(0, "seed of the image pick, the yes/no balance and the option order")
    max_images: int | None = option(
        None,
        "read at most this many images, a seeded sample stable as it grows (default: all)",
        at_least=1,
    )
    check_images: bool = option(
        True, "check that every image file exists (--no-check-images for annotations only)"
    )


@functools.cache
def wording() -> dict[str, Any]:
    text = resources.files("llava_pose").joinpath("data/poseqa/questions.yaml").read_text("utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def families() -> list[str]:
    return list(wording()["families"])


def family_title(family: str) -> str:
    return str(wording()["families"].get(family, {}).get("title", family))


# -- pure: questions of one image ---------------------------------------------------------------


@dataclass(frozen=True)
class Draft:
    """A question before balance, option order and id."""

    family: str
    question: str
    answer_type: str
    answer: str  # yes/no, the correct option's text, or a number
    options: tuple[str, ...] = ()
    persons: tuple[int, ...] = ()
    fact: dict[str, Any] = field(default_factory=dict)


def _ask(family: str, **values: str) -> str:
    return str(wording()["families"][family]["ask"]).format(**values)


def _option(family: str, key: str) -> str:
    return str(wording()["families"][family]["options"][key])


def _centre(ctx: ImageContext, i: int) -> float:
    box = ctx.persons[i].box
    return (box[0] + box[2]) / 2


def image_drafts(ctx: ImageContext, crowd: bool = False) -> list[Draft]:
    """Every question PoseQA can ask about one image, in a fixed order. Pure.

    People a pose model placed are named from their confident joints only
    (`confidence.trusted`), and are never counted: a detector that misses someone would make
    the count wrong."""
    estimated = is_estimated(ctx)
    ctx = trusted(ctx)
    names = name_people(ctx, crowd)
    facts = [clear_facts(p, ctx.width, ctx.height) for p in ctx.persons]
    postures = wording()["postures"]
    out: list[Draft] = []
    for i, f in enumerate(facts):
        name = names.best(i)
        if name is None:
            continue
        out += _person_drafts(i, name, f, postures)
    out += _posture_choice(names, facts, postures, len(ctx.persons))
    out += _position(ctx, names)
    if not crowd and not estimated and ctx.persons and all(f.any_arm_up is not None for f in facts):
        n = sum(1 for f in facts if f.any_arm_up)
        out.append(
            Draft(
                "count",
                _ask("count"),
                NUMBER,
                str(n),
                persons=tuple(range(len(ctx.persons))),
                fact={"people": len(ctx.persons)},
            )
        )
    return out


def _person_drafts(i: int, name: str, f: ClearFacts, postures: dict[str, str]) -> list[Draft]:
    out: list[Draft] = []
    who = (i,)
    if f.posture is not None:
        other = "sitting" if f.posture == "standing" else "standing"
        fact = {"posture": f.posture}
        for asked, answer in ((f.posture, "yes"), (other, "no")):
            q = _ask("posture", name=name, posture=postures[asked])
            out.append(Draft("posture", q, YES_NO, answer, ("yes", "no"), who, fact))
    if f.any_arm_up is not None:
        answer = "yes" if f.any_arm_up else "no"
        q = _ask("arm_raised", name=name)
        out.append(
            Draft("arm_raised", q, YES_NO, answer, ("yes", "no"), who, {"arm_up": f.any_arm_up})
        )
    left, right = f.arm_up
    if {left, right} == {True, False}:
        side = "left" if left else "right"
        opts = (_option("which_arm", side), _option("which_arm", "right" if left else "left"))
        q = _ask("which_arm", name=name)
        out.append(Draft("which_arm", q, CHOICE, opts[0], opts, who, {"raised": side}))
    if f.higher_hand is not None:
        other = "right" if f.higher_hand == "left" else "left"
        opts = (_option("higher_hand", f.higher_hand), _option("higher_hand", other))
        q = _ask("higher_hand", name=name)
        out.append(Draft("higher_hand", q, CHOICE, opts[0], opts, who, {"higher": f.higher_hand}))
    if f.facing is not None:
        keys = [f.facing] + [k for k in ("camera", "away", "left", "right") if k != f.facing]
        opts = tuple(_option("facing", k) for k in keys)
        q = _ask("facing", name=name)
        out.append(Draft("facing", q, CHOICE, opts[0], opts, who, {"facing": f.facing}))
    return out


def _posture_choice(
    names: Names, facts: list[ClearFacts], postures: dict[str, str], n: int
) -> list[Draft]:
    """ "Which of these people is sitting?" when everyone is named and exactly one is."""
    if n < 2 or len(names.positional) != n or any(f.posture is None for f in facts):
        return []
    out = []
    for posture in ("sitting", "standing"):
        who = [i for i, f in enumerate(facts) if f.posture == posture]
        if len(who) != 1:
            continue
        (i,) = who
        opts = (names.positional[i], *(names.positional[j] for j in range(n) if j != i))
        q = _ask("posture_choice", posture=postures[posture])
        out.append(
            Draft(
                "posture_choice",
                q,
                CHOICE,
                opts[0],
                opts,
                (i, *(j for j in range(n) if j != i)),
                {"posture": posture},
            )
        )
    return out


def _position(ctx: ImageContext, names: Names) -> list[Draft]:
    """ "Who is further to the left?" between two people named by size or what they hold."""
    named = sorted(names.other)
    out = []
    for a_pos, a in enumerate(named):
        for b in named[a_pos + 1 :]:
            ca, cb = _centre(ctx, a), _centre(ctx, b)
            if abs(ca - cb) < POSITION_GAP:
                continue
            left, right = (a, b) if ca < cb else (b, a)
            opts = (names.other[left], names.other[right])
            out.append(
                Draft("position", _ask("position"), CHOICE, opts[0], opts, (left, right), {})
            )
    return out


# -- pure: balance, option order, ids, text -----------------------------------------------------


def _rank(seed: int, qid: str) -> bytes:
    return hashlib.sha256(f"{seed}:{qid}".encode()).digest()


def question_text(question: str, answer_type: str, choices: list[str] | None) -> str:
    instructions = wording()["instructions"]
    if answer_type == CHOICE:
        assert choices is not None
        lines = [f"({string.ascii_uppercase[k]}) {c}" for k, c in enumerate(choices)]
        return "\n".join([question, *lines, instructions["choice"]])
    key = "yes_no" if answer_type == YES_NO else "number"
    return f"{question}\n{instructions[key]}"


def finalize(items: list[tuple[ImageContext, list[Draft]]], seed: int) -> list[dict[str, Any]]:
    """Question lines: ids, shuffled options, balanced families balanced. Pure."""
    return balance(question_rows(items, seed), seed)


def question_rows(items: list[tuple[ImageContext, list[Draft]]], seed: int) -> list[dict[str, Any]]:
    """Question lines before balance: ids and shuffled options. Pure."""
    rows: list[dict[str, Any]] = []
    for ctx, drafts in items:
        seen: Counter[str] = Counter()
        for d in drafts:
            qid = f"{ctx.image_id}-{d.family}-{seen[d.family]}"
            seen[d.family] += 1
            choices: list[str] | None = list(d.options) if d.answer_type == YES_NO else None
            answer = d.answer
            if d.answer_type == CHOICE:
                choices = list(d.options)
                random.Random(int.from_bytes(_rank(seed, qid)[:8], "big")).shuffle(choices)
                answer = string.ascii_uppercase[choices.index(d.answer)]
            rows.append(
                {
                    "question_id": qid,
                    "image": ctx.image,
                    "text": question_text(d.question, d.answer_type, choices),
                    "category": d.family,
                    "answer": answer,
                    "choices": choices,
                    "answer_type": d.answer_type,
                    "image_id": ctx.image_id,
                    "persons": list(d.persons),
                    "fact": d.fact,
                }
            )
    return rows


def correct_option(row: dict[str, Any]) -> str:
    """The correct answer as said: the option's text of a choice, else the answer itself."""
    if row["answer_type"] == CHOICE and row.get("choices"):
        k = string.ascii_uppercase.index(row["answer"])
        if k < len(row["choices"]):
            return str(row["choices"][k])
    return str(row["answer"])


def _balanced_answers(family: str, answer_type: str) -> list[str] | None:
    """The answers a family is balanced over: yes and no, the options of a ``balanced``
    family (questions.yaml), else None (kept as it comes)."""
    if answer_type == YES_NO:
        return ["yes", "no"]
    spec = wording()["families"].get(family, {})
    if answer_type == CHOICE and spec.get("balanced"):
        return [str(o) for o in spec["options"].values()]
    return None


def balance(rows: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """As many of each answer in each balanced family (yes/no, and ``balanced`` choice
    families by correct option): the surplus with the highest seeded hash goes. Pure."""
    drop: set[str] = set()
    by_family: dict[str, dict[str, list[str]]] = {}
    over: dict[str, list[str]] = {}
    for r in rows:
        values = _balanced_answers(r["category"], r["answer_type"])
        if values is None:
            continue
        over[r["category"]] = values
        by_family.setdefault(r["category"], {}).setdefault(correct_option(r), []).append(
            r["question_id"]
        )
    for family, answers in by_family.items():
        keep = min(len(answers.get(v, [])) for v in over[family])
        for ids in answers.values():
            drop.update(sorted(ids, key=lambda q: _rank(seed, q))[keep:])
    return [r for r in rows if r["question_id"] not in drop]


def chance(row: dict[str, Any]) -> float:
    """The chance of a uniform guess: 1/2, 1/k options, 1/(people+1) for a count."""
    if row["answer_type"] == CHOICE:
        return 1 / len(row["choices"])
    if row["answer_type"] == NUMBER:
        return 1 / (int(row["fact"].get("people", 1)) + 1)
    return 0.5


@dataclass(frozen=True)
class Baseline:
    """What answering without looking scores on one family."""

    n: int
    chance: float  # expected accuracy of a uniform guess over each question's answers
    constant: str  # the constant answer that scores best: a letter, an option's text, ...
    constant_accuracy: float

    @property
    def baseline(self) -> float:
        """The score to beat: the higher of chance and the best constant answer."""
        return max(self.chance, self.constant_accuracy)

    @property
    def unbalanced(self) -> bool:
        return self.constant_accuracy > self.chance + UNBALANCED_MARGIN


def baseline(rows: list[dict[str, Any]]) -> Baseline:
    """Chance and the best constant answer of one family's questions. A constant is a letter,
    "yes"/"no" or a number, or an option's text ("towards the camera"), which the answer
    parser reads as whichever letter that option has. A tie goes to an option's text (the
    skew is in what is asked, not in the shuffled letters), then to the first in order. Pure."""
    texts = Counter(correct_option(r) for r in rows if r["answer_type"] == CHOICE)
    answers = Counter(str(r["answer"]) for r in rows)
    candidates = [(n, 1, a) for a, n in texts.items()] + [(n, 0, a) for a, n in answers.items()]
    n, _, constant = min(candidates, key=lambda c: (-c[0], -c[1], c[2]))
    return Baseline(len(rows), sum(chance(r) for r in rows) / len(rows), constant, n / len(rows))


# -- the run ------------------------------------------------------------------------------------


class _Ann(msgspec.Struct):
    image_id: int
    iscrowd: int = 0


class _Keypoints(msgspec.Struct):
    annotations: list[_Ann]


def crowd_images(root: Path, split: str) -> set[int]:
    """Images with a crowd region of people: nobody there can be counted or ordered."""
    path = root / "annotations" / f"person_keypoints_{split}.json"
    try:
        data = msgspec.json.decode(read_bytes(path), type=_Keypoints)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise InputError(path, f"unreadable ({e})") from None
    return {a.image_id for a in data.annotations if a.iscrowd}


def run_build(cfg: PoseQABuildConfig) -> int:
    if not (cfg.coco or cfg.contexts or cfg.images):
        raise ConfigError(
            "--coco: required (the COCO root holding annotations/ and the images), or "
            "--contexts FILE, or --images DIR"
        )
    root = image_root(cfg)
    if cfg.contexts or cfg.images:  # no crowd regions: an estimated image is never counted
        loaded_contexts = load(
            cfg, cfg, seed=cfg.seed, max_images=cfg.max_images, min_keypoints=MIN_KEYPOINTS
        )
        crowd: set[int] = set()
        source = Path(cfg.contexts or cfg.images or "")
        contexts = loaded_contexts  # `load` has sampled them
    else:
        check(cfg)
        assert root is not None
        loaded_contexts = read_split(
            root, cfg.split, min_keypoints=MIN_KEYPOINTS, check_images=cfg.check_images
        ).contexts
        crowd = crowd_images(root, cfg.split)
        source = root / "annotations" / f"person_keypoints_{cfg.split}.json"
        contexts = select_images(loaded_contexts, cfg.max_images, cfg.seed)
    contexts = sorted(contexts, key=lambda c: c.image_id)
    items = [(c, image_drafts(c, c.image_id in crowd)) for c in contexts]
    asked = question_rows(items, cfg.seed)
    rows = balance(asked, cfg.seed)
    if not rows:
        raise InputError(
            source,
            f"no PoseQA question could be asked about the {len(contexts)} images read: "
            "no person's pose is clear enough (try more images)",
        )
    by_image = {c.image: c for c in contexts}
    agreement = posture_agreement(rows, by_image)
    out = Path(cfg.out)
    hold(out, "poseqa build", folder=True)
    outputs = FileSet(out, MANIFEST_FILE, {"benchmark": "PoseQA", "complete": False})
    outputs.jsonl(QUESTIONS_FILE, rows)
    manifest = {
        "benchmark": "PoseQA",
        "llava_pose_version": __version__,
        "seed": cfg.seed,
        "split": cfg.split,
        "image_root": str(root.resolve()) if root is not None else None,
        "source": source_name(cfg),
        "selection": {
            "rule": filter_rule(MIN_KEYPOINTS, 1)
            + "; every question only where facts.py and names.py margins hold",
            "images_loaded": len(loaded_contexts),
            "images_read": len(contexts),
            "images_with_questions": len({r["image"] for r in rows}),
            "max_images": cfg.max_images,
            "order": "coco.select_images (blake2b of seed:image_id), prefix-stable",
            "crowd_images": len(crowd & {c.image_id for c in contexts}),
        },
        "margins": {**MARGINS, **NAME_MARGINS, "POSITION_GAP": POSITION_GAP},
        "families": family_summary(rows, asked),
        "captions_agreement": agreement.as_dict(),
        "files": {QUESTIONS_FILE: outputs.sha256[QUESTIONS_FILE]},
    }
    try:
        outputs.json(MANIFEST_FILE, manifest)
        outputs.commit()
    finally:
        outputs.discard()
    print(
        f"wrote {len(rows)} questions about {manifest['selection']['images_with_questions']} "
        f"of {len(contexts)} images to {out}"
    )
    for family, s in manifest["families"].items():
        dropped = f" ({s['dropped_for_balance']} dropped for balance)"
        if not s["questions"]:
            print(f"  {family}: 0 questions{dropped}")
            continue
        flag = ", unbalanced" if s["unbalanced"] else ""
        print(
            f"  {family}: {s['questions']} questions{dropped if s['dropped_for_balance'] else ''}"
            f", chance {s['chance']:.3f}, best constant {s['best_constant']['answer']!r} "
            f"{s['best_constant']['accuracy']:.3f}{flag}"
        )
    print(f"  {agreement.line()}")
    return EXIT_OK


def family_summary(
    rows: list[dict[str, Any]], asked: list[dict[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """Per family, in the report's order: questions kept, those dropped for balance (of
    ``asked``, the questions before balance), the answers (letters, and for a choice the
    correct options' texts), chance, the best constant answer, the baseline and whether the
    family is unbalanced. A family balanced away entirely has its drop count only."""
    out: dict[str, dict[str, Any]] = {}
    asked_per = Counter(r["category"] for r in asked or rows)
    for family in families():
        mine = [r for r in rows if r["category"] == family]
        dropped = asked_per[family] - len(mine)
        if not mine:
            if dropped:
                out[family] = {"questions": 0, "dropped_for_balance": dropped}
            continue
        b = baseline(mine)
        out[family] = {
            "questions": len(mine),
            "dropped_for_balance": dropped,
            "answers": dict(sorted(Counter(r["answer"] for r in mine).items())),
            **(
                {"correct_options": dict(sorted(Counter(map(correct_option, mine)).items()))}
                if mine[0]["answer_type"] == CHOICE
                else {}
            ),
            "chance": round(b.chance, 6),
            "best_constant": {"answer": b.constant, "accuracy": round(b.constant_accuracy, 6)},
            "baseline": round(b.baseline, 6),
            "unbalanced": b.unbalanced,
        }
    return out
