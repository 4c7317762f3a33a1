"""A benchmark folder is data from someone else: `bench answer` reads images only under a root
the user named, or inside the folder itself, and sends only files that are images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import one_line_error
from tests.crafted import png_declaring
from tests.ehpaub.helpers import write_jsonl

from llava_pose.cli import main


def crafted_bench(folder: Path, image_root: str, image: str) -> Path:
    """A one-question benchmark whose manifest and question are whatever an attacker wrote."""
    write_jsonl(
        folder / "questions.jsonl",
        [{"question_id": 1, "image": image, "text": "What is shown?", "category": "conv"}],
    )
    (folder / "manifest.json").write_text(json.dumps({"image_root": image_root}))
    return folder


def answer(bench: Path, out: Path, server, *extra: object) -> int:
    args = ["bench", "answer", "--bench", bench, "--out", out, "--base-url", server.url]
    return main([*map(str, args), "--model", "openai:gpt-4o-mini", *map(str, extra)])


def test_a_manifest_root_outside_the_folder_is_never_read(
    openai_server, tmp_path: Path, capsys
) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n")
    bench = crafted_bench(tmp_path / "perf", str(home), ".ssh/id_rsa")
    out = tmp_path / "a.jsonl"
    rc = answer(bench, out, openai_server)
    line = one_line_error(capsys, rc, "manifest.json: image_root", "--image-root")
    assert "outside the benchmark folder" in line
    assert openai_server.requests == [] and not out.exists()


def test_only_images_are_sent_whatever_their_names(openai_server, tmp_path: Path, capsys) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "notes.jpg").write_text("my private notes, named like a picture\n")
    bench = crafted_bench(tmp_path / "perf", str(root), "notes.jpg")
    rc = answer(bench, tmp_path / "a.jsonl", openai_server, "--image-root", root)
    one_line_error(capsys, rc, "question_id 1: image", "notes.jpg", "not an image")
    assert openai_server.requests == []


def test_an_image_declaring_too_many_pixels_is_not_sent(
    openai_server, tmp_path: Path, capsys
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "bomb.png").write_bytes(png_declaring(30_000, 30_000))
    assert (root / "bomb.png").stat().st_size < 400
    bench = crafted_bench(tmp_path / "perf", str(root), "bomb.png")
    rc = answer(bench, tmp_path / "a.jsonl", openai_server, "--image-root", root)
    one_line_error(capsys, rc, "bomb.png", "decompression bomb")
    assert openai_server.requests == []
    (root / "bomb.png").write_bytes(png_declaring(9_000, 9_000))  # under PIL's own limit
    rc = answer(bench, tmp_path / "a.jsonl", openai_server, "--image-root", root)
    one_line_error(capsys, rc, "bomb.png", "9,000 x 9,000", "more than the 64,000,000 pixels")
    assert openai_server.requests == []


def test_a_folder_carrying_its_images_needs_no_root_but_no_link_leads_out(
    openai_server, coco_mini: Path, tmp_path: Path, capsys
) -> None:
    bench = tmp_path / "perf"
    (bench / "images").mkdir(parents=True)
    picture = next((coco_mini / "val2017").glob("*.jpg"))
    shutil.copy(picture, bench / "images" / "a.jpg")
    crafted_bench(bench, "images", "a.jpg")
    out = tmp_path / "a.jsonl"
    assert answer(bench, out, openai_server) == 0
    capsys.readouterr()
    sent = openai_server.requests[0].body["messages"][0]["content"][0]["image_url"]["url"]
    assert sent.startswith("data:image/jpeg;base64,")

    secret = tmp_path / "secret.jpg"  # an image, but outside the folder
    shutil.copy(picture, secret)
    (bench / "images" / "b.jpg").symlink_to(secret)
    crafted_bench(bench, "images", "b.jpg")
    before = len(openai_server.requests)
    rc = answer(bench, tmp_path / "b.jsonl", openai_server)
    one_line_error(capsys, rc, "b.jpg links out of the benchmark folder")
    assert len(openai_server.requests) == before
