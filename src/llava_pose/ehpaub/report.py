"""`llava-pose bench report`: the paper's tables (8-10), judge agreement and charts.

Each ``--reviews`` folder is one judge (one column): the review files of `bench judge` in it,
one per model, with the questions it could not score in ``unscored/<name>.jsonl``, or LLaVA's
own review files (``tuple``, or ``score`` in its older ones). For every judge, model and
category:

* relative score = mean(model score) / mean(reference score) x 100, a ratio of means over the
  questions the judge scored, printed with one decimal; means are rounded to 3 decimals first,
  as LLaVA's ``summarize_gpt_review.py`` does, so both tools print the same numbers;
* both means x 10 (LLaVA's second and third numbers);
* what is not in the means, counted and listed: reviews that failed (no readable scores, or
  LLaVA's ``[-1, -1]``), questions without an answer, questions not judged (budget), and
  questions of the benchmark with no review line at all.

Between each two judges: Kendall's tau-b of the models' overall relative scores (the ranking),
and Pearson and Spearman correlations of the per-question model scores both judges gave.

Writes ``index.md`` (all tables, the agreement, what is missing, the charts), ``scores.csv``
(one row per judge, model and category), ``table_<judge>.csv`` (one per judge, the paper's
layout), ``agreement.csv`` and ``chart_<judge>.png``.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import msgspec

from ..config import option
from ..errors import EXIT_OK, ConfigError, InputError
from ..io import atomic_open, read_json, read_jsonl
from ..verify import check_text as check_claims
from .files import (
    CATEGORY_TITLES,
    MANIFEST_FILE,
    AnswerSet,
    Bench,
    ManifestCheck,
    QuestionId,
    answer_files,
    load_answers,
    load_bench,
    qid_key,
)
from .judge import JUDGE_FILE, UNSCORED_DIR, unscored_path
from .scores import Relative, kendall_tau, pearson, relative_score, spearman

log = logging.getLogger("llava_pose")

ALL = "all"


@dataclass
class ReportConfig(ManifestCheck):
    """Options of `llava-pose bench report`."""

    reviews: list[str] = option(
        [], "review folders (or files), one per judge: each becomes a column", nargs="+"
    )
    bench: str | None = option(
        None, "benchmark folder: to list questions that have no review and describe the benchmark"
    )
    questions: str | None = option(
        None, "questions JSONL instead of BENCH/questions.jsonl (e.g. LLaVA's qa90_questions.jsonl)"
    )
    out: str = option(
        "report", "output folder: index.md, CSV tables, agreement, charts", path="dir"
    )
    title: str = option("E-HPAUB", "title of the report")
    answers: list[str] = option(
        [],
        "the models' answer files: adds a judge-free pose-faithfulness table (pose claims made, "
        "share the keypoints contradict; needs --bench with context.jsonl)",
        nargs="+",
    )


class ReviewLine(msgspec.Struct, frozen=True):
    question_id: QuestionId
    category: str | None = None
    tuple: list[float] | None = None
    score: list[float] | None = None  # LLaVA's older review files (table/review/*.jsonl)
    status: str | None = None
    model_id: str | None = None
    judge: str | None = None
    failures: list[dict[str, Any]] = []


@dataclass
class ModelReviews:
    """One model's review file under one judge."""

    model: str
    path: Path
    scores: dict[str, tuple[float, float]] = field(default_factory=dict)  # qid -> (ref, model)
    category: dict[str, str] = field(default_factory=dict)
    problems: dict[str, list[QuestionId]] = field(default_factory=lambda: defaultdict(list))
    retried: int = 0


@dataclass
class Judge:
    name: str
    source: Path
    models: dict[str, ModelReviews] = field(default_factory=dict)


PROBLEMS = ("failed", "missing_answer", "not_judged", "unreviewed")
PROBLEM_TITLES = {
    "failed": "review failed (no readable scores)",
    "missing_answer": "no answer from the model",
    "not_judged": "not judged (budget reached)",
    "unreviewed": "no review line at all",
}


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "judge"


