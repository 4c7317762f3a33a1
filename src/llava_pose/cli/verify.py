"""`llava-pose verify`: check the pose claims of any LLaVA JSON against COCO keypoints.

Reads records (``id``, ``image``, ``conversations``: ours, the LLaVA-Pose release's, LLaVA's
own mixes), finds each record's image context by its path or, failing that, by the COCO image
id in its file name (2014 and 2017 names alike), checks the model's turns ("gpt" or
"assistant"; a turn of any speaker but those, "human", "user" and "system" is an error) with
`llava_pose.verify.check_text`, and writes ``claims.jsonl`` and ``summary.json``.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any

from ..config import option
from ..errors import ConfigError, InputError
from ..sources import ImageSource, PoseOptions, load


@dataclasses.dataclass
class VerifyConfig(ImageSource, PoseOptions):
    """Options of `llava-pose verify`."""

    data: list[str] = option(
        [],
        "LLaVA JSON file(s) to check (a list of records with id, image, conversations)",
        nargs="+",
        metavar="FILE.json",
    )
    out: str = option(
        "", "folder for claims.jsonl and summary.json (required)", metavar="DIR", path="dir"
    )


def _contexts(config: VerifyConfig, images: set[str]) -> list[Any]:
    """The contexts to check against: --contexts, --images (estimated now, only the `images`
    the records name), or a COCO split (the bundled sample without any source), unfiltered."""
    return load(config, config, human_only=False, check_images=False, only=images)


def _source(config: VerifyConfig) -> str:
    """Where the contexts came from, as the user named it."""
    if config.contexts or config.images:
        return str(config.contexts or config.images)
    return f"split {config.split} of {config.coco or 'the bundled sample'}"


def _records(path: str) -> list[Any]:
    import msgspec

    from ..io import read_bytes
    from ..verify import speakers

    model, other = speakers()
    known = ", ".join(sorted(model | other))

    try:
        rows = msgspec.json.decode(read_bytes(path))
    except msgspec.DecodeError as e:
        raise InputError(path, f"invalid JSON ({e})") from None
    if not isinstance(rows, list):
        raise InputError(path, "expected a JSON list of records (LLaVA format)")
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InputError(path, "not a JSON object", f"[{index}]")
        if not isinstance(row.get("conversations"), list):
            raise InputError(path, "expected a list of turns", f"[{index}].conversations")
        for k, turn in enumerate(row["conversations"]):
            if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
                raise InputError(
                    path, "expected {'from', 'value'} with a string value",
                    f"[{index}].conversations[{k}]",
                )  # fmt: skip
            who = turn.get("from")
            if not isinstance(who, str) or who.lower() not in model | other:
                raise InputError(
                    path, f"unknown speaker {who!r} (expected one of {known})",
                    f"[{index}].conversations[{k}].from",
                )  # fmt: skip
        image = row.get("image")
        if image is not None and not isinstance(image, str):
            raise InputError(path, "expected a path (string)", f"[{index}].image")
    return rows


def run(config: VerifyConfig) -> int:
    from ..coco import match_context
    from ..io import write_json, write_jsonl
    from ..verify import KINDS, VERDICTS, check_text, speakers, summarize

    if not config.data:
        raise ConfigError("--data: give at least one LLaVA JSON file")
    if not config.out:
        raise ConfigError("--out: required (the folder for claims.jsonl and summary.json)")
    files = [(path, _records(path)) for path in config.data]  # every file checked first
    model, _ = speakers()
    named = {r["image"] for _, rows in files for r in rows if isinstance(r.get("image"), str)}
    contexts = _contexts(config, named)
    by_path = {c.image: c for c in contexts}
    by_id = {c.image_id: c for c in contexts}
    lines: list[dict[str, Any]] = []
    all_claims = []
    records = without = 0
    for path, rows in files:
        for index, row in enumerate(rows):
            records += 1
            image = row.get("image")
            ctx = match_context(image, by_path, by_id) if image else None
            line: dict[str, Any] = {
                "id": row.get("id", f"#{index}"),
                "image": image,
                "file": path,
                "index": index,
            }
            if ctx is None:
                without += 1
                line["context"] = False
                lines.append(line)
                continue
            turns = []
            for k, turn in enumerate(row["conversations"]):
                if turn["from"].lower() not in model:
                    continue  # the user's or the system's words: not the model's claims
                claims = check_text(turn["value"], ctx)
                all_claims += claims
                turns.append({"turn": k, "claims": [c.to_dict() for c in claims]})
            line.update(context=True, image_id=ctx.image_id, turns=turns)
            lines.append(line)
    if records and without == records:
        folders = Counter(
            PurePosixPath(row["image"]).parts[0]
            for _, rows in files
            for row in rows
            if isinstance(row.get("image"), str) and "/" in row["image"]
        )
        hint = "are these contexts of its images?"
        if not config.contexts:
            hint = "pass the --split its images come from (or --contexts)"
            if folders:
                hint = (
                    f"its images are in {folders.most_common(1)[0][0]}/: pass --split "
                    + (folders.most_common(1)[0][0])
                )
        raise InputError(
            files[0][0], f"none of its {records} records has an image in {_source(config)}: {hint}"
        )
    counts = summarize(all_claims)
    summary = {
        "records": records,
        "records_without_context": without,
        "claims": counts["claims"],
        **{v: counts[v] for v in VERDICTS},
        "contradicted_share": counts["contradicted_share"],
        "by_kind": {k: counts["by_kind"][k] for k in KINDS},
        "records_with_contradiction": sum(
            1
            for line in lines
            if any(
                c["verdict"] == "contradicted" for t in line.get("turns", []) for c in t["claims"]
            )
        ),
    }
    out = Path(config.out)
    write_jsonl(out / "claims.jsonl", lines)
    write_json(out / "summary.json", summary)
    print(
        f"{records} records ({without} without a context), {counts['claims']} pose claims: "
        f"{counts['supported']} supported, {counts['contradicted']} contradicted "
        f"({counts['contradicted_share']:.1%}), {counts['unverifiable']} unverifiable"
    )
    print(f"wrote {out / 'claims.jsonl'} and {out / 'summary.json'}")
    return 0


def register(subparsers: Any) -> None:
    """Add the `verify` command."""
    from . import add_command

    add_command(
        subparsers,
        "verify",
        VerifyConfig,
        run,
        help="check the pose claims of LLaVA JSON against the COCO keypoints",
        description=(
            "Find the pose claims in the model's turns ('gpt' or 'assistant') of LLaVA JSON "
            "records (posture, arms, legs, "
            "facing, place and order in the picture, which hand or foot is higher), resolve "
            "whom each is about, and label it supported, contradicted or unverifiable by the "
            "keypoint geometry. 'contradicted' is said only past a margin. Records are matched "
            "to contexts by image path or COCO image id; records without one are counted."
        ),
        examples="""
  llava-pose verify --data out/llava_pose_all.json --out verify/          # bundled sample
  llava-pose verify --data out/llava_pose_all.json --coco /data/coco --split train2017 --out verify/
  llava-pose verify --data llava_pose_samples.json --coco /data/coco --split train2014 --out verify-release/
  llava-pose verify --data llava_v1_5_mix665k.json --contexts train.jsonl --out verify-llava/
  llava-pose verify --data out/llava_pose_all.json --images photos/ --pose mediapipe --out verify/
""",
    )
