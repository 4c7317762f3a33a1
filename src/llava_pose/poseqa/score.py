"""`llava-pose poseqa score`: exact-match accuracy per family and model, with no LLM.

Each answer goes through the tolerant parser (`answers.parse_answer`) and counts as correct
when it equals the question's ``answer``. An answer the parser cannot read, or a question a
model did not answer, counts as wrong, and both are counted and shown (with examples), so a
model that rambles is visible as such rather than silently marked down.

Per family the report gives the accuracy with its 95% Wilson interval and what answering
without looking scores (`build.baseline`): chance, the expected accuracy of a uniform guess
over each question's answers (1/2, 1/k options, 1/(people+1) for a count); the best constant
answer on the actual answers (always "yes", always "A", always "towards the camera", always
"0": whichever scores highest); and the baseline, the higher of the two, the floor any model
must clear. A family whose constant beats chance by more than `build.UNBALANCED_MARGIN` is
flagged unbalanced (a chance column alone would flatter every model there), and the
questions `poseqa build` dropped for balance are listed from its manifest.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from ..config import option
from ..ehpaub.files import ManifestCheck, answer_files, check_manifest
from ..errors import EXIT_OK, ConfigError, InputError
from ..io import atomic_open, read_json
from ..lock import hold
from .answers import parse_answer
from .build import (
    MANIFEST_FILE,
    QUESTIONS_FILE,
    UNBALANCED_MARGIN,
    Baseline,
    baseline,
    families,
    family_title,
)
from .files import PoseQuestion, read_questions

log = logging.getLogger("llava_pose")

Z95 = 1.959964  # two-sided 95% normal quantile


@dataclass
class PoseQAScoreConfig(ManifestCheck):
    """Options of `llava-pose poseqa score`."""

    bench: str | None = option(None, "PoseQA folder from `poseqa build` (required)")
    answers: list[str] = option(
        [], "answers files of the models (from `bench answer --bench POSEQA`)", nargs="+"
    )
    out: str = option("report", "output folder: index.md, scores.csv, unparseable.csv", path="dir")
    examples: int = option(
        5, "unparseable answers shown per model in index.md (all are in the CSV)", at_least=0
    )


def wilson(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion: sound at 0% and 100% and for small n."""
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def best_constant(questions: list[PoseQuestion]) -> tuple[str, float]:
    """The constant answer that scores best on these questions, and its accuracy."""
    b = baseline([msgspec.structs.asdict(q) for q in questions])
    return b.constant, b.constant_accuracy


@dataclass
class FamilyScore:
    family: str
    n: int = 0
    correct: int = 0
    unparseable: int = 0
    missing: int = 0

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0


@dataclass
class ModelScore:
    model_id: str
    path: str
    families: dict[str, FamilyScore] = field(default_factory=dict)
    unparsed: list[dict[str, str]] = field(default_factory=list)  # question_id, category, text


def score_model(
    model_id: str, path: str, questions: list[PoseQuestion], answers: dict[str, str]
) -> ModelScore:
    """Exact match after parsing, per family. Pure."""
    out = ModelScore(model_id, path)
    for q in questions:
        s = out.families.setdefault(q.category, FamilyScore(q.category))
        s.n += 1
        text = answers.get(q.question_id)
        if text is None:
            s.missing += 1
            continue
        parsed = parse_answer(text, msgspec.structs.asdict(q))
        if parsed is None:
            s.unparseable += 1
            out.unparsed.append(
                {"question_id": q.question_id, "category": q.category, "text": text}
            )
        elif parsed == q.answer:
            s.correct += 1
    return out


def _family_order(questions: list[PoseQuestion]) -> list[str]:
    present = {q.category for q in questions}
    known = [f for f in families() if f in present]
    return known + sorted(present - set(known))


def _load_questions(folder: Path) -> list[PoseQuestion]:
    if not folder.is_dir():
        raise InputError(folder, "PoseQA folder not found (run `llava-pose poseqa build`)")
    return read_questions(folder / QUESTIONS_FILE)


def load_answers(path: Path, known: set[str]) -> tuple[str, dict[str, str]]:
    """(model id, question id -> answer text) of one answers file of this PoseQA set; an answer
    to a question it does not hold is an input error (answers of another benchmark)."""
    from ..ehpaub.files import read_answers

    answers = read_answers(path)
    for n, a in enumerate(answers, 1):
        if str(a.question_id) not in known:
            raise InputError(
                path,
                f"question_id {a.question_id!r} is not a PoseQA question of this folder "
                "(answers of another benchmark?)",
                field=f"answer {n}",
            )
    ids = Counter(a.model_id for a in answers if a.model_id)
    model_id = ids.most_common(1)[0][0] if ids else path.stem
    return model_id, {str(a.question_id): a.text for a in answers}


