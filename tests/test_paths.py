"""`llava_pose.paths`: the one containment check for paths that come from data (pure parts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llava_pose.errors import InputError
from llava_pose.paths import escape_problem, fold, inside, join_inside, path_problem

# Every way out of a root we know of: absolute (POSIX, Windows drive, UNC), '..' climbing
# out at the start, in the middle or after '.', with either separator, and a NUL byte.
ESCAPES = [
    "../../../secret/private.txt",
    "/etc/passwd",
    "a/../../x.jpg",
    "./../x.jpg",
    "val2017/../../x.jpg",
    "..",
    "..\\..\\secret.txt",
    "a\\..\\..\\x.jpg",
    "C:\\secret.jpg",
    "C:secret.jpg",
    "\\\\server\\share\\x.jpg",
    "x.jpg\0.png",
]
INSIDE = ["000000397133.jpg", "val2017/000000397133.jpg", "a/../b.jpg", "./b.jpg", "a//b/./c.jpg"]


@pytest.mark.parametrize("rel", ESCAPES)
def test_every_escape_is_refused(rel: str, tmp_path: Path) -> None:
    assert escape_problem(rel) is not None
    assert path_problem(rel) is not None
    with pytest.raises(InputError, match=r"^data\.jsonl: line 3: image: ") as e:
        join_inside(tmp_path, rel, source="data.jsonl", field="line 3: image")
    assert "\n" not in str(e.value) and "\0" not in str(e.value)


@pytest.mark.parametrize("rel", INSIDE)
def test_paths_inside_are_joined_folded(rel: str, tmp_path: Path) -> None:
    assert path_problem(rel) is None
    joined = join_inside(tmp_path, rel, source="f", field="image")
    assert ".." not in joined.parts and "." not in joined.parts
    assert joined == tmp_path / fold(rel)
    assert inside(tmp_path, rel, source="f", field="image") == tmp_path / rel  # unchanged


def test_fold() -> None:
    assert fold("a/../b.jpg") == "b.jpg"
    assert fold("./a//b/./c.jpg") == "a/b/c.jpg"
    assert fold("a\\b.jpg") == "a/b.jpg"
    assert fold("link/../x.jpg") == "x.jpg"  # the OS would have gone through the link


@pytest.mark.parametrize("rel", [".", "a/..", "", "./"])
def test_a_path_naming_the_root_itself_is_no_file(rel: str) -> None:
    assert path_problem(rel) is not None
