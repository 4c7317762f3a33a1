"""`llava-pose prepare --images` end to end with MediaPipe's real BlazePose weights: a folder of
real photos (and broken files) -> contexts every command reads; killed with SIGKILL and rerun,
nothing finished is redone; shards concatenated are the whole run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.conftest import one_line_error
from tests.sources.helpers import photo_folder

from llava_pose import folder
from llava_pose.cli import main
from llava_pose.coco import read_contexts

pytest.importorskip("mediapipe", reason="needs the [pose] extra's mediapipe (.ci/run installs it)")
pytestmark = pytest.mark.pose

REPO = Path(__file__).resolve().parents[2]


def prepare(*args: object) -> int:
    return main(["-q", "prepare", "--pose", "mediapipe", *map(str, args)])


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return photo_folder(tmp_path_factory.mktemp("any") / "photos")


@pytest.fixture(scope="module")
def full_run(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One uninterrupted run over the folder (every image kept), and what it printed."""
    out = tmp_path_factory.mktemp("full") / "all.jsonl"
    cmd = [sys.executable, "-m", "llava_pose", "-q", "prepare", "--pose", "mediapipe"]
    done = subprocess.run(
        [*cmd, "--images", photos, "--all-images", "--out", out],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    return out, done.stdout


def test_a_folder_becomes_contexts_with_provenance(
    photos: Path, full_run: tuple[Path, str]
) -> None:
    out, stdout = full_run
    assert "estimated 37 images" in stdout
    assert re.search(r"3 images skipped \(.*not an image.*\)", stdout), stdout
    contexts = read_contexts(out)  # what generate, bench build, verify ... read, checked
    assert len(contexts) == 34  # --all-images: every readable photo, people or not
    assert [c.image for c in contexts] == sorted(c.image for c in contexts)
    assert not Path(f"{out}{folder.JOURNAL_SUFFIX}").exists()  # a finished run leaves none
    people = [p for c in contexts for p in c.persons]
    assert len(people) >= 10
    for ctx in contexts:
        assert ctx.image_id == folder.image_id(ctx.image)
        assert (photos / ctx.image).is_file() and ctx.captions == ()
    for person in people:
        est = person.estimate
        assert est is not None and est.model.startswith("mediapipe:pose_landmark_full sha256:")
        assert est.detector == "mediapipe:pose_detection" and est.version.startswith("mediapipe ")
        assert est.thresholds == (0.3, 0.5) and len(est.keypoint_scores) == 17
        for (x, y, v), s in zip(person.keypoints, est.keypoint_scores, strict=True):
            assert v == (2 if s >= 0.5 else 1 if s >= 0.3 else 0)
            assert (x, y) == (0.0, 0.0) or v > 0


def test_the_human_centric_filter_and_captions_apply(
    photos: Path, full_run: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    everything = read_contexts(full_run[0])
    with_people = [c for c in everything if any(p.num_labelled >= 5 for p in c.persons)]
    captions = tmp_path / "captions.jsonl"
    captions.write_text(f'{{"image": "{with_people[0].image}", "caption": "Two  people."}}\n')
    out = tmp_path / "kept.jsonl"
    assert prepare("--images", photos, "--captions", captions, "--out", out) == 0
    kept = read_contexts(out)
    assert [c.image for c in kept] == [c.image for c in with_people]
    assert kept[0].captions == ("Two people.",) and all(c.captions == () for c in kept[1:])
    assert f"kept {len(kept)} of 34 images" in capsys.readouterr().out


def test_shards_concatenated_are_the_whole_run(
    photos: Path, full_run: tuple[Path, str], tmp_path: Path
) -> None:
    parts = []
    for k in (1, 2, 3):
        out = tmp_path / f"part-{k}.jsonl"
        assert prepare("--images", photos, "--all-images", "--shard", f"{k}/3", "--out", out) == 0
        parts.append(out.read_bytes())
    assert all(parts)
    assert b"".join(parts) == full_run[0].read_bytes()


@pytest.mark.slow
def test_a_killed_run_resumes_without_redoing_a_finished_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = photo_folder(tmp_path / "photos", copies=3)
    total = 3 * 34 + 3
    out = tmp_path / "ctx.jsonl"
    journal = Path(f"{out}{folder.JOURNAL_SUFFIX}")
    cmd = [sys.executable, "-m", "llava_pose", "-q", "prepare", "--pose", "mediapipe"]
    run = [*cmd, "--images", str(photos), "--batch-size", "2", "--out", str(out)]
    child = subprocess.Popen(run, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        if journal.exists() and journal.read_bytes().count(b"\n") >= 11:  # header + 10 images
            os.kill(child.pid, signal.SIGKILL)
            break
        time.sleep(0.002)
    child.wait()
    child.stdout.close()  # type: ignore[union-attr]
    child.stderr.close()  # type: ignore[union-attr]
    assert child.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not out.exists()  # nothing half-written looks complete
    done = journal.read_bytes().count(b"\n") - 1  # finished images, whatever the kill cut
    assert 10 <= done < total

    # Other settings would mix two models' keypoints in one file: refused, nothing touched.
    before = journal.read_bytes()
    rc = prepare("--images", photos, "--keypoint-thresholds", "0.2,0.4", "--out", out)
    one_line_error(capsys, rc, str(journal), "other settings", "keypoint_thresholds")
    assert journal.read_bytes() == before

    assert prepare("--images", photos, "--batch-size", "2", "--out", out) == 0
    said = capsys.readouterr().out
    assert f"estimated {total - done} images ({done} more were done by an earlier run)" in said
    assert not journal.exists()
    fresh = tmp_path / "fresh.jsonl"
    assert prepare("--images", photos, "--out", fresh) == 0
    assert out.read_bytes() == fresh.read_bytes()


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--device", "cuda"], ["--device", "CPU"]),
        (["--pose", "openpose"], ["--pose", "unknown backend", "vitpose", "mediapipe"]),
        (["--pose-model", "some/model"], ["--pose-model", "pose_landmark_full"]),
        (["--shard", "0/2"], ["--shard", "K/N"]),
        (["--keypoint-thresholds", "0.6,0.2"], ["--keypoint-thresholds", "LABELLED"]),
    ],
)
def test_options_a_backend_cannot_take_are_one_line(
    photos: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    needles: list[str],
) -> None:
    rc = prepare("--images", photos, *args, "--out", tmp_path / "x.jsonl")
    one_line_error(capsys, rc, *needles)
    assert not (tmp_path / "x.jsonl").exists()


def test_sources_that_cannot_be_read_are_one_line(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.jsonl"
    one_line_error(capsys, prepare("--images", tmp_path / "nowhere", "--out", out), "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(capsys, prepare("--images", empty, "--out", out), "no images")
    rc = prepare("--captions", tmp_path / "c.jsonl", "--out", out)
    one_line_error(capsys, rc, "--captions", "only with --images")
    rc = prepare("--images", photos, "--coco", photos, "--out", out)
    one_line_error(capsys, rc, "--coco or --images")
    bad = tmp_path / "captions.jsonl"
    bad.write_text('{"image": "a.jpg", "caption": 3}\n')
    rc = prepare("--images", photos, "--captions", bad, "--out", out)
    one_line_error(capsys, rc, str(bad), "line 1")
