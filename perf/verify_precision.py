"""The pose-claim checker against hand labels: precision and recall of each verdict.

    python perf/verify_precision.py [--labelled tests/data/verify/labelled.yaml] [--coco ROOT] [-v]

The labelled set holds sentences about COCO-MINI images with the verdict the PICTURE gives
each pose claim (labelled by looking, not by running the checker). "contradicted" must have
precision 1.0: the generate filter throws away data on it. The numbers are printed for the
whole set, then apart for the sentences tagged negated, hedged (a modal or a frequency word)
and changed (a past or changed state). -v lists every disagreement.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from llava_pose.coco import load_split
from llava_pose.verify import align, check_text, precision_recall

ROOT = Path(__file__).resolve().parent.parent
LABELLED = ROOT / "tests" / "data" / "verify" / "labelled.yaml"
COCO_MINI = ROOT / "tests" / "data" / "coco-mini"
TAGS = ("negated", "hedged", "changed")


def report(title: str, rows: int, pairs: list[tuple[str | None, str | None]]) -> None:
    n = sum(1 for e, _ in pairs if e is not None)
    print(f"{title}: {rows} sentences, {n} labelled claims")
    for verdict, s in precision_recall(pairs).items():
        print(
            f"  {verdict:13s} said {s['said']:3d}, labelled {s['labelled']:3d}, correct {s['correct']:3d}"
            f"  precision {s['precision']}  recall {s['recall']}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--labelled", type=Path, default=LABELLED)
    parser.add_argument("--coco", type=Path, default=COCO_MINI)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = yaml.safe_load(args.labelled.read_text("utf-8"))
    contexts = {}
    for split in sorted({r["split"] for r in rows}):
        for c in load_split(args.coco, split, human_only=False):
            contexts[(split, c.image_id)] = c
    pairs: dict[str, list[tuple[str | None, str | None]]] = {t: [] for t in ("all", *TAGS)}
    counts = dict.fromkeys(pairs, 0)
    for r in rows:
        claims = check_text(r["text"], contexts[(r["split"], r["image"])])
        expected = [(c["kind"], c["verdict"]) for c in r["claims"]]
        got = align(expected, claims)
        for key in ("all", r.get("tag")):
            if key in pairs:
                pairs[key] += got
                counts[key] += 1
        if args.verbose and any(e != g for e, g in got):
            print(f"{r['image']}: {r['text']!r}: labelled/checker {got}")
            for c in claims:
                said = ("not " if c.negated else "") + c.predicate
                print(f"    {c.kind} {c.subject!r} -> {c.person} {said}: {c.verdict} ({c.reason})")
    report("all", counts["all"], pairs["all"])
    for tag in TAGS:
        report(tag, counts[tag], pairs[tag])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
