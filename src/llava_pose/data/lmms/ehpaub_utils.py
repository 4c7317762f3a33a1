"""E-HPAUB for lmms-eval, judged in LLaVA-in-the-wild's pattern (written by `llava-pose bench
export`; this file is copied verbatim, the benchmark's data lives in export.json and docs.jsonl).

The judge sees no image: it reads the context (captions, boxes and each person's 17
keypoints), the question, the reference answer as Assistant 1 and the model's answer as
Assistant 2, with the rules of `llava-pose bench judge`, and replies with two 1-10 scores.
The call goes through lmms-eval's own judge providers, so the environment is the one
llava_in_the_wild reads: API_TYPE (openai), OPENAI_API_KEY, OPENAI_API_URL, MODEL_VERSION
(overrides the judge model recorded at export). The reply is read with llava-pose's tolerant
score parser (scores.py, copied from llava_pose.bench.scores): an unreadable reply or a failed
call leaves the question unscored (metric `unscored`) instead of counting as [-1, -1].

Self-contained: needs lmms-eval and Pillow, not llava-pose.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

from loguru import logger as eval_logger
from PIL import Image

HERE = Path(__file__).resolve().parent
EXPORT = json.loads((HERE / "export.json").read_text(encoding="utf-8"))
JUDGE = EXPORT["judge"]
ALL = "all"


def _load(name: str) -> Any:
    """A module copied beside this file; utils.py itself is loaded by path, not as a package."""
    spec = importlib.util.spec_from_file_location(f"_{EXPORT['task']}_{name}", HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


scores = _load("scores")


def image_root() -> Path:
    """LLAVA_POSE_IMAGE_ROOT, else the root recorded at export (relative: to this folder)."""
    return HERE / os.environ.get("LLAVA_POSE_IMAGE_ROOT", EXPORT["image_root"])


def doc_to_visual(doc: dict[str, Any]) -> list[Image.Image]:
    with Image.open(image_root() / doc["image"]) as image:
        return [image.convert("RGB")]


def doc_to_text(
    doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None
) -> str:
    kwargs = lmms_eval_specific_kwargs or {}
    return f"{kwargs.get('pre_prompt', '')}{doc['text']}{kwargs.get('post_prompt', '')}"


def review_content(doc: dict[str, Any], answer: str) -> str:
    """The judge's user message, laid out as LLaVA's review script (and `bench judge`) does."""
    rule = JUDGE["rules"][doc["category"]]
    role = rule["role"]
    return (
        f"[Context]\n{doc['context']}\n\n"
        f"[Question]\n{doc['text']}\n\n"
        f"[{role} 1]\n{doc['reference']}\n\n[End of {role} 1]\n\n"
        f"[{role} 2]\n{answer}\n\n[End of {role} 2]\n\n"
        f"[System]\n{rule['prompt']}\n\n"
    )


_server = None
_server_lock = threading.Lock()  # lmms-eval may score documents in threads


def _judge_server() -> Any:
    global _server
    with _server_lock:
        if _server is not None:
            return _server
        from lmms_eval.llm_judge import ServerConfig, get_server

        config = ServerConfig(
            model_name=judge_model(),
            temperature=JUDGE["temperature"],
            max_tokens=JUDGE["max_tokens"],
            system_prompt=JUDGE["system"],
        )
        _server = get_server(server_name=os.getenv("API_TYPE", "openai"), config=config)
    return _server


def judge_model() -> str:
    return os.getenv("MODEL_VERSION", JUDGE["model"])


def judge(content: str) -> str:
    """One review: the judge's reply text (raises when the call fails)."""
    from lmms_eval.llm_judge import Request

    server = _judge_server()
    response = server.evaluate(
        Request(messages=[{"role": "user", "content": content}], config=server.config)
    )
    return response.content


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, dict[str, Any]]:
    """The review of one answer, under `relative_all` and `relative_<category>`."""
    answer = results[0] if results else ""
    content = review_content(doc, answer)
    review, problem, pair = "", None, None
    try:
        review = judge(content)
        parsed = scores.parse_scores(review)
        if parsed.ok:
            pair = [parsed.first, parsed.second]  # (reference, model)
        else:
            problem = parsed.problem
    except Exception as e:  # a failed call leaves this question unscored, not the run dead
        problem = f"judge call failed: {e}"
    if problem:
        eval_logger.warning(f"E-HPAUB question {doc['question_id']}: unscored: {problem}")
    item = {
        "question_id": doc["question_id"],
        "category": doc["category"],
        "answer": answer,
        "review": review,
        "scores": pair,
        "problem": problem,
        "judge_model": judge_model(),
    }
    # No "score" key on the relative items: lmms-eval's CLT stderr reads one, and the stderr
    # of a ratio of means is not the stderr of the model's scores.
    return {
        f"relative_{ALL}": item,
        f"relative_{doc['category']}": item,
        "unscored": {**item, "score": float(pair is None)},
    }


def aggregate_relative(items: list[dict[str, Any]]) -> float | None:
    """100 x mean(model) / mean(reference) over the scored items, as LLaVA's
    summarize_gpt_review.py computes it (means rounded to 3 decimals first)."""
    pairs = [tuple(item["scores"]) for item in items if item["scores"] is not None]
    result = scores.relative_score(pairs)
    return None if result is None else result.relative


def aggregate_unscored(items: list[dict[str, Any]]) -> float:
    """The fraction of questions without a usable review (judge failures, unreadable replies)."""
    return sum(item["score"] for item in items) / len(items) if items else 0.0
