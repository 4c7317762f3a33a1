"""The `vitpose` backend (transformers' RT-DETR -> ViTPose) on real COCO-MINI photos, with
tiny random models built offline from configs, as the training tests build theirs: the
plumbing, not the accuracy. Boxes in pixels -> crops -> keypoints back in image coordinates
-> contexts JSONL with provenance; RT-DETR's other objects kept; the same detector under
MediaPipe with --person-detector."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tests.conftest import find_coco_mini, one_line_error

from llava_pose.cli import main
from llava_pose.coco import read_contexts
from llava_pose.records import Box, Person

pytestmark = pytest.mark.train
torch = pytest.importorskip("torch")

POSE_SIZE = (64, 48)  # the tiny ViTPose's input, height x width


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(detector folder, pose folder): random RT-DETR with labels person and dog, random
    ViTPose with COCO's 17 heatmaps, each with its image processor, saved as from the hub."""
    from transformers import (
        RTDetrConfig,
        RTDetrForObjectDetection,
        RTDetrImageProcessor,
        RTDetrResNetConfig,
        VitPoseBackboneConfig,
        VitPoseConfig,
        VitPoseForPoseEstimation,
        VitPoseImageProcessor,
    )

    root = tmp_path_factory.mktemp("tiny-pose")
    torch.manual_seed(0)
    backbone = RTDetrResNetConfig(
        embedding_size=8,
        hidden_sizes=[8, 8, 16, 16],
        depths=[1, 1, 1, 1],
        layer_type="basic",
        out_features=["stage2", "stage3", "stage4"],
    )
    detector = RTDetrConfig(
        backbone_config=backbone,
        d_model=16,
        encoder_hidden_dim=16,
        encoder_in_channels=[8, 16, 16],
        feat_strides=[8, 16, 32],
        encoder_ffn_dim=32,
        encoder_layers=1,
        decoder_layers=1,
        decoder_ffn_dim=32,
        num_queries=12,
        decoder_in_channels=[16, 16, 16],
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_feature_levels=3,
        decoder_n_points=2,
        num_denoising=0,
        anchor_image_size=None,
        id2label={0: "person", 1: "dog"},
        label2id={"person": 0, "dog": 1},
    )
    RTDetrForObjectDetection(detector).save_pretrained(root / "det")
    RTDetrImageProcessor(size={"height": 64, "width": 64}).save_pretrained(root / "det")
    pose = VitPoseConfig(
        backbone_config=VitPoseBackboneConfig(
            image_size=list(POSE_SIZE),
            patch_size=[16, 16],
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            mlp_ratio=2,
            out_indices=[1],
        ),
        num_labels=17,
    )
    VitPoseForPoseEstimation(pose).save_pretrained(root / "pose")
    size = {"height": POSE_SIZE[0], "width": POSE_SIZE[1]}
    VitPoseImageProcessor(size=size).save_pretrained(root / "pose")
    return root / "det", root / "pose"


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vp") / "photos"
    (root / "sub").mkdir(parents=True)
    images = sorted((find_coco_mini() / "val2017").glob("*.jpg"))[:4]
    for k, image in enumerate(images):
        shutil.copy(image, (root / "sub" if k % 2 else root) / image.name)
    return root


def crop(box: Box, width: int, height: int) -> Box:
    """The region ViTPose reads for a box, normalised: the box widened to the model's aspect
    ratio and scaled by 1.25 about its centre (transformers' box_to_center_and_scale)."""
    x1, y1, x2, y2 = box[0] * width, box[1] * height, box[2] * width, box[3] * height
    w, h = x2 - x1, y2 - y1
    aspect = POSE_SIZE[1] / POSE_SIZE[0]
    w, h = (w, w / aspect) if w > aspect * h else (h * aspect, h)
    cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, 1.25 * w, 1.25 * h
    return (
        (cx - w / 2) / width,
        (cy - h / 2) / height,
        (cx + w / 2) / width,
        (cy + h / 2) / height,
    )


def inside(person: Person, region: Box, cells: int, share: float = 1.0) -> bool:
    """At least `share` of the labelled keypoints within `region`, give or take one heatmap
    cell (a random heatmap's sub-pixel refinement can throw a point further: a property of the
    random weights, not of the plumbing)."""
    dx, dy = (region[2] - region[0]) / cells, (region[3] - region[1]) / cells
    points = [(x, y) for x, y, v in person.keypoints if v > 0]
    hits = sum(
        region[0] - dx <= x <= region[2] + dx and region[1] - dy <= y <= region[3] + dy
        for x, y in points
    )
    return hits >= share * len(points)


