"""`bench answer` against servers that bill images as the providers document it: gpt-4o-mini's
14k-token COCO photo is an answer, not an impossible usage; the budget reserves what images
really cost; `detail` and scaling are the user's to set."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from pathlib import Path

from PIL import Image
from tests.conftest import find_coco_mini
from tests.ehpaub.helpers import read_jsonl
from tests.servers.vision import anthropic_image_tokens, openai_image_tokens

from llava_pose.cli import main


def answer(bench: Path, out: Path, server, model: str, *extra: object) -> int:
    args = ["-q", "bench", "answer", "--bench", bench, "--out", out, "--base-url", server.url]
    args += ["--image-root", find_coco_mini(), "--model", model, *extra]
    return main(list(map(str, args)))


def image_tokens_of(bench: Path, row: dict, rule: Callable[[int, int], int]) -> int:
    """What the question's image costs by `rule` (the loopback servers' reading of the
    providers' documents)."""
    question = next(
        q for q in read_jsonl(bench / "questions.jsonl") if q["question_id"] == row["question_id"]
    )
    with Image.open(find_coco_mini() / question["image"]) as im:
        return rule(*im.size)


def sent_size(body: dict) -> tuple[int, int]:
    part = body["messages"][0]["content"][0]
    data = part["image_url"]["url"] if "image_url" in part else part["source"]["data"]
    with Image.open(io.BytesIO(base64.b64decode(data.partition(";base64,")[2] or data))) as im:
        return im.size


def test_gpt_4o_mini_answers_though_it_bills_14k_tokens_a_photo(
    openai_server, small_bench: Path, tmp_path: Path
) -> None:
    """The README's own example failed every question: 'prompt_tokens 14192 for a prompt of
    97 characters', retried seven times, paid seven times, kept none."""
    out = tmp_path / "a.jsonl"
    assert answer(small_bench, out, openai_server, "openai:gpt-4o-mini") == 0
    rows = read_jsonl(out)
    assert len(rows) == 6
    for row in rows:
        image = image_tokens_of(
            small_bench, row, lambda w, h: openai_image_tokens("gpt-4o-mini", w, h)
        )
        assert image >= 2833 + 5667
        assert image < row["metadata"]["input_tokens"] < image + 100
    assert len(openai_server.requests) == 6  # each paid once, none retried


def test_anthropic_answers_with_its_area_rule(
    anthropic_server, small_bench: Path, tmp_path: Path
) -> None:
    out = tmp_path / "a.jsonl"
    assert answer(small_bench, out, anthropic_server, "anthropic:claude-sonnet-4") == 0
    for row in read_jsonl(out):
        image = image_tokens_of(small_bench, row, anthropic_image_tokens)
        assert image < row["metadata"]["input_tokens"] < image + 100


def test_the_budget_reserves_what_the_images_cost(
    openai_server, small_bench: Path, tmp_path: Path
) -> None:
    """gpt-4o-mini's worst case for one question is ~$0.0019-0.0028 (8.5k-14k image tokens at
    $0.15/M, 1,024 completion tokens at $0.60/M): $0.006 holds two or three, not all six (a flat
    1,600-token image allowance reserved ~$0.0009 a question and let every one through)."""
    out = tmp_path / "a.jsonl"
    rc = answer(
        small_bench, out, openai_server, "openai:gpt-4o-mini", "--max-cost", 0.006,
        "--concurrency", 1,
    )  # fmt: skip
    assert rc == 3  # the budget stopped it
    assert 2 <= len(openai_server.requests) <= 3


def test_detail_and_scaling_are_sent_and_billed_as_asked(
    openai_server, small_bench: Path, tmp_path: Path
) -> None:
    out = tmp_path / "low.jsonl"
    assert (
        answer(small_bench, out, openai_server, "openai:gpt-4o-mini", "--image-detail", "low") == 0
    )
    body = openai_server.requests[-1].body
    assert body["messages"][0]["content"][0]["image_url"]["detail"] == "low"
    assert all(r["metadata"]["input_tokens"] < 3_000 for r in read_jsonl(out))  # 2,833 + text
    assert all(r["metadata"]["image_detail"] == "low" for r in read_jsonl(out))

    openai_server.reset()
    out = tmp_path / "small.jsonl"
    assert answer(small_bench, out, openai_server, "openai:gpt-4o", "--image-max-side", 256) == 0
    sizes = {sent_size(r.body) for r in openai_server.requests}
    assert sizes and all(max(s) == 256 for s in sizes)
    assert all(r["metadata"]["input_tokens"] < 85 + 170 + 100 for r in read_jsonl(out))


def test_detail_is_refused_where_the_backend_has_none(
    anthropic_server, small_bench: Path, tmp_path: Path, capsys
) -> None:
    rc = answer(
        small_bench, tmp_path / "a.jsonl", anthropic_server, "anthropic:claude-sonnet-4",
        "--image-detail", "low",
    )  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "--image-detail" in err and anthropic_server.requests == []


def test_settings_of_an_earlier_answer_must_match_to_reuse_it(
    openai_server, small_bench: Path, tmp_path: Path
) -> None:
    out = tmp_path / "a.jsonl"
    assert answer(small_bench, out, openai_server, "openai:gpt-4o") == 0
    assert answer(small_bench, out, openai_server, "openai:gpt-4o", "--image-detail", "low") == 0
    assert len(openai_server.requests) == 12  # low detail is another answer: asked again
    meta = [json.loads(line)["metadata"] for line in out.open()]
    assert {m["image_detail"] for m in meta} == {"low"}