def category_title(category: str) -> str:
    if category == ALL:
        return "All"
    return CATEGORY_TITLES.get(category.removeprefix("llava_bench_"), category)


# -- reading ----------------------------------------------------------------------------------


def _review_files(source: Path) -> list[Path]:
    """The review files of a folder: every ``*.jsonl``, and the name of any ``unscored/*.jsonl``
    whose review file is absent (every question of that model unscored)."""
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise InputError(source, "review folder or file not found")
    files = {p.name: p for p in source.glob("*.jsonl") if not p.name.endswith(".partial")}
    for p in (source / UNSCORED_DIR).glob("*.jsonl"):
        files.setdefault(p.name, source / p.name)
    if not files:
        raise InputError(source, "no review files (*.jsonl) in the folder")
    return [files[name] for name in sorted(files)]


def _review_lines(path: Path) -> list[tuple[Path, ReviewLine]]:
    """The lines of a review file and of its unscored file, each with the file it came from."""
    paths = [p for p in (path, unscored_path(path)) if p.is_file()]
    return [(p, line) for p in paths for line in read_jsonl(p, ReviewLine)]


def read_judge(source: str | Path, bench: Bench | None) -> Judge:
    source = Path(source)
    meta = (
        read_json(source / JUDGE_FILE)
        if source.is_dir() and (source / JUDGE_FILE).is_file()
        else {}
    )
    known = bench.by_id() if bench is not None else None
    judge = Judge(name=meta.get("judge") or "", source=source)
    for path in _review_files(source):
        lines = _review_lines(path)
        model = next((line.model_id for _, line in lines if line.model_id), None) or path.stem
        if model in judge.models:
            model = f"{model} ({path.stem})"
        reviews = ModelReviews(model=model, path=path)
        seen: dict[str, Path] = {}
        for where, line in lines:
            key = qid_key(line.question_id)
            if key in seen:
                also = "" if seen[key] == where else f" (also in {seen[key]}: rerun `bench judge`)"
                raise InputError(where, f"duplicate question_id {line.question_id!r}{also}")
            seen[key] = where
            if known is not None and key not in known:
                raise InputError(
                    where,
                    f"question_id {line.question_id!r} is not in {bench.questions_path}",  # type: ignore[union-attr]
                )
            if not judge.name and line.judge:
                judge.name = line.judge
            category = line.category or (known[key].category if known else "")
            reviews.category[key] = category
            status = line.status or "ok"
            t = line.tuple if line.tuple is not None else line.score
            valid = t is not None and len(t) == 2 and all(0 <= v <= 10 for v in t)
            if status == "ok" and valid:
                assert t is not None
                reviews.scores[key] = (float(t[0]), float(t[1]))
                if line.failures:
                    reviews.retried += 1
            elif status == "ok":  # LLaVA's [-1, -1]: its parser failed
                reviews.problems["failed"].append(line.question_id)
            else:
                reviews.problems[status if status in PROBLEMS else "failed"].append(
                    line.question_id
                )
        if known is not None:
            reviews.problems["unreviewed"] += [
                q.question_id
                for q in bench.questions
                if qid_key(q.question_id) not in seen  # type: ignore[union-attr]
            ]
        judge.models[model] = reviews
    if not judge.name:
        judge.name = source.stem if source.is_file() else source.name
    return judge


# -- arithmetic -------------------------------------------------------------------------------


def cell(reviews: ModelReviews, category: str) -> Relative | None:
    pairs = [
        s
        for key, s in reviews.scores.items()
        if category == ALL or reviews.category[key] == category
    ]
    return relative_score(pairs)