def test_vitpose_places_keypoints_in_image_coordinates(
    models: tuple[Path, Path], photos: Path, tmp_path: Path
) -> None:
    det, pose = models
    out = tmp_path / "ctx.jsonl"
    args = ["--images", photos, "--pose-model", pose, "--person-detector", det]
    assert main(["-q", "prepare", *map(str, args), "--min-person-score", "0", "--all-images",
                 "--keypoint-thresholds", "0,0.3", "--out", str(out)]) == 0  # fmt: skip
    contexts = read_contexts(out)
    assert [c.image for c in contexts] == sorted(
        str(p.relative_to(photos)) for p in photos.rglob("*.jpg")
    )
    persons = [(c, p) for c in contexts for p in c.persons]
    assert persons and any(c.objects for c in contexts)
    assert {o.category for c in contexts for o in c.objects} == {"dog"}  # RT-DETR's objects
    import transformers

    for ctx, person in persons:
        est = person.estimate
        assert est is not None
        assert est.model == f"vitpose:{pose}" and est.detector == f"rtdetr:{det}"
        assert est.version == f"transformers {transformers.__version__}"
        assert person.num_labelled == 17  # labelled from a score of 0
        assert inside(person, crop(person.box, ctx.width, ctx.height), cells=12, share=0.75)
    far = [p for c, p in persons if p.box[0] > 0.3 or p.box[1] > 0.3]
    assert far  # keypoints of boxes away from the corner moved with them: not crop coordinates


@pytest.mark.pose
def test_mediapipe_runs_on_each_box_of_a_person_detector(
    models: tuple[Path, Path], photos: Path, tmp_path: Path
) -> None:
    pytest.importorskip("mediapipe", reason="needs the [pose] extra's mediapipe")
    det, _ = models
    out = tmp_path / "ctx.jsonl"
    args = ["--images", photos, "--pose", "mediapipe", "--person-detector", det]
    rc = main(["-q", "prepare", *map(str, args), "--min-person-score", "0", "--all-images",
               "--out", str(out)])  # fmt: skip
    assert rc == 0
    contexts = read_contexts(out)
    assert {o.category for c in contexts for o in c.objects} == {"dog"}
    persons = [p for c in contexts for p in c.persons]
    assert persons
    for person in persons:
        assert person.estimate is not None and person.estimate.detector == f"rtdetr:{det}"
        x1, y1, x2, y2 = person.box
        # BlazePose ran on the box padded by a quarter; it places a body's points even past
        # its crop (legs below a head-and-shoulders box), but about it, not about the corner
        w, h = 1.5 * (x2 - x1), 1.5 * (y2 - y1)
        around = (
            x1 - 0.25 * (x2 - x1) - w,
            y1 - 0.25 * (y2 - y1) - h,
            x2 + 0.25 * (x2 - x1) + w,
            y2 + 0.25 * (y2 - y1) + h,
        )
        assert inside(person, around, cells=50, share=0.75)
    assert any(p.box[0] > 0.3 and p.box[1] > 0.3 for p in persons)


def test_a_model_that_cannot_be_loaded_is_one_line(
    models: tuple[Path, Path],
    photos: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    det, _ = models
    out = tmp_path / "x.jsonl"
    rc = main(["prepare", "--images", str(photos), "--person-detector", str(tmp_path / "none"),
               "--out", str(out)])  # fmt: skip
    one_line_error(capsys, rc, "--person-detector", "cannot load", "local folder")
    rc = main(["prepare", "--images", str(photos), "--person-detector", str(det), "--pose-model",
               str(det), "--out", str(out)])  # fmt: skip
    one_line_error(capsys, rc, "--pose-model", "cannot load")
    import huggingface_hub.constants

    # a hub id without the network: said, not a trace (offline mode: at once, not after retries)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    rc = main(["prepare", "--images", str(photos), "--person-detector", "PekingU/no-such-model",
               "--out", str(out)])  # fmt: skip
    one_line_error(capsys, rc, "--person-detector", "PekingU/no-such-model")
    assert not out.exists()
