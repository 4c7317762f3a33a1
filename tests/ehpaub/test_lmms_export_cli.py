"""lmms-eval's own command line on the exported tasks, end to end: `lmms-eval --model openai
--tasks ehpaub,poseqa --include_path ...` in a subprocess, against a loopback model server and a
loopback judge. The numbers in the results JSON it writes must be the ones our own commands
give for the same model (`bench answer` then `poseqa score`; `bench answer`, `bench judge`,
`bench report`). Its exit code is not trusted: lmms-eval 0.7.3 exits 0 after most failures."""

from __future__ import annotations

import csv
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import cli
from tests.ehpaub.helpers import KEY, read_jsonl
from tests.ehpaub.replies import last_user
from tests.ehpaub.test_lmms_export import export_benches, right_reply, wrong_reply
from tests.servers import OpenAIServer

pytestmark = [pytest.mark.lmms, pytest.mark.slow]

MODEL = "gpt-4o"
# A preamble of ~170 tokens before the answer: cut at 128 tokens, the reply says nothing.
CHATTY = "Let me study the photograph carefully before I give my reply. " * 14
HEDGE = "It could be either; I cannot tell from the picture."
# What the scripted judge does with an answer that carries one of these words.
SHY = "SHY"  # no scores on the first ask, scores on the next: a re-ask mends it
GARBLED = "GARBLED"  # never any scores: unscored after every attempt
_MODEL_ANSWER = re.compile(r"\[Assistant 2\]\n(.*?)\n\n\[End of Assistant 2\]", re.S)


def model_replies(benches: dict[str, Path]) -> dict[str, str]:
    """The scripted model: one reply per question text (the same text always gets the same
    reply). PoseQA: chatty and right, right, wrong, hedging, in turn; E-HPAUB: answers that the
    judge re-asks, never scores, scores, and a chatty one."""
    replies: dict[str, str] = {}
    for q in read_jsonl(benches["poseqa"] / "questions.jsonl"):
        if q["text"] not in replies:
            kind = len(replies) % 4
            replies[q["text"]] = [
                CHATTY + right_reply(q),
                right_reply(q),
                wrong_reply(q),
                HEDGE,
            ][kind]
    for i, q in enumerate(read_jsonl(benches["ehpaub"] / "questions.jsonl")):
        words = f"the person in question {q['question_id']} stands with both arms down"
        replies.setdefault(
            q["text"],
            [
                f"{SHY}: {words}.",
                f"{GARBLED}: {words}.",
                f"In short, {words}.",
                f"{CHATTY}In the end, {words}.",
            ][i % 4],
        )
    return replies


class ScriptedJudge:
    """The judge's replies, by the model's answer in the review: `SHY` gets no scores the first
    time its review is asked, `GARBLED` never; the rest 8 for the reference and 4-7 for the
    model, by the answer's length."""

    def __init__(self) -> None:
        self.asked: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> str:
        content = last_user(body)
        with self.lock:
            self.asked[content] += 1
            times = self.asked[content]
        (answer,) = _MODEL_ANSWER.findall(content)
        if GARBLED in answer or (SHY in answer and times == 1):
            return "Both assistants did their best here."
        return f"8 {4 + len(answer) % 4}\nAssistant 2 is vaguer about the pose."


@pytest.fixture(scope="module")
def benches(tmp_path_factory: pytest.TempPathFactory, coco_mini: Path) -> dict[str, Path]:
    pytest.importorskip("lmms_eval")  # CI installs it (.ci/run); a guard for bare checkouts
    return export_benches(tmp_path_factory.mktemp("export-cli"), coco_mini)


