"""The paper's prompts (Tables 1-4), built as plain requests and compared by equality."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import msgspec
import pytest

from llava_pose.coco import read_split
from llava_pose.context import render_compact, render_paper
from llava_pose.llm.pricing import count_message_tokens
from llava_pose.prompts import build_request, load_prompts, pick_instruction
from llava_pose.records import ChatRequest, ImageContext, Message, Obj, Person
from llava_pose.tasks import TASKS

# Tables 1-4 of the paper, verbatim (its first line names the source and the licence).
PAPER = Path(__file__).resolve().parent / "data" / "paper-prompts.txt"


def paper_text() -> str:
    return PAPER.read_text("utf-8")


def words(text: str) -> list[str]:
    return text.replace("’", "'").split()


def ctx() -> ImageContext:
    return ImageContext(
        image_id=42,
        image="val2017/000000000042.jpg",
        width=640,
        height=480,
        captions=("A skier.", "A man on skis.", "Snow."),
        objects=(Obj("skis", (0.1, 0.8, 0.5, 0.9)),),
        persons=(Person((0.2, 0.1, 0.5, 0.9), ((0.3, 0.2, 2),) * 17),),
    )


def test_system_prompts_are_the_papers_word_for_word() -> None:
    tables = re.findall(r'"content": f"""(.*?)"""\}\]', paper_text(), re.S)
    assert len(tables) == 3
    prompts = load_prompts("paper")
    for task, table in zip(("conversation", "detail", "reasoning"), tables, strict=True):
        assert words(prompts.system[task]) == words(table), task


def test_table4_instructions_are_the_papers() -> None:
    listed = re.findall(r'➤ "([^"]+)"', paper_text())
    assert len(listed) == 16
    assert list(load_prompts("paper").detail_instructions) == listed


def test_conversation_sends_captions_as_fewshot_pairs_then_the_request() -> None:
    p = load_prompts("paper")
    r = build_request(ctx(), "conversation", model="gpt-4o", prompts=p)
    q = "What can be described in the image?"
    closing = "Can you generate some new questions and answers focusing on the poses and actions of people in the image?"
    assert r.messages == (
        Message("system", p.system["conversation"]),
        Message("user", q),
        Message("assistant", "A skier."),
        Message("user", q),
        Message("assistant", "A man on skis."),
        Message("user", q),
        Message("assistant", "Snow."),
        Message("user", closing),
    )
    assert r.id == "42-conv" and r.meta["task"] == "conversation" and r.seed == 0


def test_detail_and_reasoning_send_the_annotation_messages() -> None:
    p = load_prompts("paper")
    detail = build_request(ctx(), "detail", model="gpt-4o", prompts=p, seed=3)
    reasoning = build_request(ctx(), "reasoning", model="gpt-4o", prompts=p)
    annotation = [Message("user", m) for m in render_paper(ctx())]
    instruction = pick_instruction(p, 42, 3)
    assert detail.messages == (
        Message("system", p.system["detail"]),
        *annotation,
        Message("user", instruction),
    )
    assert detail.meta["instruction"] == instruction
    assert reasoning.messages == (Message("system", p.system["reasoning"]), *annotation)
    assert annotation[0].content == "caption: A skier."
    assert annotation[3].content == "skis: [0.1, 0.8, 0.5, 0.9]"


def test_instruction_depends_on_seed_and_image_only() -> None:
    p = load_prompts("paper")
    picks = {pick_instruction(p, image_id, 0) for image_id in range(200)}
    assert len(picks) == 16  # all of Table 4 gets used
    assert pick_instruction(p, 5, 0) == pick_instruction(p, 5, 0)
    assert [pick_instruction(p, i, 0) for i in range(20)] != [
        pick_instruction(p, i, 1) for i in range(20)
    ]


def test_fewshot_examples_come_before_the_query_in_the_same_shape() -> None:
    p = load_prompts("paper")
    plain = build_request(ctx(), "reasoning", model="m", prompts=p)
    shot = build_request(ctx(), "reasoning", model="m", prompts=p, fewshot=True)
    examples = p.fewshot["reasoning"]
    assert len(examples) >= 2
    assert shot.messages[-len(plain.messages) + 1 :] == plain.messages[1:]
    assistant = [m.content for m in shot.messages if m.role == "assistant"]
    assert assistant == [e.response.strip() for e in examples]
    first_example = [Message("user", m) for m in render_paper(examples[0].context)]
    assert shot.messages[1 : 1 + len(first_example)] == tuple(first_example)
    # the examples carry keypoints
    assert any("keypoints: [[" in m.content for m in shot.messages[1 : -len(plain.messages)])


def test_fewshot_never_shows_an_image_its_own_example() -> None:
    p = load_prompts("paper")
    example = p.fewshot["detail"][0]
    r = build_request(example.context, "detail", model="m", prompts=p, fewshot=True)
    assert sum(m.content == example.response.strip() for m in r.messages) == 0


def test_compact_format_sends_one_context_message_and_fewer_tokens() -> None:
    paper = load_prompts("paper")
    compact = load_prompts("compact")
    for task in ("detail", "reasoning"):
        r = build_request(ctx(), task, model="m", prompts=compact)
        assert r.messages[1] == Message("user", render_compact(ctx()))
        assert count_message_tokens(r.messages) < count_message_tokens(
            build_request(ctx(), task, model="m", prompts=paper).messages
        )
    conv = build_request(ctx(), "conversation", model="m", prompts=compact)
    assert conv.messages[1].content == "Captions:\nA skier.\nA man on skis.\nSnow."


# -- pose cues: an ablation switch and nothing else -----------------------------------------

GOLDEN = Path(__file__).parent / "data" / "golden" / "requests.json"


def _digest(request: ChatRequest) -> str:
    body = msgspec.json.encode([(m.role, m.content) for m in request.messages])
    return hashlib.sha256(body).hexdigest()


def test_requests_without_cues_are_byte_identical_to_before_cues(coco_mini: Path) -> None:
    """Hashes of every COCO-MINI request (both formats, with and without few-shot examples),
    taken before cues existed: off, the switch changes nothing."""
    golden = json.loads(GOLDEN.read_text())
    seen = 0
    for split in ("train2017", "val2017"):
        for ctx in read_split(coco_mini, split).contexts:
            for fmt in ("paper", "compact"):
                for fewshot in (False, True):
                    for task in TASKS:
                        r = build_request(
                            ctx,
                            task,
                            model="gpt-4o",
                            prompts=load_prompts(fmt),
                            fewshot=fewshot,
                            max_tokens=1024,
                        )
                        key = f"{split}/{ctx.image_id}/{fmt}/{int(fewshot)}/{task}"
                        assert _digest(r) == golden[key], key
                        seen += 1
    assert seen == len(golden)


@pytest.mark.parametrize("fmt", ["paper", "compact"])
def test_cues_reach_only_the_tasks_that_show_people(coco_mini: Path, fmt: str) -> None:
    ctx = next(c for c in read_split(coco_mini, "val2017").contexts if len(c.persons) > 1)
    for task in TASKS:
        plain = build_request(ctx, task, model="m", prompts=load_prompts(fmt))
        cued = build_request(ctx, task, model="m", prompts=load_prompts(fmt, cues=True))
        text = "\n".join(m.content for m in cued.messages[1:])
        if task == "conversation":
            assert cued.messages == plain.messages
            continue
        assert cued.messages[0].content.startswith(plain.messages[0].content)
        assert 'a "pose:" line' in cued.messages[0].content
        assert text.count("pose: ") == sum(1 for p in ctx.persons if p.num_labelled)
        assert len(cued.messages) == len(plain.messages)
