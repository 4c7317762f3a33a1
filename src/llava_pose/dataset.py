"""Teacher replies -> LLaVA training records, and the files a generate run writes.

A record is ``{"id", "image", "conversations": [{"from": "human", "value": "<image>\\n..."},
{"from": "gpt", ...}, ...]}`` with ``<image>`` only in the first human turn and ``image``
relative to the COCO root (train with ``--image-root /data/coco``).

Ids are stable: ``{image_id}-conv``, ``{image_id}-detail``, ``{image_id}-reasoning``; with
``--split-conversations`` each Q/A pair is its own record ``{image_id}-conv-{k}`` (k from 0),
as in the paper's released samples.

Filtering (see `filters`): in conversations and reasoning a bad pair is dropped and the good
ones kept; a cut-off reply loses only its last pair; a description is kept or dropped whole.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .filters import check_text, context_numbers
from .io import write_json
from .parse import QAPair
from .records import ChatRequest, Completion, ImageContext, Sample, Turn
from .tasks import short_order, task_type
from .verify import check_text as check_claims

IMAGE_TOKEN = "<image>"
# The merged file that training reads (each task type's own file is its `TaskType.file`).
MERGED_FILE = "llava_pose_all.json"


@dataclass
class Assembly:
    """What one reply became: records, pairs kept, and drops by filter name."""

    samples: list[Sample] = field(default_factory=list)
    turns: int = 0
    filtered: Counter[str] = field(default_factory=Counter)
    claims: Counter[str] = field(default_factory=Counter)  # pose claims checked, by verdict


def _turns(pairs: list[QAPair]) -> tuple[Turn, ...]:
    turns: list[Turn] = []
    for i, pair in enumerate(pairs):
        question = f"{IMAGE_TOKEN}\n{pair.question}" if i == 0 else pair.question
        turns += [Turn("human", question), Turn("gpt", pair.answer)]
    return tuple(turns)


def _keep(
    pairs: tuple[QAPair, ...],
    numbers: frozenset[str],
    out: Assembly,
    *,
    check_question: bool = True,
    poses: ImageContext | None = None,
) -> list[QAPair]:
    """The pairs that pass the filters; a question we asked ourselves is not checked. With
    `poses` (the image's context) an answer that contradicts the keypoints is dropped too."""
    kept = []
    for pair in pairs:
        reason = (check_question and check_text(pair.question)) or check_text(pair.answer, numbers)
        if reason is None and poses is not None:
            verdicts = Counter(c.verdict for c in check_claims(pair.answer, poses))
            out.claims.update(verdicts)
            if verdicts["contradicted"]:
                reason = "contradicts_pose"
        if reason:
            out.filtered[reason] += 1
        else:
            kept.append(pair)
    return kept


def assemble(
    request: ChatRequest,
    completion: Completion,
    *,
    split_conversations: bool = False,
    check_poses: bool = False,
) -> Assembly:
    """Turn one teacher reply into training records. Pure.

    The task's parser gives the pairs: an instructed task's reply is one pair (the instruction
    asked, the reply), so it is kept or dropped whole by the same rules. With `check_poses`
    every answer's pose claims are checked against the image's keypoints (`llava_pose.verify`):
    counted by verdict, and a pair with a contradicted claim is dropped alone."""
    spec = task_type(request.meta["task"])
    image = request.meta["image"]
    out = Assembly()
    numbers = context_numbers(request.context) if request.context else frozenset()
    truncated = completion.finish_reason == "length"
    parsed = spec.parse(completion.text, request.meta.get("instruction"))
    pairs = parsed.pairs
    if truncated and pairs:
        out.filtered["truncated"] += 1
        pairs = pairs[:-1]
    elif truncated:
        out.filtered["truncated"] += 1
    elif parsed.problem:
        out.filtered["malformed"] += 1
    poses = request.context if check_poses else None
    kept = _keep(pairs, numbers, out, check_question=not spec.instructed, poses=poses)
    if not kept:
        return out
    out.turns = len(kept)
    if spec.multi_turn and split_conversations:
        out.samples = [
            Sample(f"{request.id}-{k}", image, _turns([pair])) for k, pair in enumerate(kept)
        ]
    else:
        out.samples = [Sample(request.id, image, _turns(kept))]
    return out


def write_dataset(
    out_dir: Path, by_task: dict[str, list[Sample]], tasks: list[str]
) -> dict[str, str]:
    """One JSON file per task type plus the merged file, each written atomically.

    Records are ordered by image id, then task (in registry order)."""
    files = {}

    def sort_key(s: Sample) -> tuple[int, int, int]:
        image_id, short, *k = s.id.split("-")
        return int(image_id), short_order(short), int(k[0]) if k else 0

    merged: list[Sample] = []
    for task in tasks:
        name = task_type(task).file
        samples = sorted(by_task.get(task, []), key=sort_key)
        write_json(out_dir / name, samples, indent=1)
        files[task] = name
        merged += samples
    write_json(out_dir / MERGED_FILE, sorted(merged, key=sort_key), indent=1)
    files["all"] = MERGED_FILE
    return files
