"""`llava-pose bench judge`: a language-only judge scores each answer against the reference.

The protocol is LLaVA-Bench's (``llava/eval/eval_gpt_review_visual.py``): one user message ::

    [Context]
    <captions, one per line>

    <one line per object and person: "category: [x1, y1, x2, y2]", a person's keypoints below>

    [Question]
    <question>

    [Assistant 1]
    <reference answer>

    [End of Assistant 1]

    [Assistant 2]
    <model answer>

    [End of Assistant 2]

    [System]
    <rule prompt of the question's category>

and the judge answers with two 1-10 scores on its first line, then an explanation. What we do
better than the original script, each with a test:

* a tolerant score parser (`scores.parse_scores`); an unparseable review is asked again with a
  new derived seed (``--max-attempts``, default 3) and then recorded as a failure with its text,
  never as ``[-1, -1]`` averaged into the score;
* ``--swap``: every question is judged in both orders (reference first, model first); the
  scores of the second order are mapped back to (reference, model) and the two orders averaged,
  which cancels the judge's position bias. A question then needs a parsed review in both orders;
* ``--samples K``: K reviews per order with distinct seeds (distinct requests and cache keys),
  combined by the median of each score;
* every call goes through the shared runner: concurrency, rate limits, retries, the budget and
  the SQLite cache, so a rerun after a crash pays for nothing twice.

Output: ``OUT/<answers file name>.jsonl``, one line per scored question in LLaVA's review
shape (``question_id``, ``category``, ``tuple`` = [reference score, model score], ``content``)
plus ours: ``model_id``, ``judge``, ``swap``, ``samples``, ``status``, every review kept
(``reviews``) and every failed attempt (``failures``). Questions without a score (status
failed, missing_answer or not_judged; ``"tuple": null``) go to ``OUT/unscored/<name>.jsonl``
instead: LLaVA's ``summarize_gpt_review.py`` averages every line of every ``*.jsonl`` in the
folder and crashes on a null tuple, and a subfolder is out of its reach (a ``*.failed.jsonl``
beside the file would not be). ``bench report`` reads both and lists the unscored ones.

With LLaVA's ``rule.json`` (``--rules``) and system message (``--system llava``) the request is
LLaVA's ``eval_gpt_review_visual.py`` request, plus a ``seed`` (reproducible reviews).
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec
import yaml

from .. import __version__
from ..config import option
from ..context import paper_annotation_messages
from ..errors import ConfigError, InputError
from ..io import read_json, write_json, write_jsonl
from ..llm import check_role, make_backend
from ..llm.pricing import PriceTable
from ..llm.results import Result
from ..llm.runner import ModelOptions
from ..lock import hold
from ..records import ChatRequest, ImageContext, Message, derived_seed
from ..stage import make_stage
from ..tasks import rule_key
from .files import (
    Answer,
    AnswerSet,
    Bench,
    ManifestCheck,
    Question,
    answer_files,
    load_answers,
    load_bench,
    qid_key,
)
from .scores import mean, median, parse_scores

log = logging.getLogger("llava_pose")

REF_FIRST = "ref_first"
MODEL_FIRST = "model_first"
JUDGE_FILE = "judge.json"
RULE_SETS = ("auto", "pose", "boxes")
UNSCORED_DIR = "unscored"
# The system message of LLaVA's eval_gpt_review*.py, word for word.
LLAVA_SYSTEM = "You are a helpful and precise assistant for checking the quality of the answer."
SYSTEMS = ("ours", "llava")


@dataclass
class JudgeConfig(ManifestCheck, ModelOptions):
    """Options of `llava-pose bench judge`."""

    answers: list[str] = option(
        [], "answers files of the models to judge (from `bench answer`, or LLaVA's)", nargs="+"
    )
    bench: str | None = option(
        None, "benchmark folder from `bench build` (questions, references, context)"
    )
    questions: str | None = option(
        None, "questions JSONL instead of BENCH/questions.jsonl (e.g. LLaVA's qa90_questions.jsonl)"
    )
    context: str | None = option(
        None, "context JSONL instead of BENCH/context.jsonl (e.g. caps_boxes_coco2014_val_80.jsonl)"
    )
    reference: str | None = option(
        None, "reference answers JSONL instead of BENCH/answers_ref.jsonl (Assistant 1)"
    )
    judge: str = option(
        "openai:gpt-4o",
        "judge model: openai:MODEL (any OpenAI-compatible server with --base-url) or anthropic:MODEL",
    )
    out: str = option(
        "reviews",
        "output folder: one review JSONL per answers file, judge.json, the cache",
        path="dir",
    )
    swap: bool = option(
        False, "judge both orders (reference first, model first) and average: cancels position bias"
    )
    samples: int = option(
        1,
        "reviews per question and order, with distinct seeds; the median of each score counts",
        at_least=1,
    )
    max_attempts: int = option(
        3, "asks per review when the reply has no readable scores (new seed each time)", at_least=1
    )
    rules: str = option(
        "auto",
        "judge prompts: pose (context with keypoints), boxes (LLaVA-Bench COCO), auto (pose if "
        "the context has keypoints), or a rule.json in LLaVA's shape: LLaVA's own "
        "llava/eval/table/rule.json gives its prompts word for word",
    )
    system: str = option(
        "ours",
        "judge system message: ours, llava (LLaVA-Bench's: 'You are a helpful and precise "
        "assistant for checking the quality of the answer.'), or the message itself",
    )
    temperature: float = option(
        0.2, "judge sampling temperature (LLaVA-Bench uses 0.2)", at_least=0
    )
    max_tokens: int = option(1024, "judge max completion tokens", at_least=1)
    seed: int = option(0, "seed of the first review; further samples and re-asks derive theirs")
    dry_run: bool = option(False, "print requests, tokens and cost, and call nothing")


class Rule(msgspec.Struct, frozen=True):
    role: str
    prompt: str


def _data(name: str) -> str:
    return resources.files("llava_pose").joinpath("data/ehpaub", name).read_text("utf-8")


@functools.cache
def judge_system() -> str:
    return _data("judge_system.txt").strip()


def system_message(spec: str) -> str:
    """``--system``: `ours`, `llava` (LLaVA's scripts' message), or the message itself."""
    if spec == "ours":
        return judge_system()
    if spec == "llava":
        return LLAVA_SYSTEM
    if not spec.strip():
        raise ConfigError(f"--system: empty; give {' or '.join(SYSTEMS)} or the message itself")
    return spec


def unscored_path(review_file: Path) -> Path:
    """Where the unscored questions of `review_file` (``OUT/<name>.jsonl``) are kept."""
    return review_file.parent / UNSCORED_DIR / review_file.name


def load_rules(spec: str, contexts: dict[str, ImageContext]) -> tuple[str, dict[str, Rule]]:
    """(name, rules by category). `auto` picks `pose` when any context has keypoints."""
    if spec == "auto":
        spec = "pose" if any(c.persons for c in contexts.values()) else "boxes"
    if spec in ("pose", "boxes"):
        return spec, msgspec.json.decode(_data(f"rules_{spec}.json"), type=dict[str, Rule])
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"--rules {spec}: not a file, and not one of {', '.join(RULE_SETS)}")
    return str(path), read_json(path, dict[str, Rule])


# -- pure: content, requests, scores ----------------------------------------------------------


def context_text(ctx: ImageContext) -> tuple[str, str]:
    """(captions, boxes) blocks of ``[Context]``: LLaVA's lines, plus each person's keypoints."""
    return "\n".join(ctx.captions), "\n".join(paper_annotation_messages(ctx))


def review_content(ctx: ImageContext, question: str, answer1: str, answer2: str, rule: Rule) -> str:
    """The judge's user message, laid out exactly as LLaVA's review script lays it out."""
    cap_str, box_str = context_text(ctx)
    role = rule.role
    return (
        f"[Context]\n{cap_str}\n\n{box_str}\n\n"
        f"[Question]\n{question}\n\n"
        f"[{role} 1]\n{answer1}\n\n[End of {role} 1]\n\n"
        f"[{role} 2]\n{answer2}\n\n[End of {role} 2]\n\n"
        f"[System]\n{rule.prompt}\n\n"
    )


def derive_seed(seed: int, sample: int, attempt: int) -> int:
    """The seed of one review: `seed` itself for the first, a stable hash for the others."""
    if sample == 0 and attempt == 0:
        return seed
    return derived_seed(seed, sample, attempt)


def to_ref_model(order: str, first: float, second: float) -> tuple[float, float]:
    """Scores as shown (Assistant 1, Assistant 2) -> (reference, model)."""
    return (first, second) if order == REF_FIRST else (second, first)


def combine(
    by_order: dict[str, list[tuple[float, float]]], orders: tuple[str, ...]
) -> list[float] | None:
    """(reference, model): per order the median of each score over samples, then the mean over
    orders. None unless every order has at least one score (else position bias is not cancelled)."""
    per_order = []
    for order in orders:
        pairs = by_order.get(order) or []
        if not pairs:
            return None
        per_order.append((median([p[0] for p in pairs]), median([p[1] for p in pairs])))
    return [mean([p[0] for p in per_order]), mean([p[1] for p in per_order])]


@dataclass
class _Review:
    """One (model, question, order, sample) review, across its attempts."""

    model: int
    qid: str
    order: str
    sample: int
    attempt: int = 0
    scores: tuple[float, float] | None = None  # (reference, model)
    content: str | None = None
    seed: int = 0
    finished: bool = False
    status: str = ""  # ok | failed | not_judged
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def request_id(self) -> str:
        return f"{self.model}|{self.qid}|{self.order}|{self.sample}|{self.attempt}"


def _request(
    review: _Review,
    question: Question,
    ctx: ImageContext,
    reference: str,
    answer: str,
    rule: Rule,
    cfg: JudgeConfig,
    model: str,
    system: str,
) -> ChatRequest:
    first, second = (reference, answer) if review.order == REF_FIRST else (answer, reference)
    review.seed = derive_seed(cfg.seed, review.sample, review.attempt)
    return ChatRequest(
        id=review.request_id,
        model=model,
        messages=(
            Message("system", system),
            Message("user", review_content(ctx, question.text, first, second, rule)),
        ),
        temperature=cfg.temperature,
        max_tokens=cfg.max_tokens,
        seed=review.seed,
        meta={"question_id": question.question_id, "order": review.order},
    )


# -- the run ----------------------------------------------------------------------------------


def _check(cfg: JudgeConfig) -> list[Path]:
    """The answers files (`answer_files`), checked before any work."""
    if not cfg.answers:
        raise ConfigError("--answers: give at least one answers file")
    paths = answer_files(cfg.answers)
    stems = [a.stem for a in paths]
    dup = next((s for s in stems if stems.count(s) > 1), None)
    if dup:
        raise ConfigError(
            f"--answers: two files are named {dup}.jsonl; their reviews would share "
            f"{cfg.out}/{dup}.jsonl: rename one"
        )
    return paths


def _check_categories(bench: Bench, rules: dict[str, Rule], rules_name: str) -> None:
    for q in bench.questions:
        if rule_key(q.category) not in rules:
            raise InputError(
                bench.questions_path,
                f"category {q.category!r} has no judge rule in {rules_name} "
                f"(rules cover: {', '.join(rules)})",
                field=f"question_id {q.question_id!r}",
            )


def _judge_meta(out: Path, spec: str) -> dict[str, Any]:
    """judge.json of the folder; one folder holds one judge's reviews (the report's column)."""
    path = out / JUDGE_FILE
    if not path.is_file():
        return {"judge": spec, "files": {}}
    meta = read_json(path)
    if meta.get("judge") != spec:
        raise ConfigError(
            f"{out} holds reviews by {meta.get('judge')}: give judge {spec} its own --out folder"
        )
    return meta


def run_judge(cfg: JudgeConfig) -> int:
    check_role(cfg.judge, "judge", "--judge")
    paths = _check(cfg)
    system = system_message(cfg.system)
    bench = load_bench(
        cfg.bench,
        questions=cfg.questions,
        context=cfg.context,
        reference=cfg.reference,
        allow_modified=cfg.allow_modified,
    )
    rules_name, rules = load_rules(cfg.rules, bench.contexts)
    _check_categories(bench, rules, rules_name)
    sets = [load_answers(path, bench) for path in paths]
    out = Path(cfg.out)
    backend = make_backend(
        cfg.judge, "judge", "--judge", dry_run=cfg.dry_run, **cfg.backend_options()
    )
    prices = PriceTable.load(cfg.prices)
    stage = make_stage("bench judge", backend, prices, cfg, out / "cache.sqlite")
    meta = _judge_meta(out, backend.spec) if not cfg.dry_run else {}
    orders = (REF_FIRST, MODEL_FIRST) if cfg.swap else (REF_FIRST,)
    if cfg.samples > 1 and cfg.temperature == 0:
        log.warning("--samples %d at --temperature 0: the samples will mostly agree", cfg.samples)

    questions = bench.by_id()
    reviews: list[_Review] = []
    for m, answer_set in enumerate(sets):
        if answer_set.missing:
            shown = ", ".join(repr(q) for q in answer_set.missing[:5])
            log.warning(
                "%s: no answer for %d of %d questions (question_id %s%s): recorded as "
                "missing_answer, and the report lists them",
                answer_set.path,
                len(answer_set.missing),
                len(bench.questions),
                shown,
                ", ..." if len(answer_set.missing) > 5 else "",
            )
        for q in bench.questions:
            key = qid_key(q.question_id)
            if key not in answer_set.answers:
                continue
            for order in orders:
                for k in range(cfg.samples):
                    reviews.append(_Review(m, key, order, k))

    def request(review: _Review) -> ChatRequest:
        q = questions[review.qid]
        return _request(
            review,
            q,
            bench.contexts[q.image],
            bench.reference[review.qid].text,
            sets[review.model].answers[review.qid].text,
            rules[rule_key(q.category)],
            cfg,
            backend.model,
            system,
        )

    log.info(
        "judge %s: %d answers file(s) x %d questions x %d order(s) x %d sample(s) = %d reviews",
        backend.describe(),
        len(sets),
        len(bench.questions),
        len(orders),
        cfg.samples,
        len(reviews),
    )
    if cfg.dry_run:
        expected = yaml.safe_load(_data("estimates.yaml"))["review_tokens"]
        return stage.dry_run([request(r) for r in reviews], lambda _: expected)

    hold(out, "bench judge", folder=True)
    out.mkdir(parents=True, exist_ok=True)

    def settle(review: _Review, _: ChatRequest, result: Result) -> list[_Review]:
        again: list[_Review] = []
        _settle(review, result, cfg.max_attempts, again)
        return again

    with stage.open(cfg.open_runner(backend, out / "cache.sqlite", "judge", prices)):
        stage.ask(reviews, request, settle)
    if stage.waiting:  # reviews are written once every batch is in
        return stage.exit_code()

    grouped: dict[tuple[int, str], list[_Review]] = defaultdict(list)
    for review in reviews:
        grouped[(review.model, review.qid)].append(review)
    totals = {"ok": 0, "failed": 0, "missing_answer": 0, "not_judged": 0}
    for m, answer_set in enumerate(sets):
        lines = [
            _review_line(
                i,
                q,
                bench,
                answer_set,
                grouped.get((m, qid_key(q.question_id)), []),
                backend.spec,
                cfg,
                orders,
            )
            for i, q in enumerate(bench.questions)
        ]
        counts = {s: sum(1 for line in lines if line["status"] == s) for s in totals}
        for s, n in counts.items():
            totals[s] += n
        name = answer_set.path.stem + ".jsonl"
        unscored = [line for line in lines if line["tuple"] is None]
        # The old unscored file goes first: a crash between these steps can lose unscored lines
        # (a rerun writes them again from the cache) but never leaves a question in both files.
        unscored_path(out / name).unlink(missing_ok=True)
        write_jsonl(out / name, [line for line in lines if line["tuple"] is not None])
        if unscored:
            write_jsonl(unscored_path(out / name), unscored)
        meta["files"][name] = {
            "answers": str(answer_set.path),
            "unscored": f"{UNSCORED_DIR}/{name}" if unscored else None,
            "model_id": answer_set.model_id,
            "questions": len(bench.questions),
            **counts,
            "retried_reviews": sum(
                1 for r in reviews if r.model == m and r.failures and r.status == "ok"
            ),
        }
    s = stage.stats
    meta.update(
        {
            "judge": backend.spec,
            "llava_pose_version": __version__,
            "bench_modified": bench.modified,
            "rules": rules_name,
            "system": system,
            "swap": cfg.swap,
            "samples": cfg.samples,
            "temperature": cfg.temperature,
            "max_tokens": cfg.max_tokens,
            "seed": cfg.seed,
            "questions": str(bench.questions_path),
            "last_run": {
                "requests": s.requests,
                "cached": s.cached,
                "called": s.called,
                "failed_calls": s.failed,
                "retries": s.retries,
                "cost_usd": round(s.cost, 4),
                "cost_from_cache_usd": round(s.cached_cost, 4),
                "elapsed_s": round(s.elapsed, 2),
            },
        }
    )
    write_json(out / JUDGE_FILE, meta)
    log.info(
        "wrote reviews of %d answers file(s) to %s: %d scored, %d failed, %d missing answers; "
        "cost this run $%.4f",
        len(sets),
        out,
        totals["ok"],
        totals["failed"],
        totals["missing_answer"],
        s.cost,
    )
    return stage.exit_code(
        totals["failed"] + totals["missing_answer"],
        f'{totals["failed"]} question(s) got no readable review: status "failed" in '
        f'{out / UNSCORED_DIR} (reasons in "failures"); {totals["missing_answer"]} had no answer',
    )


def _settle(review: _Review, result: Result, max_attempts: int, again: list[_Review]) -> None:
    """Record one call's outcome; unreadable scores go back into `again` until attempts run out."""
    if result.kind == "budget":
        review.finished, review.status = True, "not_judged"
        return
    if result.completion is None:  # the runner already retried transient errors
        review.failures.append(
            {"attempt": review.attempt, "seed": review.seed, "reason": result.error}
        )
        review.finished, review.status = True, "failed"
        return
    text = result.completion.text
    parsed = parse_scores(text)
    if parsed.ok:
        assert parsed.first is not None and parsed.second is not None
        review.scores = to_ref_model(review.order, parsed.first, parsed.second)
        review.content = text
        review.finished, review.status = True, "ok"
        return
    review.failures.append(
        {"attempt": review.attempt, "seed": review.seed, "reason": parsed.problem, "content": text}
    )
    if review.attempt + 1 < max_attempts:
        review.attempt += 1
        again.append(review)
    else:
        review.finished, review.status = True, "failed"


