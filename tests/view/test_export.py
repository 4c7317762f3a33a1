"""`llava-pose view --export` through the real CLI where the input or the output is hostile:
a review that names a file elsewhere, an image that declares gigapixels or is not the size its
annotations say, an output folder that cannot be written (read-only, full, under a file)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tests.conftest import one_line_error
from tests.crafted import png_declaring
from tests.fsfaults import one_line, run_cli, run_cli_read_only
from tests.view.conftest import cli, read_jsonl
from tests.view.helpers import shard

from llava_pose.view.site import THUMBS_DIR


def exported_text(out: Path) -> str:
    """Every shard of an export, as one text."""
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted((out / "data").rglob("*.js")))


def pages(out: Path) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for path in (out / "data" / "pages").glob("*.js"):
        found.update(shard(path)[1])
    return found


def test_a_reviews_answers_field_reads_nothing_outside_its_home(
    ehpaub: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A review folder whose lines name an answers file elsewhere: that file is not read (its
    text is in no shard), a warning names it; the answers beside the reviews still are."""
    elsewhere = tmp_path / "elsewhere" / "weak.jsonl"
    elsewhere.parent.mkdir()
    rows = read_jsonl(ehpaub["answers"] / "weak.jsonl")
    elsewhere.write_text("".join(json.dumps({**r, "text": "PRIVATE-TEXT"}) + "\n" for r in rows))
    case = tmp_path / "case"
    shutil.copytree(ehpaub["reviews"], case / "reviews")
    shutil.copytree(ehpaub["answers"], case / "answers")
    for review in (case / "reviews").rglob("*.jsonl"):
        lines = read_jsonl(review)
        for line in lines:
            line["answers"] = str(
                elsewhere if review.name == "weak.jsonl" else case / "answers" / review.name
            )
        review.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "site"
    capsys.readouterr()
    assert cli("view", ehpaub["bench"], "--reviews", case / "reviews", "--export", out) == 0
    err = capsys.readouterr().err
    text = exported_text(out)
    assert "PRIVATE-TEXT" not in text and "STRONG" in text  # strong.jsonl: beside the reviews
    assert str(elsewhere) in err and "--answers" in err


@pytest.fixture
def bombed_root(tmp_path: Path, coco_mini: Path) -> Path:
    """COCO-MINI's root with copies of val2017, where 000000034417.jpg declares 30000x30000 px
    and 000000109313.jpg (annotated 480x640) is a real image twice that size."""
    from PIL import Image

    root = tmp_path / "coco"
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").symlink_to(coco_mini / "annotations")
    for image in (coco_mini / "val2017").iterdir():
        shutil.copy(image, root / "val2017" / image.name)
    (root / "val2017" / "000000034417.jpg").write_bytes(png_declaring(30_000, 30_000))
    big = root / "val2017" / "000000109313.jpg"
    with Image.open(big) as im:
        im.resize((im.width * 2, im.height * 2)).save(big, format="JPEG")
    return root


def test_an_image_that_declares_gigapixels_is_skipped_and_counted(
    rules_out: Path, bombed_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "site"
    capsys.readouterr()
    rc = cli("view", rules_out, "--image-root", bombed_root, "--export", out)
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "Traceback" not in captured.err and "000000034417.jpg" in captured.err
    summary = captured.out.strip().splitlines()[-1]
    assert "2 images skipped" in summary and summary.startswith("wrote ")
    shown = pages(out)
    assert shown["val2017/000000034417.jpg"]["src"] is None
    assert shown["val2017/000000109313.jpg"]["src"] is None
    assert shown["val2017/000000311002.jpg"]["src"] == f"{THUMBS_DIR}/val2017/000000311002.jpg"
    assert (out / THUMBS_DIR / "val2017" / "000000311002.jpg").is_file()
    assert not (out / THUMBS_DIR / "val2017" / "000000034417.jpg").exists()


def test_an_export_folder_that_cannot_be_written_is_one_line(
    rules_out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under a regular file, or a name longer than the file system takes: one line naming
    the folder, exit 2, before anything is read. On a read-only mount or a full disk (made by
    the kernel, `tests.fsfaults`): one line naming the folder, not a temp file inside it."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    rc = cli("view", rules_out, "--export", blocker / "site")
    one_line_error(capsys, rc, "--export", str(blocker / "site"), "not a folder")
    long_name = tmp_path / ("x" * 300)
    rc = cli("view", rules_out, "--export", long_name)
    one_line_error(capsys, rc, str(long_name), "File name too long")
    mount = tmp_path / "ro"
    result = run_cli_read_only(mount, ["view", rules_out, "--export", mount / "site"])
    one_line(result, f"{mount / 'site'}: cannot write (Read-only file system)")
    assert list(mount.iterdir()) == []
    full = tmp_path / "full"
    result = run_cli(["view", rules_out, "--export", full / "site"], file_limit=300)
    one_line(result, f"{full / 'site'}: cannot write", "free some space")
    assert list(full.iterdir()) == []  # the half-written temp folder is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "full", "ro"]
