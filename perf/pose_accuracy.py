"""A pose backend against COCO's official keypoints: how far estimated contexts can be trusted.

    python perf/pose_accuracy.py [--coco tests/data/coco-mini] [--split val2017] [--pose mediapipe]
        [--pose-model ID] [--person-detector ID] [--device cpu|cuda] [--cores 2]

On every image of the COCO root's train2017 and val2017 with an annotated person (non-crowd,
at least one labelled keypoint), the backend estimates the people, and the script reports:

* person recall and precision at OKS 0.5: each image's predictions, best score first, take the
  unmatched annotated person of highest OKS (COCO's sigmas) if it reaches 0.5; recall of the
  large people (COCO's over 96 x 96 px) apart;
* PCK@0.2 per joint: a matched person's joint is correct within 0.2 of its torso (left
  shoulder to right hip, else right shoulder to left hip; people with neither are left out),
  over the joints the annotation labels;
* OKS-AP (AP at OKS .50:.95, AP50, AP75) by pycocotools' COCOeval with the official sigmas,
  when pycocotools is installed (``pip install pycocotools``);
* images per second of reading + estimating (model loading excluded), pinned to `--cores`;
* agreement with the annotations downstream: PoseQA's questions (`poseqa.build.image_drafts`)
  from the estimated and the annotated contexts, on the questions both ask (same image, same
  question text), and `verify`'s verdicts on the offline teacher's text about the annotated
  image, on the claims both judge (neither says unverifiable).

The numbers are of the backend as `prepare --images` runs it (its default thresholds and
person score unless given). ViTPose on a GPU, with hub access:

    python perf/pose_accuracy.py --pose vitpose --device cuda
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from llava_pose import folder
from llava_pose.coco import load_split
from llava_pose.estimators import Detections, FoundPerson, to_object, to_person
from llava_pose.poseqa.build import crowd_images, image_drafts
from llava_pose.records import KEYPOINT_NAMES, ImageContext
from llava_pose.sources import PoseOptions, make_estimator
from llava_pose.teachers.rules import write
from llava_pose.verify import check_text

ROOT = Path(__file__).resolve().parent.parent
COCO_MINI = ROOT / "tests" / "data" / "coco-mini"
SPLITS = ("train2017", "val2017")
# COCO's per-keypoint OKS sigmas (cocoapi, PythonAPI/pycocotools/cocoeval.py)
SIGMAS = np.array(
    [.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]
) / 10.0  # fmt: skip
PCK_ALPHA = 0.2
LARGE = 96**2  # COCO's "large" objects: area over 96 x 96 px
TORSO = (("left shoulder", "right hip"), ("right shoulder", "left hip"))


def oks(gt: np.ndarray, area: float, pred: np.ndarray) -> float:
    """COCO's object keypoint similarity over the annotation's labelled joints."""
    labelled = gt[:, 2] > 0
    if not labelled.any():
        return 0.0
    d2 = ((gt[:, :2] - pred[:, :2]) ** 2).sum(axis=1)
    e = d2 / (2 * SIGMAS) ** 2 / (area + np.spacing(1)) / 2
    return float(np.exp(-e)[labelled].mean())


def torso(gt: np.ndarray) -> float | None:
    k = {name: i for i, name in enumerate(KEYPOINT_NAMES)}
    for a, b in TORSO:
        if gt[k[a], 2] > 0 and gt[k[b], 2] > 0:
            return float(np.hypot(*(gt[k[a], :2] - gt[k[b], :2])))
    return None


def match(annotated: list[dict[str, Any]], found: list[FoundPerson]) -> list[tuple[int, int]]:
    """(annotation, prediction) pairs at OKS >= 0.5, predictions best score first."""
    pairs, used = [], set()
    for p in sorted(range(len(found)), key=lambda i: -found[i].score):
        pred = np.array(found[p].keypoints)
        best, pick = 0.5, None
        for g, ann in enumerate(annotated):
            if g in used:
                continue
            o = oks(np.array(ann["keypoints"], float).reshape(17, 3), ann["area"], pred)
            if o >= best:
                best, pick = o, g
        if pick is not None:
            used.add(pick)
            pairs.append((pick, p))
    return pairs


def estimated_context(ctx: ImageContext, det: Detections, estimator: Any) -> ImageContext:
    """The context `prepare --images` would write for this image, under COCO's path and id."""
    w, h = ctx.width, ctx.height
    return msgspec.structs.replace(
        ctx,
        objects=tuple(to_object(o, w, h) for o in det.objects),
        persons=tuple(to_person(p, w, h, estimator) for p in det.persons),
    )


