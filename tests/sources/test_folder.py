"""`llava_pose.folder` and the pure parts of `estimators` and `confidence`, without a model:
listing, shards, ids, captions, the journal, detections -> records, trust in estimates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from tests.sources.helpers import photo_folder

from llava_pose import folder
from llava_pose.confidence import confident, estimate_problem, trusted
from llava_pose.errors import ConfigError, InputError
from llava_pose.estimators import (
    Estimator,
    FoundPerson,
    Settings,
    registry,
    to_box,
    to_person,
    visibility,
)
from llava_pose.records import Estimate, ImageContext, Person


def test_a_folder_lists_its_images_nested_sorted_by_suffix_not_hidden(tmp_path: Path) -> None:
    root = photo_folder(tmp_path / "photos")
    listing = folder.list_images(root)
    assert listing.root == root
    assert len(listing.images) == 19 + 15 + 3  # val at the top, train nested, 3 broken
    assert listing.images == sorted(listing.images)
    assert "street/000000037666.JPG" in listing.images  # upper-case suffix, nested folder
    assert "bad/bomb.png" in listing.images
    assert not any(name.startswith(".") or name.endswith(".txt") for name in listing.images)


def test_a_list_file_names_images_relative_to_its_folder(tmp_path: Path) -> None:
    root = photo_folder(tmp_path / "photos", broken=False)
    (root / "list.txt").write_text(
        "# two of them\nstreet/000000037666.JPG\n\n000000000802.jpg  # the kitchen\n"
    )
    listing = folder.list_images(root / "list.txt")
    assert listing.root == root
    assert listing.images == ["000000000802.jpg", "street/000000037666.JPG"]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("../outside.jpg\n", "climbs out"),
        ("/etc/passwd\n", "absolute path"),
        ("a.jpg\na.jpg\n", "listed more than once"),
    ],
)
def test_a_list_file_may_not_leave_its_folder(tmp_path: Path, text: str, needle: str) -> None:
    (tmp_path / "list.txt").write_text(text)
    with pytest.raises(InputError, match=needle):
        folder.list_images(tmp_path / "list.txt")


def test_shards_are_contiguous_slices_that_cover_the_list_once() -> None:
    items = [f"{k:03d}.jpg" for k in range(37)]
    for n in (1, 2, 3, 5, 8, 37, 40):
        parts = [folder.pick_shard(items, (k, n)) for k in range(1, n + 1)]
        assert [x for part in parts for x in part] == items
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert folder.parse_shard("3/8") == (3, 8)
    for bad in ("0/4", "5/4", "a/b", "4"):
        with pytest.raises(ConfigError, match="K/N"):
            folder.parse_shard(bad)


def test_an_image_id_is_a_48_bit_hash_of_the_path_the_same_in_every_process() -> None:
    a, b = folder.image_id("street/run.jpg"), folder.image_id("street/run2.jpg")
    assert a != b and 0 <= a < 2**48 and 0 <= b < 2**48
    code = "from llava_pose.folder import image_id; print(image_id('street/run.jpg'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(other.stdout) == a  # not Python's per-process salted hash


def test_captions_read_in_both_shapes_and_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "captions.jsonl"
    path.write_text(
        '{"image": "a.jpg", "caption": "A man\\n runs."}\n'
        '{"image": "a.jpg", "captions": ["He is fast."]}\n'
        '{"image": "sub/b.jpg", "captions": ["One.", "  "]}\n'
    )
    assert folder.read_captions(path) == {
        "a.jpg": ("A man runs.", "He is fast."),
        "sub/b.jpg": ("One.",),
    }
    path.write_text('{"image": "a.jpg", "caption": "x"}\n{"image": "b.jpg", "text": "y"}\n')
    with pytest.raises(InputError, match=r"line 2"):
        folder.read_captions(path)
    path.write_text('{"image": "a.jpg"}\n')
    with pytest.raises(InputError, match=r"line 1.*give caption or captions"):
        folder.read_captions(path)


def _outcome(name: str) -> folder.Outcome:
    return folder.Outcome(name, skipped="not an image")


def test_the_journal_cuts_a_half_written_line_and_refuses_other_settings(tmp_path: Path) -> None:
    out = tmp_path / "ctx.jsonl"
    journal = folder.Journal(out, {"pose": "mediapipe"})
    assert journal.open() == {}
    journal.append([_outcome("a.jpg"), _outcome("b.jpg")])
    with open(journal.path, "ab") as f:  # what a kill -9 in the middle of a write leaves
        f.write(b'{"image": "c.jp')
    again = folder.Journal(out, {"pose": "mediapipe"})
    assert sorted(again.open()) == ["a.jpg", "b.jpg"]
    assert journal.path.read_bytes().endswith(b"}\n")  # the partial line is gone
    other = folder.Journal(out, {"pose": "vitpose"})
    with pytest.raises(InputError, match=r"other settings.*pose 'mediapipe' there, 'vitpose' now"):
        other.open()


class _Fixed(Estimator):
    """No model: an estimator whose settings alone make the records (for the pure parts)."""

    def __init__(self) -> None:
        super().__init__(registry()["mediapipe"], Settings(thresholds=(0.3, 0.6)))
        self.model, self.detector, self.version = "m", "d", "v 1"


def test_scores_become_coco_visibility_by_the_two_thresholds() -> None:
    assert [visibility(s, (0.3, 0.6)) for s in (0.0, 0.29, 0.3, 0.59, 0.6, 1.0)] == [
        0,
        0,
        1,
        1,
        2,
        2,
    ]


def test_a_found_person_becomes_a_context_person_with_its_provenance() -> None:
    points = [(50.0, 40.0, 0.9)] * 15 + [(-10.0, 500.0, 0.45), (60.0, 60.0, 0.1)]
    found = FoundPerson((-4.0, 10.0, 120.0, 230.0), 1.7, tuple(points))
    person = to_person(found, 200, 100, _Fixed())
    assert person.box == (0.0, 0.1, 0.6, 1.0)  # clamped to the image
    assert person.keypoints[0] == (0.25, 0.4, 2)
    assert person.keypoints[15] == (0.0, 1.0, 1)  # outside: clamped to the edge, v=1
    assert person.keypoints[16] == (0.0, 0.0, 0)  # below the labelled threshold: COCO's v=0
    est = person.estimate
    assert est is not None and est.thresholds == (0.3, 0.6)
    assert est.keypoint_scores[15:] == (0.45, 0.1) and est.score == 1.0  # scores kept in [0, 1]
    assert (est.model, est.detector, est.version) == ("m", "d", "v 1")
    assert to_box((30.0, 20.0, 10.0, 5.0), 100, 100) == (0.1, 0.05, 0.3, 0.2)


def _estimated(scores: list[float], score: float = 0.9) -> Person:
    return Person(
        box=(0.1, 0.1, 0.5, 0.9),
        keypoints=tuple((0.2 + 0.01 * j, 0.2 + 0.02 * j, 2) for j in range(17)),
        estimate=Estimate(
            model="m",
            detector="d",
            version="v",
            score=score,
            keypoint_scores=tuple(scores),
            thresholds=(0.3, 0.5),
        ),
    )


def test_low_confidence_joints_are_hidden_and_annotations_pass_unchanged() -> None:
    scores = [0.9] * 17
    scores[9] = 0.45  # left wrist: below the visible threshold (its file says v=2 anyway)
    scores[10] = 0.75  # right wrist: visible, below PoseQA's floor of 0.8
    person = _estimated(scores)
    kept = confident(person)
    assert kept.keypoints[9] == (0.0, 0.0, 0) and kept.keypoints[10] == person.keypoints[10]
    strict = confident(person, min_keypoint=0.8)
    assert strict.keypoints[10] == (0.0, 0.0, 0) and strict.num_labelled == 15
    assert confident(_estimated([0.9] * 17, score=0.5), min_person=0.7).num_labelled == 0
    annotated = Person(box=person.box, keypoints=person.keypoints)
    ctx = ImageContext(1, "a.jpg", 100, 100, ("x",), persons=(annotated,))
    assert trusted(ctx) is ctx  # callers cache by identity
    mixed = msgspec.structs.replace(ctx, persons=(annotated, person))
    assert trusted(mixed).persons[0] is annotated
    assert trusted(mixed).persons[1].keypoints[9] == (0.0, 0.0, 0)


def test_an_estimate_that_cannot_be_read_is_named() -> None:
    good = _estimated([0.5] * 17).estimate
    assert good is not None and estimate_problem(good) is None
    short = msgspec.structs.replace(good, keypoint_scores=(0.5,) * 16)
    assert estimate_problem(short) == ("keypoint_scores", "expected 17 scores, got 16")
    nan = msgspec.structs.replace(good, keypoint_scores=(float("nan"),) + (0.5,) * 16)
    assert estimate_problem(nan) == ("keypoint_scores[0]", "must be 0 to 1, got nan")
    upside = msgspec.structs.replace(good, thresholds=(0.6, 0.2))
    assert estimate_problem(upside)[0] == "thresholds"  # type: ignore[index]
