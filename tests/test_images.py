"""`llava_pose.images`: what may be sent or decoded is an image, told by its bytes, of a sane
size, whose pixels decode."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from tests.crafted import png_declaring

from llava_pose.errors import InputError
from llava_pose.images import MAX_PIXELS, probe, read_image, size_problem, sniff


def test_sniff_tells_formats_by_their_first_bytes() -> None:
    assert sniff(b"\xff\xd8\xff\xe0\x00\x10JFIF") == "JPEG"
    assert sniff(b"\x89PNG\r\n\x1a\n\x00\x00") == "PNG"
    assert sniff(b"RIFF\x10\x00\x00\x00WEBPVP8 ") == "WEBP"
    assert sniff(b"GIF89a\x01\x00") == "GIF"
    assert sniff(b"-----BEGIN OPENSSH") is None
    assert sniff(b"%PDF-1.7") is None
    assert sniff(b"") is None


def test_size_problem_bounds_sides_and_pixels() -> None:
    assert size_problem(640, 480) is None
    assert size_problem(0, 480) is not None
    assert size_problem(100_001, 10) is not None
    assert size_problem(8000, 8000) is None and MAX_PIXELS == 8000 * 8000
    assert "pixels" in (size_problem(8001, 8000) or "")


def test_a_real_coco_picture_reads_with_its_media_type(coco_mini: Path) -> None:
    picture = next((coco_mini / "val2017").glob("*.jpg"))
    data, info = read_image(picture)
    assert data == picture.read_bytes()
    assert info.media_type == "image/jpeg"
    with Image.open(picture) as im:
        assert (info.width, info.height) == im.size
    assert probe(picture) == info


def test_the_media_type_comes_from_the_bytes_not_the_name(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), "red").save(buf, "PNG")
    named_jpg = tmp_path / "really-a.png.jpg"
    named_jpg.write_bytes(buf.getvalue())
    assert read_image(named_jpg)[1].media_type == "image/png"


def test_a_truncated_image_does_not_pass(coco_mini: Path, tmp_path: Path) -> None:
    picture = next((coco_mini / "val2017").glob("*.jpg"))
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(picture.read_bytes()[:2000])
    probe(cut)  # the header alone is fine
    with pytest.raises(InputError, match="not a readable JPEG"):
        read_image(cut)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"ssh-ed25519 AAAA... me@host\n", "not an image"),
        (png_declaring(30_000, 30_000), "decompression bomb"),
        (png_declaring(9_000, 9_000), "more than the 64,000,000 pixels"),
    ],
)
def test_what_is_refused(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(content)
    with pytest.raises(InputError, match=needle):
        read_image(path)
    with pytest.raises(InputError, match=needle):
        probe(path)