def agreement(pairs: list[tuple[Any, Any]]) -> str:
    same = sum(1 for a, b in pairs if a == b)
    return f"{same}/{len(pairs)} = {same / len(pairs):.3f}" if pairs else "0/0"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--coco", type=Path, default=COCO_MINI)
    parser.add_argument("--split", action="append", help="a split to read (default: both)")
    parser.add_argument("--pose", default="mediapipe")
    parser.add_argument("--pose-model")
    parser.add_argument("--person-detector")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cores", type=int, default=2, help="CPU cores to run on (0: all)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    if args.cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])

    items: list[tuple[str, ImageContext, list[dict[str, Any]], bool]] = []
    for split in args.split or SPLITS:
        path = args.coco / "annotations" / f"person_keypoints_{split}.json"
        if not path.is_file():
            continue
        annotations = json.loads(path.read_text())["annotations"]
        people: dict[int, list[dict[str, Any]]] = {}
        for a in annotations:
            if not a["iscrowd"] and a["num_keypoints"] > 0:
                people.setdefault(a["image_id"], []).append(a)
        crowd = crowd_images(args.coco, split)
        for ctx in load_split(args.coco, split, human_only=False):
            if ctx.image_id in people:
                items.append((split, ctx, people[ctx.image_id], ctx.image_id in crowd))

    options = PoseOptions(
        pose=args.pose,
        pose_model=args.pose_model,
        person_detector=args.person_detector,
        device=args.device,
    )
    started = time.monotonic()
    estimator: Any = make_estimator(options)
    loaded = time.monotonic() - started
    found: list[Detections] = []
    started = time.monotonic()
    for k in range(0, len(items), args.batch_size):
        batch = items[k : k + args.batch_size]
        pixels = [folder.read_pixels(args.coco, ctx.image) for _, ctx, _, _ in batch]
        found += estimator.estimate(pixels)
    seconds = time.monotonic() - started

    gt_n = sum(len(anns) for _, _, anns, _ in items)
    pred_n = sum(len(d.persons) for d in found)
    matched = 0
    large = [a for _, _, anns, _ in items for a in anns if a["area"] >= LARGE]
    large_matched = 0
    pck_hit, pck_n = Counter[int](), Counter[int]()
    results = []
    poseqa_pairs: list[tuple[str, str]] = []
    asked_gt = asked_est = 0
    verify_pairs: list[tuple[str, str]] = []
    claims_gt = turned = 0
    for (_, ctx, anns, crowd), det in zip(items, found, strict=True):
        for g, p in match(anns, list(det.persons)):
            matched += 1
            large_matched += anns[g]["area"] >= LARGE
            gt = np.array(anns[g]["keypoints"], float).reshape(17, 3)
            size = torso(gt)
            if size is None:
                continue
            pred = np.array(det.persons[p].keypoints)
            for j in range(17):
                if gt[j, 2] > 0:
                    pck_n[j] += 1
                    pck_hit[j] += int(math.dist(gt[j, :2], pred[j, :2]) <= PCK_ALPHA * size)
        for person in det.persons:
            flat = [v for x, y, s in person.keypoints for v in (x, y, s)]
            results.append(
                {
                    "image_id": ctx.image_id,
                    "category_id": 1,
                    "keypoints": flat,
                    "score": person.score,
                }
            )
        est = estimated_context(ctx, det, estimator)
        mine = {(d.family, d.question): d.answer for d in image_drafts(est)}
        theirs = {(d.family, d.question): d.answer for d in image_drafts(ctx, crowd)}
        asked_gt += len(theirs)
        asked_est += len(mine)
        poseqa_pairs += [(theirs[q], mine[q]) for q in theirs.keys() & mine.keys()]
        for task in ("conversation", "detail", "reasoning"):
            text = write(ctx, task)
            a = {(c.span, c.kind, c.predicate, c.negated): c.verdict for c in check_text(text, ctx)}
            b = {(c.span, c.kind, c.predicate, c.negated): c.verdict for c in check_text(text, est)}
            judged = {k for k, v in a.items() if v != "unverifiable"}
            claims_gt += len(judged)
            turned += sum(1 for k in judged if b.get(k, "unverifiable") == "unverifiable")
            verify_pairs += [
                (a[k], b[k]) for k in judged if b.get(k, "unverifiable") != "unverifiable"
            ]

    numbers: dict[str, Any] = {
        "backend": estimator.describe(),
        "images": len(items),
        "annotated_people": gt_n,
        "predicted_people": pred_n,
        "recall_oks50": round(matched / gt_n, 3),
        "precision_oks50": round(matched / pred_n, 3) if pred_n else None,
        "recall_oks50_large": round(large_matched / len(large), 3) if large else None,
        "large_people": len(large),
        "pck02": {KEYPOINT_NAMES[j]: round(pck_hit[j] / pck_n[j], 3) for j in range(17) if pck_n[j]},
        "pck02_mean": round(sum(pck_hit.values()) / max(sum(pck_n.values()), 1), 3),
        "images_per_second": round(len(items) / seconds, 2),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_seconds": round(loaded, 1),
        "poseqa": {"annotated": asked_gt, "estimated": asked_est, "both": len(poseqa_pairs),
                   "agree": agreement(poseqa_pairs)},
        "verify": {"judged_on_annotations": claims_gt, "unverifiable_on_estimates": turned,
                   "both": len(verify_pairs), "agree": agreement(verify_pairs)},
    }  # fmt: skip
    numbers["oks_ap"] = coco_ap(args.coco, args.split or SPLITS, items, results)
    print(f"backend: {numbers['backend']}")
    print(
        f"images with annotated people: {len(items)} ({gt_n} people); predicted {pred_n}; "
        f"matched at OKS 0.5: {matched}"
    )
    print(
        f"person recall@OKS0.5 {numbers['recall_oks50']}, precision {numbers['precision_oks50']}; "
        f"recall of the {len(large)} large people (COCO's: over 96x96 px) "
        f"{numbers['recall_oks50_large']}"
    )
    print(f"PCK@0.2 (torso) mean {numbers['pck02_mean']}:")
    for name, value in numbers["pck02"].items():
        print(f"  {name:15s} {value:.3f}  ({pck_n[KEYPOINT_NAMES.index(name)]} joints)")
    ap = numbers["oks_ap"]
    print(
        "OKS-AP: "
        + (", ".join(f"{k} {v}" for k, v in ap.items()) if ap else "pip install pycocotools")
    )
    print(
        f"speed: {numbers['images_per_second']} images/s on {numbers['cores']} cores "
        f"(reading + estimating; loading took {numbers['load_seconds']} s)"
    )
    q, v = numbers["poseqa"], numbers["verify"]
    print(
        f"PoseQA: {q['annotated']} questions from annotations, {q['estimated']} from estimates, "
        f"{q['both']} asked by both; same answer {q['agree']}"
    )
    print(
        f"verify: {v['judged_on_annotations']} claims judged on annotations, "
        f"{v['unverifiable_on_estimates']} unverifiable on estimates, {v['both']} judged by both; "
        f"same verdict {v['agree']}"
    )
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=2) + "\n")
    return 0


def coco_ap(
    root: Path, splits: Any, items: list[Any], results: list[dict[str, Any]]
) -> dict[str, float] | None:
    """AP, AP50, AP75 at OKS by pycocotools' COCOeval on these images, or None without it."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        return None
    import contextlib
    import io

    ids = {ctx.image_id for _, ctx, _, _ in items}
    merged: dict[str, Any] = {"images": [], "annotations": [], "categories": None}
    for split in splits:
        path = root / "annotations" / f"person_keypoints_{split}.json"
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        merged["images"] += [im for im in data["images"] if im["id"] in ids]
        merged["annotations"] += [a for a in data["annotations"] if a["image_id"] in ids]
        merged["categories"] = data["categories"]
    if not results:
        return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = merged
        gt.createIndex()
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "keypoints")
        ev.params.imgIds = sorted(ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"AP": round(float(ev.stats[0]), 3), "AP50": round(float(ev.stats[1]), 3),
            "AP75": round(float(ev.stats[2]), 3)}  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
