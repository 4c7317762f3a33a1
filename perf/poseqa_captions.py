"""PoseQA posture answers against the COCO captions' posture words (numbers for the README).

    python perf/poseqa_captions.py [--coco ROOT] [--split val2017 train2017]

For each split: the persons PoseQA asks a posture about, and for the main person of an image
(alone, or clearly the largest) whose captions decide the posture, how many agree. Default
data: COCO-MINI (tests/data/coco-mini).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from llava_pose.coco import read_split
from llava_pose.poseqa.build import crowd_images, finalize, image_drafts
from llava_pose.poseqa.captions import posture_agreement

COCO_MINI = Path(__file__).resolve().parent.parent / "tests" / "data" / "coco-mini"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coco", type=Path, default=COCO_MINI)
    parser.add_argument("--split", nargs="+", default=["train2017", "val2017"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    total_agree = total_decided = 0
    for split in args.split:
        contexts = read_split(args.coco, split).contexts
        crowd = crowd_images(args.coco, split)
        rows = finalize([(c, image_drafts(c, c.image_id in crowd)) for c in contexts], args.seed)
        a = posture_agreement(rows, {c.image: c for c in contexts})
        persons = len({(r["image"], r["persons"][0]) for r in rows if r["category"] == "posture"})
        print(f"{split}: {len(contexts)} images, posture asked about {persons} persons; {a.line()}")
        for d in a.disagreements:
            print(
                f"  disagreement: image {d['image_id']}: PoseQA {d['poseqa']}, captions {d['captions']}"
            )
        total_agree += a.agree
        total_decided += a.agree + a.disagree
    print(f"all: {total_agree} of {total_decided} agree")


if __name__ == "__main__":
    main()
