"""The fast paths of the COCO load at scale (numpy columns, the instances file read in a forked
second process) give exactly what the one-at-a-time, one-process load gives, errors included,
and fall back to it wherever they cannot run."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from llava_pose import coco
from llava_pose.coco import columns, decode
from llava_pose.coco import load as loader
from llava_pose.errors import InputError
from llava_pose.forked import Forked

SPLIT = "val2017"
ONE_PROCESS = 1 << 62  # a threshold no file reaches


def load(root: Path, split: str = SPLIT, **options: Any) -> coco.SplitLoad:
    return coco.read_split(root, split, check_images=False, **options)


def same(a: coco.SplitLoad, b: coco.SplitLoad) -> bool:
    stats_a, stats_b = dict(vars(a.stats)), dict(vars(b.stats))
    stats_a.pop("seconds"), stats_b.pop("seconds")
    return msgspec.json.encode(a.contexts) == msgspec.json.encode(b.contexts) and stats_a == stats_b


def both_ways(monkeypatch: pytest.MonkeyPatch, root: Path, **options: Any) -> tuple[Any, Any]:
    """(one-process result or error, parallel result or error), the parallel one checked to
    have forked."""
    outcomes = []
    forks = []
    start = Forked.start

    def counting(fn: Any, *args: Any) -> Any:
        forks.append(fn)
        return start(fn, *args)

    monkeypatch.setattr(Forked, "start", counting)
    for threshold in (ONE_PROCESS, 0):
        monkeypatch.setattr(loader, "_PARALLEL_BYTES", threshold)
        try:
            outcomes.append(load(root, **options))
        except InputError as e:
            outcomes.append(str(e))
    assert len(forks) == 1  # the parallel load, and only it, read the instances file aside
    return outcomes[0], outcomes[1]


def edit(root: Path, kind: str, change: Any) -> None:
    path = root / "annotations" / f"{kind}_{SPLIT}.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "options",
    [{}, {"human_only": False}, {"min_keypoints": 0}, {"min_persons": 2}, {"image_ids": [785]}],
)
@pytest.mark.parametrize("split", ["train2017", "val2017"])
def test_parallel_load_is_the_one_process_load(
    monkeypatch: pytest.MonkeyPatch, coco_mini: Path, split: str, options: dict[str, Any]
) -> None:
    if "image_ids" in options:
        options = {"image_ids": [c.image_id for c in load(coco_mini, split).contexts[:3]]}
    one, parallel = both_ways(monkeypatch, coco_mini, split=split, **options)
    assert isinstance(one, coco.SplitLoad) and one.contexts
    assert same(one, parallel)


def test_instances_errors_come_before_keypoint_errors(
    monkeypatch: pytest.MonkeyPatch, coco_annotations_copy: Path
) -> None:
    root = coco_annotations_copy
    edit(root, "instances", lambda d: d["images"][3].update(width=10**6))
    edit(root, "person_keypoints", lambda d: d["annotations"][0].update(keypoints=[1, 2]))
    one, parallel = both_ways(monkeypatch, root)
    assert one == parallel
    assert "instances_val2017.json: images[3].width: 1,000,000 px is beyond" in one


def test_person_errors_come_before_object_errors(
    monkeypatch: pytest.MonkeyPatch, coco_annotations_copy: Path
) -> None:
    root = coco_annotations_copy

    def bad_object(d: dict[str, Any]) -> None:
        persons = {c["id"] for c in d["categories"] if c["name"] == "person"}
        a = next(a for a in d["annotations"] if a["category_id"] not in persons)
        a["bbox"][2] = -5

    edit(root, "instances", bad_object)
    edit(root, "person_keypoints", lambda d: d["annotations"][1].update(keypoints=[0] * 50))
    one, parallel = both_ways(monkeypatch, root)
    assert one == parallel
    assert "person_keypoints_val2017.json: annotations[1].keypoints: expected 51" in one
    # with the person fixed, the object's error (found by the second process) is said
    edit(root, "person_keypoints", lambda d: d["annotations"][1].update(keypoints=[0] * 51))
    one, parallel = both_ways(monkeypatch, root)
    assert one == parallel
    assert "instances_val2017.json: annotations[" in one and "negative size" in one


def test_unknown_category_and_image_in_the_second_process(
    monkeypatch: pytest.MonkeyPatch, coco_annotations_copy: Path
) -> None:
    root = coco_annotations_copy
    edit(root, "instances", lambda d: d["annotations"][7].update(category_id=999))
    one, parallel = both_ways(monkeypatch, root)
    assert one == parallel and "unknown category 999" in one
    edit(root, "instances", lambda d: d["annotations"][7].update(category_id=1, image_id=5))
    one, parallel = both_ways(monkeypatch, root)
    assert one == parallel and "annotations[7].image_id: unknown image 5" in one


def test_keypoints_file_without_images_or_with_other_sizes(
    monkeypatch: pytest.MonkeyPatch, coco_annotations_copy: Path
) -> None:
    """Persons are read early by the keypoints file's own image sizes only when they are the
    instances file's: otherwise again, by the instances file's, as the one-process load does."""
    root = coco_annotations_copy
    reference = load(root)
    edit(
        root, "person_keypoints", lambda d: d["images"][0].update(width=d["images"][0]["width"] * 2)
    )
    one, parallel = both_ways(monkeypatch, root)
    assert same(one, parallel) and same(one, reference)
    edit(root, "person_keypoints", lambda d: d.pop("images"))
    one, parallel = both_ways(monkeypatch, root)
    assert same(one, parallel) and same(one, reference)


def test_a_failed_second_process_falls_back(
    monkeypatch: pytest.MonkeyPatch, coco_mini: Path
) -> None:
    def broken(path: Path, folder: Path) -> dict[str, Any]:
        raise MemoryError("as if the child ran out of memory")

    monkeypatch.setattr(loader, "_child_result", broken)
    one, parallel = both_ways(monkeypatch, coco_mini)
    assert same(one, parallel)


def test_ids_numpy_cannot_hold_take_the_one_at_a_time_path(
    monkeypatch: pytest.MonkeyPatch, coco_annotations_copy: Path
) -> None:
    root = coco_annotations_copy
    path = root / "annotations" / f"instances_{SPLIT}.json"
    data = json.loads(path.read_text())
    persons = {c["id"] for c in data["categories"] if c["name"] == "person"}
    a = next(a for a in data["annotations"] if a["category_id"] not in persons)
    a["id"] = 2**62  # last in id order, and int64 holds it ...
    path.write_text(json.dumps(data))
    reference = load(root)
    a["id"] = 2**63  # ... not this (msgspec reads it: it fits uint64)
    path.write_text(json.dumps(data))
    instances = msgspec.json.decode(path.read_bytes(), type=decode._InstancesFile)
    assert columns._columns(instances.annotations, ("id",)) is None
    one, parallel = both_ways(monkeypatch, root)
    assert same(one, reference) and same(parallel, reference)


def test_vectorized_rounding_is_round3() -> None:
    """`_round3_clamped` is `_box`'s clamp-then-`_round3`, ties (x.5 thousandths) included."""
    rng = random.Random(0)
    values, sizes = [], []
    for _ in range(100_000):
        size = rng.choice([1, 3, 7, 333, 427, 480, 640, 1000, 99_999])
        kind = rng.random()
        if kind < 0.4:
            value = (rng.randint(0, 1000) + 0.5) * size / 1000  # at or near a tie
        elif kind < 0.7:
            value = round(rng.uniform(-1.5, size + 1.5), 2)
        else:
            value = rng.randint(-1, size + 1) + rng.choice([0, 0.5, 0.25, 0.0005 * size])
        values.append(float(value))
        sizes.append(float(size))
    got = columns._round3_clamped(np.array(values), np.array(sizes)).tolist()
    for value, size, out in zip(values, sizes, got, strict=True):
        want = 0.0 if value <= 0 else 1.0 if value >= size else columns._round3(value / int(size))
        assert repr(out) == repr(want), (value, size)