def agreement(a: Judge, b: Judge) -> dict[str, Any]:
    """Ranking agreement (Kendall's tau-b over models both judged) and per-question score
    correlation (model scores of the same model and question from both judges)."""
    models = [m for m in a.models if m in b.models]
    ra, rb = [], []
    for m in models:
        ca, cb = cell(a.models[m], ALL), cell(b.models[m], ALL)
        if ca is not None and cb is not None:
            ra.append(ca.relative)
            rb.append(cb.relative)
    xs, ys = [], []
    for m in models:
        sa, sb = a.models[m].scores, b.models[m].scores
        for key in sa:
            if key in sb:
                xs.append(sa[key][1])
                ys.append(sb[key][1])
    return {
        "judge_a": a.name,
        "judge_b": b.name,
        "models": len(ra),
        "kendall_tau": kendall_tau(ra, rb),
        "questions": len(xs),
        "pearson": pearson(xs, ys),
        "spearman": spearman(xs, ys),
    }


# -- writing ----------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _csv(rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def _write_text(path: Path, text: str) -> None:
    with atomic_open(path) as f:
        f.write(text)


def _chart(path: Path, judge: Judge, categories: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [*categories, ALL]
    models = list(judge.models)
    width = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(columns) + 0.4 * len(models)), 4.2))
    for i, m in enumerate(models):
        values = [cell(judge.models[m], c) for c in columns]
        xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(columns))]
        heights = [v.relative if v is not None else 0.0 for v in values]
        bars = ax.bar(xs, heights, width, label=m)
        for bar, v in zip(bars, values, strict=True):
            label = f"{v.relative:.1f}" if v is not None else "n/a"
            ax.annotate(
                label,
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=7,
            )
    ax.axhline(100, color="grey", linewidth=0.8, linestyle="--")  # on par with the reference
    top = max(
        (v.relative for m in models for c in columns if (v := cell(judge.models[m], c))),
        default=100,
    )
    ax.set_ylim(0, max(100.0, top) * 1.12)
    ax.set_xticks(range(len(columns)), [category_title(c) for c in columns])
    ax.set_ylabel("relative score (% of reference)")
    ax.set_title(f"Judge: {judge.name}")
    ax.legend(
        fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=min(4, max(1, len(models)))
    )
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)