def _review_line(
    index: int,
    q: Question,
    bench: Bench,
    answer_set: AnswerSet,
    reviews: list[_Review],
    judge: str,
    cfg: JudgeConfig,
    orders: tuple[str, ...],
) -> dict[str, Any]:
    key = qid_key(q.question_id)
    ref: Answer = bench.reference[key]
    answer = answer_set.answers.get(key)
    ok = [r for r in reviews if r.status == "ok"]
    by_order: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in ok:
        assert r.scores is not None
        by_order[r.order].append(r.scores)
    scores = combine(by_order, orders) if answer is not None else None
    if answer is None:
        status = "missing_answer"
    elif scores is not None:
        status = "ok"
    elif any(r.status == "not_judged" for r in reviews):
        status = "not_judged"
    else:
        status = "failed"
    first = next((r for r in ok), None)
    failed_content = next(
        (f.get("content") for r in reviews for f in r.failures if f.get("content")), None
    )
    return {
        "id": index + 1,
        "question_id": q.question_id,
        "answer1_id": ref.answer_id if ref.answer_id is not None else q.question_id,
        "answer2_id": (
            answer.answer_id
            if answer is not None and answer.answer_id is not None
            else q.question_id
        ),
        "category": q.category,
        "content": first.content if first else failed_content,
        "tuple": [round(scores[0], 4), round(scores[1], 4)] if scores is not None else None,
        "status": status,
        "model_id": answer_set.model_id,
        "answers": str(answer_set.path),
        "judge": judge,
        "swap": cfg.swap,
        "samples": cfg.samples,
        "reviews": [
            {
                "order": r.order,
                "sample": r.sample,
                "seed": r.seed,
                "attempts": r.attempt + 1,
                "scores": list(r.scores) if r.scores else None,
                "content": r.content,
            }
            for r in ok
        ],
        "failures": [
            {"order": r.order, "sample": r.sample, **f} for r in reviews for f in r.failures
        ],
    }
