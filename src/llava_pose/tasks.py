"""The task types, as data: one registry that every stage iterates.

A task type is what the teacher is asked to write for one image (a conversation, a detailed
description, a complex-reasoning question) and, in the benchmark, the question category it
becomes. Everything that differs between task types is a field of its `TaskType`: the short id
in sample ids, the benchmark category and its title, the output file, the prompt files per
format (``data/prompts/<format>/<name>.system.txt``, ``data/prompts/fewshot/<name>.yaml``), how
the image is presented (`query`), how the reply is read (`parse`), the offline teacher's
writer and the judge rule key. Adding a task type is one entry in `TASK_TYPES` plus its data
files; no stage branches on a task name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .context import caption_lines, render_compact, render_paper
from .errors import ConfigError
from .parse import Parsed, QAPair, parse_description, parse_qa
from .records import ImageContext, Message

if TYPE_CHECKING:
    from .records import PromptSet

# How one task presents an image to the teacher: the user messages (no system, no examples,
# no instruction), a pure function of the loaded prompts and the context.
Query = Callable[["PromptSet", ImageContext], list[Message]]
# How one task reads a teacher reply: (reply text, the instruction asked, if any) -> pairs.
Parser = Callable[[str, "str | None"], Parsed]


def caption_query(prompts: PromptSet, ctx: ImageContext) -> list[Message]:
    """Table 1: the captions as few-shot pairs, then the closing request (compact: one
    message of the captions and the people, then the request)."""
    if prompts.format == "compact":
        return [
            Message("user", render_compact(ctx, annotations=False)),
            Message("user", prompts.conversation_request),
        ]
    out: list[Message] = []
    for caption in caption_lines(ctx):  # an image without captions: a line saying so
        out.append(Message("user", prompts.caption_question))
        out.append(Message("assistant", caption))
    out.append(Message("user", prompts.conversation_request))
    return out


def annotation_query(prompts: PromptSet, ctx: ImageContext) -> list[Message]:
    """Tables 2-3: the image's annotation messages (compact: one message)."""
    if prompts.format == "compact":
        return [Message("user", render_compact(ctx, cues=prompts.cues))]
    return [Message("user", m) for m in render_paper(ctx, cues=prompts.cues)]


def parse_pairs(text: str, instruction: str | None = None) -> Parsed:
    """A reply of question/answer pairs."""
    return parse_qa(text)


def parse_answer(text: str, instruction: str | None = None) -> Parsed:
    """A reply that is the answer itself, to the instruction that was asked."""
    return Parsed((QAPair(instruction or "", parse_description(text)),))


@dataclass(frozen=True)
class TaskType:
    """One task type. `name` is the public name (``--tasks``, ``meta["task"]``)."""

    name: str
    short: str  # in ids: ``{image_id}-{short}``
    category: str  # benchmark question category (LLaVA-Bench's names) and judge rule key
    title: str  # the category's heading in reports
    file: str  # the output file of `generate`
    query: Query
    parse: Parser
    writer: str  # the offline teacher's writer, ``module:function`` (imported when used)
    instructed: bool = False  # ends with a Table 4 instruction drawn per image
    shows_people: bool = False  # its query shows the keypoints (and, with --cues, pose facts)
    multi_turn: bool = False  # several Q/A pairs: --split-conversations, one drawn for the bench

    @property
    def judge_rule(self) -> str:
        """The key of this task's rule in a judge rules file."""
        return self.category

    def load_writer(self) -> Callable[..., str]:
        module, _, name = self.writer.partition(":")
        fn: Callable[..., str] = getattr(importlib.import_module(module), name)
        return fn


TASK_TYPES: tuple[TaskType, ...] = (
    TaskType(
        name="conversation",
        short="conv",
        category="conv",
        title="Conversation",
        file="conversation.json",
        query=caption_query,
        parse=parse_pairs,
        writer="llava_pose.teachers.rules:write_conversation",
        multi_turn=True,
    ),
    TaskType(
        name="detail",
        short="detail",
        category="detail",
        title="Detail description",
        file="detail.json",
        query=annotation_query,
        parse=parse_answer,
        writer="llava_pose.teachers.rules:write_detail",
        instructed=True,
        shows_people=True,
    ),
    TaskType(
        name="reasoning",
        short="reasoning",
        category="complex",
        title="Complex reasoning",
        file="reasoning.json",
        query=annotation_query,
        parse=parse_pairs,
        writer="llava_pose.teachers.rules:write_reasoning",
        shows_people=True,
    ),
)

BY_NAME: dict[str, TaskType] = {t.name: t for t in TASK_TYPES}
# The task names in registry order: the order of requests, files and benchmark questions.
TASKS: tuple[str, ...] = tuple(BY_NAME)
BY_CATEGORY: dict[str, TaskType] = {t.category: t for t in TASK_TYPES}
_ORDER: dict[str, int] = {t.short: i for i, t in enumerate(TASK_TYPES)}


def task_type(name: str) -> TaskType:
    """The task type called `name`; an unknown name is a ConfigError listing the known ones."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}: choose from {', '.join(TASKS)}") from None


def request_id(image_id: int, task: str) -> str:
    """The stable id of the request (and the sample) for one image and task."""
    spec = BY_NAME.get(task)
    return f"{image_id}-{spec.short if spec else task}"


def short_order(short: str) -> int:
    """Position of a task's short id in the registry, for sorting records (unknown: last)."""
    return _ORDER.get(short, len(_ORDER) + 8)


def category_titles() -> dict[str, str]:
    return {t.category: t.title for t in TASK_TYPES}


def rule_key(category: str) -> str:
    """The judge rule of a question category: its task's, or the category itself (LLaVA-Bench
    files bring categories of their own, with rules files keyed by them)."""
    spec = BY_CATEGORY.get(category)
    return spec.judge_rule if spec else category


__all__ = [
    "BY_CATEGORY",
    "BY_NAME",
    "TASKS",
    "TASK_TYPES",
    "TaskType",
    "annotation_query",
    "caption_query",
    "request_id",
    "rule_key",
    "short_order",
    "task_type",
]
