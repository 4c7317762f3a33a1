"""The task prompts (Tables 1-4 of the paper), built as plain `ChatRequest`s.

Texts live in package data (``data/prompts``): the system prompts word for word from the
paper (paragraph breaks as in the authors' scripts), the Table 4 instructions, the closing
request of Table 1, our compact-format system prompts and the worked few-shot examples.

* conversation (Table 1): system; each of the image's captions as a few-shot pair
  ("What can be described in the image?" -> caption); the closing request.
* detail (Table 2): system; the image's annotation messages (captions, then every object and
  every person with box and keypoints); one Table 4 instruction drawn with the seed.
* reasoning (Table 3): system; the image's annotation messages.

Which task presents the image how is data: the `query` and `instructed` fields of its entry in
`llava_pose.tasks`; files are found by the task's name.

``--fewshot`` puts worked examples before the query: each example is rendered exactly like a
query of its task (same format) and followed by its answer as an assistant message.

``--teacher-image`` (not in the paper, whose teacher read text only) attaches the image file to
each request (`with_image`) and adds a note to every system prompt (``data/prompts/image.yaml``);
without it nothing here changes by a byte.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import random
from collections.abc import Callable, Collection, Iterable
from importlib import resources
from typing import Any, NamedTuple

import msgspec

from .context import FORMATS, cues_system_note, data_yaml
from .errors import ConfigError
from .forked import share
from .records import ChatRequest, FewShotExample, ImageContext, Message, PromptSet
from .tasks import TASK_TYPES, TASKS, Query, request_id, task_type


def _read(path: str) -> str:
    return resources.files("llava_pose").joinpath("data/prompts", path).read_text("utf-8")


def load_prompts(fmt: str = "paper", cues: bool = False, image: bool = False) -> PromptSet:
    """The prompts of one format; with `cues`, tasks that show people get their pose facts
    in words after the keypoints and one sentence about them in the system prompt; with
    `image` (``--teacher-image``), every system prompt says that the image is attached too
    (`image_system_note`: the requests carry it through `with_image`). One object per
    choice, however the arguments are spelled."""
    return _load_prompts(fmt, bool(cues), bool(image))


@functools.cache
def _load_prompts(fmt: str, cues: bool, image: bool) -> PromptSet:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown prompt format {fmt!r}: choose one of {', '.join(FORMATS)}")
    messages = data_yaml(_read(f"{fmt}/messages.yaml"))
    instructions = tuple(
        line.strip() for line in _read("detail_instructions.txt").splitlines() if line.strip()
    )
    fewshot = {
        t.name: tuple(
            msgspec.convert(e, FewShotExample) for e in data_yaml(_read(f"fewshot/{t.name}.yaml"))
        )
        for t in TASK_TYPES
    }
    note = "\n\n" + cues_system_note() if cues else ""
    return PromptSet(
        format=fmt,
        system={
            t.name: _read(f"{fmt}/{t.name}.system.txt").strip()
            + (note if t.shows_people else "")
            + ("\n\n" + image_system_note(t.shows_people) if image else "")
            for t in TASK_TYPES
        },
        caption_question=messages["caption_question"],
        conversation_request=messages["conversation_request"],
        detail_instructions=instructions,
        fewshot=fewshot,
        cues=cues,
    )


@functools.cache
def image_system_note(shows_people: bool) -> str:
    """The system prompt's sentences under ``--teacher-image`` (``data/prompts/image.yaml``):
    the teacher sees the picture and the text, and for a pose the keypoints win, since the
    pose filter checks the reply against them."""
    notes = data_yaml(_read("image.yaml"))["system_note"]
    return str(notes["people" if shows_people else "captions"]).strip()


def with_image(
    request: ChatRequest,
    image: str,
    *,
    detail: str | None = None,
    max_side: int | None = None,
) -> ChatRequest:
    """`request` with its image file attached (``--teacher-image``): the backends send it
    with the query's first user message, after the prefix the requests share, so that prefix
    stays cacheable and a few-shot example is never taken for the picture. Only the image
    fields change: the text, ids and meta stay as built. Pure."""
    return msgspec.structs.replace(
        request, images=(image,), image_detail=detail, image_max_side=max_side
    )


def pick_instruction(prompts: PromptSet, image_id: int, seed: int) -> str:
    """The Table 4 instruction for one image: a function of (seed, image id) only, so it does
    not change when other images are added or removed."""
    digest = hashlib.sha256(f"{seed}:{image_id}:detail".encode()).digest()
    return random.Random(digest).choice(prompts.detail_instructions)


def query_messages(
    prompts: PromptSet, ctx: ImageContext, task: str, instruction: str | None = None
) -> list[Message]:
    """The user messages that present one image for one task (no system, no examples)."""
    spec = task_type(task)
    out = list(_presented(prompts, ctx, spec.query))
    if spec.instructed:
        out.append(Message("user", instruction or prompts.detail_instructions[0]))
    return out


# The last few presentations of an image, by identity of (prompts, context, query): detail and
# reasoning present an image alike, and `build_request` is called one image at a time, so the
# second task reuses the first one's messages (the same objects) instead of rendering them again.
_RECENT_MAX = 8
_recent: dict[tuple[int, int, int], tuple[PromptSet, ImageContext, tuple[Message, ...]]] = {}


def _presented(prompts: PromptSet, ctx: ImageContext, query: Query) -> tuple[Message, ...]:
    key = (id(prompts), id(ctx), id(query))
    hit = _recent.get(key)
    if hit is not None and hit[0] is prompts and hit[1] is ctx:
        return hit[2]
    messages = tuple(query(prompts, ctx))
    if len(_recent) >= _RECENT_MAX:
        try:
            del _recent[next(iter(_recent))]
        except (KeyError, RuntimeError, StopIteration):  # another thread got there first
            _recent.clear()
    _recent[key] = (prompts, ctx, messages)
    return messages


_Examples = tuple[tuple[int, tuple[Message, ...]], ...]
_examples: dict[tuple[int, str], tuple[PromptSet, _Examples]] = {}


def _example_messages(prompts: PromptSet, task: str) -> _Examples:
    """(image id, messages) of each worked example of `task`: its query, then its answer.
    Rendered once per prompt set, not once per request."""
    hit = _examples.get((id(prompts), task))
    if hit is not None and hit[0] is prompts:
        return hit[1]
    examples = tuple(
        (
            example.context.image_id,
            (
                *query_messages(prompts, example.context, task, example.instruction),
                Message("assistant", example.response.strip()),
            ),
        )
        for example in prompts.fewshot[task]
    )
    _examples[(id(prompts), task)] = (prompts, examples)
    return examples


def build_request(
    ctx: ImageContext,
    task: str,
    *,
    model: str,
    prompts: PromptSet,
    seed: int = 0,
    fewshot: bool = False,
    temperature: float | None = None,
    max_tokens: int | None = None,
) -> ChatRequest:
    """The teacher request for one image and task. Pure: same inputs, same request."""
    spec = task_type(task)
    instruction = pick_instruction(prompts, ctx.image_id, seed) if spec.instructed else None
    return _assemble(
        ctx, task, _presented(prompts, ctx, spec.query), instruction,
        model=model, prompts=prompts, seed=seed, fewshot=fewshot, temperature=temperature,
        max_tokens=max_tokens,
    )  # fmt: skip


def _assemble(
    ctx: ImageContext,
    task: str,
    shown: tuple[Message, ...],
    instruction: str | None,
    *,
    model: str,
    prompts: PromptSet,
    seed: int,
    fewshot: bool,
    temperature: float | None,
    max_tokens: int | None,
) -> ChatRequest:
    """`build_request` from the image's rendered messages and its instruction (None for a task
    that takes none)."""
    messages = [_message("system", prompts.system[task])]
    if fewshot:
        for image_id, example in _example_messages(prompts, task):
            if image_id != ctx.image_id:  # never show the teacher its own answer
                messages += example
    prefix = len(messages)  # system + examples: what every request of the task shares
    messages += shown
    meta = {"task": task, "image_id": ctx.image_id, "image": ctx.image}
    if instruction is not None:
        messages.append(_message("user", instruction))
        meta["instruction"] = instruction
    return ChatRequest(
        id=request_id(ctx.image_id, task),
        model=model,
        messages=tuple(messages),
        temperature=temperature,
        max_tokens=max_tokens,
        seed=seed,
        meta=meta,
        context=ctx,
        prefix=prefix,
    )


class Built(NamedTuple):
    """What `build_requests` makes: the requests, and each one's characters."""

    requests: list[ChatRequest]
    chars: list[int]


