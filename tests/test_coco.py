"""COCO ingest against the real COCO-MINI files: every expectation is computed from the raw JSON."""

from __future__ import annotations

import json
import os
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from llava_pose import coco
from llava_pose.coco import columns
from llava_pose.errors import InputError
from llava_pose.records import ImageContext

SPLIT = "val2017"


def raw_split(root: Path, split: str = SPLIT) -> dict[str, Any]:
    """The three official files, grouped the obvious way."""
    ann = root / "annotations"
    captions = json.loads((ann / f"captions_{split}.json").read_text())
    instances = json.loads((ann / f"instances_{split}.json").read_text())
    keypoints = json.loads((ann / f"person_keypoints_{split}.json").read_text())
    names = {c["id"]: c["name"] for c in instances["categories"]}
    by_image: dict[str, dict[int, list[dict[str, Any]]]] = {
        k: defaultdict(list) for k in ("captions", "objects", "persons", "crowd")
    }
    for a in sorted(captions["annotations"], key=lambda a: a["id"]):
        by_image["captions"][a["image_id"]].append(a)
    for a in sorted(instances["annotations"], key=lambda a: a["id"]):
        if names[a["category_id"]] == "person":
            continue
        by_image["crowd" if a["iscrowd"] else "objects"][a["image_id"]].append(a)
    for a in sorted(keypoints["annotations"], key=lambda a: a["id"]):
        by_image["crowd" if a["iscrowd"] else "persons"][a["image_id"]].append(a)
    images = {im["id"]: im for im in instances["images"]}
    return {"images": images, "names": names, **by_image}


def labelled(annotation: dict[str, Any]) -> int:
    return sum(1 for v in annotation["keypoints"][2::3] if v > 0)


def human_centric(raw: dict[str, Any], min_keypoints: int = 5, min_persons: int = 1) -> set[int]:
    return {
        image_id
        for image_id, persons in raw["persons"].items()
        if sum(1 for p in persons if labelled(p) >= max(min_keypoints, 1)) >= min_persons
    }


def expected_box(bbox: list[float], w: int, h: int) -> tuple[float, ...]:
    x, y, bw, bh = bbox
    return (round(x / w, 3), round(y / h, 3), round((x + bw) / w, 3), round((y + bh) / h, 3))


@pytest.fixture(scope="module")
def raw(coco_mini: Path) -> dict[str, Any]:
    return raw_split(coco_mini)


@pytest.fixture(scope="module")
def contexts(coco_mini: Path) -> dict[int, ImageContext]:
    return {c.image_id: c for c in coco.load_split(coco_mini, SPLIT)}


def test_kept_images_are_the_human_centric_ones(raw: dict, contexts: dict) -> None:
    expected = human_centric(raw)
    assert set(contexts) == expected
    assert 0 < len(expected) < len(raw["images"])  # the filter does something on real data


def test_counts_match_the_raw_files(raw: dict, contexts: dict) -> None:
    # a few telling images: most persons, a crowd region, persons without keypoints
    with_crowd = [i for i in contexts if raw["crowd"][i]]
    with_unlabelled = [i for i in contexts if any(labelled(p) == 0 for p in raw["persons"][i])]
    most_persons = max(contexts, key=lambda i: len(raw["persons"][i]))
    assert with_crowd and with_unlabelled
    for image_id in {with_crowd[0], with_unlabelled[0], most_persons}:
        ctx = contexts[image_id]
        assert len(ctx.captions) == len(raw["captions"][image_id])
        assert len(ctx.objects) == len(raw["objects"][image_id])
        assert len(ctx.persons) == len(raw["persons"][image_id])


def test_every_field_against_raw_numbers(raw: dict, contexts: dict, coco_mini: Path) -> None:
    for image_id, ctx in contexts.items():
        im = raw["images"][image_id]
        w, h = im["width"], im["height"]
        assert (ctx.width, ctx.height) == (w, h)
        assert ctx.image == f"{SPLIT}/{im['file_name']}"
        assert (coco_mini / ctx.image).is_file()
        assert ctx.captions == tuple(
            " ".join(a["caption"].split()) for a in raw["captions"][image_id]
        )
        assert [o.category for o in ctx.objects] == [
            raw["names"][a["category_id"]] for a in raw["objects"][image_id]
        ]
        assert [o.box for o in ctx.objects] == [
            expected_box(a["bbox"], w, h) for a in raw["objects"][image_id]
        ]
        for person, a in zip(ctx.persons, raw["persons"][image_id], strict=True):
            assert person.box == expected_box(a["bbox"], w, h)
            k = a["keypoints"]
            assert person.keypoints == tuple(
                (round(k[j] / w, 3), round(k[j + 1] / h, 3), k[j + 2])
                if k[j + 2]
                else (0.0, 0.0, 0)
                for j in range(0, 51, 3)
            )
            assert person.num_labelled == a["num_keypoints"]


