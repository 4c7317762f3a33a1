"""The typed records that flow through every stage, with stable ids.

COCO image id -> `ImageContext` -> `ChatRequest` (id ``{image_id}-{short}``, see
`tasks.request_id`) -> `Completion` -> `Sample` (the same id, or ``{image_id}-conv-{k}`` when
conversations are split). The task types themselves are data, in `llava_pose.tasks`.

Coordinates in an `ImageContext` are normalized to [0, 1] by the image width and height and
rounded to 3 decimals, exactly what the teacher is shown; boxes are (x1, y1, x2, y2).
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Literal

import msgspec

# COCO's 17 keypoints, in annotation order (and the order of the paper's system prompts).
KEYPOINT_NAMES: tuple[str, ...] = (
    "nose",
    "left eye",
    "right eye",
    "left ear",
    "right ear",
    "left shoulder",
    "right shoulder",
    "left elbow",
    "right elbow",
    "left wrist",
    "right wrist",
    "left hip",
    "right hip",
    "left knee",
    "right knee",
    "left ankle",
    "right ankle",
)
NUM_KEYPOINTS = len(KEYPOINT_NAMES)

Box = tuple[float, float, float, float]
Keypoint = tuple[float, float, int]
# An unlabelled keypoint, and a person with none labelled: every reader (COCO, estimates,
# confidence) gives such keypoints these very tuples, which `context` renders on sight.
UNLABELLED: Keypoint = (0.0, 0.0, 0)
NO_KEYPOINTS: tuple[Keypoint, ...] = (UNLABELLED,) * NUM_KEYPOINTS


class Obj(msgspec.Struct, frozen=True):
    """A non-person object annotation."""

    category: str
    box: Box


class Estimate(msgspec.Struct, frozen=True, kw_only=True):
    """How a person's keypoints were estimated by a pose model (``prepare --images``), kept
    with the person so every reader can tell an estimate from an annotation and weigh it.

    `keypoint_scores` are the model's, one per COCO keypoint in [0, 1]; `thresholds`
    (labelled, visible) turned them into COCO's v: a score at or above `visible` gave v=2, at
    or above `labelled` v=1, below it v=0 and (0, 0). `score` is the person's: the
    detector's where the backend reports one (`detector` names it), else the mean keypoint
    score."""

    model: str  # backend:hub id or folder[@revision], e.g. "vitpose:usyd-community/vitpose-base-simple"
    detector: str  # what found the person, e.g. "rtdetr:PekingU/rtdetr_r50vd_coco_o365"
    version: str  # the library that ran them, e.g. "mediapipe 0.10.14"
    score: float
    keypoint_scores: tuple[float, ...]
    thresholds: tuple[float, float]


class Person(msgspec.Struct, frozen=True, omit_defaults=True):
    """A person annotation: box and the 17 COCO keypoints as (x, y, v).

    v: 0 not labelled (x = y = 0), 1 labelled but not visible, 2 labelled and visible.
    `estimate` is None for an annotation (COCO's) and says how a pose model placed them
    otherwise; a file without it reads as annotations, and COCO's contexts are unchanged.
    """

    box: Box
    keypoints: tuple[Keypoint, ...]
    estimate: Estimate | None = None

    @property
    def num_labelled(self) -> int:
        return sum(1 for _, _, v in self.keypoints if v > 0)


class ImageContext(msgspec.Struct, frozen=True):
    """Everything the teacher is told about one image."""

    image_id: int
    image: str  # path relative to the COCO root, e.g. "train2017/000000391895.jpg"
    width: int
    height: int
    captions: tuple[str, ...]
    objects: tuple[Obj, ...] = ()
    persons: tuple[Person, ...] = ()


class Message(msgspec.Struct, frozen=True):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One call to a language model.

    Only `model`, `messages`, `temperature`, `max_tokens` and `seed` decide the answer, and
    only they enter the cache key. `id` names the request in outputs and failures; `meta`
    carries stage data (task, image id, the Table 4 instruction) that is never sent;
    `context` is the image the request is about, for the filters that check the reply.
    """

    id: str
    model: str
    messages: tuple[Message, ...]
    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    meta: dict[str, Any] = {}
    context: ImageContext | None = None
    images: tuple[str, ...] = ()  # local image paths for vision answerers (bench answer)
    # How the images are sent: OpenAI's `detail` (None: not sent, the provider's auto), and
    # the longest side they are scaled down to first (None: the file as it is).
    image_detail: str | None = None
    image_max_side: int | None = None
    # Leading messages every request of its kind shares (system prompt, few-shot examples):
    # the prefix a provider can cache; Anthropic's is marked with cache_control.
    prefix: int = 0


class Completion(msgspec.Struct, frozen=True, kw_only=True):
    """A finished call: text plus what it cost."""

    text: str
    finish_reason: str = "stop"  # "stop" | "length" | provider-specific
    input_tokens: int = 0
    output_tokens: int = 0
    model: str = ""
    cached: bool = False  # served from the cache: paid for in an earlier run
    # Of `input_tokens`: read from the provider's prompt cache (billed at its cached rate),
    # and written to it (Anthropic bills a write above the input rate).
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


class Turn(msgspec.Struct, frozen=True):
    from_: Literal["human", "gpt"] = msgspec.field(name="from")
    value: str


class Sample(msgspec.Struct, frozen=True):
    """One LLaVA training record, as LLaVA's own data files spell it."""

    id: str
    image: str
    conversations: tuple[Turn, ...]


def derived_seed(*parts: object) -> int:
    """A stable 31-bit seed from parts such as (seed, image id, task, attempt): the same in
    every process (unlike `hash`), so re-asks and repeated samples get distinct, reproducible
    seeds and therefore distinct cache keys."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


# -- the prompt data (package data files; `llava_pose.prompts` loads and renders them) -----------


class FewShotExample(msgspec.Struct, frozen=True):
    context: ImageContext
    response: str
    instruction: str | None = None  # detail examples: the Table 4 instruction answered


@dataclasses.dataclass(frozen=True)
class PromptSet:
    """Everything one format sends, loaded from package data."""

    format: str
    system: dict[str, str]
    caption_question: str
    conversation_request: str
    detail_instructions: tuple[str, ...]
    fewshot: dict[str, tuple[FewShotExample, ...]]
    cues: bool = False  # each person's pose facts follow their keypoints (--cues)
