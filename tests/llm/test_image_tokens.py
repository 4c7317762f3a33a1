"""Images are counted as the providers bill them: the documents' own worked examples, each
model family's rule, and the loopback servers' reading of the documents agreeing with ours."""

from __future__ import annotations

import pytest
from tests.servers.vision import anthropic_image_tokens, openai_image_tokens

from llava_pose.llm.image_tokens import Rule, image_tokens, patch_tokens, rule_for


@pytest.mark.parametrize(
    ("model", "size", "detail", "tokens"),
    [
        ("gpt-4o", (1024, 1024), "high", 765),  # OpenAI's example: 4 tiles
        ("gpt-4o", (2048, 4096), "high", 1105),  # scaled to 768 x 1536: 6 tiles
        ("gpt-4o", (4096, 8192), "low", 85),  # low is the base, whatever the size
        ("gpt-4o-mini", (640, 480), "auto", 2833 + 2 * 5667),  # what broke bench answer
        ("gpt-4o-mini-2024-07-18", (640, 480), "low", 2833),
        ("gpt-5", (512, 512), "high", 70 + 140),
        ("o3", (1024, 512), "high", 75 + 2 * 150),
    ],
)
def test_tile_rule_matches_the_documented_examples(
    model: str, size: tuple[int, int], detail: str, tokens: int
) -> None:
    assert image_tokens("openai", model, *size, detail) == tokens


def test_patch_rule_matches_the_documented_examples() -> None:
    one = Rule("patches", multiplier=1.0)
    assert patch_tokens(1024, 1024, one) == 1024  # 32 x 32 patches, under the cap
    assert patch_tokens(1800, 2400, one) == 1452  # scaled down to 33 x 44 patches
    assert rule_for("openai", "gpt-4.1-mini").kind == "patches"  # not gpt-4.1's tiles
    assert rule_for("openai", "gpt-4.1").kind == "tiles"
    assert image_tokens("openai", "gpt-4.1-mini", 1024, 1024) == 1659  # 1024 x 1.62, up
    assert image_tokens("openai", "o4-mini", 1024, 1024, "low") == 1762  # detail ignored


def test_anthropic_rule_is_area_over_750_within_its_limits() -> None:
    assert image_tokens("anthropic", "claude-sonnet-4", 1000, 1000) == 1334  # docs: ~1334
    assert image_tokens("anthropic", "claude-sonnet-4", 640, 480) == 410
    assert image_tokens("anthropic", "claude-sonnet-4", 4000, 3000) == 1600  # scaled down


def test_an_unlisted_openai_compatible_model_takes_gpt_4o_s_rule() -> None:
    assert image_tokens("openai", "llava-hf/llava-1.5-7b-hf", 640, 480) == 85 + 2 * 170


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4o-mini", "gpt-4.1-nano", "o4-mini", "gpt-5"])
@pytest.mark.parametrize("size", [(640, 480), (427, 640), (3000, 200), (2049, 513), (33, 33)])
def test_ours_and_the_loopback_server_s_reading_of_the_documents_agree(
    model: str, size: tuple[int, int]
) -> None:
    for detail in ("auto", "low", "high"):
        assert image_tokens("openai", model, *size, detail) == openai_image_tokens(
            model, *size, detail
        )
    assert image_tokens("anthropic", "claude-sonnet-4", *size) == anthropic_image_tokens(*size)