def run_score(cfg: PoseQAScoreConfig) -> int:
    if not cfg.bench:
        raise ConfigError("--bench: required (the folder from `llava-pose poseqa build`)")
    if not cfg.answers:
        raise ConfigError("--answers: give at least one answers file from `bench answer`")
    folder = Path(cfg.bench)
    manifest_path = folder / MANIFEST_FILE
    m = read_json(manifest_path) if manifest_path.is_file() else {}
    modified = check_manifest(folder, m, [QUESTIONS_FILE], cfg.allow_modified)
    questions = _load_questions(folder)
    known = {q.question_id for q in questions}
    models = []
    for a in answer_files(cfg.answers):
        model_id, answers = load_answers(Path(a), known)
        models.append(score_model(model_id, a, questions, answers))
    out = Path(cfg.out)
    hold(out, "poseqa score", folder=True)
    title = "PoseQA"
    notes: list[str] = []
    if modified:
        notes.append(
            f"**Modified:** {', '.join(modified)} differ from the benchmark as built (sha256 "
            "in manifest.json; scored under --allow-modified): these are not the benchmark's "
            "scores."
        )
    if m:
        title = f"PoseQA ({m.get('split', '?')}, seed {m.get('seed', '?')})"
        a = m.get("captions_agreement")
        if a:
            decided = a["agree"] + a["disagree"]
            notes.append(
                f"Posture answers vs the captions' posture words: {a['agree']} of {decided} "
                "main persons agree where the captions decide."
            )
        dropped = {
            f: s["dropped_for_balance"]
            for f, s in (m.get("families") or {}).items()
            if isinstance(s, dict) and s.get("dropped_for_balance")
        }
        if dropped:
            notes.append(
                "Dropped by `poseqa build` for balance: "
                + ", ".join(f"{family_title(f)} {n}" for f, n in dropped.items())
                + "."
            )
    order = _family_order(questions)
    baselines = family_baselines(questions, order)
    write_report(out, title, order, baselines, models, cfg.examples, notes)
    print(f"wrote {out / 'index.md'}")
    for m in models:
        total = sum(s.correct for s in m.families.values())
        print(f"  {m.model_id}: {total}/{len(questions)} correct, {len(m.unparsed)} unparseable")
    return EXIT_OK


def family_baselines(questions: list[PoseQuestion], order: list[str]) -> dict[str, Baseline]:
    rows = [msgspec.structs.asdict(q) for q in questions]
    return {f: baseline([r for r in rows if r["category"] == f]) for f in order}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def score_rows(
    order: list[str], baselines: dict[str, Baseline], models: list[ModelScore]
) -> list[dict[str, Any]]:
    """One row per model and family: the CSV, and the Markdown table's content."""
    rows = []
    for m in models:
        for family in order:
            s = m.families[family]
            lo, hi = wilson(s.correct, s.n)
            b = baselines[family]
            rows.append(
                {
                    "model": m.model_id,
                    "family": family,
                    "questions": s.n,
                    "correct": s.correct,
                    "accuracy": round(s.accuracy, 4),
                    "ci95_low": round(lo, 4),
                    "ci95_high": round(hi, 4),
                    "unparseable": s.unparseable,
                    "missing": s.missing,
                    "chance": round(b.chance, 4),
                    "best_constant": b.constant,
                    "best_constant_accuracy": round(b.constant_accuracy, 4),
                    "baseline": round(b.baseline, 4),
                    "unbalanced": b.unbalanced,
                }
            )
    return rows


def _csv(rows: list[dict[str, Any]], fields: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _md_cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")[:160]


def write_report(
    out: Path,
    title: str,
    order: list[str],
    baselines: dict[str, Baseline],
    models: list[ModelScore],
    examples: int,
    notes: list[str] | None = None,
) -> None:
    rows = score_rows(order, baselines, models)
    unparsed = [{"model": m.model_id, **u} for m in models for u in m.unparsed]
    lines = [f"# {title}", ""]
    lines += [
        "Exact match after the tolerant answer parser; no LLM judge. Accuracy in %, with the",
        "95% Wilson interval; unparseable and missing answers count as wrong.",
        *(notes or []),
        "",
        "## Baselines",
        "",
        "What answering without looking scores: chance is a uniform guess over each question's",
        "answers; the best constant answer is computed on the actual answers; the baseline, the",
        "higher of the two, is the score to beat. A family is unbalanced when its constant",
        f"beats chance by more than {_pct(UNBALANCED_MARGIN)} points.",
        "",
        "| family | questions | chance | best constant answer | its accuracy | baseline | balance |",
        "|---|---:|---:|---|---:|---:|---|",
    ]
    for family in order:
        b = baselines[family]
        lines.append(
            f"| {family_title(family)} | {b.n} | {_pct(b.chance)} | {_md_cell(b.constant)} | "
            f"{_pct(b.constant_accuracy)} | {_pct(b.baseline)} | "
            f"{'unbalanced' if b.unbalanced else 'balanced'} |"
        )
    lines += ["", "## Accuracy", ""]
    heads = [family_title(f) + (" (unbalanced)" if baselines[f].unbalanced else "") for f in order]
    lines.append("| model | " + " | ".join(heads) + " | unparseable |")
    lines.append("|---|" + "---:|" * len(order) + "---:|")
    for m in models:
        cells = []
        for family in order:
            s = m.families[family]
            lo, hi = wilson(s.correct, s.n)
            cells.append(f"{_pct(s.accuracy)} ({_pct(lo)}-{_pct(hi)})")
        lines.append(f"| {m.model_id} | " + " | ".join(cells) + f" | {len(m.unparsed)} |")
    lines += ["", "## Unparseable answers", ""]
    if not unparsed:
        lines.append("None: every answer was read.")
    for m in models:
        if not m.unparsed:
            continue
        lines.append(f"**{m.model_id}**: {len(m.unparsed)} (all in unparseable.csv)")
        lines.append("")
        for u in m.unparsed[:examples]:
            lines.append(f"- `{u['question_id']}` ({u['category']}): {_md_cell(u['text'])}")
        lines.append("")
    missing = {m.model_id: sum(s.missing for s in m.families.values()) for m in models}
    if any(missing.values()):
        lines += ["## Missing answers", ""]
        lines += [f"- {k}: {v}" for k, v in missing.items() if v]
    out.mkdir(parents=True, exist_ok=True)
    fields = list(rows[0]) if rows else ["model", "family"]
    with atomic_open(out / "scores.csv") as f:
        f.write(_csv(rows, fields))
    with atomic_open(out / "unparseable.csv") as f:
        f.write(_csv(unparsed, ["model", "question_id", "category", "text"]))
    with atomic_open(out / "index.md") as f:
        f.write("\n".join(lines).rstrip() + "\n")
