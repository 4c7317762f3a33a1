"""A folder of plain images (no annotations, no captions) through the whole pipeline, with
MediaPipe's real weights: prepare -> generate (offline teacher, and an LLM teacher on a loopback
server) -> poseqa build -> verify -> view -> overlay; and `--images` given to those commands
directly reads the same as `--contexts` from prepare."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image
from tests.conftest import KEY, cli
from tests.servers import OpenAIServer
from tests.sources.helpers import photo_folder
from tests.view.helpers import built

from llava_pose.coco import read_contexts
from llava_pose.context import missing_captions

pytest.importorskip("mediapipe", reason="needs the [pose] extra's mediapipe (.ci/run installs it)")
pytestmark = pytest.mark.pose

MEDIAPIPE = ("--pose", "mediapipe")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return photo_folder(tmp_path_factory.mktemp("wf") / "photos", broken=False)


@pytest.fixture(scope="module")
def contexts(photos: Path) -> Path:
    out = photos.parent / "photos.jsonl"
    assert cli("prepare", "--images", photos, *MEDIAPIPE, "--out", out) == 0
    assert len(read_contexts(out)) >= 8
    return out


@pytest.fixture(scope="module")
def dataset(contexts: Path) -> Path:
    out = contexts.parent / "out"
    assert cli("generate", "--contexts", contexts, "--out", out) == 0
    return out


def test_the_offline_teacher_writes_from_estimated_keypoints(
    dataset: Path, contexts: Path, photos: Path
) -> None:
    records = json.loads((dataset / "llava_pose_all.json").read_text())
    images = {c.image for c in read_contexts(contexts)}
    assert {r["image"] for r in records} == images  # paths in the folder, as contexts hold
    assert len(records) == 3 * len(images)
    assert all((photos / r["image"]).is_file() for r in records)
    stats = json.loads((dataset / "stats.json").read_text())
    assert stats["source"] == str(contexts) and stats["complete"]


@pytest.fixture(scope="module")
def direct(photos: Path) -> Path:
    """`generate --images`: the folder estimated by generate itself, no prepare."""
    out = photos.parent / "direct"
    assert cli("generate", "--images", photos, *MEDIAPIPE, "--out", out) == 0
    return out


def test_images_given_directly_read_as_the_prepared_contexts(
    dataset: Path, direct: Path, photos: Path
) -> None:
    mine = (direct / "llava_pose_all.json").read_bytes()
    assert mine == (dataset / "llava_pose_all.json").read_bytes()
    assert json.loads((direct / "stats.json").read_text())["source"] == str(photos)


def test_an_llm_teacher_is_told_there_are_no_captions_and_the_estimate_holds(
    contexts: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    args = ["generate", "--contexts", contexts, "--teacher", "openai:gpt-4o"]
    assert cli(*args, "--dry-run", "--out", tmp_path / "dry") == 0
    estimate = re.search(r"prompt tokens: ([\d,]+)", capsys.readouterr().out)
    assert estimate is not None
    with OpenAIServer(latency=0.0, api_key=KEY) as server:
        assert cli(*args, "--base-url", server.url, "--out", tmp_path / "llm") == 0
        bodies = [r.body for r in server.requests if r.completed]
    n = len(read_contexts(contexts))
    assert len(bodies) == 3 * n
    none = missing_captions()
    for body in bodies:
        text = "\n".join(m["content"] for m in body["messages"] if isinstance(m["content"], str))
        assert none in text  # said, not an empty section
        assert "caption: \n" not in text and not text.endswith("caption: ")
    conversation = [b for b in bodies if "new questions and answers" in json.dumps(b)]
    assert len(conversation) == n
    assert all({"role": "assistant", "content": none} in b["messages"] for b in conversation)
    stats = json.loads((tmp_path / "llm" / "stats.json").read_text())
    assert stats["tokens"]["input"] == int(estimate.group(1).replace(",", ""))  # billed = estimated


def test_poseqa_asks_only_what_confident_joints_show(
    contexts: Path, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "poseqa"
    assert cli("poseqa", "build", "--contexts", contexts, "--images", photos, "--out", out) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["image_root"] == str(photos.resolve()) and manifest["source"] == str(contexts)
    assert manifest["margins"]["KEYPOINT_SCORE_MIN"] == 0.8
    questions = [json.loads(line) for line in (out / "questions.jsonl").read_text().splitlines()]
    assert questions and not any(q["category"] == "count" for q in questions)
    direct = tmp_path / "direct"
    assert cli("poseqa", "build", "--images", photos, *MEDIAPIPE, "--out", direct) == 0
    assert (direct / "questions.jsonl").read_bytes() == (out / "questions.jsonl").read_bytes()


def test_verify_checks_records_against_estimated_keypoints(
    dataset: Path, contexts: Path, photos: Path, tmp_path: Path
) -> None:
    data = dataset / "llava_pose_all.json"
    assert cli("verify", "--data", data, "--contexts", contexts, "--out", tmp_path / "v") == 0
    summary = json.loads((tmp_path / "v" / "summary.json").read_text())
    assert summary["records_without_context"] == 0 and summary["claims"] > 0
    assert summary["contradicted"] == 0  # the teacher wrote from the same confident facts
    assert (
        cli("verify", "--data", data, "--images", photos, *MEDIAPIPE, "--out", tmp_path / "w") == 0
    )
    assert json.loads((tmp_path / "w" / "summary.json").read_text()) == summary


def test_view_shows_the_folder_with_its_people(
    dataset: Path, direct: Path, contexts: Path, photos: Path
) -> None:
    data, root = built(dataset, images=str(photos))  # its stats name the contexts file
    assert root == photos
    assert data.pages and all(page["persons"] for page in data.pages.values())
    # `generate --images` names the folder: the view estimates the images the records name
    estimated, root = built(direct, pose="mediapipe")
    assert root == photos and estimated.pages == data.pages


def test_overlay_draws_an_image_of_the_folder(
    dataset: Path, contexts: Path, photos: Path, tmp_path: Path
) -> None:
    record = json.loads((dataset / "llava_pose_all.json").read_text())[1]
    out = tmp_path / "fig.png"
    args = ["--data", dataset / "llava_pose_all.json", "--record", record["id"]]
    assert cli("overlay", "--contexts", contexts, "--images", photos, *args, "--out", out) == 0
    with Image.open(photos / record["image"]) as photo, Image.open(out) as figure:
        assert figure.height >= photo.height and figure.width > photo.width  # photo + text panel
    again = tmp_path / "direct.png"
    assert (
        cli("overlay", "--images", photos, *MEDIAPIPE, "--image", record["image"], "--out", again)
        == 0
    )
    with Image.open(again) as figure:
        assert figure.size[0] >= 32