def run_report(cfg: ReportConfig) -> int:
    if not cfg.reviews:
        raise ConfigError("--reviews: give at least one review folder (one per judge)")
    bench = None
    if cfg.answers and not cfg.bench:
        raise ConfigError("--answers: needs --bench (its context.jsonl holds the keypoints)")
    if cfg.bench or cfg.questions:
        bench = load_bench(
            cfg.bench,
            questions=cfg.questions,
            need_context=bool(cfg.answers),
            need_reference=False,
            allow_modified=cfg.allow_modified,
        )
    else:
        log.warning("no --bench: questions without any review line cannot be listed")
    judges = [read_judge(source, bench) for source in cfg.reviews]
    names = [j.name for j in judges]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        for j in judges:  # two folders of the same judge (e.g. two runs): tell them apart
            if names.count(j.name) > 1:
                j.name = f"{j.name} ({j.source.name})"
    if bench is not None:
        categories = bench.categories()
    else:
        categories = list(  # lines without a category (LLaVA's older files) count in "all"
            dict.fromkeys(
                c for j in judges for m in j.models.values() for c in m.category.values() if c
            )
        )
    columns = [*categories, ALL]
    questions = bench.by_id() if bench is not None else {}
    models = list(dict.fromkeys(m for j in judges for m in j.models))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)

    md: list[str] = [f"# {cfg.title}: results", ""]
    manifest = bench.manifest if bench is not None else {}
    if bench is not None:
        md += [_describe(bench, manifest), ""]
    md += [
        "Relative score = mean(model score) / mean(reference score) x 100, per category, over the "
        "questions the judge scored (a ratio of means, as LLaVA-Bench computes it). The reference "
        "answers were written by the teacher from the annotations; 100 means on par with them.",
        "",
    ]
    score_rows: list[list[Any]] = [
        [
            "judge",
            "model",
            "category",
            "relative",
            "reference_x10",
            "model_x10",
            "scored",
            *PROBLEMS,
        ]
    ]
    for judge in judges:
        s = slug(judge.name)
        md += [f"## Judge: {judge.name}", ""]
        header = ["Model", *(category_title(c) for c in columns)]
        rel_rows, mean_rows, table_csv = [], [], [["model", *columns]]
        for m, reviews in judge.models.items():
            cells = {c: cell(reviews, c) for c in columns}
            rel_rows.append(
                [m, *(f"{cells[c].relative:.1f}" if cells[c] else "n/a" for c in columns)]
            )
            mean_rows.append(
                [
                    m,
                    *(
                        f"{cells[c].model_x10:.1f} / {cells[c].reference_x10:.1f} (n={cells[c].n})"
                        if cells[c]
                        else "n/a"
                        for c in columns
                    ),
                ]
            )
            table_csv.append([m, *(cells[c].relative if cells[c] else "" for c in columns)])
            for c in columns:
                v = cells[c]
                counts = [
                    sum(
                        1
                        for q in reviews.problems[p]
                        if c == ALL or _category(reviews, questions, q) == c
                    )
                    for p in PROBLEMS
                ]
                score_rows.append(
                    [
                        judge.name,
                        m,
                        c,
                        v.relative if v else "",
                        v.reference_x10 if v else "",
                        v.model_x10 if v else "",
                        v.n if v else 0,
                        *counts,
                    ]
                )
        md += ["Relative score:", "", _md_table(header, rel_rows), ""]
        md += [
            "Model / reference mean score x 10 (questions scored):",
            "",
            _md_table(header, mean_rows),
            "",
        ]
        chart = f"chart_{s}.png"
        _chart(out / chart, judge, categories)
        md += [f"![{judge.name}]({chart})", ""]
        _write_text(out / f"table_{s}.csv", _csv(table_csv))

    if len(judges) > 1:
        md += ["## Judges compared", "", "Overall relative score, one column per judge:", ""]
        header = ["Model", *(j.name for j in judges)]
        rows = []
        for m in models:
            row = [m]
            for j in judges:
                v = cell(j.models[m], ALL) if m in j.models else None
                row.append(f"{v.relative:.1f}" if v else "n/a")
            rows.append(row)
        md += [_md_table(header, rows), ""]
        md += ["## Agreement between judges", ""]
        agree = [agreement(a, b) for a, b in combinations(judges, 2)]
        agree_rows = [
            [
                a["judge_a"],
                a["judge_b"],
                str(a["models"]),
                _fmt(a["kendall_tau"]),
                str(a["questions"]),
                _fmt(a["pearson"]),
                _fmt(a["spearman"]),
            ]
            for a in agree
        ]
        md += [
            "Kendall's tau-b of the models' overall relative scores (the ranking), and the "
            "Pearson and Spearman correlation of the model scores both judges gave to the same "
            "answers. n/a: undefined (fewer than two values, or no variation).",
            "",
            _md_table(
                ["Judge A", "Judge B", "Models", "Kendall tau", "Answers", "Pearson", "Spearman"],
                agree_rows,
            ),
            "",
        ]
        _write_text(
            out / "agreement.csv",
            _csv(
                [["judge_a", "judge_b", "models", "kendall_tau", "answers", "pearson", "spearman"]]
                + [
                    [
                        a["judge_a"],
                        a["judge_b"],
                        a["models"],
                        _num(a["kendall_tau"]),
                        a["questions"],
                        _num(a["pearson"]),
                        _num(a["spearman"]),
                    ]
                    for a in agree
                ]
            ),
        )

    if cfg.answers and bench is not None:
        sets = [load_answers(path, bench) for path in answer_files(cfg.answers)]
        md += _faithfulness_section(out, bench, sets, categories)

    md += ["## Missing and failed", ""]
    problem_rows = []
    for judge in judges:
        for m, reviews in judge.models.items():
            for p in PROBLEMS:
                ids = reviews.problems[p]
                if ids:
                    shown = ", ".join(str(q) for q in ids[:10]) + (", ..." if len(ids) > 10 else "")
                    problem_rows.append([judge.name, m, PROBLEM_TITLES[p], str(len(ids)), shown])
            if reviews.retried:
                problem_rows.append(
                    [judge.name, m, "scored after a re-ask (counted)", str(reviews.retried), ""]
                )
    if problem_rows:
        md += [
            "Not in the means above (the relative scores use only the scored questions):",
            "",
            _md_table(["Judge", "Model", "What", "Questions", "question_id"], problem_rows),
            "",
        ]
    else:
        md += ["Every question of every model was scored by every judge.", ""]
    _write_text(out / "scores.csv", _csv(score_rows))
    _write_text(out / "index.md", "\n".join(md).rstrip() + "\n")
    log.info(
        "wrote the report of %d judge(s) x %d model(s) to %s",
        len(judges),
        len(models),
        out / "index.md",
    )
    return EXIT_OK


