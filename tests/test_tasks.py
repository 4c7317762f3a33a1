"""The task registry: every entry is complete, and every stage reads it."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from llava_pose.context import FORMATS
from llava_pose.errors import ConfigError
from llava_pose.prompts import load_prompts
from llava_pose.tasks import (
    TASK_TYPES,
    TASKS,
    request_id,
    rule_key,
    short_order,
    task_type,
)

DATA = resources.files("llava_pose").joinpath("data")


def test_names_short_ids_categories_and_files_are_unique() -> None:
    for field in ("name", "short", "category", "file", "title"):
        values = [getattr(t, field) for t in TASK_TYPES]
        assert len(set(values)) == len(values), field
    assert tuple(t.name for t in TASK_TYPES) == TASKS


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_task_has_its_prompt_files_in_every_format(fmt: str) -> None:
    prompts = load_prompts(fmt)
    for t in TASK_TYPES:
        assert DATA.joinpath(f"prompts/{fmt}/{t.name}.system.txt").is_file()
        assert prompts.system[t.name].strip()
        assert prompts.fewshot[t.name], t.name


@pytest.mark.parametrize("rules", ["rules_pose.json", "rules_boxes.json"])
def test_every_category_has_a_judge_rule(rules: str) -> None:
    keys = json.loads(DATA.joinpath("ehpaub", rules).read_text("utf-8"))
    assert {t.judge_rule for t in TASK_TYPES} <= set(keys)


def test_every_task_has_an_offline_writer() -> None:
    for t in TASK_TYPES:
        assert callable(t.load_writer()), t.writer


def test_ids_and_order_follow_the_registry() -> None:
    assert [request_id(7, t) for t in TASKS] == ["7-conv", "7-detail", "7-reasoning"]
    assert [short_order(t.short) for t in TASK_TYPES] == [0, 1, 2]
    assert short_order("nope") > 2
    assert [rule_key(t.category) for t in TASK_TYPES] == ["conv", "detail", "complex"]
    assert rule_key("llava_bench_conv") == "llava_bench_conv"


def test_an_unknown_task_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown task 'chat': choose from conversation, detail"):
        task_type("chat")


def test_parsers_give_pairs_an_instructed_task_one_pair() -> None:
    detail = task_type("detail")
    parsed = detail.parse("  He rides a bike.  ", "Describe the image.")
    assert [(p.question, p.answer) for p in parsed.pairs] == [
        ("Describe the image.", "He rides a bike.")
    ]
    conv = task_type("conversation").parse("Question:\nWhy?\n===\nAnswer:\nBecause.", None)
    assert [(p.question, p.answer) for p in conv.pairs] == [("Why?", "Because.")]
