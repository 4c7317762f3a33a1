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
from tests.crafted import png_declaring
from tests.fsfaults import one_line, run_cli, run_cli_read_only

from llava_pose.cli import main
from llava_pose.images import MAX_PIXELS
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
    large = tmp_path / "large.png"  # a 640 px photo is never blown up to 1,280 px
    assert overlay(coco_mini, large, "--image", "229358", "--width", "1280") == 0
    assert size(large) == (640, 423)


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


# -- hostile input and outputs that cannot be written -----------------------------------------


@pytest.mark.timeout(60)  # a 3,000-letter word took over 120 s when each letter was re-measured
def test_a_long_unbroken_word_is_wrapped_quickly(
    tmp_path: Path, coco_mini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "long.json"
    words = {"3k": "x" * 3_000, "20k": "ab" * 10_000}
    data.write_text(
        json.dumps(
            [
                {
                    "id": f"311002-{name}",
                    "image": "val2017/000000311002.jpg",
                    "conversations": [
                        {"from": "human", "value": "<image>\nSay something long."},
                        {"from": "gpt", "value": f"Here: {word} and more."},
                    ],
                }
                for name, word in words.items()
            ]
        )
    )
    for name in words:
        out = tmp_path / f"{name}.png"
        rc = overlay(coco_mini, out, "--data", str(data), "--record", f"311002-{name}")
        assert rc == 0, capsys.readouterr().err
        assert size(out) == (640 + panel_width(640, 427), max(427, PANEL_MIN_HEIGHT))


@pytest.fixture
def hostile_root(tmp_path: Path, coco_mini: Path) -> Path:
    """COCO-MINI's annotations, and val2017 images that are not what they say: 311002 (640x427)
    declares 30000x30000 px in 94 bytes, 229358 (640x423) is twice that size, 536038 (358x640)
    a rotated copy, and 434204 (500x333) a copy at half size."""
    root = tmp_path / "coco"
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").symlink_to(coco_mini / "annotations")
    source = coco_mini / "val2017"
    (root / "val2017" / "000000311002.jpg").write_bytes(png_declaring(30_000, 30_000))
    with Image.open(source / "000000229358.jpg") as im:
        im.resize((1280, 846)).save(root / "val2017" / "000000229358.jpg", format="JPEG")
    with Image.open(source / "000000536038.jpg") as im:
        im.transpose(Image.Transpose.ROTATE_90).save(root / "val2017" / "000000536038.jpg")
    with Image.open(source / "000000434204.jpg") as im:
        im.resize((250, 166)).save(root / "val2017" / "000000434204.jpg", format="JPEG")
    return root


def test_an_image_that_is_not_its_annotated_size_is_refused_undecoded(
    tmp_path: Path, hostile_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "f.png"
    val = hostile_root / "val2017"
    rc = overlay(hostile_root, out, "--image", "311002")
    one_line_error(capsys, rc, str(val / "000000311002.jpg"), f"{MAX_PIXELS:,} pixels", "bomb")
    rc = overlay(hostile_root, out, "--image", "229358")
    one_line_error(capsys, rc, str(val / "000000229358.jpg"), "1280x846", "640x423")
    rc = overlay(hostile_root, out, "--image", "536038")
    one_line_error(capsys, rc, str(val / "000000536038.jpg"), "640x358", "358x640")
    assert not out.exists()
    # A smaller copy of the same shape (a resized dataset) is drawn at its own size.
    assert overlay(hostile_root, out, "--image", "434204") == 0
    assert size(out) == (250, 166)


def test_an_out_that_cannot_be_written_is_one_line(
    tmp_path: Path, coco_mini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A read-only mount, a full disk (both made by the kernel, `tests.fsfaults`) or a name
    longer than the file system takes: one line naming the file, exit 2, nothing left."""
    args = ["overlay", "--coco", coco_mini, "--split", "val2017", "--image", "311002"]
    mount = tmp_path / "ro"
    result = run_cli_read_only(mount, [*args, "--out", mount / "f.png"])
    one_line(result, f"{mount / 'f.png'}: cannot write (Read-only file system)")
    full = tmp_path / "full"
    full.mkdir()
    result = run_cli([*args, "--out", full / "f.png"], file_limit=300)
    one_line(result, f"{full / 'f.png'}: cannot write", "free some space")
    assert list(mount.iterdir()) == list(full.iterdir()) == []
    out = tmp_path / ("x" * 300 + ".png")
    rc = overlay(coco_mini, out, "--image", "311002")
    one_line_error(capsys, rc, str(out), "File name too long")
