"""Absurd inputs are errors, not silent nonsense: sizes no image has, booleans where numbers
belong, NaN and Infinity (Python's json writes them) in real COCO files and contexts files,
through the real CLI. Each is one line naming the file, the record and the field, exit 2, no
output, and no request sent."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import cli, one_line_error
from tests.servers import OpenAIServer

from llava_pose import coco, images

SPLIT = "val2017"
Edit = Callable[[dict[str, Any]], str]  # changes a file's data, returns the field to name


def person(d: dict[str, Any]) -> int:
    """The first non-crowd person with 5+ labelled keypoints (a kept image's)."""
    return next(
        i
        for i, a in enumerate(d["annotations"])
        if not a["iscrowd"] and sum(v > 0 for v in a["keypoints"][2::3]) >= 5
    )


def thing(d: dict[str, Any]) -> int:
    return next(
        i for i, a in enumerate(d["annotations"]) if a["category_id"] != 1 and not a["iscrowd"]
    )


def put(field: str, value: object, where: Callable[[dict[str, Any]], int]) -> Edit:
    """An edit setting annotations[where].FIELD (``bbox[2]``, ``keypoints[5]``) to value."""

    def edit(d: dict[str, Any]) -> str:
        i = where(d)
        name, _, index = field.partition("[")
        if index:
            d["annotations"][i][name][int(index[:-1])] = value
        else:
            d["annotations"][i][name] = value
        return f"annotations[{i}].{field}"

    return edit


def image(side: str, value: object) -> Edit:
    def edit(d: dict[str, Any]) -> str:
        d["images"][2][side] = value
        return f"images[2].{side}"

    return edit


NAN, INF = float("nan"), float("inf")
ABSURD = [
    # (annotation file, edit, words the line must say)
    ("instances", image("width", 10**30), "beyond any real image (at most 100,000 px per side)"),
    ("instances", image("height", 100_001), "beyond any real image"),
    ("instances", image("width", 1e30), "expected int, got float"),
    ("instances", image("width", True), "expected int, got bool"),
    ("instances", image("height", INF), "not a finite number"),
    ("instances", put("bbox[2]", NAN, thing), "not a finite number (NaN or Infinity"),
    ("instances", put("bbox[0]", True, thing), "expected float, got bool"),
    ("person_keypoints", put("keypoints[2]", True, person), "v of nose must be 0, 1 or 2, got a boolean"),
    ("person_keypoints", put("keypoints[5]", False, person), "v of left eye must be 0, 1 or 2"),
    ("person_keypoints", put("keypoints[0]", True, person), "expected float, got bool"),
    ("person_keypoints", put("keypoints[3]", NAN, person), "not a finite number"),
    ("person_keypoints", put("keypoints[4]", -INF, person), "not a finite number"),
    ("person_keypoints", put("bbox[1]", NAN, person), "not a finite number"),
    ("person_keypoints", put("iscrowd", True, person), "expected int, got bool"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "edit", "words"), ABSURD)
def test_prepare_refuses_absurd_values_naming_the_field(
    coco_annotations_copy: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    kind: str,
    edit: Edit,
    words: str,
) -> None:
    path = coco_annotations_copy / "annotations" / f"{kind}_{SPLIT}.json"
    data = json.loads(path.read_text())
    field = edit(data)
    path.write_text(json.dumps(data))  # Python writes NaN, Infinity: not JSON, but common
    out = tmp_path / "out" / "contexts.jsonl"
    rc = cli("prepare", "--coco", coco_annotations_copy, "--split", SPLIT, "--out", out)
    one_line_error(capsys, rc, f"{kind}_{SPLIT}.json: {field}: ", words)
    assert not out.parent.exists()


def test_nan_in_a_field_that_is_never_read_keeps_line_and_column(
    coco_annotations_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = coco_annotations_copy / "annotations" / f"instances_{SPLIT}.json"
    data = json.loads(path.read_text())
    data["annotations"][thing(data)]["area"] = NAN
    path.write_text(json.dumps(data))
    rc = cli("prepare", "--coco", coco_annotations_copy, "--split", SPLIT, "--out", tmp_path / "c")
    one_line_error(capsys, rc, f"instances_{SPLIT}.json: invalid JSON", "column", "NaN")


def test_the_largest_side_allowed_is_still_read(
    coco_annotations_copy: Path, tmp_path: Path
) -> None:
    path = coco_annotations_copy / "annotations" / f"instances_{SPLIT}.json"
    data = json.loads(path.read_text())
    data["images"][2]["width"] = images.MAX_IMAGE_SIDE
    path.write_text(json.dumps(data))
    out = tmp_path / "c.jsonl"
    assert cli("prepare", "--coco", coco_annotations_copy, "--split", SPLIT, "--out", out,
               "--all-images", "--no-check-images") == 0  # fmt: skip
    assert data["images"][2]["id"] in {c.image_id for c in coco.read_contexts(out)}


# -- contexts files (`generate --contexts`) ---------------------------------------------------


def set_keypoint(index: int, value: object) -> Callable[[dict[str, Any]], str]:
    def edit(row: dict[str, Any]) -> str:
        p = next(i for i, p in enumerate(row["persons"]) if any(k[2] for k in p["keypoints"]))
        j = next(j for j, k in enumerate(row["persons"][p]["keypoints"]) if k[2])
        row["persons"][p]["keypoints"][j][index] = value
        return f"persons[{p}].keypoints[{j}]" + (f"[{index}]" if index != 0 else "")

    return edit


def set_top(field: str, value: object) -> Callable[[dict[str, Any]], str]:
    def edit(row: dict[str, Any]) -> str:
        row[field] = value
        return field

    return edit


CONTEXT_EDITS = [
    (set_keypoint(1, NAN), "not a finite number"),
    (set_keypoint(2, True), "expected int, got bool"),
    (set_keypoint(2, 7), "visibility must be 0, 1 or 2, got 7"),
    (set_keypoint(0, 1.5), "is not in [0, 1]"),
    (set_top("width", 10**30), "must be 1 to 100,000 px"),
    (set_top("height", 0), "must be 1 to 100,000 px, got 0"),
]


@pytest.mark.parametrize(("edit", "words"), CONTEXT_EDITS)
def test_generate_contexts_refuses_absurd_values_before_any_request(
    coco_mini: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    server: OpenAIServer,
    edit: Callable[[dict[str, Any]], str],
    words: str,
) -> None:
    path = tmp_path / "contexts.jsonl"
    coco.write_contexts(path, coco.load_split(coco_mini, SPLIT)[:3])
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    field = edit(rows[1])
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    rc = cli("generate", "--contexts", path, "--out", out, "--teacher", "openai:gpt-4o",
             "--base-url", server.url)  # fmt: skip
    one_line_error(capsys, rc, f"contexts.jsonl: line 2: {field}: ", words)
    assert server.requests == []
    assert not out.exists()
