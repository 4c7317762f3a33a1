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

Balance: yes/no families keep as many yes as no (the surplus dropped by a seeded hash of the
question id), and options are shuffled by a seeded RNG per question, so chance is known:
1/2 for yes/no, 1/k for k options, 1/(people+1) for a count. Files have LLaVA-Bench's shape
plus ``answer`` and ``choices``; the same seed writes the same bytes.
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
from ..config import option
from ..errors import EXIT_OK, ConfigError, InputError
from ..io import read_bytes, write_json, write_jsonl
from ..lock import hold
from ..records import ImageContext
from .captions import posture_agreement
from .facts import MARGINS, ClearFacts, clear_facts
from .names import NAME_MARGINS, Names, name_people

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


@dataclass
class PoseQABuildConfig:
    """Options of `llava-pose poseqa build`."""

    coco: str | None = option(
        None, "COCO root holding annotations/ and the image folders (required)", metavar="ROOT"
    )
    split: str = option("val2017", "COCO split to draw images from", metavar="NAME")
    out: str = option("poseqa", "output folder: questions.jsonl and manifest.json")
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
    """Every question PoseQA can ask about one image, in a fixed order. Pure."""
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
    if not crowd and ctx.persons and all(f.any_arm_up is not None for f in facts):
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
    """Question lines: ids, shuffled options, yes/no balanced per family. Pure."""
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
    return balance(rows, seed)


def balance(rows: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """As many yes as no in each yes/no family: the surplus with the highest seeded hash goes."""
    drop: set[str] = set()
    by_family: dict[str, dict[str, list[str]]] = {}
    for r in rows:
        if r["answer_type"] == YES_NO:
            by_family.setdefault(r["category"], {}).setdefault(r["answer"], []).append(
                r["question_id"]
            )
    for answers in by_family.values():
        keep = min(len(answers.get("yes", [])), len(answers.get("no", [])))
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


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_build(cfg: PoseQABuildConfig) -> int:
    if not cfg.coco:
        raise ConfigError("--coco: required (the COCO root holding annotations/ and the images)")
    root = Path(cfg.coco)
    loaded = read_split(root, cfg.split, min_keypoints=MIN_KEYPOINTS, check_images=cfg.check_images)
    crowd = crowd_images(root, cfg.split)
    contexts = select_images(loaded.contexts, cfg.max_images, cfg.seed)
    contexts = sorted(contexts, key=lambda c: c.image_id)
    items = [(c, image_drafts(c, c.image_id in crowd)) for c in contexts]
    rows = finalize(items, cfg.seed)
    if not rows:
        raise InputError(
            root / "annotations" / f"person_keypoints_{cfg.split}.json",
            f"no PoseQA question could be asked about the {len(contexts)} images read: "
            "no person's pose is clear enough (try more images)",
        )
    by_image = {c.image: c for c in contexts}
    agreement = posture_agreement(rows, by_image)
    out = Path(cfg.out)
    hold(out, "poseqa build", folder=True)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / QUESTIONS_FILE, rows)
    manifest = {
        "benchmark": "PoseQA",
        "llava_pose_version": __version__,
        "seed": cfg.seed,
        "split": cfg.split,
        "image_root": str(root.resolve()),
        "selection": {
            "rule": filter_rule(MIN_KEYPOINTS, 1)
            + "; every question only where facts.py and names.py margins hold",
            "images_loaded": len(loaded.contexts),
            "images_read": len(contexts),
            "images_with_questions": len({r["image"] for r in rows}),
            "max_images": cfg.max_images,
            "order": "coco.select_images (blake2b of seed:image_id), prefix-stable",
            "crowd_images": len(crowd & {c.image_id for c in contexts}),
        },
        "margins": {**MARGINS, **NAME_MARGINS, "POSITION_GAP": POSITION_GAP},
        "families": family_summary(rows),
        "captions_agreement": agreement.as_dict(),
        "files": {QUESTIONS_FILE: _digest(out / QUESTIONS_FILE)},
    }
    write_json(out / MANIFEST_FILE, manifest)
    print(
        f"wrote {len(rows)} questions about {manifest['selection']['images_with_questions']} "
        f"of {len(contexts)} images to {out}"
    )
    for family, s in manifest["families"].items():
        print(f"  {family}: {s['questions']} questions, chance {s['chance']:.3f}")
    print(f"  {agreement.line()}")
    return EXIT_OK


def family_summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Questions, answer counts and chance level per family, in the report's order."""
    out: dict[str, dict[str, Any]] = {}
    for family in families():
        mine = [r for r in rows if r["category"] == family]
        if not mine:
            continue
        out[family] = {
            "questions": len(mine),
            "answers": dict(sorted(Counter(r["answer"] for r in mine).items())),
            "chance": round(sum(chance(r) for r in mine) / len(mine), 6),
        }
    return out
