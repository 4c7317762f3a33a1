"""A `generate` output folder (or any LLaVA JSON file) as site data: one page per image with
its records, the replies and pairs the filters dropped (``rejected.jsonl``) and the pose
claims checked in them (``claims.jsonl``, or `llava-pose verify`'s through ``--claims``).

A row is one record or one rejected item; facets are its task, the filter that dropped it
(``kept`` when none did) and the verdicts of its claims.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import msgspec

from ..coco import image_id_of, read_jsonl_numbered
from ..errors import InputError
from ..io import read_json, read_jsonl
from ..paths import path_problem
from ..records import ImageContext
from ..tasks import TASK_TYPES
from .model import NO_CLAIMS, VERDICTS, Facet, Row, SiteData, claim_marks, page, snippet

log = logging.getLogger("llava_pose")

RECORDS_FILE = "llava_pose_all.json"
REJECTED_FILE = "rejected.jsonl"
CLAIMS_FILE = "claims.jsonl"
STATS_FILE = "stats.json"
IMAGE_TOKEN = "<image>"
KEPT = "kept"
OTHER_TASK = "other"
_SHORT_TO_TASK = {t.short: t.name for t in TASK_TYPES}


class Turn(msgspec.Struct, frozen=True):
    value: str
    from_: str = msgspec.field(default="", name="from")


class Record(msgspec.Struct, frozen=True):
    conversations: list[Turn]
    id: str | int | None = None
    image: str | None = None


class Claim(msgspec.Struct, frozen=True):
    span: tuple[int, int]
    verdict: str
    kind: str = ""
    subject: str | None = None
    predicate: str = ""
    reason: str = ""
    person: int | None = None
    persons: list[int] = []


class ClaimTurn(msgspec.Struct, frozen=True):
    turn: int
    claims: list[Claim]


class ClaimLine(msgspec.Struct, frozen=True):
    id: str | int
    turns: list[ClaimTurn] = []


class Rejected(msgspec.Struct, frozen=True):
    id: str
    image: str
    task: str
    filter: str
    answer: str
    question: str | None = None
    claims: list[Claim] | None = None


def task_of(record_id: str) -> str:
    """The task of a record from its id (``34417-conv``, ``34417-conv-2``); else ``other``."""
    for part in record_id.split("-")[1:]:
        if part in _SHORT_TO_TASK:
            return _SHORT_TO_TASK[part]
    return OTHER_TASK


def read_claims(paths: list[Path]) -> dict[str, dict[int, list[Claim]]]:
    """Record id -> turn index -> claims; a later file wins for the ids it holds."""
    out: dict[str, dict[int, list[Claim]]] = {}
    for path in paths:
        for line in read_jsonl(path, ClaimLine):
            out[str(line.id)] = {t.turn: t.claims for t in line.turns}
    return out


def _order_key(key: str) -> tuple[int, str]:
    image_id = image_id_of(PurePosixPath(key).name)
    return (image_id if image_id is not None else 1 << 62, key)


class _Counts:
    def __init__(self) -> None:
        self.verdicts: Counter[str] = Counter()
        self.bad_spans = 0


def _count(claims: list[Claim], into: dict[str, int]) -> None:
    for c in claims:
        into[c.verdict] = into.get(c.verdict, 0) + 1


def _verdict_badges(counts: dict[str, int]) -> list[tuple[str, str]]:
    return [(v, f"{counts[v]} {v}") for v in VERDICTS if counts.get(v)]


def _record_item(
    record: Record, rid: str, claims: dict[int, list[Claim]] | None, totals: _Counts
) -> tuple[dict[str, Any], dict[str, int]]:
    turns = []
    verdicts: dict[str, int] = {}
    for k, turn in enumerate(record.conversations):
        value = turn.value
        shift = 0
        if k == 0 and value.startswith(IMAGE_TOKEN):
            value = value[len(IMAGE_TOKEN) :].lstrip("\n")
            shift = len(turn.value) - len(value)
        entry: dict[str, Any] = {"from": turn.from_, "value": value}
        found = claims.get(k) if claims else None
        if found:
            marks, bad = claim_marks(found, turn.value)
            if shift:
                for m in marks:
                    m[0] -= shift
                    m[1] -= shift
                marks = [m for m in marks if m[0] >= 0]
            totals.bad_spans += bad
            _count(found, verdicts)
            entry["claims"] = marks
        turns.append(entry)
    item = {
        "type": "record",
        "id": rid,
        "task": task_of(rid),
        "status": KEPT,
        "checked": claims is not None,
        "turns": turns,
    }
    return item, verdicts


def _rejected_item(line: Rejected, totals: _Counts) -> tuple[dict[str, Any], dict[str, int]]:
    turns: list[dict[str, Any]] = []
    if line.question is not None:
        turns.append({"from": "human", "value": line.question})
    answer: dict[str, Any] = {"from": "gpt", "value": line.answer}
    verdicts: dict[str, int] = {}
    if line.claims is not None:
        marks, bad = claim_marks(line.claims, line.answer)
        totals.bad_spans += bad
        _count(line.claims, verdicts)
        answer["claims"] = marks
    turns.append(answer)
    item = {
        "type": "record",
        "id": line.id,
        "task": line.task,
        "status": "rejected",
        "filter": line.filter,
        "whole": line.question is None,
        "checked": line.claims is not None,
        "turns": turns,
    }
    return item, verdicts


def _search_text(item: dict[str, Any], key: str) -> str:
    return "\n".join([item["id"], key, *(t["value"] for t in item["turns"])])


def _snippet(item: dict[str, Any]) -> str:
    turns = item["turns"]
    first_q = next((t["value"] for t in turns if t["from"] == "human"), "")
    first_a = next((t["value"] for t in turns if t["from"] != "human"), "")
    return snippet(f"{first_q} — {first_a}" if first_q else first_a)


def load_dataset(
    records_path: Path,
    *,
    rejected_path: Path | None,
    claim_paths: list[Path],
    contexts_for: Callable[[list[str]], Callable[[str], ImageContext | None]],
    stats: dict[str, Any] | None = None,
) -> SiteData:
    """Site data of LLaVA records plus what was dropped and the claims checked; every file is
    read and checked before anything is written. `contexts_for(images)` loads the keypoints
    of the images the data names and returns the lookup of one image's context."""
    records = read_json(records_path, list[Record])
    first: dict[str, int] = {}
    for index, record in enumerate(records):
        if record.image and record.image not in first:
            first[record.image] = index
    for image, index in first.items():
        problem = path_problem(image)
        if problem is not None:
            raise InputError(records_path, f"{problem}; refusing to read it", f"[{index}].image")
    numbered = read_jsonl_numbered(rejected_path, Rejected) if rejected_path else []
    for n, line in numbered:
        problem = path_problem(line.image)
        if problem is not None:
            raise InputError(
                rejected_path or "", f"{problem}; refusing to read it", f"line {n}: image"
            )
    rejected = [line for _, line in numbered]
    claims = read_claims(claim_paths)
    find_context = contexts_for(list(dict.fromkeys([*first, *(r.image for r in rejected)])))
    totals = _Counts()
    by_image: dict[str, list[tuple[dict[str, Any], dict[str, int]]]] = defaultdict(list)
    seen_ids: set[str] = set()
    for index, record in enumerate(records):
        rid = str(record.id) if record.id is not None else f"#{index}"
        seen_ids.add(rid)
        by_image[record.image or ""].append(_record_item(record, rid, claims.get(rid), totals))
    for line in rejected:
        by_image[line.image].append(_rejected_item(line, totals))
    unmatched = len(set(claims) - seen_ids)
    task, filt = Facet("task", "Task"), Facet("filter", "Filter")
    verdict = Facet("verdict", "Claims")
    pages: dict[str, dict[str, Any]] = {}
    rows: list[Row] = []
    without_context = 0
    for key in sorted(by_image, key=_order_key):
        ctx = find_context(key) if key else None
        if ctx is None:
            without_context += 1
        p = page(key, ctx, image_id_of(PurePosixPath(key).name))
        for item, verdicts in by_image[key]:
            n = len(p["items"])
            p["items"].append(item)
            totals.verdicts.update(verdicts)
            status = item.get("filter") or KEPT
            values = [v for v in VERDICTS if verdicts.get(v)] or (
                [NO_CLAIMS] if item["checked"] else []
            )
            badges = [("task", item["task"])]
            badges += [("filter", status)] if status != KEPT else []
            badges += _verdict_badges(verdicts)
            rows.append(
                Row(
                    key=key,
                    item=n,
                    id=item["id"],
                    badges=badges,
                    snippet=_snippet(item),
                    text=_search_text(item, key),
                    facets={"task": [item["task"]], "filter": [status], "verdict": values},
                )
            )
        pages[key] = p
    present = {r.facets["task"][0] for r in rows}
    registry = [t.name for t in TASK_TYPES]
    for name in registry + sorted(present - set(registry)):
        if name in present:
            task.add(name)
    filt.add(KEPT)
    for name in sorted({r.facets["filter"][0] for r in rows} - {KEPT}):
        filt.add(name)
    for v in (*VERDICTS, NO_CLAIMS):
        if any(v in r.facets["verdict"] for r in rows):
            verdict.add(v)
    facets = [task, filt] + ([verdict] if verdict.values else [])
    kept = len(records)
    summary = [
        ("records", f"{kept:,}"),
        ("images", f"{len(pages):,}"),
        ("rejected", f"{len(rejected):,}"),
    ]
    if totals.verdicts:
        summary.append(("pose claims", ", ".join(f"{totals.verdicts[v]:,} {v}" for v in VERDICTS)))
    if stats:
        summary += [(k, str(stats[k])) for k in ("teacher", "source", "split") if k in stats]
    notes = []
    if without_context:
        notes.append(
            f"{without_context:,} of {len(pages):,} images have no keypoints in the contexts "
            "read (give --coco ROOT --split NAME or --contexts FILE)"
        )
    if unmatched:
        notes.append(f"{unmatched:,} claim lines name no record of {records_path.name}")
    if totals.bad_spans:
        notes.append(
            f"{totals.bad_spans:,} claims have a span outside their text (claims of another "
            "file?) and are not highlighted"
        )
    for note in notes:
        log.warning("%s", note)
    if not rows:
        raise InputError(records_path, "no records to show (and no rejected.jsonl lines)")
    return SiteData(
        kind="dataset",
        title=f"Dataset {records_path.parent.name}"
        if records_path.name == RECORDS_FILE
        else f"Dataset {records_path.name}",
        noun="records",
        summary=summary,
        facets=facets,
        sorts=[],
        pages=pages,
        rows=rows,
        notes=notes,
    )