def test_box_conversion_by_hand(contexts: dict, raw: dict) -> None:
    # one object, worked through explicitly: [x, y, w, h] -> (x1, y1, x2, y2) / size
    image_id = next(i for i in contexts if raw["objects"][i])
    a = raw["objects"][image_id][0]
    im = raw["images"][image_id]
    x, y, bw, bh = a["bbox"]
    x1, y1, x2, y2 = contexts[image_id].objects[0].box
    assert x1 == round(x / im["width"], 3) and x2 == round((x + bw) / im["width"], 3)
    assert y1 == round(y / im["height"], 3) and y2 == round((y + bh) / im["height"], 3)
    assert 0 <= x1 <= x2 <= 1 and 0 <= y1 <= y2 <= 1


def test_unlabelled_persons_stay_but_do_not_count(coco_mini: Path, raw: dict) -> None:
    contexts = coco.load_split(coco_mini, SPLIT)
    zero = [p for c in contexts for p in c.persons if p.num_labelled == 0]
    assert zero and all(p.keypoints == ((0.0, 0.0, 0),) * 17 for p in zero)
    # min_keypoints=0 must not let a person with no keypoint make an image human-centric
    only_unlabelled = {i for i, ps in raw["persons"].items() if all(labelled(p) == 0 for p in ps)}
    assert only_unlabelled
    kept = {c.image_id for c in coco.load_split(coco_mini, SPLIT, min_keypoints=0)}
    assert not kept & only_unlabelled


@pytest.mark.parametrize(("min_keypoints", "min_persons"), [(1, 1), (10, 1), (5, 2), (3, 3)])
def test_filter_thresholds(
    coco_mini: Path, raw: dict, min_keypoints: int, min_persons: int
) -> None:
    kept = coco.load_split(coco_mini, SPLIT, min_keypoints=min_keypoints, min_persons=min_persons)
    assert {c.image_id for c in kept} == human_centric(raw, min_keypoints, min_persons)


def test_all_images_override(coco_mini: Path, raw: dict) -> None:
    loaded = coco.read_split(coco_mini, SPLIT, human_only=False)
    assert [c.image_id for c in loaded.contexts] == sorted(raw["images"])
    assert loaded.stats.kept == loaded.stats.images == len(raw["images"])
    no_person = [c for c in loaded.contexts if not raw["persons"][c.image_id]]
    assert no_person and all(c.persons == () and c.captions for c in no_person)


def test_stats_match_raw(coco_mini: Path, raw: dict) -> None:
    stats = coco.read_split(coco_mini, SPLIT).stats
    kept = human_centric(raw)
    assert stats.images == len(raw["images"])
    assert stats.kept == len(kept)
    assert stats.persons == sum(len(raw["persons"][i]) for i in kept)
    assert stats.persons_unlabelled == sum(
        1 for i in kept for p in raw["persons"][i] if labelled(p) == 0
    )
    assert stats.objects == sum(len(raw["objects"][i]) for i in kept)
    assert stats.crowd == sum(len(raw["crowd"][i]) for i in kept) > 0
    assert stats.captions == sum(len(raw["captions"][i]) for i in kept)
    assert f"kept {stats.kept} of {stats.images}" in stats.summary("rule")


def test_both_splits_load(coco_mini: Path) -> None:
    for split in ("train2017", "val2017"):
        contexts = coco.load_split(coco_mini, split)
        assert contexts == sorted(contexts, key=lambda c: c.image_id)
        assert all(c.image.startswith(f"{split}/") for c in contexts)
        assert len(contexts) == len(human_centric(raw_split(coco_mini, split)))


def test_image_ids_restrict(coco_mini: Path, contexts: dict) -> None:
    wanted = sorted(contexts)[:3]
    assert [c.image_id for c in coco.load_split(coco_mini, SPLIT, image_ids=wanted)] == wanted
    with pytest.raises(InputError, match="no image with id 1 "):
        coco.load_split(coco_mini, SPLIT, image_ids=[1])


def link_split(src: Path, dst: Path, rename: Any = lambda name: name, skip: str = "") -> None:
    """A split folder of symlinks to the real images, optionally renamed or missing one."""
    dst.mkdir()
    for f in src.iterdir():
        if f.name != skip:
            (dst / rename(f.name)).symlink_to(f)


def test_2014_file_names(tmp_path: Path, coco_mini: Path, contexts: dict) -> None:
    (tmp_path / "annotations").symlink_to(coco_mini / "annotations")
    link_split(coco_mini / SPLIT, tmp_path / SPLIT, lambda name: f"COCO_val2014_{name}")
    loaded = coco.load_split(tmp_path, SPLIT)
    assert [c.image for c in loaded] == [
        f"{SPLIT}/COCO_val2014_{i:012d}.jpg" for i in sorted(contexts)
    ]
    assert all((tmp_path / c.image).is_file() for c in loaded)


