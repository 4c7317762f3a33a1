"""Fixtures of the `view` tests: real outputs of `generate`, `bench` and `poseqa` on COCO-MINI
(offline teacher, or a loopback teacher whose replies the filters drop and whose text holds
markup), and a chromium driven by playwright for the browser tests."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from tests.ehpaub.helpers import KEY, model_answers, write_jsonl
from tests.ehpaub.replies import respond, teacher_reply
from tests.servers import OpenAIServer

from llava_pose.cli import main

MARKUP = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


def cli(*args: object) -> int:
    """The CLI, in a thread of its own: playwright's sync API keeps an event loop running in
    the main thread, where the commands' own asyncio.run would refuse to start."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(main, ["-q", *map(str, args)]).result()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def rules_out(tmp_path_factory: pytest.TempPathFactory, coco_mini: Path) -> Path:
    """`generate` with the offline teacher on every COCO-MINI val2017 image, pose check on."""
    out = tmp_path_factory.mktemp("rules") / "out"
    coco = ("--coco", coco_mini, "--split", "val2017")
    assert cli("generate", *coco, "--teacher", "rules", "--pose-filter", "--out", out) == 0
    return out


def _teacher(body: dict[str, Any]) -> str:
    """The loopback teacher: descriptions say everyone lies down (the keypoints contradict
    it), reasoning answers name the keypoints (filter mentions_source), and conversations
    carry markup that must be shown, never run."""
    text = teacher_reply(body)
    if "They seem calm." in text:
        return text.replace("They seem calm.", f"They seem calm. {MARKUP}")
    if "A person is in the scene" in text:
        return text.replace("A person is in the scene", "Everyone is lying down", 1)
    return text.replace("They are waiting", "Their keypoints say they are waiting")


@pytest.fixture(scope="session")
def llm_out(tmp_path_factory: pytest.TempPathFactory, coco_mini: Path) -> Iterator[Path]:
    """`generate` with a loopback GPT-4o teacher on 3 COCO-MINI val2017 images: rejected.jsonl
    holds contradicts_pose and mentions_source drops, claims.jsonl the checked claims."""
    out = tmp_path_factory.mktemp("llm") / "out"
    with pytest.MonkeyPatch.context() as mp, OpenAIServer(responder=_teacher, api_key=KEY) as s:
        mp.setenv("OPENAI_API_KEY", KEY)
        mp.delenv("OPENAI_BASE_URL", raising=False)
        args = ("--coco", coco_mini, "--split", "val2017", "--max-images", 3)
        rc = cli("generate", *args, "--teacher", "openai:gpt-4o", "--base-url", s.url, "--out", out)
        assert rc == 0
    yield out


@pytest.fixture(scope="session")
def ehpaub(tmp_path_factory: pytest.TempPathFactory, coco_mini: Path) -> dict[str, Path]:
    """A real E-HPAUB of 2 COCO-MINI images (offline teacher), two models' answers, and the
    reviews of a loopback judge (reference 8, WEAK 5, STRONG 7)."""
    root = tmp_path_factory.mktemp("ehpaub")
    bench, answers, reviews = root / "perf", root / "answers", root / "reviews"
    coco = ("--coco", coco_mini, "--split", "val2017")
    assert cli("bench", "build", *coco, "--images", 2, "--teacher", "rules", "--out", bench) == 0
    weak = model_answers(answers / "weak.jsonl", bench, "WEAK")
    strong = model_answers(answers / "strong.jsonl", bench, "STRONG")
    rows = [json.loads(x) for x in weak.read_text().splitlines()]
    rows[0]["text"] = f"WEAK {MARKUP}"
    write_jsonl(weak, rows)
    with pytest.MonkeyPatch.context() as mp, OpenAIServer(responder=respond, api_key=KEY) as s:
        mp.setenv("OPENAI_API_KEY", KEY)
        mp.delenv("OPENAI_BASE_URL", raising=False)
        rc = cli(
            "bench", "judge", "--bench", bench, "--answers", weak, strong,
            "--judge", "openai:gpt-4o", "--base-url", s.url, "--out", reviews,
        )  # fmt: skip
        assert rc == 0
    return {"bench": bench, "answers": answers, "reviews": reviews}


@pytest.fixture(scope="session")
def poseqa(tmp_path_factory: pytest.TempPathFactory, coco_mini: Path) -> dict[str, Path]:
    """A real PoseQA of COCO-MINI val2017 and two models: one always right, one always says
    the opposite or nothing readable."""
    root = tmp_path_factory.mktemp("poseqa")
    bench, answers = root / "poseqa", root / "answers"
    assert cli("poseqa", "build", "--coco", coco_mini, "--split", "val2017", "--out", bench) == 0
    questions = read_jsonl(bench / "questions.jsonl")
    right = [
        {"question_id": q["question_id"], "text": f"{q['answer']}.", "model_id": "oracle"}
        for q in questions
    ]
    flip = {"yes": "no", "no": "yes"}
    wrong = [
        {
            "question_id": q["question_id"],
            "text": flip.get(q["answer"], "I cannot tell."),
            "model_id": "contrarian",
        }
        for q in questions
    ]
    write_jsonl(answers / "oracle.jsonl", right)
    write_jsonl(answers / "contrarian.jsonl", wrong)
    return {"bench": bench, "answers": answers}


# -- the browser --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium through playwright (its own download cannot be fetched here). Per
    module: playwright's sync API keeps an event loop running in this thread until it stops,
    and any later test that calls asyncio.run() would fail inside it."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        yield b
        b.close()


class Page:
    """A browser page that records console errors and uncaught exceptions."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def open(self, url: str) -> Any:
        self.page.goto(url)
        self.page.wait_for_selector("html[data-ready='1']", timeout=15_000)
        return self.page


@pytest.fixture
def tab(browser: Any) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield Page(page)
    context.close()
