"""An image whose prompt would pass the teacher's context window is skipped with a counted
reason (estimate, log, stats.json), never planned and sent in silence: a real COCO-MINI root
with one image given 10,000 captions, the real CLI, a loopback server recording requests."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from tests.servers import OpenAIServer

from llava_pose import coco
from llava_pose.cli import main
from llava_pose.llm.pricing import context_window, count_message_tokens, over_context
from llava_pose.records import ChatRequest, Message

SPLIT = "val2017"
MARK = "ZEBRA-CROSSING-MARK"  # in every added caption: which requests carry the big image


def test_context_windows_are_package_data_with_a_default() -> None:
    assert context_window("gpt-4o") == 128_000
    assert context_window("gpt-4o-2024-08-06") == 128_000  # a snapshot of a listed model
    assert context_window("claude-sonnet-4-20250514") == 200_000
    assert context_window("gpt-4-0613") == 8_192
    assert context_window("gpt-4.1-mini") == 1_047_576
    # unknown: the documented default, also for a local server's model and a new variant
    assert context_window("Qwen/Qwen2-VL-7B-Instruct") == 128_000
    assert context_window("o3-pro") == 128_000


def test_over_context_is_the_estimates_count_plus_max_tokens() -> None:
    for text in ("A person rides a bike. " * 3000, "人が自転車に乗っている。" * 2000):
        request = ChatRequest(
            id="1-conv",
            model="gpt-4o",
            messages=(Message("system", "Describe."), Message("user", text)),
            max_tokens=500,
        )
        tokens = count_message_tokens(request.messages, "gpt-4o") + 500
        assert over_context(request, tokens) is None  # exactly full still fits
        assert over_context(request, tokens - 1) == tokens
        assert over_context(request, 10 * len(text)) is None  # cannot pass: never counted


@pytest.fixture
def big_root(coco_annotations_copy: Path) -> tuple[Path, int]:
    """COCO-MINI with 10,000 more captions on the first of the 3 images `--max-images 3` draws."""
    root = coco_annotations_copy
    kept = coco.load_split(root, SPLIT)
    victim = coco.select_images(kept, 3, 0)[0].image_id
    path = root / "annotations" / f"captions_{SPLIT}.json"
    data = json.loads(path.read_text())
    start = max(a["id"] for a in data["annotations"]) + 1
    data["annotations"] += [
        {"id": start + i, "image_id": victim, "caption": f"{MARK} {i}: a person crosses."}
        for i in range(10_000)
    ]
    path.write_text(json.dumps(data))
    return root, victim


def generate(root: Path, out: Path, server: OpenAIServer, *extra: object) -> int:
    return main(
        ["generate", "--coco", str(root), "--split", SPLIT, "--max-images", "3",
         "--out", str(out), "--teacher", "openai:gpt-4o", "--base-url", server.url,
         *map(str, extra)]
    )  # fmt: skip


def test_generate_skips_the_image_and_says_so(
    big_root: tuple[Path, int], tmp_path: Path, server: OpenAIServer, capsys
) -> None:
    root, victim = big_root
    out = tmp_path / "out"
    assert generate(root, out, server) == 0
    assert len(server.requests) == 6  # the other two images, three tasks each
    assert not any(MARK in json.dumps(r.body) for r in server.requests)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["requests"]["skipped_context"] == 3
    assert stats["context_window"] == {
        "tokens": 128_000,
        "skipped_requests": 3,
        "skipped_images": [victim],
    }
    err = capsys.readouterr().err
    warning = next(line for line in err.splitlines() if "context window" in line)
    assert "skipped 3 requests of 1 images" in warning and "128,000 tokens" in warning
    assert re.search(rf"{victim}-\w+ needs [\d,]+", warning)
    assert "skipped: 3 requests of 1 images, too long for the context window" in err  # estimate


def test_dry_run_counts_the_skipped_requests_and_the_window_can_be_raised(
    big_root: tuple[Path, int], tmp_path: Path, server: OpenAIServer, capsys
) -> None:
    root, _ = big_root
    assert generate(root, tmp_path / "a", server, "--dry-run") == 0
    printed = capsys.readouterr().out
    assert "requests: 6\n" in printed
    assert "skipped: 3 requests of 1 images, too long for the context window (128,000" in printed
    # a local server with a longer window: nothing is skipped, the estimate says so
    assert generate(root, tmp_path / "b", server, "--dry-run", "--context-window", 1_000_000) == 0
    printed = capsys.readouterr().out
    assert "requests: 9\n" in printed and "skipped" not in printed
    assert server.requests == [] and not (tmp_path / "a").exists()


def test_a_context_window_below_one_token_is_an_option_error(
    big_root: tuple[Path, int], tmp_path: Path, server: OpenAIServer, capsys
) -> None:
    root, _ = big_root
    assert generate(root, tmp_path / "o", server, "--context-window", 0) == 2
    assert "--context-window: must be at least 1" in capsys.readouterr().err
    assert server.requests == []
