"""Nothing outside the data root is read or sent: crafted COCO roots and contexts files through
the real CLI (`prepare`, `generate --coco`, `generate --contexts`, `bench build --contexts`),
with a loopback server that records every request it gets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import cli, one_line_error
from tests.servers import OpenAIServer
from tests.test_paths import ESCAPES

from llava_pose import coco

SPLIT = "val2017"


def instances(root: Path) -> Path:
    return root / "annotations" / f"instances_{SPLIT}.json"


def set_file_name(root: Path, name: str) -> int:
    """Give the first human-centric image the file name `name`; its index in images[]."""
    kept = min(c.image_id for c in coco.load_split(root, SPLIT, check_images=False))
    data = json.loads(instances(root).read_text())
    index = next(i for i, im in enumerate(data["images"]) if im["id"] == kept)
    data["images"][index]["file_name"] = name
    instances(root).write_text(json.dumps(data))
    return index


@pytest.mark.parametrize("name", ESCAPES)
@pytest.mark.parametrize("check", ["--check-images", "--no-check-images"])
def test_prepare_refuses_an_escaping_file_name(
    coco_annotations_copy: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    check: str,
) -> None:
    root = coco_annotations_copy
    index = set_file_name(root, name)
    out = tmp_path / "out" / "contexts.jsonl"
    rc = cli("prepare", "--coco", root, "--split", SPLIT, "--out", out, check)
    one_line_error(capsys, rc, f"instances_{SPLIT}.json: images[{index}].file_name: ")
    assert not out.parent.exists()


def test_an_escaping_file_name_of_an_image_that_is_not_kept_is_refused_too(
    coco_annotations_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = coco_annotations_copy
    kept = {c.image_id for c in coco.load_split(root, SPLIT)}
    data = json.loads(instances(root).read_text())
    index = next(i for i, im in enumerate(data["images"]) if im["id"] not in kept)
    data["images"][index]["file_name"] = "../../../secret/private.txt"
    instances(root).write_text(json.dumps(data))
    rc = cli("prepare", "--coco", root, "--split", SPLIT, "--out", tmp_path / "c.jsonl")
    one_line_error(capsys, rc, f"images[{index}].file_name: ", "climbs out")


@pytest.mark.parametrize("name", ["../../../secret/private.txt", "/etc/passwd", "a/../../x.jpg"])
def test_generate_coco_refuses_it_before_any_request(
    coco_annotations_copy: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    server: OpenAIServer,
    name: str,
) -> None:
    index = set_file_name(coco_annotations_copy, name)
    out = tmp_path / "out"
    rc = cli(
        "generate", "--coco", coco_annotations_copy, "--split", SPLIT, "--out", out,
        "--teacher", "openai:gpt-4o", "--base-url", server.url,
    )  # fmt: skip
    one_line_error(capsys, rc, f"images[{index}].file_name: ")
    assert server.requests == []
    assert not out.exists()


def test_a_linked_image_folder_keeps_working_and_is_never_climbed_out_of(
    coco_mini: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ROOT/val2017 is the user's link to another disk: images are found through it. A file
    name `sub/../x` is folded before the OS sees it, so a link inside the folder cannot lead
    out of it either (the OS would resolve `link/..` beside the link's target)."""
    disk = tmp_path / "disk"
    shutil.copytree(coco_mini / SPLIT, disk / "images" / SPLIT)
    (disk / "images" / "secret.jpg").write_bytes(b"not an image of the data set")
    root = tmp_path / "coco"
    shutil.copytree(coco_mini / "annotations", root / "annotations")
    (root / SPLIT).symlink_to(disk / "images" / SPLIT)
    (disk / "images" / SPLIT / "link").symlink_to(disk / "images" / SPLIT)
    # as the OS resolves it, link/../secret.jpg is disk/images/secret.jpg: outside the root
    assert (root / SPLIT / "link" / ".." / "secret.jpg").is_file()
    set_file_name(root, "link/../secret.jpg")
    out = tmp_path / "c.jsonl"
    assert cli("prepare", "--coco", root, "--split", SPLIT, "--out", out) == 0
    contexts = coco.read_contexts(out)
    first = min(contexts, key=lambda c: c.image_id)
    assert first.image == f"{SPLIT}/{first.image_id:012d}.jpg"  # the 2017 name, not the secret
    assert all((root / c.image).is_file() and ".." not in c.image for c in contexts)
    assert capsys.readouterr().err == ""


def contexts_file(coco_mini: Path, path: Path, change: Any) -> int:
    """A contexts JSONL of three real images, the second changed by `change`: its line."""
    coco.write_contexts(path, coco.load_split(coco_mini, SPLIT)[:3])
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    change(rows[1])
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return 2


@pytest.mark.parametrize("image", ESCAPES)
def test_generate_contexts_refuses_an_escaping_image(
    coco_mini: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    server: OpenAIServer,
    image: str,
) -> None:
    path = tmp_path / "contexts.jsonl"
    line = contexts_file(coco_mini, path, lambda row: row.update(image=image))
    out = tmp_path / "out"
    rc = cli(
        "generate", "--contexts", path, "--out", out,
        "--teacher", "openai:gpt-4o", "--base-url", server.url,
    )  # fmt: skip
    one_line_error(capsys, rc, f"contexts.jsonl: line {line}: image: ")
    assert server.requests == []
    assert not out.exists()


def test_bench_build_contexts_refuses_an_escaping_image(
    coco_mini: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], server: OpenAIServer
) -> None:
    path = tmp_path / "contexts.jsonl"
    line = contexts_file(coco_mini, path, lambda row: row.update(image="/home/you/.ssh/id_rsa"))
    out = tmp_path / "perf"
    rc = cli(
        "bench", "build", "--contexts", path, "--split", SPLIT, "--out", out,
        "--teacher", "openai:gpt-4o", "--base-url", server.url,
    )  # fmt: skip
    one_line_error(capsys, rc, f"contexts.jsonl: line {line}: image: ", "absolute path")
    assert server.requests == []
    assert not out.exists()
