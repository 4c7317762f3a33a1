"""The benchmark's files, in LLaVA-Bench's shapes, read and checked in one place.

A benchmark folder (``llava-pose bench build --out ehpaub/``) holds:

* ``questions.jsonl``   ``{"question_id", "image", "text", "category"}``; category is ``conv``,
  ``detail`` or ``complex`` (LLaVA-Bench's names), image is relative to the image root.
* ``answers_ref.jsonl`` the teacher's reference answers ``{"question_id", "text", "category",
  "answer_id", "model_id", "metadata"}``.
* ``context.jsonl``     what the judge reads: ``{"id", "image", "captions", "instances"}`` where an
  instance is ``{"category", "bbox"}`` (x1, y1, x2, y2 in [0, 1]) and a person's instance also
  carries ``"keypoints"``: 17 ``[x, y, v]``. LLaVA's own scripts read it (they ignore keypoints).
* ``manifest.json``     seed, split, COCO root, teacher, selection rule, versions, file hashes.

LLaVA-Bench COCO's own files (``qa90_questions.jsonl``, ``qa90_gpt4_answer.jsonl``,
``caps_boxes_coco2014_val_80.jsonl``) have the same shapes and load through the same functions;
LLaVA-Bench in-the-wild's context spells ``caption`` (a string or a list), which is accepted too.

Every problem is an `InputError` naming the file, the line and the field; nothing is dropped
without a word. An ``image`` must stay inside the image root (relative, no ``..`` out of it, no
NUL; `paths`): ``bench answer`` reads the file and sends it to an API, so a crafted questions
file must not be able to point it at ``~/.ssh/id_rsa``.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from ..coco import read_jsonl_numbered
from ..config import option
from ..errors import ConfigError, InputError
from ..images import MAX_IMAGE_SIDE
from ..io import read_bytes, read_json, read_jsonl
from ..paths import join_inside, path_problem
from ..records import NUM_KEYPOINTS, ImageContext, Obj, Person
from ..tasks import category_titles

log = logging.getLogger("llava_pose")

QUESTIONS_FILE = "questions.jsonl"
REFERENCE_FILE = "answers_ref.jsonl"
CONTEXT_FILE = "context.jsonl"
MANIFEST_FILE = "manifest.json"

# Category -> heading in reports; the categories and their titles are the task registry's.
CATEGORY_TITLES: dict[str, str] = category_titles()

QuestionId = int | str


class Question(msgspec.Struct, frozen=True):
    question_id: QuestionId
    image: str
    text: str
    category: str


class Answer(msgspec.Struct, frozen=True):
    """One line of an answers file (a model's, or the reference)."""

    question_id: QuestionId
    text: str
    answer_id: str | int | None = None
    model_id: str | None = None
    category: str | None = None
    prompt: str | None = None
    metadata: dict[str, Any] = {}


class Instance(msgspec.Struct, frozen=True):
    category: str
    bbox: tuple[float, float, float, float]
    keypoints: list[tuple[float, float, int]] | None = None


class ContextLine(msgspec.Struct, frozen=True):
    image: str
    captions: list[str] | None = None
    caption: str | list[str] | None = None  # LLaVA-Bench in-the-wild
    instances: list[Instance] = []
    id: str | int | None = None
    image_id: int | None = None
    width: int = 0
    height: int = 0


def qid_key(question_id: QuestionId) -> str:
    """Ids match across files whether written as 7 or "7"."""
    return str(question_id)


def _line_numbers(path: Path) -> list[int]:
    """1-based line number of each non-empty line, the rows `read_jsonl` returns."""
    return [n for n, line in enumerate(read_bytes(path).splitlines(), 1) if line.strip()]


def _unique(path: Path, ids: list[QuestionId]) -> None:
    lines = _line_numbers(path)
    seen: dict[str, int] = {}
    for i, qid in enumerate(ids):
        key = qid_key(qid)
        if key in seen:
            raise InputError(
                path,
                f"duplicate question_id {qid!r} (first on line {seen[key]})",
                field=f"line {lines[i]}",
            )
        seen[key] = lines[i]


def read_questions(path: str | Path) -> list[Question]:
    path = Path(path)
    questions = read_jsonl(path, Question)
    if not questions:
        raise InputError(path, "no questions in the file")
    _unique(path, [q.question_id for q in questions])
    for i, q in enumerate(questions):
        _check_image(path, q.image, i)
    return questions


def _check_image(path: Path, image: str, row: int) -> None:
    """An ``image`` that leaves the image root is an input error naming its line."""
    problem = path_problem(image)
    if problem is not None:
        line = _line_numbers(path)[row]
        raise InputError(
            path, f"{problem}; refusing to read outside the image root", f"line {line}: image"
        )


def read_answers(path: str | Path) -> list[Answer]:
    path = Path(path)
    answers = read_jsonl(path, Answer)
    _unique(path, [a.question_id for a in answers])
    return answers


def _image_id(line: ContextLine) -> int:
    if line.image_id is not None:
        return line.image_id
    for text in (str(line.id or ""), Path(line.image).stem):
        digits = re.findall(r"\d+", text)
        if digits:
            return int(digits[-1])
    return 0


def to_image_context(line: ContextLine) -> ImageContext:
    """A context line as the `ImageContext` the renderers of `context` take. Instances without
    keypoints (every object, and LLaVA's persons) stay objects, so their order is kept."""
    if line.captions is not None:
        captions = tuple(line.captions)
    elif isinstance(line.caption, list):
        captions = tuple(line.caption)
    else:
        captions = (line.caption,) if line.caption else ()
    objects: list[Obj] = []
    persons: list[Person] = []
    for inst in line.instances:
        if inst.keypoints is not None:
            persons.append(Person(box=inst.bbox, keypoints=tuple(inst.keypoints)))
        else:
            objects.append(Obj(category=inst.category, box=inst.bbox))
    return ImageContext(
        image_id=_image_id(line),
        image=line.image,
        width=line.width,
        height=line.height,
        captions=captions,
        objects=tuple(objects),
        persons=tuple(persons),
    )


def context_line(ctx: ImageContext, image: str) -> dict[str, Any]:
    """The LLaVA-shaped context line of one image (objects first, then persons, as rendered)."""
    instances: list[dict[str, Any]] = [
        {"category": o.category, "bbox": list(o.box)} for o in ctx.objects
    ]
    instances += [
        {"category": "person", "bbox": list(p.box), "keypoints": [list(k) for k in p.keypoints]}
        for p in ctx.persons
    ]
    return {
        "id": f"{ctx.image_id:012d}",
        "image": image,
        "image_id": ctx.image_id,
        "width": ctx.width,
        "height": ctx.height,
        "captions": list(ctx.captions),
        "instances": instances,
    }


def read_context(path: str | Path) -> dict[str, ImageContext]:
    """Contexts by the ``image`` field, which questions refer to."""
    path = Path(path)
    out: dict[str, ImageContext] = {}
    for row, (n, line) in enumerate(read_jsonl_numbered(path, ContextLine)):
        _check_image(path, line.image, row)
        for side, value in (("width", line.width), ("height", line.height)):
            if not 0 <= value <= MAX_IMAGE_SIDE:  # 0: not given (LLaVA's files)
                raise InputError(
                    path, f"must be 1 to {MAX_IMAGE_SIDE:,} px, got {value:,}", f"line {n}: {side}"
                )
        for j, inst in enumerate(line.instances):
            if inst.keypoints is not None and len(inst.keypoints) != NUM_KEYPOINTS:
                raise InputError(
                    path,
                    f"expected {NUM_KEYPOINTS} keypoints, got {len(inst.keypoints)}",
                    field=f"line {n}: instances[{j}].keypoints",
                )
        if line.image in out:
            raise InputError(path, f"duplicate image {line.image!r}", field=f"line {n}")
        out[line.image] = to_image_context(line)
    return out


def image_root(given: str | None, folder: Path | None, manifest: dict[str, Any]) -> Path:
    """The root the questions' images are read under: `given` (``--image-root``, named by the
    user), else the manifest's ``image_root`` only when it lies inside the benchmark folder.

    A benchmark folder is data and is passed between people: a manifest naming ``/home/you``
    with a question whose image is ``.ssh/id_rsa`` must not make this command read that file
    and send it to an API. A root inside the folder is resolved (links followed) and every
    image must then resolve inside it too (`bench answer` checks)."""
    if given:
        return Path(given)
    root = manifest.get("image_root")
    if not root:
        raise ConfigError(
            "--image-root: required (no manifest.json with the image root beside the questions)"
        )
    where = (folder or Path(".")) / MANIFEST_FILE
    if not isinstance(root, str):
        raise InputError(where, "must be a path", field="image_root")
    inside = folder.resolve() if folder is not None else None
    resolved = (folder / root).resolve() if folder is not None else Path(root)
    if inside is None or not resolved.is_relative_to(inside):
        raise InputError(
            where,
            f"{root} is outside the benchmark folder, and a benchmark folder may come from "
            f"anyone: name the image root yourself with --image-root {root}",
            field="image_root",
        )
    return resolved


def existing_images(root: Path, questions: Sequence[Any], source: Path) -> list[Path]:
    """The image file of each question (`.image`, `.question_id`) of `source` under `root`
    (`paths.join_inside`: inside it, folded); a missing one is an input error naming the
    first and how many more, before any model is asked (or lmms-eval finds out later)."""
    fields = [f"question_id {q.question_id!r}: image" for q in questions]
    paths = [
        join_inside(root, q.image, source=source, field=field)
        for q, field in zip(questions, fields, strict=True)
    ]
    missing = [k for k, path in enumerate(paths) if not path.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(
            source,
            f"image file not found: {paths[missing[0]]}{more}; is --image-root {root} right?",
            field=fields[missing[0]],
        )
    return paths


@dataclass(kw_only=True)  # keyword-only: it mixes into configs with positional fields (view)
class ManifestCheck:
    """``--allow-modified``: read a benchmark whose files no longer match the sha256 its
    manifest recorded at build (a mixin of every command that reads a benchmark folder)."""

    allow_modified: bool = option(
        False,
        "read a benchmark whose files differ from the sha256 in its manifest.json (edited "
        "after it was built); the report then says so",
    )


def modified_files(folder: Path, manifest: dict[str, Any], names: Iterable[str]) -> list[str]:
    """The files among `names` (in `folder`) whose sha256 differs from what `manifest`
    recorded at build, or that are gone; a file the manifest does not list is not judged."""
    recorded = manifest.get("files")
    if not isinstance(recorded, dict):
        return []
    changed = []
    for name in names:
        want = recorded.get(name)
        if want is None:
            continue
        path = folder / name
        if not path.is_file() or hashlib.sha256(read_bytes(path)).hexdigest() != want:
            changed.append(name)
    return changed


def check_manifest(
    folder: Path | None, manifest: dict[str, Any], names: Iterable[str], allow: bool
) -> list[str]:
    """`modified_files`, refused with one line unless `allow` (``--allow-modified``).

    Why: scores are only the benchmark's if its questions, answers and references are the
    ones it was built with. Flipping a few answers in ``questions.jsonl`` raised a constant
    model from 14/22 to 18/22 without a word."""
    if folder is None:
        return []
    changed = modified_files(folder, manifest, names)
    if changed and not allow:
        raise InputError(
            folder / MANIFEST_FILE,
            f"{', '.join(changed)} no longer match{'es' if len(changed) == 1 else ''} the "
            "sha256 recorded when the benchmark was built (edited since?): scores on it "
            "would not be the benchmark's. Rebuild it, or pass --allow-modified to read it "
            "anyway (the report then says so)",
            field="files",
        )
    if changed:
        log.info(
            "%s: %s differ from the benchmark as built; read under --allow-modified",
            folder,
            ", ".join(changed),
        )
    return changed


@dataclass
class Bench:
    """A loaded benchmark: questions in file order, contexts by image, references by id."""

    questions: list[Question]
    questions_path: Path
    contexts: dict[str, ImageContext]
    context_path: Path | None
    reference: dict[str, Answer]
    reference_path: Path | None
    manifest: dict[str, Any]
    folder: Path | None
    modified: list[str] = field(default_factory=list)  # read under --allow-modified

    def by_id(self) -> dict[str, Question]:
        return {qid_key(q.question_id): q for q in self.questions}

    def categories(self) -> list[str]:
        """Categories in order of first appearance (conv, detail, complex for ours)."""
        return list(dict.fromkeys(q.category for q in self.questions))


def load_bench(
    bench: str | Path | None,
    *,
    questions: str | Path | None = None,
    context: str | Path | None = None,
    reference: str | Path | None = None,
    need_context: bool = True,
    need_reference: bool = True,
    allow_modified: bool = False,
) -> Bench:
    """A benchmark folder, or LLaVA-Bench-style files named one by one (those win). The
    folder's files that are read are checked against its manifest (`check_manifest`)."""
    folder = Path(bench) if bench else None
    if folder is not None and not folder.is_dir():
        if folder.is_file() and questions is None:  # --bench qa90_questions.jsonl
            questions, folder = folder, None
        else:
            raise InputError(folder, "benchmark folder not found (run `llava-pose bench build`)")

    def pick(given: str | Path | None, name: str, needed: bool) -> Path | None:
        if given:
            return Path(given)
        if folder is not None:
            return folder / name
        if needed:
            flag = {QUESTIONS_FILE: "--questions", CONTEXT_FILE: "--context"}.get(
                name, "--reference"
            )
            raise ConfigError(f"no --bench folder given: pass --bench DIR or {flag} FILE")
        return None

    q_path = pick(questions, QUESTIONS_FILE, True)
    assert q_path is not None
    c_path = pick(context, CONTEXT_FILE, need_context)
    r_path = pick(reference, REFERENCE_FILE, need_reference)
    qs = read_questions(q_path)
    manifest: dict[str, Any] = {}
    if folder is not None and (folder / MANIFEST_FILE).is_file():
        manifest = read_json(folder / MANIFEST_FILE)
    read = [p for p in (q_path, c_path if need_context else None) if p is not None]
    read += [r_path] if r_path is not None and need_reference else []
    modified = check_manifest(
        folder,
        manifest,
        [p.name for p in read if folder is not None and p.parent == folder],
        allow_modified,
    )
    contexts = read_context(c_path) if c_path is not None and need_context else {}
    q_lines = _line_numbers(q_path)
    if need_context:
        for n, q in zip(q_lines, qs, strict=True):
            if q.image not in contexts:
                raise InputError(
                    q_path, f"image {q.image!r} has no line in {c_path}", field=f"line {n}: image"
                )
    ref: dict[str, Answer] = {}
    if r_path is not None and need_reference:
        answers = read_answers(r_path)
        ref = {qid_key(a.question_id): a for a in answers}
        known = {qid_key(q.question_id) for q in qs}
        for a in answers:
            if qid_key(a.question_id) not in known:
                raise InputError(
                    r_path, f"question_id {a.question_id!r} is not in {q_path}", "question_id"
                )
        missing = [q.question_id for q in qs if qid_key(q.question_id) not in ref]
        if missing:
            raise InputError(
                r_path,
                f"no reference answer for {len(missing)} question(s), e.g. question_id "
                f"{missing[0]!r}: the judge needs one per question",
            )
    return Bench(qs, q_path, contexts, c_path, ref, r_path, manifest, folder, modified)


def answer_files(given: Iterable[str | Path]) -> list[Path]:
    """The answers files named: files as given, folders as the answers files in them
    (``*.jsonl``, sorted; not `bench answer`'s ``*.failed.jsonl``). Every command that reads
    answers takes both, so ``--answers answers/`` works wherever ``answers/*.jsonl`` does."""
    out: list[Path] = []
    for name in given:
        path = Path(name)
        if path.is_dir():
            found = sorted(
                p for p in path.glob("*.jsonl") if p.is_file() and not p.name.endswith(FAILED)
            )
            if not found:
                raise InputError(path, "no answers files (*.jsonl) in the folder")
            out += found
        elif path.is_file():
            out.append(path)
        else:
            raise InputError(path, "answers file or folder not found")
    return out


# What `bench answer` calls the questions that failed, beside its answers file.
FAILED = ".failed.jsonl"


@dataclass
class AnswerSet:
    """One model's answers checked against the benchmark."""

    path: Path
    model_id: str
    answers: dict[str, Answer]
    missing: list[QuestionId]


def load_answers(path: str | Path, bench: Bench) -> AnswerSet:
    """A model's answers: duplicates and unknown ids are errors, missing ones are listed."""
    path = Path(path)
    answers = read_answers(path)
    known = bench.by_id()
    lines = _line_numbers(path)
    for n, a in zip(lines, answers, strict=True):
        if qid_key(a.question_id) not in known:
            raise InputError(
                path,
                f"question_id {a.question_id!r} is not in {bench.questions_path} "
                "(answers of another benchmark?)",
                field=f"line {n}",
            )
    by_id = {qid_key(a.question_id): a for a in answers}
    missing = [q.question_id for q in bench.questions if qid_key(q.question_id) not in by_id]
    ids = Counter(a.model_id for a in answers if a.model_id)
    model_id = ids.most_common(1)[0][0] if ids else path.stem
    return AnswerSet(path, model_id, by_id, missing)