def test_person_boxes_are_box(coco_mini: Path) -> None:
    path = coco_mini / "annotations" / f"person_keypoints_{SPLIT}.json"
    data = msgspec.json.decode(path.read_bytes(), type=decode._KeypointsFileWithImages)
    images = {im.id: decode._Image(im.id, im.width, im.height) for im in data.images}
    table = columns._Table.of(images)
    assert table is not None
    boxes = table.person_boxes(data.annotations)
    assert boxes is not None
    sizes = loader._sizes((im.id, im.width, im.height) for im in images.values())
    for a, box in zip(data.annotations, boxes, strict=True):
        if not a.iscrowd:
            assert box == columns._box(a.bbox, sizes[a.image_id])


def test_caption_errors_come_after_object_errors(
    monkeypatch: pytest.MonkeyPatch, coco_annotations_copy: Path
) -> None:
    """The second process reads the captions file too; its errors come where a one-process
    load says them: after the objects', before the missing-caption check."""
    root = coco_annotations_copy
    edit(root, "captions", lambda d: d["annotations"][4].update(image_id=5))
    one, parallel = both_ways(monkeypatch, root)
    assert one == parallel and "captions_val2017.json: annotations[4].image_id: unknown" in one
    edit(root, "instances", lambda d: d["annotations"][7].update(category_id=999))
    one, parallel = both_ways(monkeypatch, root)
    assert one == parallel and "unknown category 999" in one
    (root / "annotations" / f"captions_{SPLIT}.json").write_text('{"annotations": [')
    edit(root, "instances", lambda d: d["annotations"][7].update(category_id=1))
    one, parallel = both_ways(monkeypatch, root)
    assert one == parallel and "captions_val2017.json: invalid JSON" in one


def test_a_kept_image_without_caption_is_said_either_way(
    monkeypatch: pytest.MonkeyPatch, coco_annotations_copy: Path, coco_mini: Path
) -> None:
    image_id = load(coco_mini).contexts[0].image_id
    edit(
        coco_annotations_copy,
        "captions",
        lambda d: d.update(annotations=[a for a in d["annotations"] if a["image_id"] != image_id]),
    )
    one, parallel = both_ways(monkeypatch, coco_annotations_copy)
    assert one == parallel and f"image {image_id} (images[" in one and "has no caption" in one
