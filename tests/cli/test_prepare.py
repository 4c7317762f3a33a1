"""`llava-pose prepare` through the real CLI: outputs, and every bad input as one line, exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llava_pose import coco
from llava_pose.cli import main

SPLIT = "val2017"


def prepare(*args: str | Path) -> int:
    return main(["-q", "prepare", *map(str, args)])


def human_centric_ids(root: Path, split: str = SPLIT, min_keypoints: int = 5) -> set[int]:
    data = json.loads((root / "annotations" / f"person_keypoints_{split}.json").read_text())
    return {
        a["image_id"]
        for a in data["annotations"]
        if not a["iscrowd"] and sum(1 for v in a["keypoints"][2::3] if v > 0) >= min_keypoints
    }


def image_count(root: Path, split: str = SPLIT) -> int:
    return len(json.loads((root / "annotations" / f"instances_{split}.json").read_text())["images"])


def test_writes_one_context_per_human_centric_image(
    tmp_path: Path, coco_mini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "contexts.jsonl"
    assert prepare("--coco", coco_mini, "--split", SPLIT, "--out", out) == 0
    contexts = coco.read_contexts(out)
    assert [c.image_id for c in contexts] == sorted(human_centric_ids(coco_mini))
    assert len(out.read_text().splitlines()) == len(contexts)
    printed = capsys.readouterr().out
    assert f"kept {len(contexts)} of {image_count(coco_mini)} images" in printed
    assert f"wrote {len(contexts)} image contexts to {out}" in printed


def test_thresholds_and_all_images(tmp_path: Path, coco_mini: Path) -> None:
    out = tmp_path / "c.jsonl"
    assert (
        prepare("--coco", coco_mini, "--split", SPLIT, "--out", out, "--min-keypoints", "12") == 0
    )
    assert {c.image_id for c in coco.read_contexts(out)} == human_centric_ids(coco_mini, SPLIT, 12)
    assert prepare("--coco", coco_mini, "--split", SPLIT, "--out", out, "--all-images") == 0
    assert len(coco.read_contexts(out)) == image_count(coco_mini)


def test_max_images_is_seeded_and_grows_stably(tmp_path: Path, coco_mini: Path) -> None:
    def ids(n: int, seed: int, name: str) -> list[int]:
        out = tmp_path / name
        args = ["--coco", coco_mini, "--split", SPLIT, "--out", out]
        assert prepare(*args, "--max-images", str(n), "--seed", str(seed)) == 0
        return [c.image_id for c in coco.read_contexts(out)]

    five = ids(5, 7, "a.jsonl")
    assert len(five) == 5
    assert ids(5, 7, "b.jsonl") == five
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert ids(9, 7, "c.jsonl")[:5] == five
    assert {tuple(ids(5, s, f"s{s}.jsonl")) for s in (1, 2, 3)} != {tuple(five)}


def test_no_coco_uses_the_bundled_sample(tmp_path: Path) -> None:
    out = tmp_path / "sample.jsonl"
    assert prepare("--out", out) == 0
    contexts = coco.read_contexts(out)
    assert 6 <= len(contexts) <= 8
    assert all((coco.sample_root() / c.image).is_file() for c in contexts)


def test_yaml_config(tmp_path: Path, coco_mini: Path) -> None:
    out = tmp_path / "c.jsonl"
    config = tmp_path / "prepare.yaml"
    config.write_text(f"coco: {coco_mini}\nsplit: {SPLIT}\nmax-images: 3\nseed: 2\n")
    assert prepare("--config", config, "--out", out) == 0
    assert len(coco.read_contexts(out)) == 3


# -- bad input ----------------------------------------------------------------------------------


def edit(root: Path, kind: str, change: Callable[[dict[str, Any]], None]) -> None:
    path = root / "annotations" / f"{kind}_{SPLIT}.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def first_kept_person(data: dict[str, Any]) -> int:
    """Index of the first non-crowd person with 5+ labelled keypoints."""
    return next(
        i
        for i, a in enumerate(data["annotations"])
        if not a["iscrowd"] and sum(1 for v in a["keypoints"][2::3] if v > 0) >= 5
    )


def first_object(data: dict[str, Any]) -> int:
    return next(
        i for i, a in enumerate(data["annotations"]) if a["category_id"] != 1 and not a["iscrowd"]
    )


def shorten_keypoints(d: dict[str, Any]) -> None:
    d["annotations"][first_kept_person(d)]["keypoints"].pop()


def bad_visibility(d: dict[str, Any]) -> None:
    d["annotations"][first_kept_person(d)]["keypoints"][2] = 3


def string_keypoint(d: dict[str, Any]) -> None:
    d["annotations"][first_kept_person(d)]["keypoints"][3] = "12"


def string_at_an_unlabelled_keypoint(d: dict[str, Any]) -> None:
    """A string x where v=0: the value is never used, but the file is still wrong."""
    k = d["annotations"][first_kept_person(d)]["keypoints"]
    assert k[8] == 0  # the right eye of that person is unlabelled
    k[6] = "0"


def keypoint_outside(d: dict[str, Any]) -> None:
    a = d["annotations"][first_kept_person(d)]
    width = next(im["width"] for im in d["images"] if im["id"] == a["image_id"])
    a["keypoints"][0:3] = [width + 40, 10, 2]


def person_box_outside(d: dict[str, Any]) -> None:
    d["annotations"][first_kept_person(d)]["bbox"][0] = -25.0


def object_box_outside(d: dict[str, Any]) -> None:
    a = d["annotations"][first_object(d)]
    height = next(im["height"] for im in d["images"] if im["id"] == a["image_id"])
    a["bbox"][1] = height - a["bbox"][3] + 9  # 9 px below the image


def object_box_negative(d: dict[str, Any]) -> None:
    d["annotations"][first_object(d)]["bbox"][2] = -4


def unknown_image(d: dict[str, Any]) -> None:
    d["annotations"][3]["image_id"] = 999_999_999


def unknown_category(d: dict[str, Any]) -> None:
    d["annotations"][first_object(d)]["category_id"] = 4242


def drop_width(d: dict[str, Any]) -> None:
    del d["images"][5]["width"]


def zero_height(d: dict[str, Any]) -> None:
    d["images"][2]["height"] = 0


def bbox_of_three(d: dict[str, Any]) -> None:
    d["annotations"][7]["bbox"] = d["annotations"][7]["bbox"][:3]


def no_annotations_key(d: dict[str, Any]) -> None:
    del d["annotations"]


BAD_EDITS = [
    # (annotation file, edit, the field the message must name, words it must say)
    (
        "person_keypoints",
        shorten_keypoints,
        "annotations[{i}].keypoints",
        "expected 51 numbers, got 50",
    ),
    (
        "person_keypoints",
        bad_visibility,
        "annotations[{i}].keypoints[2]",
        "must be 0, 1 or 2, got 3",
    ),
    (
        "person_keypoints",
        string_keypoint,
        "annotations[{i}].keypoints[3]",
        "expected float, got str",
    ),
    (
        "person_keypoints",
        string_at_an_unlabelled_keypoint,
        "annotations[{i}].keypoints[6]",
        "expected float, got str",
    ),
    ("person_keypoints", keypoint_outside, "annotations[{i}].keypoints[0]", "outside the"),
    ("person_keypoints", person_box_outside, "annotations[{i}].bbox", "outside the"),
    ("instances", object_box_outside, "annotations[{o}].bbox", "outside the"),
    ("instances", object_box_negative, "annotations[{o}].bbox", "negative size"),
    ("instances", unknown_category, "annotations[{o}].category_id", "unknown category 4242"),
    ("instances", drop_width, "images[5].width", "missing"),
    ("instances", zero_height, "images[2].height", "expected int >= 1"),
    ("instances", bbox_of_three, "annotations[7].bbox", "expected array of length 4"),
    ("captions", unknown_image, "annotations[3].image_id", "unknown image 999999999"),
    ("person_keypoints", unknown_image, "annotations[3].image_id", "unknown image 999999999"),
    ("instances", unknown_image, "annotations[3].image_id", "unknown image 999999999"),
    ("captions", no_annotations_key, "annotations", "missing"),
]


def assert_one_line_error(
    capsys: pytest.CaptureFixture[str], out: Path, rc: int, *needles: str
) -> str:
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("llava-pose: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]  # no temp
    return lines[0]


@pytest.mark.parametrize(
    ("kind", "change", "field", "words"), BAD_EDITS, ids=lambda v: getattr(v, "__name__", None)
)
def test_bad_annotation_values(
    coco_annotations_copy: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    kind: str,
    change: Callable[[dict[str, Any]], None],
    field: str,
    words: str,
) -> None:
    root = coco_annotations_copy
    data = json.loads((root / "annotations" / f"{kind}_{SPLIT}.json").read_text())
    if "{i}" in field:
        field = field.format(i=first_kept_person(data))
    if "{o}" in field:
        field = field.format(o=first_object(data))
    edit(root, kind, change)
    out = tmp_path / "out" / "contexts.jsonl"
    out.parent.mkdir()
    rc = prepare("--coco", root, "--split", SPLIT, "--out", out)
    assert_one_line_error(capsys, out, rc, f"{kind}_{SPLIT}.json: {field}: ", words)


def test_error_in_an_image_that_is_not_kept_still_counts(
    coco_annotations_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = coco_annotations_copy
    kept = human_centric_ids(root)
    index: list[int] = []

    def change(d: dict[str, Any]) -> None:
        i = next(
            i
            for i, a in enumerate(d["annotations"])
            if a["image_id"] not in kept and a["category_id"] != 1 and not a["iscrowd"]
        )
        d["annotations"][i]["bbox"][0] = -50.0
        index.append(i)

    edit(root, "instances", change)
    out = tmp_path / "c.jsonl"
    rc = prepare("--coco", root, "--split", SPLIT, "--out", out)
    assert_one_line_error(capsys, out, rc, f"instances_{SPLIT}.json: annotations[{index[0]}].bbox")


@pytest.mark.parametrize("kind", coco.ANNOTATION_KINDS)
def test_missing_annotation_file(
    coco_annotations_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    (coco_annotations_copy / "annotations" / f"{kind}_{SPLIT}.json").unlink()
    out = tmp_path / "c.jsonl"
    rc = prepare("--coco", coco_annotations_copy, "--split", SPLIT, "--out", out)
    assert_one_line_error(capsys, out, rc, f"{kind}_{SPLIT}.json: ", "not found")


@pytest.mark.parametrize("kind", coco.ANNOTATION_KINDS)
def test_invalid_json(
    coco_annotations_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    path = coco_annotations_copy / "annotations" / f"{kind}_{SPLIT}.json"
    text = path.read_text()
    cut = text.index('": ', 5000) + 3  # after a key's colon: a value must come next
    path.write_text(text[:cut] + "\n,," + text[cut:])
    out = tmp_path / "c.jsonl"
    rc = prepare("--coco", coco_annotations_copy, "--split", SPLIT, "--out", out)
    assert_one_line_error(capsys, out, rc, f"{kind}_{SPLIT}.json: invalid JSON", "line 2, column 1")


def test_truncated_json(
    coco_annotations_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = coco_annotations_copy / "annotations" / f"instances_{SPLIT}.json"
    path.write_bytes(path.read_bytes()[:-100])
    out = tmp_path / "c.jsonl"
    rc = prepare("--coco", coco_annotations_copy, "--split", SPLIT, "--out", out)
    assert_one_line_error(capsys, out, rc, f"instances_{SPLIT}.json: invalid JSON", "ends early")


def test_image_without_captions(
    coco_annotations_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    victim = min(human_centric_ids(coco_annotations_copy))

    def change(d: dict[str, Any]) -> None:
        d["annotations"] = [a for a in d["annotations"] if a["image_id"] != victim]

    edit(coco_annotations_copy, "captions", change)
    out = tmp_path / "c.jsonl"
    rc = prepare("--coco", coco_annotations_copy, "--split", SPLIT, "--out", out)
    assert_one_line_error(
        capsys, out, rc, f"captions_{SPLIT}.json: annotations: ", f"image {victim} ", "no caption"
    )


def test_missing_image_file(
    coco_annotations_copy: Path, coco_mini: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = coco_annotations_copy
    victim = min(human_centric_ids(root))
    (root / SPLIT).unlink()  # the fixture's symlink to the whole folder
    (root / SPLIT).mkdir()
    for f in (coco_mini / SPLIT).iterdir():
        if f.name != f"{victim:012d}.jpg":
            (root / SPLIT / f.name).symlink_to(f)
    images = json.loads((root / "annotations" / f"instances_{SPLIT}.json").read_text())["images"]
    index = next(i for i, im in enumerate(images) if im["id"] == victim)
    out = tmp_path / "c.jsonl"
    rc = prepare("--coco", root, "--split", SPLIT, "--out", out)
    line = assert_one_line_error(
        capsys,
        out,
        rc,
        f"instances_{SPLIT}.json: images[{index}].file_name: ",
        f"{victim:012d}.jpg",
    )
    assert "--no-check-images" in line
    assert prepare("--coco", root, "--split", SPLIT, "--out", out, "--no-check-images") == 0
    assert victim in {c.image_id for c in coco.read_contexts(out)}


def test_existing_output_survives_a_failed_run(
    coco_annotations_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "c.jsonl"
    assert prepare("--coco", coco_annotations_copy, "--split", SPLIT, "--out", out) == 0
    before = out.read_bytes()
    edit(coco_annotations_copy, "person_keypoints", shorten_keypoints)
    assert prepare("--coco", coco_annotations_copy, "--split", SPLIT, "--out", out) == 2
    assert out.read_bytes() == before
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--min-keypoints", "18"], "--min-keypoints: must be 0 to 17"),
        (["--min-persons", "0"], "--min-persons: must be at least 1"),
        (["--max-images", "0"], "--max-images: must be at least 1"),
        (["--min-keypoints", "17", "--min-persons", "20"], "no image passes the filter"),
        (["--split", "val2013"], "captions_val2013.json: annotation file not found"),
    ],
)
def test_bad_options(
    coco_mini: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    words: str,
) -> None:
    out = tmp_path / "c.jsonl"
    rc = prepare("--coco", coco_mini, "--split", SPLIT, "--out", out, *flags)
    assert_one_line_error(capsys, out, rc, words)


def test_out_is_required(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert prepare() == 2
    assert capsys.readouterr().err.strip() == (
        "llava-pose: error: --out: required (the JSONL file to write, e.g. --out contexts.jsonl)"
    )


def test_subprocess_bad_input_has_no_traceback(coco_annotations_copy: Path, tmp_path: Path) -> None:
    edit(coco_annotations_copy, "person_keypoints", bad_visibility)
    out = tmp_path / "c.jsonl"
    env = {**os.environ, "PYTHONPATH": str(Path(coco.__file__).parents[2])}
    proc = subprocess.run(
        [sys.executable, "-m", "llava_pose", "prepare", "--coco", str(coco_annotations_copy),
         "--split", SPLIT, "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and f"person_keypoints_{SPLIT}.json: annotations[" in errors[0]
    assert not out.exists()
