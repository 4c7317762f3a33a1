"""Teacher replies -> LLaVA training records, and the files a generate run writes.

A record is ``{"id", "image", "conversations": [{"from": "human", "value": "<image>\\n..."},
{"from": "gpt", ...}, ...]}`` with ``<image>`` only in the first human turn and ``image``
relative to the COCO root (train with ``--image-root /data/coco``).

Ids are stable: ``{image_id}-conv``, ``{image_id}-detail``, ``{image_id}-reasoning``; with
``--split-conversations`` each Q/A pair is its own record ``{image_id}-conv-{k}`` (k from 0),
as in the paper's released samples.

Filtering (see `filters`): in conversations and reasoning a bad pair is dropped and the good
ones kept; a cut-off reply loses only its last pair; a description is kept or dropped whole.
What was dropped is kept too (``rejected.jsonl``: one line per pair or whole reply, with the
filter that dropped it), and with the pose check on, every checked answer's claims
(``claims.jsonl``, the line shape `llava-pose verify` writes), so a reader can see both.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .filters import check_text, context_numbers
from .io import FileSet
from .parse import QAPair
from .records import ChatRequest, Completion, ImageContext, Sample, Turn
from .tasks import short_order, task_type
from .verify import check_text as check_claims

IMAGE_TOKEN = "<image>"
# The merged file that training reads (each task type's own file is its `TaskType.file`).
MERGED_FILE = "llava_pose_all.json"
REJECTED_FILE = "rejected.jsonl"
CLAIMS_FILE = "claims.jsonl"


@dataclass
class Assembly:
    """What one reply became: records, pairs kept, and drops by filter name."""

    samples: list[Sample] = field(default_factory=list)
    turns: int = 0
    filtered: Counter[str] = field(default_factory=Counter)
    claims: Counter[str] = field(default_factory=Counter)  # pose claims checked, by verdict
    rejected: list[dict[str, Any]] = field(default_factory=list)  # rejected.jsonl lines
    claim_lines: list[dict[str, Any]] = field(default_factory=list)  # claims.jsonl lines


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
    reject: dict[str, Any],
    *,
    check_question: bool = True,
    poses: ImageContext | None = None,
) -> list[tuple[QAPair, list[dict[str, Any]] | None]]:
    """The pairs that pass the filters, each with its checked claims (None unchecked); a
    question we asked ourselves is not checked. With `poses` (the image's context) an answer
    that contradicts the keypoints is dropped too. Dropped pairs go to `out.rejected`."""
    kept = []
    for pair in pairs:
        reason = (check_question and check_text(pair.question)) or check_text(pair.answer, numbers)
        claims = None
        if reason is None and poses is not None:
            found = check_claims(pair.answer, poses)
            claims = [c.to_dict() for c in found]
            verdicts = Counter(c.verdict for c in found)
            out.claims.update(verdicts)
            if verdicts["contradicted"]:
                reason = "contradicts_pose"
        if reason:
            out.filtered[reason] += 1
            line = {**reject, "filter": reason, "question": pair.question, "answer": pair.answer}
            out.rejected.append(line if claims is None else {**line, "claims": claims})
        else:
            kept.append((pair, claims))
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
    reject = {"id": request.id, "image": image, "task": spec.name}
    numbers = context_numbers(request.context) if request.context else frozenset()
    truncated = completion.finish_reason == "length"
    parsed = spec.parse(completion.text, request.meta.get("instruction"))
    pairs = parsed.pairs
    whole = None  # why the whole reply was dropped before any pair was looked at
    if truncated and pairs:
        out.filtered["truncated"] += 1
        last = pairs[-1]
        out.rejected.append(
            {**reject, "filter": "truncated", "question": last.question, "answer": last.answer}
        )
        pairs = pairs[:-1]
    elif truncated:
        out.filtered["truncated"] += 1
        whole = "truncated"
    elif parsed.problem:
        out.filtered["malformed"] += 1
        whole = "malformed"
    if whole and not pairs:
        out.rejected.append(
            {**reject, "filter": whole, "question": None, "answer": completion.text}
        )
    poses = request.context if check_poses else None
    kept = _keep(pairs, numbers, out, reject, check_question=not spec.instructed, poses=poses)
    if not kept:
        return out
    out.turns = len(kept)
    if spec.multi_turn and split_conversations:
        groups = [(f"{request.id}-{k}", [item]) for k, item in enumerate(kept)]
    else:
        groups = [(request.id, kept)]
    for sample_id, items in groups:
        out.samples.append(Sample(sample_id, image, _turns([pair for pair, _ in items])))
        if poses is not None:
            turns = [
                {"turn": 2 * k + 1, "claims": claims or []} for k, (_, claims) in enumerate(items)
            ]
            out.claim_lines.append(
                {"id": sample_id, "image": image, "image_id": poses.image_id, "turns": turns}
            )
    return out


def write_extras(
    out: FileSet, rejected: list[dict[str, Any]], claim_lines: list[dict[str, Any]] | None
) -> dict[str, str]:
    """``rejected.jsonl`` always (empty when nothing was dropped), ``claims.jsonl`` when the
    pose check ran (else a stale one from an earlier run is removed), into the output set, in
    the order the dataset files use."""

    def key(line: dict[str, Any]) -> tuple[int, int, str]:
        image_id, short, *_ = line["id"].split("-")
        return int(image_id), short_order(short), line["id"]

    out.jsonl(REJECTED_FILE, sorted(rejected, key=key))
    files = {"rejected": REJECTED_FILE}
    if claim_lines is None:
        out.remove(CLAIMS_FILE)
    else:
        out.jsonl(CLAIMS_FILE, sorted(claim_lines, key=key))
        files["claims"] = CLAIMS_FILE
    return files


def write_dataset(
    out: FileSet, by_task: dict[str, list[Sample]], tasks: list[str]
) -> dict[str, str]:
    """One JSON file per task type plus the merged file, into the output set (`io.FileSet`:
    they change with ``stats.json``, as one).

    Records are ordered by image id, then task (in registry order)."""
    files = {}

    def sort_key(s: Sample) -> tuple[int, int, int]:
        image_id, short, *k = s.id.split("-")
        return int(image_id), short_order(short), int(k[0]) if k else 0

    merged: list[Sample] = []
    for task in tasks:
        name = task_type(task).file
        samples = sorted(by_task.get(task, []), key=sort_key)
        out.json(name, samples, indent=1)
        files[task] = name
        merged += samples
    out.json(MERGED_FILE, sorted(merged, key=sort_key), indent=1)
    files["all"] = MERGED_FILE
    return files
