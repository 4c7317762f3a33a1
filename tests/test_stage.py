"""The stage skeleton: estimate lines (online and batch side by side), the one re-ask loop
(`ask` with a settle hook) over a real runner and loopback server, and exit-code precedence."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import KEY
from tests.servers import OpenAIServer

from llava_pose.errors import EXIT_BUDGET, EXIT_OK, EXIT_PENDING, EXIT_SOME_FAILED
from llava_pose.llm.cache import Cache
from llava_pose.llm.openai_api import OpenAIBackend
from llava_pose.llm.pricing import Price
from llava_pose.llm.runner import Runner
from llava_pose.records import ChatRequest, Message
from llava_pose.stage import Stage


def req(i: int, attempt: int = 0) -> ChatRequest:
    return ChatRequest(
        id=f"q{i}-{attempt}",
        model="gpt-4o",
        messages=(Message("user", f"item {i} attempt {attempt}"),),
        max_tokens=100,
        seed=attempt,
    )


def test_estimate_shows_batch_cost_beside_online() -> None:
    requests = [req(i) for i in range(3)]
    online = Stage("generate", "gpt-4o", Price(2.5, 10.0), discount=0.5)
    lines = online.estimate(requests, lambda _: 50)
    assert lines[3].startswith("cost: ~$")
    assert lines[4].startswith("cost with --batch: ~$") and "50% of online" in lines[4]
    batch = Stage("generate", "gpt-4o", Price(2.5, 10.0), discount=0.5, batch=True)
    assert batch.estimate(requests, lambda _: 50)[4].startswith("cost this run (--batch)")
    local = Stage("generate", "llama", Price(0.0, 0.0))  # no batch API: no batch line
    assert len(local.estimate(requests, lambda _: 50)) == 4


def test_ask_reasks_until_settled(tmp_path: Path) -> None:
    def responder(body: dict) -> str:
        text = json.dumps(body)
        return "bad" if "item 1 attempt 0" in text or "item 2 attempt" in text else "good"

    with OpenAIServer(api_key=KEY, responder=responder) as server, Cache(tmp_path / "c") as cache:
        backend = OpenAIBackend("gpt-4o", base_url=server.url, api_key=KEY)
        stage = Stage("test", "gpt-4o", Price(2.5, 10.0))
        stage.runner = Runner(backend, cache=cache)

        def settle(item: tuple[int, int], _: ChatRequest, result) -> list[tuple[int, int]]:
            i, attempt = item
            bad = result.completion is not None and result.completion.text == "bad"
            return [(i, attempt + 1)] if bad and attempt < 2 else []

        done = stage.ask([(i, 0) for i in range(3)], lambda it: req(*it), settle)
        assert stage.asked == [3, 2, 1]  # item 1 fixed on its 2nd try, item 2 gives up on its 3rd
        assert [(it, r.completion.text) for it, _, r in done if r.completion] == [
            ((0, 0), "good"),
            ((1, 0), "bad"),
            ((2, 0), "bad"),
            ((1, 1), "good"),
            ((2, 1), "bad"),
            ((2, 2), "bad"),
        ]
        assert stage.exit_code() == EXIT_OK
        stage.stats.failed = 1
        assert stage.exit_code(1, "one failed") == EXIT_SOME_FAILED
        stage.waiting = 2  # batches still running come before failures ...
        assert stage.exit_code(1, "one failed") == EXIT_PENDING
        stage.stats.skipped_budget = 1  # ... and the budget before both
        assert stage.exit_code(1, "one failed") == EXIT_BUDGET
