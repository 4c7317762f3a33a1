"""E-HPAUB for lmms-eval, judged in LLaVA-in-the-wild's pattern (written by `llava-pose bench
export`; this file is copied verbatim, the benchmark's data lives in export.json and docs.jsonl).

The judge sees no image: it reads the context (captions, boxes and each person's 17
keypoints), the question, the reference answer as Assistant 1 and the model's answer as
Assistant 2, with the rules of `llava-pose bench judge`, and replies with two 1-10 scores.
The call goes through lmms-eval's own judge providers, so the environment is the one
llava_in_the_wild reads: API_TYPE (openai), OPENAI_API_KEY, OPENAI_API_URL, MODEL_VERSION
(overrides the judge model recorded at export). The reply is read with llava-pose's tolerant
score parser (scores.py, copied from llava_pose.ehpaub.scores).

As `bench judge` does: a review without readable scores is asked again, up to the export's
`max_attempts` (`--judge-max-attempts`, default 3), and then leaves the question unscored
(metric `unscored`) instead of counting as [-1, -1]; a call that fails once the provider's
client has retried it leaves its question unscored too. A judge that cannot be used at all
stops the run (exit status 1, one clear message, no results) instead of scoring every question
as unscored: no API key, a key or model the server rejects (401, 403, 404), no quota, or a
server that cannot be reached (before any review came back; afterwards, `CONNECT_FAILURES` in
a row). lmms-eval's provider would otherwise sleep 10 s between 5 tries of every question (46 s
a question against a dead URL, 50 minutes for 270), so it is asked once per call: the
provider's OpenAI client already retries transient errors (twice, with backoff).

Self-contained: needs lmms-eval and Pillow, not llava-pose.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

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


# Calls of lmms-eval's provider per ask: its loop sleeps `retry_delay` between tries, and its
# OpenAI client already retries connection errors, timeouts, 429 and 5xx twice with backoff.
PROVIDER_TRIES = 1
# Connection failures in a row that stop the run once the judge has answered (it went away);
# before its first answer the first failure stops it (a wrong URL, a server not started).
CONNECT_FAILURES = 3
# HTTP statuses no retry or re-ask can mend, as `bench judge` sorts them: the run stops.
FATAL_STATUS = {
    401: "the API key was rejected (401): set OPENAI_API_KEY to a valid key",
    402: "the account is out of credit (402): check billing",
    403: "permission denied (403): the key cannot use this model or endpoint",
    404: "not found (404): check the judge model {model!r} (MODEL_VERSION) and OPENAI_API_URL",
}


class JudgeUnavailable(SystemExit):
    """The judge cannot be used at all: scoring every question as unscored would hide it.

    A SystemExit, not an Exception: lmms-eval 0.7.3 runs process_results again after an
    Exception (5 times, 2 s apart), then catches it, writes no results and exits 0. A
    SystemExit passes through both: the run stops at once, prints this one message, and
    exits with status 1."""


def http_status(error: BaseException) -> int | None:
    """The HTTP status of a provider error (the OpenAI SDK's, or requests'), if it has one."""
    status = getattr(error, "status_code", None)
    if status is None:
        status = getattr(getattr(error, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def is_connection_error(error: BaseException) -> bool:
    """Whether `error` (or what caused it) is a failure to connect, not a timeout: the
    OpenAI SDK's APIConnectionError, requests' ConnectionError, a refused socket."""
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        names = {c.__name__ for c in type(e).__mro__}
        if not any("Timeout" in n for n in names) and names & {
            "APIConnectionError",
            "ConnectionError",
        }:
            return True
        e = e.__cause__ or e.__context__
    return False


def fatal_reason(
    error: BaseException, answered: bool, connect_failures: int, where: str
) -> str | None:
    """Why this failed call must stop the run, or None when only its question is lost.
    `connect_failures` counts this one."""
    status = http_status(error)
    if status in FATAL_STATUS:
        return FATAL_STATUS[status].format(model=judge_model())
    if status == 429 and "insufficient_quota" in str(error):
        return "the account is out of quota (429 insufficient_quota): check billing"
    if is_connection_error(error):
        if not answered:
            return (
                f"cannot reach {where} ({error}): is the judge server running, and is "
                "OPENAI_API_URL right?"
            )
        if connect_failures >= CONNECT_FAILURES:
            return f"lost {where}: {connect_failures} calls in a row could not connect ({error})"
    return None


class _Judge:
    """lmms-eval's judge provider, made once, and what its calls so far say about it (lmms-eval
    scores documents in threads, hence the lock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.server: Any = None
        self.answered = False
        self.connect_failures = 0
        self.fatal: str | None = None

    def get(self) -> Any:
        with self.lock:
            if self.fatal:
                raise JudgeUnavailable(self.fatal)
            if self.server is None:
                from lmms_eval.llm_judge import ServerConfig, get_server

                api_type = os.getenv("API_TYPE", "openai")
                config = ServerConfig(
                    model_name=judge_model(),
                    temperature=JUDGE["temperature"],
                    max_tokens=JUDGE["max_tokens"],
                    system_prompt=JUDGE["system"],
                    num_retries=PROVIDER_TRIES,
                    retry_delay=0,
                )
                no_key = f"the {api_type} judge has no API key (openai reads OPENAI_API_KEY)"
                try:  # an unknown API_TYPE; the OpenAI client refuses to exist without a key
                    server = get_server(server_name=api_type, config=config)
                except Exception as e:
                    self.stop(f"{no_key}: {e}" if "api_key" in str(e) else f"{api_type}: {e}")
                if not server.is_available():
                    self.stop(no_key)
                self.server = server
            return self.server

    def stop(self, reason: str) -> NoReturn:
        self.fatal = f"E-HPAUB judge {judge_model()}: {reason}; stopping the run"
        eval_logger.error(self.fatal)
        raise JudgeUnavailable(self.fatal)

    def called(self, error: BaseException | None) -> None:
        """Count one call; raise JudgeUnavailable when its failure must stop the run."""
        with self.lock:
            if error is None:
                self.answered, self.connect_failures = True, 0
                return
            if self.fatal:
                raise JudgeUnavailable(self.fatal) from error
            self.connect_failures = self.connect_failures + 1 if is_connection_error(error) else 0
            where = getattr(self.server, "base_url", None) or "the judge server"
            reason = fatal_reason(error, self.answered, self.connect_failures, where)
            if reason:
                self.stop(reason)