def build_requests(
    contexts: Iterable[ImageContext],
    tasks: Collection[str],
    *,
    model: str,
    prompts: PromptSet,
    seed: int = 0,
    fewshot: bool = False,
    temperature: float | None = None,
    max_tokens: int | None = None,
    meanwhile: Callable[[], object] | None = None,
) -> Built:
    """`build_request` for each image and each of `tasks` (image by image, tasks in registry
    order), the same requests as one call per request, with each request's characters
    (`pricing.prompt_chars`: the context-window check and the estimate need them) summed from
    its parts as they are put together rather than by a walk over 650k messages after.
    Rendering the images is three quarters of the work: from `_PARALLEL_REQUESTS` requests
    (on Linux) a forked second process renders chunks of images and sends their messages back
    (`forked.share`: the two meet wherever their speeds put them), and `meanwhile`, this
    process's own work (warming the teacher), is done while it renders: ~1 s of a train2017
    dry run (7.0 s against 8.1 s, measured alone; README "How it is built")."""
    contexts = list(contexts)
    wanted = [t for t in TASKS if t in tasks]
    queries = list(dict.fromkeys(task_type(t).query for t in wanted))
    which = [(t, queries.index(task_type(t).query), task_type(t).instructed) for t in wanted]
    instructed = any(asks for _, _, asks in which)
    fixed = {t: len(prompts.system[t]) for t in wanted}  # characters every request of t has
    examples: dict[str, dict[int, int]] = {t: {} for t in wanted}  # t -> image id -> chars
    if fewshot:
        for task in wanted:
            for image_id, shown in _example_messages(prompts, task):  # once, before any fork
                examples[task][image_id] = examples[task].get(image_id, 0) + _size(shown)
            fixed[task] += sum(examples[task].values())
    options: dict[str, Any] = {
        "model": model, "prompts": prompts, "seed": seed, "fewshot": fewshot,
        "temperature": temperature, "max_tokens": max_tokens,
    }  # fmt: skip

    def assemble(images: list[ImageContext], rendered: Iterable[_Rendered]) -> Built:
        requests, chars = [], []
        for ctx, (shown, instruction, sizes) in zip(images, rendered, strict=True):
            for task, q, asks in which:
                requests.append(
                    _assemble(ctx, task, shown[q], instruction if asks else None, **options)
                )
                size = fixed[task] + sizes[q] + (len(instruction) if asks and instruction else 0)
                chars.append(size - examples[task].get(ctx.image_id, 0))  # its own: left out
        return Built(requests, chars)

    def here(start: int, end: int) -> Built:
        images = contexts[start:end]
        return assemble(images, _render(prompts, images, queries, seed, instructed))

    def there(start: int, end: int) -> bytes:
        return _render_encoded(prompts, contexts[start:end], queries, seed, instructed)

    def take(start: int, end: int, data: bytes) -> Built:
        return assemble(contexts[start:end], msgspec.msgpack.decode(data, type=list[_Rendered]))

    parallel = len(contexts) * len(wanted) >= _PARALLEL_REQUESTS
    parts = share(
        len(contexts), _CHUNK if parallel else max(1, len(contexts)), here, there, take,
        meanwhile,
    )  # fmt: skip
    requests = list(itertools.chain.from_iterable(p.requests for p in parts))
    chars = list(itertools.chain.from_iterable(p.chars for p in parts))
    return Built(requests, chars)


