"""`llava-pose overlay` through the real CLI on COCO-MINI, with records the offline teacher
really generated: picture sizes, record choice, contexts from --contexts, and bad input as
one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from tests.conftest import one_line_error

from llava_pose.cli import main
from llava_pose.overlay import PANEL_MIN_HEIGHT, panel_width

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory, coco_mini: Path) -> Path:
    """`generate --teacher rules` on COCO-MINI val2017: the records overlay shows."""
    out = tmp_path_factory.mktemp("generated")
    args = ["--teacher", "rules", "--coco", str(coco_mini), "--split", "val2017"]
    rc = main(["-q", "generate", *args, "--out", str(out)])
    assert rc == 0
    return out / "llava_pose_all.json"


def overlay(coco: Path, out: Path, *extra: str) -> int:
    """`overlay` on val2017 of `coco`; -q keeps the loader's progress line out of error output."""
    args = ["--coco", str(coco), "--split", "val2017", "--out", str(out), *extra]
    return main(["-q", "overlay", *args])


def size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_image_alone_is_the_photos_size_and_any_image_spelling_works(
    tmp_path: Path, coco_mini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for n, spelling in enumerate(["000000536038", "536038", "000000536038.jpg"]):
        out = tmp_path / f"fig{n}.png"
        assert overlay(coco_mini, out, "--image", spelling) == 0
        assert size(out) == (358, 640)  # the photo's own size
    assert (tmp_path / "fig0.png").read_bytes() == (tmp_path / "fig2.png").read_bytes()
    printed = capsys.readouterr().out
    assert "image 536038, 2 people" in printed and "record" not in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig0.png", "fig1.png", "fig2.png"]


def test_data_adds_the_panel_of_the_images_conversation(
    tmp_path: Path, coco_mini: Path, records: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "fig.png"
    assert overlay(coco_mini, out, "--image", "311002", "--data", str(records)) == 0
    assert size(out) == (640 + panel_width(640, 427), max(427, PANEL_MIN_HEIGHT))
    assert "record 311002-conv" in capsys.readouterr().out
    # Another task's record is another panel on the same picture.
    detail = tmp_path / "detail.png"
    rc = overlay(coco_mini, detail, "--image", "311002", "--data", str(records), "--task", "detail")
    assert rc == 0 and "record 311002-detail" in capsys.readouterr().out
    with Image.open(out) as a, Image.open(detail) as b:
        assert a.crop((0, 0, 640, 427)).tobytes() == b.crop((0, 0, 640, 427)).tobytes()
        assert a.tobytes() != b.tobytes()


def test_record_alone_names_the_image_and_width_scales_it(
    tmp_path: Path, coco_mini: Path, records: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "fig.png"
    rc = overlay(coco_mini, out, "--data", str(records), "--record", "229358-reasoning")
    assert rc == 0
    assert "image 229358, 2 people, record 229358-reasoning" in capsys.readouterr().out
    small = tmp_path / "small.png"
    rc = overlay(coco_mini, small, "--image", "229358", "--width", "320")
    assert rc == 0 and size(small) == (320, round(423 * 320 / 640))


def test_contexts_from_prepare_give_the_same_picture(
    tmp_path: Path, coco_mini: Path, records: Path
) -> None:
    contexts = tmp_path / "val.jsonl"
    prep = ["prepare", "--coco", str(coco_mini), "--split", "val2017", "--out", str(contexts)]
    assert main(prep) == 0
    via_coco, via_contexts = tmp_path / "a.png", tmp_path / "b.png"
    args = ["--image", "109313", "--data", str(records)]
    assert overlay(coco_mini, via_coco, *args) == 0
    assert overlay(coco_mini, via_contexts, *args, "--contexts", str(contexts)) == 0
    assert via_coco.read_bytes() == via_contexts.read_bytes()


def test_the_real_entry_point_writes_the_png(tmp_path: Path, coco_mini: Path) -> None:
    out = tmp_path / "fig.png"
    args = ["overlay", "--coco", str(coco_mini), "--split", "val2017"]
    proc = subprocess.run(
        [sys.executable, "-m", "llava_pose", *args, "--image", "434204", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert size(out) == (500, 333)


# -- bad input: one line, exit 2, nothing written ----------------------------------------------


def test_image_not_in_the_annotations(
    tmp_path: Path, coco_mini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = overlay(coco_mini, tmp_path / "f.png", "--image", "391895")
    one_line_error(capsys, rc, "instances_val2017.json", "images", "391895")
    rc = overlay(coco_mini, tmp_path / "f.png", "--image", "holiday.png")
    one_line_error(capsys, rc, "--image", "holiday.png")
    assert list(tmp_path.iterdir()) == []


def test_record_not_found_or_about_another_image(
    tmp_path: Path, coco_mini: Path, records: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "f.png"
    rc = overlay(coco_mini, out, "--data", str(records), "--record", "1-conv")
    one_line_error(capsys, rc, str(records), "id", "'1-conv'")
    rc = overlay(
        coco_mini, out, "--image", "311002", "--data", str(records), "--record", "229358-conv"
    )
    one_line_error(capsys, rc, "--record", "229358", "311002")
    only_conv = tmp_path / "conv.json"
    rows = [r for r in json.loads(records.read_text()) if r["id"].endswith("-conv")]
    only_conv.write_text(json.dumps(rows))
    rc = overlay(coco_mini, out, "--image", "311002", "--data", str(only_conv), "--task", "detail")
    one_line_error(capsys, rc, str(only_conv), "no detail record of image 311002")
    rc = overlay(coco_mini, out, "--image", "311002", "--record", "311002-conv")
    one_line_error(capsys, rc, "--record", "--data")
    assert not out.exists()


def test_malformed_records_name_the_field(
    tmp_path: Path, coco_mini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "d.json"
    data.write_text(json.dumps([{"id": "1-conv", "conversations": [{"from": "gpt"}]}]))
    rc = overlay(coco_mini, tmp_path / "f.png", "--image", "311002", "--data", str(data))
    one_line_error(capsys, rc, str(data), "conversations[0]", "value")


def test_unreadable_or_missing_image(
    tmp_path: Path, coco_mini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "coco"
    shutil.copytree(coco_mini / "annotations", root / "annotations")
    (root / "val2017").mkdir()
    broken = root / "val2017" / "000000311002.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "f.png"
    one_line_error(capsys, overlay(root, out, "--image", "311002"), str(broken), "image")
    one_line_error(capsys, overlay(root, out, "--image", "109313"), "000000109313.jpg", "not found")
    assert not out.exists()


def test_out_must_be_a_png_in_a_folder_that_exists(
    tmp_path: Path, coco_mini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no" / "such" / "f.png"
    one_line_error(
        capsys, overlay(coco_mini, missing, "--image", "311002"), "--out", "does not exist"
    )
    assert not (tmp_path / "no").exists()
    one_line_error(
        capsys, overlay(coco_mini, tmp_path / "f.jpg", "--image", "311002"), "--out", ".png"
    )
    one_line_error(capsys, overlay(coco_mini, tmp_path, "--image", "311002"), "--out", "folder")


def test_an_existing_picture_is_replaced_whole(
    tmp_path: Path, coco_mini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "f.png"
    out.write_bytes(b"old")
    assert overlay(coco_mini, out, "--image", "311002") == 0
    assert size(out) == (640, 427)
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]  # no temp file left behind
    capsys.readouterr()
    rc = overlay(coco_mini, out, "--image", "391895")  # fails: the old picture stays
    one_line_error(capsys, rc, "391895")
    assert size(out) == (640, 427)
