"""COCO ingest at full train2017 scale: `llava_pose.coco` against a plain `json.load` reader.

Writes a synthetic annotation set the size of COCO train2017 (118,287 images; 262,465 person
annotations with keypoints; 860,001 instances including the persons; 591,753 captions;
segmentation polygons that make the instances file ~450 MB like the real one), then runs each
reader in its own subprocess and measures its wall time and peak RSS (the larger of ``os.wait4``
rusage of that child and the sampled sum over it and the process ours forks to read the
instances file alongside). Both must build the same contexts (same count and the same bytes once
encoded). Targets: ours/naive <= 0.25 in time and <= 0.4 in peak memory.

    python perf/prepare_scale.py                  # full scale (~800 MB of JSON, ~2 min)
    python perf/prepare_scale.py --scale 0.1      # quick run, a tenth of the size
    python perf/prepare_scale.py --dir /tmp/cocosyn --keep   # keep the files and reuse them

Flags: ``--scale F`` fraction of full size (default 1.0); ``--dir DIR`` where the synthetic
files go (default: a new temp folder); files already there from a run of the same scale and
seed are reused; ``--keep`` leaves the files there afterwards (default: delete what this
script wrote); ``--seed S`` seed of the synthetic data; ``--repeat N`` runs each reader N times
and keeps its best time and lowest peak (use it on a busy machine). The time ratio compares
the load itself (interpreter start and exit excluded; the process time is printed too). Exit
status: 0 when both readers agree and both targets are met, 1 otherwise, 2 when ``--dir``
holds annotation files this script did not write (it never touches those).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

SPLIT = "train2017"
FULL = {"images": 118_287, "persons": 262_465, "instances": 860_001, "captions": 591_753}
TIME_TARGET = 0.25
MEMORY_TARGET = 0.4
SIZES = [(640, 480), (640, 427), (480, 640), (640, 426), (500, 375), (427, 640), (640, 424)]
WORDS = (
    "a",
    "man",
    "woman",
    "child",
    "person",
    "group",
    "people",
    "young",
    "old",
    "standing",
    "sitting",
    "riding",
    "holding",
    "playing",
    "walking",
    "on",
    "in",
    "with",
    "the",
    "of",
    "next",
    "to",
    "near",
    "top",
    "down",
    "street",
    "field",
    "table",
    "tennis",
    "skateboard",
    "surfboard",
    "frisbee",
    "ball",
    "kite",
    "horse",
    "dog",
    "wave",
    "beach",
    "snow",
    "kitchen",
    "bench",
)
MARKER = ".prepare_scale.json"


# -- synthetic data ----------------------------------------------------------------------------


def _polygon(rng: random.Random) -> str:
    n = max(6, int(rng.lognormvariate(3.0, 0.55)))  # points per polygon, median ~22
    xs = ", ".join(f"{rng.uniform(0, 640):.2f}, {rng.uniform(0, 480):.2f}" for _ in range(n))
    return f"[[{xs}]]"


def _rle(rng: random.Random, w: int, h: int) -> str:
    counts = ", ".join(str(rng.randint(1, 400)) for _ in range(rng.randint(60, 300)))
    return f'{{"counts": [{counts}], "size": [{h}, {w}]}}'


def _box(rng: random.Random, w: int, h: int) -> tuple[float, float, float, float]:
    bw = round(rng.uniform(4, w * 0.8), 2)
    bh = round(rng.uniform(4, h * 0.8), 2)
    return round(rng.uniform(0, w - bw), 2), round(rng.uniform(0, h - bh), 2), bw, bh


def write_synthetic(folder: Path, scale: float, seed: int) -> dict[str, int]:
    """Write the three annotation files; return the counts written."""
    rng = random.Random(seed)
    n_images = max(10, round(FULL["images"] * scale))
    n_persons = max(10, round(FULL["persons"] * scale))
    n_objects = max(10, round(FULL["instances"] * scale)) - n_persons
    n_captions = max(5 * n_images, round(FULL["captions"] * scale))
    ann = folder / "annotations"
    ann.mkdir(parents=True, exist_ok=True)
    pool = [_polygon(rng) for _ in range(4000)]
    ids = rng.sample(range(1, 600_000), n_images)
    sizes = {i: SIZES[rng.randrange(len(SIZES))] for i in ids}
    images_json = ", ".join(
        f'{{"license": {rng.randint(1, 8)}, "file_name": "{i:012d}.jpg", '
        f'"coco_url": "http://images.cocodataset.org/train2017/{i:012d}.jpg", '
        f'"height": {sizes[i][1]}, "width": {sizes[i][0]}, "date_captured": "2013-11-14 16:28:13", '
        f'"flickr_url": "http://farm4.staticflickr.com/3153/2970773875_164f0c0b83_z.jpg", "id": {i}}}'
        for i in ids
    )
    head = (
        '{"info": {"description": "synthetic COCO-size set", "year": 2017}, '
        '"licenses": ['
        + ", ".join(f'{{"url": "", "id": {k}, "name": "L{k}"}}' for k in range(1, 9))
    )
    categories = [{"supercategory": "person", "id": 1, "name": "person"}] + [
        {"supercategory": "thing", "id": c, "name": f"thing{c}"} for c in range(2, 91)
    ]
    # ~54% of images have persons, as in train2017 (64,115 of 118,287).
    person_images = ids[: max(1, round(len(ids) * 0.542))]
    owners = person_images + [
        rng.choice(person_images) for _ in range(n_persons - len(person_images))
    ]
    persons = []
    for k, image_id in enumerate(owners):
        w, h = sizes[image_id]
        crowd = rng.random() < 0.005
        x, y, bw, bh = _box(rng, w, h)
        labelled = 0 if crowd or rng.random() < 0.43 else rng.randint(1, 17)
        points = [0] * 51
        for j in rng.sample(range(17), labelled):
            points[3 * j : 3 * j + 3] = [
                rng.randint(int(x), int(x + bw)),
                rng.randint(int(y), int(y + bh)),
                rng.choice((1, 2, 2)),
            ]
        seg = _rle(rng, w, h) if crowd else rng.choice(pool)
        persons.append((image_id, k + 1, (x, y, bw, bh), crowd, seg, labelled, points))

    def instance(image_id: int, ann_id: int, box: Any, crowd: bool, seg: str, cat: int) -> str:
        return (
            f'{{"segmentation": {seg}, "area": {box[2] * box[3] * 0.6:.4f}, '
            f'"iscrowd": {int(crowd)}, "image_id": {image_id}, '
            f'"bbox": [{box[0]}, {box[1]}, {box[2]}, {box[3]}], "category_id": {cat}, "id": {ann_id}}}'
        )

    with open(ann / f"instances_{SPLIT}.json", "w") as f:
        f.write(f'{head}], "images": [{images_json}], "annotations": [')
        first = True
        for image_id, ann_id, box, crowd, seg, _, _ in persons:
            f.write(("" if first else ", ") + instance(image_id, ann_id, box, crowd, seg, 1))
            first = False
        for k in range(n_objects):
            image_id = ids[rng.randrange(len(ids))]
            w, h = sizes[image_id]
            crowd = rng.random() < 0.007
            seg = _rle(rng, w, h) if crowd else pool[rng.randrange(len(pool))]
            box = _box(rng, w, h)
            cat = rng.randint(2, 90)
            f.write(", " + instance(image_id, 10_000_000 + k, box, crowd, seg, cat))
        f.write(f'], "categories": {json.dumps(categories)}}}')

    with open(ann / f"person_keypoints_{SPLIT}.json", "w") as f:
        f.write(f'{head}], "images": [{images_json}], "annotations": [')
        for k, (image_id, ann_id, box, crowd, seg, labelled, points) in enumerate(persons):
            f.write(
                ("" if k == 0 else ", ") + f'{{"segmentation": {seg}, "num_keypoints": {labelled}, '
                f'"area": {box[2] * box[3] * 0.6:.4f}, "iscrowd": {int(crowd)}, '
                f'"keypoints": [{", ".join(map(str, points))}], "image_id": {image_id}, '
                f'"bbox": [{box[0]}, {box[1]}, {box[2]}, {box[3]}], "category_id": 1, "id": {ann_id}}}'
            )
        kp_cat = {
            **categories[0],
            "keypoints": [f"k{j}" for j in range(17)],
            "skeleton": [[16, 14]],
        }
        f.write(f'], "categories": [{json.dumps(kp_cat)}]}}')

    with open(ann / f"captions_{SPLIT}.json", "w") as f:
        f.write(f'{head}], "images": [{images_json}], "annotations": [')
        owners = [i for i in ids for _ in range(5)]
        owners += [rng.choice(ids) for _ in range(n_captions - len(owners))]
        for k, image_id in enumerate(owners):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 14))).capitalize()
            f.write(
                ("" if k == 0 else ", ")
                + json.dumps({"image_id": image_id, "id": k + 1, "caption": text + "."})
            )
        f.write("]}")
    return {
        "images": n_images,
        "persons": n_persons,
        "instances": n_objects + n_persons,
        "captions": n_captions,
    }


# -- the two readers, each run in a child process ---------------------------------------------


def _digest(contexts: list[Any]) -> str:
    import msgspec

    return hashlib.sha256(msgspec.json.encode(contexts)).hexdigest()[:16]


def child_ours(folder: Path) -> dict[str, Any]:
    from llava_pose.coco import read_split

    start = time.perf_counter()
    contexts = read_split(folder, SPLIT, check_images=False).contexts
    seconds = time.perf_counter() - start
    return {"contexts": len(contexts), "seconds": seconds, "digest": _digest(contexts)}


def child_naive(folder: Path, min_keypoints: int = 5, min_persons: int = 1) -> dict[str, Any]:
    """The obvious way: json.load everything, group by image id in dicts, build the records."""
    from llava_pose.records import ImageContext, Obj, Person

    start = time.perf_counter()
    ann = folder / "annotations"
    with open(ann / f"instances_{SPLIT}.json") as f:
        instances = json.load(f)
    with open(ann / f"person_keypoints_{SPLIT}.json") as f:
        keypoints = json.load(f)
    with open(ann / f"captions_{SPLIT}.json") as f:
        captions = json.load(f)
    images = {im["id"]: im for im in instances["images"]}
    names = {c["id"]: c["name"] for c in instances["categories"]}
    by_image: dict[str, dict[int, list[dict[str, Any]]]] = {
        "objects": defaultdict(list),
        "persons": defaultdict(list),
        "captions": defaultdict(list),
    }
    for a in instances["annotations"]:
        if not a["iscrowd"] and names[a["category_id"]] != "person":
            by_image["objects"][a["image_id"]].append(a)
    for a in keypoints["annotations"]:
        if not a["iscrowd"]:
            by_image["persons"][a["image_id"]].append(a)
    for a in captions["annotations"]:
        by_image["captions"][a["image_id"]].append(a)

    def box(b: list[float], w: int, h: int) -> tuple[float, float, float, float]:
        x, y, bw, bh = b
        return (
            round(max(x, 0.0) / w, 3),
            round(max(y, 0.0) / h, 3),
            round(min(x + bw, w) / w, 3),
            round(min(y + bh, h) / h, 3),
        )

    contexts = []
    for image_id in sorted(images):
        im = images[image_id]
        w, h = im["width"], im["height"]
        persons = []
        qualified = 0
        for a in sorted(by_image["persons"][image_id], key=lambda a: a["id"]):
            k = a["keypoints"]
            points = []
            for j in range(17):
                x, y, v = k[3 * j : 3 * j + 3]
                if v == 0:
                    points.append((0.0, 0.0, 0))
                else:
                    x = min(max(x, 0.0), float(w))
                    y = min(max(y, 0.0), float(h))
                    points.append((round(x / w, 3), round(y / h, 3), int(v)))
            labelled = sum(1 for p in points if p[2] > 0)
            if labelled and labelled >= min_keypoints:
                qualified += 1
            persons.append(Person(box=box(a["bbox"], w, h), keypoints=tuple(points)))
        if qualified < min_persons:
            continue
        objects = [
            Obj(category=names[a["category_id"]], box=box(a["bbox"], w, h))
            for a in sorted(by_image["objects"][image_id], key=lambda a: a["id"])
        ]
        texts = [
            " ".join(a["caption"].split())
            for a in sorted(by_image["captions"][image_id], key=lambda a: a["id"])
            if a["caption"].strip()
        ]
        contexts.append(
            ImageContext(
                image_id=image_id,
                image=f"{SPLIT}/{im['file_name']}",
                width=w,
                height=h,
                captions=tuple(texts),
                objects=tuple(objects),
                persons=tuple(persons),
            )
        )
    seconds = time.perf_counter() - start
    return {"contexts": len(contexts), "seconds": seconds, "digest": _digest(contexts)}


def _tree_rss_kb(pid: int) -> int:
    """Resident memory of `pid` and all its descendants now, in KiB (Linux /proc; 0 if gone)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(next(x for x in status.splitlines() if x.startswith("VmRSS:")).split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration, ValueError):
            continue
    return total