_judge = _Judge()


def judge_model() -> str:
    return os.getenv("MODEL_VERSION", JUDGE["model"])


def judge(content: str) -> str:
    """One review: the judge's reply text. Raises the provider's error when the call failed,
    JudgeUnavailable (not an Exception) when no call can succeed."""
    from lmms_eval.llm_judge import Request

    server = _judge.get()
    try:
        response = server.evaluate(
            Request(messages=[{"role": "user", "content": content}], config=server.config)
        )
    except Exception as e:
        _judge.called(e)
        raise
    _judge.called(None)
    return response.content


def review(
    doc: dict[str, Any], answer: str
) -> tuple[str, list[float] | None, str | None, list[dict[str, Any]]]:
    """(review, [reference, model] or None, problem, failed attempts): the judge is asked
    again while its reply has no readable scores, as `bench judge --max-attempts` does."""
    content = review_content(doc, answer)
    failures: list[dict[str, Any]] = []
    text, problem = "", None
    for attempt in range(JUDGE["max_attempts"]):
        try:
            text = judge(content)
        except Exception as e:  # the client retried it: this question is lost, not the run
            return "", None, f"judge call failed: {e}", failures
        parsed = scores.parse_scores(text)
        if parsed.ok:
            return text, [parsed.first, parsed.second], None, failures
        problem = parsed.problem
        failures.append({"attempt": attempt, "reason": problem, "content": text})
    return text, None, f"{problem} (asked {len(failures)} times)", failures


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, dict[str, Any]]:
    """The review of one answer, under `relative_all` and `relative_<category>`."""
    answer = results[0] if results else ""
    text, pair, problem, failures = review(doc, answer)
    if problem:
        eval_logger.warning(f"E-HPAUB question {doc['question_id']}: unscored: {problem}")
    item = {
        "question_id": doc["question_id"],
        "category": doc["category"],
        "answer": answer,
        "review": text,
        "scores": pair,  # (reference, model)
        "problem": problem,
        "failures": failures,
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
