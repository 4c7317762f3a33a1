"""The pose-claim checker against hand labels: precision and recall of each verdict.

    python bench/verify_precision.py [--labelled tests/data/verify/labelled.yaml] [--coco ROOT] [-v]

The labelled set holds sentences about COCO-MINI images with the verdict the PICTURE gives
each pose claim (labelled by looking, not by running the checker). "contradicted" must have
precision 1.0: the generate filter throws away data on it. -v lists every disagreement.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from llava_pose.coco import load_split
from llava_pose.verify import align, check_text, precision_recall

ROOT = Path(__file__).resolve().parent.parent
LABELLED = ROOT / "tests" / "data" / "verify" / "labelled.yaml"
COCO_MINI = ROOT / "tests" / "data" / "coco-mini"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labelled", type=Path, default=LABELLED)
    parser.add_argument("--coco", type=Path, default=COCO_MINI)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    rows = yaml.safe_load(args.labelled.read_text("utf-8"))
    contexts = {}
    for split in sorted({r["split"] for r in rows}):
        for c in load_split(args.coco, split, human_only=False):
            contexts[(split, c.image_id)] = c
    pairs = []
    for r in rows:
        claims = check_text(r["text"], contexts[(r["split"], r["image"])])
        expected = [(c["kind"], c["verdict"]) for c in r["claims"]]
        got = align(expected, claims)
        pairs += got
        if args.verbose and any(e != g for e, g in got):
            print(f"{r['image']}: {r['text']!r}: labelled/checker {got}")
            for c in claims:
                print(
                    f"    {c.kind} {c.subject!r} -> {c.person} {c.predicate}: {c.verdict} ({c.reason})"
                )
    n = sum(1 for e, _ in pairs if e is not None)
    print(f"{len(rows)} sentences, {n} labelled claims")
    for verdict, s in precision_recall(pairs).items():
        print(
            f"  {verdict:13s} said {s['said']:3d}, labelled {s['labelled']:3d}, correct {s['correct']:3d}"
            f"  precision {s['precision']}  recall {s['recall']}"
        )


if __name__ == "__main__":
    main()