def test_file_name_field_wins_then_2017_name(coco_annotations_copy: Path, contexts: dict) -> None:
    root = coco_annotations_copy
    path = root / "annotations" / f"instances_{SPLIT}.json"
    data = json.loads(path.read_text())
    for im in data["images"]:  # annotations say 2014 names, the folder has 2017 names
        im["file_name"] = f"COCO_val2014_{im['id']:012d}.jpg"
    path.write_text(json.dumps(data))
    loaded = coco.load_split(root, SPLIT)
    assert [c.image for c in loaded] == [f"{SPLIT}/{i:012d}.jpg" for i in sorted(contexts)]
    # without the check, the file_name field is trusted as it is
    unchecked = coco.load_split(root, SPLIT, check_images=False)
    assert unchecked[0].image == f"{SPLIT}/COCO_val2014_{unchecked[0].image_id:012d}.jpg"


def test_no_image_folder_needed_without_check(tmp_path: Path, coco_mini: Path) -> None:
    (tmp_path / "annotations").symlink_to(coco_mini / "annotations")
    assert coco.load_split(tmp_path, SPLIT, check_images=False)
    with pytest.raises(InputError, match="image folder not found"):
        coco.load_split(tmp_path, SPLIT)


def test_boxes_within_tolerance_are_clamped(coco_annotations_copy: Path, raw: dict) -> None:
    root = coco_annotations_copy
    path = root / "annotations" / f"instances_{SPLIT}.json"
    data = json.loads(path.read_text())
    images = {im["id"]: im for im in data["images"]}
    image_id = next(i for i in sorted(human_centric(raw)) if raw["objects"][i])
    a = next(a for a in data["annotations"] if a["id"] == raw["objects"][image_id][0]["id"])
    im = images[image_id]
    a["bbox"] = [-0.6, 10.0, im["width"] + 0.5, 20.0]  # 0.6 px left of and 0.1 px right of it
    path.write_text(json.dumps(data))
    ctx = {c.image_id: c for c in coco.load_split(root, SPLIT)}[image_id]
    assert ctx.objects[0].box == (
        0.0,
        round(10 / im["height"], 3),
        1.0,
        round(30 / im["height"], 3),
    )


def test_round3_is_round() -> None:
    for size in range(1, 700):
        for value in range(size + 1):
            assert columns._round3(value / size) == round(value / size, 3)
    rng = random.Random(0)
    for _ in range(200_000):
        size = rng.randint(1, 4000)
        value = round(rng.uniform(0, size), 2)
        assert columns._round3(value / size) == round(value / size, 3)


def test_select_images_is_seeded_and_prefix_stable(contexts: dict) -> None:
    items = list(contexts.values())
    five = coco.select_images(items, 5, seed=1)
    assert len(five) == 5 and len({c.image_id for c in five}) == 5
    assert coco.select_images(items, 5, seed=1) == five
    assert coco.select_images(list(reversed(items)), 5, seed=1) == five  # input order is moot
    assert coco.select_images(items, 12, seed=1)[:5] == five  # growing N keeps the first N
    assert [c.image_id for c in five] == coco.select_images(sorted(contexts), 5, seed=1)
    orders = {tuple(c.image_id for c in coco.select_images(items, 5, seed=s)) for s in range(4)}
    assert len(orders) > 1  # the seed matters
    everything = coco.select_images(items, 10_000, seed=3)
    assert sorted(c.image_id for c in everything) == sorted(contexts)
    assert coco.select_images(items, None, seed=3) == items


def test_contexts_file_round_trip(tmp_path: Path, contexts: dict) -> None:
    path = tmp_path / "contexts.jsonl"
    items = list(contexts.values())
    assert coco.write_contexts(path, items) == len(items)
    assert coco.read_contexts(path) == items
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace('"width":', '"width":"wide",')
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="line 3"):
        coco.read_contexts(path)


def test_bundled_sample() -> None:
    root = coco.sample_root()
    assert (root / "README.md").is_file()
    loaded = coco.read_split(root, coco.SAMPLE_SPLIT)
    assert 6 <= loaded.stats.kept == loaded.stats.images <= 8  # all human-centric
    total = sum(os.path.getsize(root / c.image) for c in loaded.contexts)
    assert total < 1_500_000
    for kind in coco.ANNOTATION_KINDS:
        data = json.loads((root / "annotations" / f"{kind}_{coco.SAMPLE_SPLIT}.json").read_text())
        licences = {lic["id"] for lic in data["licenses"]}
        assert all(im["license"] in licences for im in data["images"])


def test_keypoints_within_tolerance_are_clamped(coco_annotations_copy: Path, raw: dict) -> None:
    root = coco_annotations_copy
    path = root / "annotations" / f"person_keypoints_{SPLIT}.json"
    data = json.loads(path.read_text())
    image_id = min(human_centric(raw))
    first = raw["persons"][image_id][0]
    a = next(a for a in data["annotations"] if a["id"] == first["id"])
    im = raw["images"][image_id]
    a["keypoints"][0:6] = [im["width"] + 0.9, 12, 2, -0.7, im["height"] + 0.2, 1]
    path.write_text(json.dumps(data))
    person = {c.image_id: c for c in coco.load_split(root, SPLIT)}[image_id].persons[0]
    assert person.keypoints[0] == (1.0, round(12 / im["height"], 3), 2)
    assert person.keypoints[1] == (0.0, 1.0, 1)