_PARALLEL_REQUESTS = 20_000
_CHUNK = 256  # images a chunk of `build_requests`' shared rendering
# One image rendered: its messages for each query, its Table 4 instruction (or None), and the
# characters of each query's messages
_Rendered = tuple[list[tuple[Message, ...]], str | None, list[int]]


def _size(messages: Iterable[Message]) -> int:
    return sum(len(m.content) for m in messages)


def _render(
    prompts: PromptSet,
    contexts: list[ImageContext],
    queries: list[Query],
    seed: int,
    instructed: bool,
) -> list[_Rendered]:
    out: list[_Rendered] = []
    for ctx in contexts:
        shown = [tuple(q(prompts, ctx)) for q in queries]
        instruction = pick_instruction(prompts, ctx.image_id, seed) if instructed else None
        out.append((shown, instruction, [_size(m) for m in shown]))
    return out


def _render_encoded(
    prompts: PromptSet,
    contexts: list[ImageContext],
    queries: list[Query],
    seed: int,
    instructed: bool,
) -> bytes:
    """In the child: `_render`, as msgpack."""
    return msgspec.msgpack.encode(_render(prompts, contexts, queries, seed, instructed))


_MESSAGES_MAX = 1024
_messages: dict[tuple[str, str], Message] = {}


def _message(role: str, text: str) -> Message:
    """One shared `Message` per text that every request repeats (system prompts, the Table 4
    instructions) instead of one per request."""
    message = _messages.get((role, text))
    if message is None:
        message = Message(role, text)  # type: ignore[arg-type]
        if len(_messages) < _MESSAGES_MAX:
            _messages[(role, text)] = message
    return message


__all__ = [
    "Built",
    "FewShotExample",
    "PromptSet",
    "build_request",
    "build_requests",
    "image_system_note",
    "load_prompts",
    "pick_instruction",
    "query_messages",
    "with_image",
]