def faithfulness(bench: Bench, answers: AnswerSet) -> dict[str, Counter[str]]:
    """Pose claims in one model's answers, by category (and "all") and verdict, checked
    against the benchmark's keypoints (`llava_pose.verify`): no judge involved. Pure."""
    out: dict[str, Counter[str]] = {c: Counter() for c in [*bench.categories(), ALL]}
    for q in bench.questions:
        a = answers.answers.get(qid_key(q.question_id))
        if a is None:
            continue
        verdicts = Counter(c.verdict for c in check_claims(a.text, bench.contexts[q.image]))
        verdicts["answers"] += 1
        out[q.category].update(verdicts)
        out[ALL].update(verdicts)
    return out


def _faithfulness_section(
    out: Path, bench: Bench, sets: list[AnswerSet], categories: list[str]
) -> list[str]:
    columns = [*categories, ALL]
    rows, csv_rows = [], [["model", "category", "answers", "claims", "contradicted", "share"]]
    for answers in sets:
        counts = faithfulness(bench, answers)
        cells = []
        for c in columns:
            n = counts[c]
            claims = n["supported"] + n["contradicted"] + n["unverifiable"]
            share = n["contradicted"] / claims if claims else None
            cells.append(f"{claims} ({share:.1%})" if share is not None else "0")
            csv_rows.append(
                [answers.model_id, c, n["answers"], claims, n["contradicted"], _num(share)]
            )
        rows.append([answers.model_id, *cells])
    _write_text(out / "faithfulness.csv", _csv(csv_rows))
    return [
        "## Pose faithfulness (judge-free)",
        "",
        "Pose claims in each model's answers (posture, arms, legs, facing, placement, order), "
        "checked against the keypoints with `llava-pose verify`'s checker: claims made, and in "
        "brackets the share the keypoints clearly contradict. No judge: the same answers always "
        "give the same numbers.",
        "",
        _md_table(["Model", *(category_title(c) for c in columns)], rows),
        "",
    ]


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def _category(reviews: ModelReviews, questions: dict[str, Any], qid: QuestionId) -> str:
    key = qid_key(qid)
    if key in reviews.category:
        return reviews.category[key]
    q = questions.get(key)
    return q.category if q is not None else ""


def _describe(bench: Bench, manifest: dict[str, Any]) -> str:
    n = len(bench.questions)
    per = ", ".join(
        f"{sum(1 for q in bench.questions if q.category == c)} {category_title(c).lower()}"
        for c in bench.categories()
    )
    text = f"Benchmark: {n} questions ({per}) from {bench.questions_path}"
    if manifest:
        text += (
            f"; {manifest.get('images')} images of COCO {manifest.get('split')}, seed "
            f"{manifest.get('seed')}, questions and references by {manifest.get('teacher')}"
        )
        if manifest.get("complete") is False:
            text += f" (incomplete: {manifest.get('images')} of {manifest.get('images_requested')} images)"
    text += "."
    if bench.modified:
        text += (
            f" **Modified:** {', '.join(bench.modified)} differ from the benchmark as built "
            "(sha256 in manifest.json; read under --allow-modified): these are not the "
            "benchmark's scores."
        )
    return text


__all__ = ["MANIFEST_FILE", "ReportConfig", "agreement", "cell", "read_judge", "run_report"]