def measure(which: str, folder: Path) -> dict[str, Any]:
    """Run one reader in a fresh interpreter; its peak memory is the larger of wait4's
    rusage (the child's own peak) and the peak sum over the child and any process it forks
    (ours reads the instances file in a second process), sampled every 10 ms."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", which, "--dir", str(folder)], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    peak_tree = [0]

    def sample() -> None:
        while proc.returncode is None:
            peak_tree[0] = max(peak_tree[0], _tree_rss_kb(proc.pid))
            time.sleep(0.01)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    watcher.join()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{which} reader failed with exit code {proc.returncode}")
    result = json.loads(out)
    # Linux: ru_maxrss is in KiB
    result.update(wall=wall, peak_mb=max(usage.ru_maxrss, peak_tree[0]) / 1024)
    return result


def _warm(folder: Path) -> None:
    """Read the files once so neither reader pays for the disk."""
    for path in sorted((folder / "annotations").glob("*.json")):
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass


class NotOurs(Exception):
    """The folder holds annotation files this script did not write."""


class Synthetic:
    """The synthetic train2017-sized set in a folder, written or reused (same scale and seed,
    recorded in `MARKER`), and removed on the way out unless kept: ``with Synthetic(...) as
    folder``. Prints what it does. Shared with perf/fast_start.py."""

    def __init__(self, folder: Path | None, scale: float, seed: int = 0, keep: bool = False):
        self.folder = folder or Path(tempfile.mkdtemp(prefix="llava-pose-scale-"))
        self.made_folder = folder is None or not folder.exists()
        self.scale, self.seed, self.keep = scale, seed, keep
        self.marker = self.folder / MARKER
        if not self.marker.is_file() and list(self.folder.glob(f"annotations/*_{SPLIT}.json")):
            raise NotOurs(
                f"{self.folder} holds annotation files this script did not write: not touching them"
            )

    def __enter__(self) -> Path:
        wanted = {"scale": self.scale, "seed": self.seed}
        marker = self.marker
        if marker.is_file() and json.loads(marker.read_text()).get("params") == wanted:
            counts = json.loads(marker.read_text())["counts"]
            print(f"reusing synthetic files in {self.folder}")
        else:
            print(
                f"writing synthetic COCO {SPLIT} at scale {self.scale} to {self.folder} ...",
                flush=True,
            )
            start = time.perf_counter()
            counts = write_synthetic(self.folder, self.scale, self.seed)
            marker.write_text(json.dumps({"params": wanted, "counts": counts}))
            print(f"  written in {time.perf_counter() - start:.0f} s")
        for path in sorted((self.folder / "annotations").glob(f"*_{SPLIT}.json")):
            print(f"  {path.name}: {path.stat().st_size / 1e6:.0f} MB")
        print("  " + ", ".join(f"{v:,} {k}" for k, v in counts.items()))
        return self.folder

    def __exit__(self, *exc: object) -> None:
        if not self.keep and self.marker.is_file():  # only what this script wrote
            for kind in ("captions", "instances", "person_keypoints"):
                (self.folder / "annotations" / f"{kind}_{SPLIT}.json").unlink(missing_ok=True)
            self.marker.unlink()
            if self.made_folder:
                shutil.rmtree(self.folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="COCO ingest at train2017 scale: ours vs json.load, each in a subprocess."
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="fraction of full train2017 size (default 1.0)"
    )
    parser.add_argument(
        "--dir",
        type=Path,
        help="where the synthetic files go (default: a temp folder); reused when present",
    )
    parser.add_argument("--keep", action="store_true", help="keep the synthetic files afterwards")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the synthetic data (default 0)"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of each reader; best kept (default 1)"
    )
    parser.add_argument("--child", choices=("ours", "naive"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        run = child_ours if args.child == "ours" else child_naive
        print(json.dumps(run(args.dir)))
        return 0

    try:
        synthetic = Synthetic(args.dir, args.scale, args.seed, args.keep)
    except NotOurs as e:
        print(e)
        return 2
    with synthetic as folder:
        _warm(folder)

        results = {}
        for which in ("naive", "ours"):
            runs = [measure(which, folder) for _ in range(args.repeat)]
            best = min(runs, key=lambda r: r["seconds"])
            best["peak_mb"] = min(r["peak_mb"] for r in runs)
            results[which] = best
            print(
                f"{which:>5}: {best['contexts']:,} contexts, load {best['seconds']:.1f} s "
                f"(process {best['wall']:.1f} s), peak RSS {best['peak_mb']:,.0f} MB"
            )
        ours, naive = results["ours"], results["naive"]
        same = ours["contexts"] == naive["contexts"] and ours["digest"] == naive["digest"]
        time_ratio = ours["seconds"] / naive["seconds"]
        memory_ratio = ours["peak_mb"] / naive["peak_mb"]
        print(
            f"same contexts: {'yes' if same else 'NO'} ({ours['contexts']:,} vs {naive['contexts']:,})"
        )
        print(
            f"time   ours/naive = {time_ratio:.3f} (target <= {TIME_TARGET}) "
            f"{'PASS' if time_ratio <= TIME_TARGET else 'FAIL'}"
        )
        print(
            f"memory ours/naive = {memory_ratio:.3f} (target <= {MEMORY_TARGET}) "
            f"{'PASS' if memory_ratio <= MEMORY_TARGET else 'FAIL'}"
        )
        ok = same and time_ratio <= TIME_TARGET and memory_ratio <= MEMORY_TARGET
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
