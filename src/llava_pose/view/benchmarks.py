"""Benchmark folders as site data: one page per image, one row per question.

E-HPAUB: the question, the reference answer, each model's answer and each judge's scores and
explanation; sorts by the score gap (reference minus model) of any judge and model. PoseQA:
the question, its gold answer and each model's answer, read by PoseQA's own parser and marked
right or wrong.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import msgspec

from ..coco import image_id_of
from ..io import read_json, read_jsonl
from .model import Facet, Row, SiteData, page, snippet

if TYPE_CHECKING:
    from ..poseqa.files import PoseQuestion
    from .config import ViewConfig

log = logging.getLogger("llava_pose")

NO_ANSWER = "no answer"
UNREVIEWED = "unreviewed"
MAX_GAP = "gap:any"


def _order(questions: list[Any]) -> list[str]:
    """Image keys in order of first question."""
    return list(dict.fromkeys(q.image for q in questions))


def _page_for(key: str, contexts: Any) -> dict[str, Any]:
    ctx = contexts(key)
    return page(key, ctx, image_id_of(PurePosixPath(key).name))


MODIFIED = "modified: {} differ from the benchmark as built (read under --allow-modified)"


def _image_root(cfg: ViewConfig, manifest: dict[str, Any]) -> Path | None:
    root = cfg.image_root or cfg.coco or manifest.get("image_root")
    return Path(root) if root else None


# -- E-HPAUB ------------------------------------------------------------------------------------


def _review_details(source: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """Model -> question id -> review line (scores, status, explanation) of one judge's
    folder, the files `bench report` reads (already checked by `read_judge`)."""
    from ..ehpaub.files import qid_key
    from ..ehpaub.judge import unscored_path
    from ..ehpaub.report import _review_files

    out: dict[str, dict[str, dict[str, Any]]] = {}
    for path in _review_files(source):
        lines: list[dict[str, Any]] = []
        for p in (path, unscored_path(path)):
            if p.is_file():
                lines += read_jsonl(p)
        model = next((str(x["model_id"]) for x in lines if x.get("model_id")), None) or path.stem
        if model in out:
            model = f"{model} ({path.stem})"
        out[model] = {qid_key(x["question_id"]): x for x in lines}
    return out


def _review_home(source: Path) -> Path:
    """The folder that holds a review folder (or a review file's folder): where `bench judge`
    is run, beside the answers folder it was given."""
    folder = source if source.is_dir() else source.parent
    return folder.resolve().parent


def reviewed_answers(source: Path, named: str) -> Path | None:
    """The answers file a review line names (its ``answers`` field), when it is a ``.jsonl``
    file inside `_review_home` once links are followed; else None. The field is data: a
    review folder from elsewhere must not make the viewer read (and publish in an export) a
    file the user never named, so anything else is read only through --answers."""
    path = Path(named)
    if path.suffix != ".jsonl":
        return None
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    return path if real.is_file() and real.is_relative_to(_review_home(source)) else None


def _scores(line: dict[str, Any] | None) -> tuple[float, float] | None:
    if not line or (line.get("status") or "ok") != "ok":
        return None
    t = line.get("tuple") if line.get("tuple") is not None else line.get("score")
    numbers = isinstance(t, list) and len(t) == 2 and all(isinstance(v, int | float) for v in t)
    if numbers and all(0 <= v <= 10 for v in t):
        return float(t[0]), float(t[1])
    return None


def load_ehpaub(cfg: ViewConfig, folder: Path) -> tuple[SiteData, Path | None]:
    from ..ehpaub.files import answer_files, load_answers, load_bench, qid_key
    from ..ehpaub.report import category_title, read_judge
    from ..ehpaub.scores import relative_score

    bench = load_bench(folder, allow_modified=cfg.allow_modified)
    judges = []
    for source in cfg.reviews:
        judge = read_judge(source, bench)  # every check of `bench report`
        judges.append((judge.name, _review_details(Path(source))))
    paths = answer_files(cfg.answers)
    if not paths:  # the answers files the reviews were made from, where they still are
        named = [
            (Path(source), str(line["answers"]))
            for source, (_, models) in zip(cfg.reviews, judges, strict=True)
            for lines in models.values()
            for line in lines.values()
            if isinstance(line.get("answers"), str)
        ]
        for source, name in dict.fromkeys(named):
            path = reviewed_answers(source, name)
            if path is not None:
                paths.append(path)
            elif Path(name).is_file():
                log.warning(
                    "%s: not reading the answers file %s its reviews name (outside %s): "
                    "give it with --answers",
                    source,
                    name,
                    _review_home(source),
                )
        paths = list(dict.fromkeys(paths))
    sets = [load_answers(p, bench) for p in paths]
    models = list(dict.fromkeys([s.model_id for s in sets] + [m for _, ms in judges for m in ms]))
    answers = {s.model_id: s.answers for s in sets}
    many_judges = len(judges) > 1
    contexts = bench.contexts
    pages = {key: _page_for(key, contexts.get) for key in _order(bench.questions)}
    category, review = Facet("category", "Category"), Facet("review", "Review")
    sorts: list[tuple[str, str]] = []
    if judges:
        sorts.append((MAX_GAP, "largest score gap, any model"))
        for j, (jname, _) in enumerate(judges):
            for m in models:
                sorts.append(
                    (f"gap:{j}:{m}", f"score gap: {m}" + (f" ({jname})" if many_judges else ""))
                )
    pairs: dict[tuple[int, str], list[tuple[float, float]]] = defaultdict(list)
    statuses: Counter[str] = Counter()
    rows: list[Row] = []
    for q in bench.questions:
        qid = qid_key(q.question_id)
        ref = bench.reference[qid]
        title = category_title(q.category)
        item_answers = []
        badges: list[tuple[str, str]] = [("category", title)]
        sort: dict[str, float | None] = {}
        row_status: list[str] = []
        texts = [qid, q.image, q.text, ref.text]
        for m in models:
            a = answers.get(m, {}).get(qid)
            reviews = []
            for j, (jname, details) in enumerate(judges):
                line = details.get(m, {}).get(qid)
                scores = _scores(line)
                status = (
                    "ok" if scores else (line.get("status") or "failed") if line else UNREVIEWED
                )
                statuses[status] += 1
                row_status.append(status)
                content = line.get("content") if line else None
                reviews.append(
                    {"judge": jname, "scores": list(scores) if scores else None, "status": status,
                     "content": content if isinstance(content, str) else None}
                )  # fmt: skip
                if content:
                    texts.append(str(content))
                gap = scores[0] - scores[1] if scores else None
                sort[f"gap:{j}:{m}"] = gap
                if scores:
                    pairs[(j, m)].append(scores)
                    suffix = f" ({jname})" if many_judges else ""
                    badges.append(("score", f"{m} {scores[1]:g}/{scores[0]:g}{suffix}"))
            if a is None and (m in answers):
                badges.append(("missing", f"{m}: {NO_ANSWER}"))
            if a is not None:
                texts.append(a.text)
            item_answers.append(
                {"model": m, "text": a.text if a is not None else None, "reviews": reviews}
            )
        gaps = [v for v in sort.values() if v is not None]
        sort[MAX_GAP] = max(gaps) if gaps else None
        category.add(title)
        for s in row_status:
            review.add(s)
        p = pages[q.image]
        p["items"].append(
            {"type": "ehpaub", "id": q.question_id, "category": q.category, "title": title,
             "question": q.text, "reference": ref.text, "answers": item_answers}
        )  # fmt: skip
        rows.append(
            Row(
                key=q.image,
                item=len(p["items"]) - 1,
                id=str(q.question_id),
                badges=badges,
                snippet=snippet(q.text),
                text="\n".join(texts),
                facets={"category": [title], "review": sorted(set(row_status))},
                sort=sort,
            )
        )
    summary = [
        ("questions", f"{len(bench.questions):,}"),
        ("images", f"{len(pages):,}"),
        ("models", ", ".join(models) or "none (--answers, --reviews)"),
    ]
    for (j, m), got in pairs.items():
        rel = relative_score(got)
        if rel is not None:
            who = f"{m} ({judges[j][0]})" if many_judges else m
            summary.append((who, f"{rel.relative:g}% of the reference ({rel.n} scored)"))
    notes = []
    if bench.modified:
        notes.append(MODIFIED.format(", ".join(bench.modified)))
    if not judges:
        notes.append("no --reviews given: answers without scores")
    if not models:
        notes.append("no --answers or --reviews given: questions and references only")
    name = bench.manifest.get("benchmark", "E-HPAUB")
    data = SiteData(
        kind="ehpaub",
        title=f"{name} {folder.name}",
        noun="questions",
        summary=summary,
        facets=[category] + ([review] if review.values else []),
        sorts=sorts,
        pages=pages,
        rows=rows,
        notes=notes,
    )
    return data, _image_root(cfg, bench.manifest)


# -- PoseQA -------------------------------------------------------------------------------------


def _gold(q: PoseQuestion) -> str:
    if q.answer_type == "choice" and q.choices:
        index = ord(q.answer) - ord("A")
        if 0 <= index < len(q.choices):
            return f"{q.answer} ({q.choices[index]})"
    return q.answer


def load_poseqa(cfg: ViewConfig, folder: Path) -> tuple[SiteData, Path | None]:
    from ..ehpaub.files import answer_files, check_manifest
    from ..poseqa.answers import parse_answer
    from ..poseqa.build import MANIFEST_FILE, QUESTIONS_FILE, family_title
    from ..poseqa.files import read_questions
    from ..poseqa.score import load_answers
    from .config import load_contexts

    questions = read_questions(folder / QUESTIONS_FILE)
    manifest = read_json(folder / MANIFEST_FILE) if (folder / MANIFEST_FILE).is_file() else {}
    modified = check_manifest(folder, manifest, [QUESTIONS_FILE], cfg.allow_modified)
    known = {q.question_id for q in questions}
    models: dict[str, dict[str, str]] = {}
    for path in answer_files(cfg.answers):
        model, texts = load_answers(path, known)
        if model in models:
            model = f"{model} ({path.stem})"
        models[model] = texts
    root = cfg.coco or manifest.get("image_root")
    kind = "coco" if root else "none"
    images = _order(questions)
    found = load_contexts(cfg, kind, root, manifest.get("split"), images)
    pages = {key: _page_for(key, found.find) for key in images}
    family = Facet("family", "Family")
    facets = [family] + [Facet(f"model:{m}", m) for m in models]
    rows: list[Row] = []
    right: Counter[str] = Counter()
    for q in questions:
        title = family_title(q.category)
        family.add(title)
        item_answers = []
        gold = _gold(q)
        badges: list[tuple[str, str]] = [("family", title), ("answer", f"gold {gold}")]
        values: dict[str, list[str]] = {"family": [title]}
        texts = [q.question_id, q.image, q.text, gold]
        wrong = 0
        for m, answers in models.items():
            text = answers.get(q.question_id)
            parsed = parse_answer(text, msgspec.structs.asdict(q)) if text is not None else None
            correct = parsed is not None and parsed == q.answer
            if text is None:
                result = NO_ANSWER
            elif parsed is None:
                result = "unreadable"
            else:
                result = "right" if correct else "wrong"
            right[m] += correct
            wrong += not correct
            values[f"model:{m}"] = [result]
            badges.append(("right" if correct else "wrong", f"{m} {'✓' if correct else '✗'}"))
            item_answers.append({"model": m, "text": text, "parsed": parsed, "correct": correct})
            if text:
                texts.append(text)
        p = pages[q.image]
        p["items"].append(
            {"type": "poseqa", "id": q.question_id, "category": q.category, "title": title,
             "question": q.text, "gold": gold, "persons": q.persons, "answers": item_answers}
        )  # fmt: skip
        rows.append(
            Row(
                key=q.image,
                item=len(p["items"]) - 1,
                id=q.question_id,
                badges=badges,
                snippet=snippet(q.text),
                text="\n".join(texts),
                facets=values,
                sort={"wrong": float(wrong)} if models else {},
            )
        )
    for f in facets[1:]:
        for v in ("right", "wrong", "unreadable", NO_ANSWER):
            if any(v in r.facets.get(f.name, ()) for r in rows):
                f.add(v)
    summary = [
        ("questions", f"{len(questions):,}"),
        ("images", f"{len(pages):,}"),
        ("split", str(manifest.get("split", "?"))),
    ]
    summary += [(m, f"{right[m]}/{len(questions)} right") for m in models]
    notes = [] if models else ["no --answers given: questions and gold answers only"]
    if modified:
        notes.append(MODIFIED.format(", ".join(modified)))
    data = SiteData(
        kind="poseqa",
        title=f"PoseQA {folder.name}",
        noun="questions",
        summary=summary,
        facets=facets,
        sorts=[("wrong", "most models wrong first")] if models else [],
        pages=pages,
        rows=rows,
        notes=notes,
    )
    return data, found.image_root
