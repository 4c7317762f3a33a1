"""`llava-pose bench answer`: run a vision-language model on every benchmark question.

Any OpenAI-compatible vision endpoint (the image goes as a base64 data URL: GPT-4o, or vLLM,
SGLang, llama.cpp serving LLaVA, Qwen2-VL, InternVL...), Claude (base64 image block), or a
local Hugging Face model (``hf:PATH``). Greedy by default (temperature 0), like LLaVA's
``model_vqa.py``.

Resumable twice over: paid calls are in the SQLite cache, and every answer is appended to
``OUT.partial`` the moment it arrives, so a local model that crashed after 200 of 270 questions
answers only the last 70 on the rerun. An answer is reused only if it was made by the same model
with the same settings and question text. The final file is written atomically, in question
order, and the partial file removed.

Output lines have the shape of LLaVA's answer files: ``question_id``, ``prompt``, ``text``,
``answer_id``, ``model_id``, ``metadata`` (the model spec and generation settings, tokens,
finish reason), plus ``category``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from . import __version__
from .config import option
from .ehpaub.files import (
    FAILED,
    Answer,
    ManifestCheck,
    Question,
    existing_images,
    image_root,
    load_bench,
    qid_key,
)
from .errors import ConfigError, InputError
from .images import probe
from .io import append_jsonl, read_bytes, write_jsonl
from .llm import make_backend
from .llm.image_tokens import DETAILS, check_detail
from .llm.pricing import PriceTable
from .llm.results import Result
from .llm.runner import ModelOptions
from .lock import hold
from .records import ChatRequest, Message
from .stage import make_stage
from .vlm.generate import TEMPLATES
from .vlm.load import DTYPES

log = logging.getLogger("llava_pose")


@dataclass
class AnswerConfig(ManifestCheck, ModelOptions):
    """Options of `llava-pose bench answer`."""

    model: str | None = option(
        None,
        "model to benchmark: openai:MODEL (with --base-url for vLLM/SGLang/llama.cpp), "
        "anthropic:MODEL, or hf:PATH (a local Hugging Face vision-language model)",
        short="-m",
    )
    out: str | None = option(None, "answers JSONL to write, e.g. answers/MODEL.jsonl", path="file")
    bench: str | None = option(
        None, "benchmark folder from `bench build` (or a questions JSONL such as LLaVA's)"
    )
    questions: str | None = option(None, "questions JSONL instead of BENCH/questions.jsonl")
    image_root: str | None = option(
        None,
        "folder the questions' image paths are relative to; required unless the manifest's "
        "image_root lies inside the benchmark folder (a benchmark folder is data: see Guarantees)",
    )
    model_id: str | None = option(
        None, "name of the model in the answers and the report (default: from --model)"
    )
    temperature: float = option(0.0, "sampling temperature; 0 is greedy decoding", at_least=0)
    max_tokens: int = option(
        1024, "max new tokens per answer (LLaVA's model_vqa uses 1024)", at_least=1
    )
    seed: int = option(0, "sampling seed, sent where the backend takes one")
    system: str | None = option(None, "system message before each question (default: none)")
    image_detail: str | None = option(
        None,
        "openai: models only: the image's `detail`; default: not sent, so the provider's own "
        "auto (gpt-4o-mini bills a 640x480 photo 14,167 tokens at high, 2,833 at low)",
        choices=DETAILS,
    )
    image_max_side: int | None = option(
        None,
        "API models: scale images down to this longest side before sending (default: the "
        "file as it is; COCO's are at most 640 px, which every provider takes unscaled)",
        at_least=32,
    )
    device: str | None = option(
        None, "hf: models only: torch device, e.g. cpu, cuda, cuda:1 (default: auto)"
    )
    dtype: str | None = option(
        None, "hf: models only: weights dtype (default: auto)", choices=DTYPES
    )
    batch_size: int | None = option(
        None, "hf: models only: questions per generate call (default: 8)", at_least=1
    )
    template: str | None = option(
        None, "hf: models only: prompt template (default: auto)", choices=TEMPLATES
    )

    def backend_options(self) -> dict[str, object]:
        hf = {"device": self.device, "dtype": self.dtype, "batch_size": self.batch_size}
        return {**super().backend_options(), **hf, "template": self.template}


def default_model_id(spec: str) -> str:
    """``openai:gpt-4o`` -> ``gpt-4o``; ``hf:/ckpt/llava-pose-7b/`` -> ``llava-pose-7b``."""
    _, _, model = spec.partition(":")
    model = model.rstrip("/")
    return Path(model).name if "/" in model else model or spec


def settings(cfg: AnswerConfig, spec: str) -> dict[str, Any]:
    """What decides an answer besides the question: reused answers must match it."""
    return {
        "model": spec,
        "temperature": cfg.temperature,
        "max_tokens": cfg.max_tokens,
        "seed": cfg.seed,
        "system": cfg.system,
        **({"image_detail": cfg.image_detail} if cfg.image_detail else {}),
        **({"image_max_side": cfg.image_max_side} if cfg.image_max_side else {}),
    }


def answer_request(q: Question, image: Path, model: str, cfg: AnswerConfig) -> ChatRequest:
    """One question as a vision request: the image with the (only) user message. Pure."""
    messages = [Message("system", cfg.system)] if cfg.system else []
    messages.append(Message("user", q.text))
    return ChatRequest(
        id=qid_key(q.question_id),
        model=model,
        messages=tuple(messages),
        temperature=cfg.temperature,
        max_tokens=cfg.max_tokens,
        seed=cfg.seed,
        images=(str(image),),
        image_detail=cfg.image_detail,
        image_max_side=cfg.image_max_side,
        meta={"question_id": q.question_id, "category": q.category},
    )


def answer_line(
    q: Question, text: str, model_id: str, meta: dict[str, Any], extra: dict[str, Any]
) -> dict[str, Any]:
    digest = hashlib.sha256(f"{meta['model']}|{q.question_id}|{text}".encode()).hexdigest()
    return {
        "question_id": q.question_id,
        "prompt": q.text,
        "text": text,
        "answer_id": digest[:22],
        "model_id": model_id,
        "category": q.category,
        "metadata": {**meta, **extra, "llava_pose_version": __version__},
    }


def _check_images(
    questions: list[Question], root: Path, questions_path: Path, *, confined: bool
) -> list[Path]:
    """The image file of each question, inside `root` (`paths.join_inside`: the folded path, so
    ``val2017/../x`` cannot climb out through a linked ``val2017``); all must exist and be
    images of a sane size (`images.probe`), so nothing else is ever sent. `confined` (a root
    taken from the folder itself): every file must also resolve inside it, so a link placed
    in a shared folder cannot lead out of it."""
    paths = existing_images(root, questions, questions_path)
    seen: set[Path] = set()
    for q, path in zip(questions, paths, strict=True):
        if path in seen:
            continue
        seen.add(path)
        field = f"question_id {q.question_id!r}: image"
        if confined and not path.resolve().is_relative_to(root):
            raise InputError(
                questions_path, f"{path} links out of the benchmark folder", field=field
            )
        try:
            probe(path)
        except InputError as e:
            raise InputError(questions_path, f"{path}: {e.problem}", field=field) from None
    return paths


def _reusable(
    paths: list[Path], want: dict[str, Any], known: dict[str, Question]
) -> dict[str, dict[str, Any]]:
    """Answers from an earlier run (final file, then partial) that still fit."""
    done: dict[str, dict[str, Any]] = {}
    for path in paths:
        if not path.is_file():
            continue
        for line_no, raw in enumerate(read_bytes(path).splitlines(), 1):
            if not raw.strip():
                continue
            try:
                row = msgspec.json.decode(raw)
                a = msgspec.convert(row, Answer)
            except (msgspec.DecodeError, msgspec.ValidationError):
                log.warning(
                    "%s: line %d unreadable, that question is answered again", path, line_no
                )
                continue  # a line cut by a crash
            key = qid_key(a.question_id)
            q = known.get(key)
            meta = a.metadata
            same = all(meta.get(k) == v for k, v in want.items())
            if q is not None and same and a.prompt == q.text:
                done[key] = row
    return done


def run_answer(cfg: AnswerConfig) -> int:
    if not cfg.model:
        raise ConfigError("--model: required, e.g. openai:gpt-4o-mini or hf:/path/to/model")
    if not cfg.out:
        raise ConfigError("--out: required, e.g. answers/MODEL.jsonl")
    backend = make_backend(cfg.model, "answerer", "--model", **cfg.backend_options())
    provider = backend.provider
    check_detail("--image-detail", provider, cfg.image_detail)
    if cfg.image_max_side and provider not in ("openai", "anthropic"):
        raise ConfigError(
            f"--image-max-side: {provider}: models read the image themselves (API models only)"
        )
    out = Path(cfg.out)
    cache = out.with_name(out.stem + ".cache.sqlite")
    prices = PriceTable.load(cfg.prices)
    stage = make_stage("bench answer", backend, prices, cfg, cache)
    bench = load_bench(
        cfg.bench,
        questions=cfg.questions,
        need_context=False,
        need_reference=False,
        allow_modified=cfg.allow_modified,
    )
    root = image_root(cfg.image_root, bench.folder, bench.manifest)
    images = _check_images(bench.questions, root, bench.questions_path, confined=not cfg.image_root)
    log.info("answering %d questions with %s", len(bench.questions), backend.describe())
    model_id = cfg.model_id or default_model_id(cfg.model)  # the spec as the user wrote it
    want = settings(cfg, backend.spec)

    hold(out, "bench answer")
    partial = out.with_name(out.name + ".partial")
    failed_path = out.with_name(out.stem + FAILED)
    known = bench.by_id()
    done = _reusable([out, partial], want, known)
    if done:
        log.info("%d answers reused from an earlier run", len(done))
    todo = [
        (q, img)
        for q, img in zip(bench.questions, images, strict=True)
        if qid_key(q.question_id) not in done
    ]
    requests = [answer_request(q, img, backend.model, cfg) for q, img in todo]
    by_id = {qid_key(q.question_id): q for q, _ in todo}
    failed_path.unlink(missing_ok=True)

    def on_result(request: ChatRequest, result: Result) -> None:
        q = by_id[request.id]
        if result.completion is None:
            if result.kind == "failed":
                append_jsonl(failed_path, {"question_id": q.question_id, "reason": result.error})
            return
        c = result.completion
        extra = {
            "finish_reason": c.finish_reason,
            "input_tokens": c.input_tokens,
            "output_tokens": c.output_tokens,
        }
        row = answer_line(q, c.text.strip(), model_id, want, extra)
        done[request.id] = row
        append_jsonl(partial, row)

    out.parent.mkdir(parents=True, exist_ok=True)
    with stage.open(cfg.open_runner(backend, cache, "answer", prices)):
        stage.ask(requests, lambda r: r, on_result=on_result)
    if stage.waiting:  # the answers file is written once every batch is in
        return stage.exit_code()

    rows = [done[qid_key(q.question_id)] for q in bench.questions if qid_key(q.question_id) in done]
    write_jsonl(out, rows)
    partial.unlink(missing_ok=True)
    log.info(
        "wrote %d of %d answers to %s; cost this run $%.4f",
        len(rows),
        len(bench.questions),
        out,
        stage.stats.cost,
    )
    return stage.exit_code(
        len(bench.questions) - len(rows),
        f"{len(bench.questions) - len(rows)} questions failed (reasons in {failed_path}): the "
        "judge records them as missing answers; rerun to retry them",
    )