@pytest.fixture
def model(benches: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    replies = model_replies(benches)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with OpenAIServer(
        latency=0.0, responder=lambda body: replies[last_user(body).strip()], api_key=KEY
    ) as server:
        yield server


def lmms_eval(
    tasks: str, include: Path, out: Path, model_url: str, judge_url: str, timeout: float
) -> subprocess.CompletedProcess[str]:
    """lmms-eval's console script, as a user runs it, from an empty folder (it reads
    `--tasks ehpaub` as a folder of YAMLs when ./ehpaub exists), offline, with the
    judge's environment of the exported task."""
    cwd = out.parent / f"cwd-{out.name}"
    cwd.mkdir()
    env = {
        **os.environ,
        "OPENAI_API_KEY": KEY,
        "OPENAI_API_URL": judge_url,
        "API_TYPE": "openai",
        "HF_HOME": str(cwd / "hf"),
        "HF_DATASETS_CACHE": str(cwd / "hf-datasets"),
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("MODEL_VERSION", None)
    command = [
        str(Path(sys.executable).parent / "lmms-eval"),
        *("--model", "openai"),
        *("--model_args", f"model_version={MODEL},base_url={model_url}"),
        *("--tasks", tasks),
        *("--include_path", str(include)),
        *("--output_path", str(out)),
    ]
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def results_of(out: Path, run: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The one results JSON lmms-eval wrote: its existence is the test, not the exit code."""
    found = sorted(out.rglob("*_results.json"))
    assert len(found) == 1, f"exit {run.returncode}, results {found}\n{run.stdout[-4000:]}"
    return json.loads(found[0].read_text())["results"]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_lmms_eval_cli_scores_as_our_commands(
    benches: dict[str, Path], model: OpenAIServer, coco_mini: Path, tmp_path: Path
) -> None:
    # Our own commands first: the answers of the same model, scored and judged.
    answers = tmp_path / "answers"
    for name in ("poseqa", "ehpaub"):
        rc = cli(
            *("bench", "answer", "--bench", benches[name], "--image-root", coco_mini),
            *("--model", f"openai:{MODEL}", "--base-url", model.url),
            *("--out", answers / f"{name}.jsonl"),
        )
        assert rc == 0
    ours = len(model.requests)
    assert (
        cli(
            *("poseqa", "score", "--bench", benches["poseqa"]),
            *("--answers", answers / "poseqa.jsonl", "--out", tmp_path / "poseqa-report"),
        )
        == 0
    )
    with OpenAIServer(latency=0.0, responder=ScriptedJudge(), api_key=KEY) as our_judge:
        rc = cli(
            *("bench", "judge", "--bench", benches["ehpaub"]),
            *("--answers", answers / "ehpaub.jsonl", "--out", tmp_path / "reviews"),
            *("--judge", f"openai:{MODEL}", "--base-url", our_judge.url),
        )
        assert rc == 1  # the GARBLED answer's review never had scores: said, and exit 1
        our_reviews = Counter(last_user(r.body) for r in our_judge.requests)
    assert (
        cli(
            *("bench", "report", "--bench", benches["ehpaub"], "--reviews", tmp_path / "reviews"),
            *("--out", tmp_path / "ehpaub-report"),
        )
        == 0
    )

    # Then lmms-eval's command line on the exported folder, against the same model.
    out = tmp_path / "lmms-results"
    with OpenAIServer(latency=0.0, responder=ScriptedJudge(), api_key=KEY) as judge:
        run = lmms_eval("ehpaub,poseqa", benches["out"], out, model.url, judge.url, timeout=300)
        results = results_of(out, run)
        their_reviews = Counter(last_user(r.body) for r in judge.requests)

    # The model was asked alike, and said the same thing to both: no reply cut short.
    theirs = model.requests[ours:]
    n_questions = sum(
        len(read_jsonl(benches[b] / "questions.jsonl")) for b in benches if b != "out"
    )
    assert len(theirs) == ours == n_questions
    assert {r.body["max_tokens"] for r in model.requests} == {1024}
    said: dict[str, set[str]] = {}
    for r in model.requests:
        said.setdefault(last_user(r.body).strip(), set()).add(r.reply)
    assert all(len(texts) == 1 for texts in said.values()), said
    assert max(r.usage[1] for r in model.requests) > 128  # the chatty replies are long

    # PoseQA: exactly `poseqa score`'s accuracies, family by family, and its unparsed share.
    rows = read_csv(tmp_path / "poseqa-report" / "scores.csv")
    poseqa = results["poseqa"]
    n = sum(int(r["questions"]) for r in rows)
    expected = {
        f"exact_match_{r['family']},none": int(r["correct"]) / int(r["questions"]) for r in rows
    }
    expected["exact_match_all,none"] = sum(int(r["correct"]) for r in rows) / n
    expected["unparsed,none"] = sum(int(r["unparseable"]) for r in rows) / n
    assert {k: v for k, v in poseqa.items() if k in expected} == expected
    assert set(expected) == {k for k in poseqa if k.endswith(",none") and "stderr" not in k}
    # the numbers say something: right, wrong and unreadable replies are all there
    assert 0 < expected["exact_match_all,none"] < 1 and expected["unparsed,none"] > 0

    # E-HPAUB: the judge got the reviews `bench judge` asks, re-asks included, and the
    # relative scores are `bench report`'s, category by category.
    assert their_reviews == our_reviews
    given = [a["text"] for a in read_jsonl(answers / "ehpaub.jsonl")]
    asks = [3 if GARBLED in a else 2 if SHY in a else 1 for a in given]
    assert sorted(our_reviews.values()) == sorted(asks) and 1 in asks and 2 in asks
    rows = read_csv(tmp_path / "ehpaub-report" / "scores.csv")
    ehpaub = results["ehpaub"]
    expected = {f"relative_{r['category']},none": float(r["relative"]) for r in rows}
    (total,) = [r for r in rows if r["category"] == "all"]
    n = len(read_jsonl(benches["ehpaub"] / "questions.jsonl"))
    expected["unscored,none"] = int(total["failed"]) / n
    assert {k: v for k, v in ehpaub.items() if k in expected} == expected
    assert set(expected) == {k for k in ehpaub if k.endswith(",none") and "stderr" not in k}
    assert int(total["failed"]) == asks.count(3) > 0 and expected["relative_all,none"] < 100


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dead_judge_stops_the_run_at_once(
    benches: dict[str, Path], model: OpenAIServer, tmp_path: Path
) -> None:
    """A judge URL nobody answers: one clear message and exit 1 within seconds (lmms-eval's
    provider alone tried each question for 46 s), and no results with made-up numbers."""
    out = tmp_path / "lmms-results"
    dead = f"http://127.0.0.1:{closed_port()}/v1"
    run = lmms_eval("ehpaub", benches["out"], out, model.url, dead, timeout=120)
    assert run.returncode == 1, run.stdout[-4000:]
    # lmms-eval logs to stdout; on stderr, Python's line for the SystemExit we raise (after
    # whatever progress bar tqdm left unfinished there)
    assert run.stderr.count("E-HPAUB judge") == 1, run.stderr[-4000:]
    said = run.stderr[run.stderr.index("E-HPAUB judge") :].splitlines()[0]
    assert said.startswith(f"E-HPAUB judge {MODEL}: cannot reach {dead}"), run.stderr[-4000:]
    assert "OPENAI_API_URL" in said and "Traceback" not in run.stderr
    assert not list(out.rglob("*_results.json"))
