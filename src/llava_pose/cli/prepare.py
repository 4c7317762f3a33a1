"""`llava-pose prepare`: one COCO split -> contexts.jsonl, one `ImageContext` per line.

The file is what `generate` and `bench build` read, so they never parse COCO twice and a run
can be pinned to an exact image set (``--max-images N --seed S``).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from ..config import option
from ..errors import ConfigError, InputError

log = logging.getLogger(__name__)


@dataclasses.dataclass
class PrepareConfig:
    out: str = option(
        "",
        "JSONL file to write, one image context per line (required)",
        short="-o",
        metavar="FILE",
        path="file",
    )
    coco: str | None = option(
        None,
        "COCO root holding annotations/ and one image folder per split "
        "(default: the bundled 8-image sample, split train2017)",
        metavar="ROOT",
    )
    split: str = option(
        "train2017",
        "split to read: annotations/{captions,instances,person_keypoints}_SPLIT.json, "
        "images in ROOT/SPLIT/",
        metavar="NAME",
    )
    min_keypoints: int = option(
        5,
        "human-centric filter: labelled keypoints (v>0) a person needs to count",
        metavar="N",
        at_least=0,
        at_most=17,
    )
    min_persons: int = option(
        1,
        "human-centric filter: persons with --min-keypoints an image needs",
        metavar="N",
        at_least=1,
    )
    all_images: bool = option(
        False, "keep every image, not only human-centric ones (--min-* are then ignored)"
    )
    max_images: int | None = option(
        None,
        "keep only N images, picked by a seeded hash of the image id: the same N for the same "
        "seed everywhere, and a larger N keeps the smaller N's images (default: all)",
        metavar="N",
        at_least=1,
    )
    seed: int = option(0, "seed of the --max-images pick", metavar="S")
    check_images: bool = option(
        True, "check that every kept image file exists (--no-check-images: annotations only)"
    )


def run(config: PrepareConfig) -> int:
    from .. import coco

    if not config.out:
        raise ConfigError("--out: required (the JSONL file to write, e.g. --out contexts.jsonl)")
    root = config.coco or coco.sample_root()
    if config.coco is None:
        log.info("no --coco given: using the bundled sample at %s", root)
    loaded = coco.read_split(
        root,
        config.split,
        min_keypoints=config.min_keypoints,
        min_persons=config.min_persons,
        human_only=not config.all_images,
        check_images=config.check_images,
    )
    rule = coco.filter_rule(config.min_keypoints, config.min_persons, not config.all_images)
    if not loaded.contexts:
        raise InputError(
            f"{root}/annotations/person_keypoints_{config.split}.json",
            f"no image passes the filter ({rule}); lower --min-keypoints/--min-persons "
            "or pass --all-images",
        )
    contexts = coco.select_images(loaded.contexts, config.max_images, config.seed)
    n = coco.write_contexts(config.out, contexts)
    print(loaded.stats.summary(rule))
    picked = f" (picked by seed {config.seed})" if config.max_images is not None else ""
    print(f"wrote {n} image contexts{picked} to {config.out}")
    return 0


def register(subparsers: Any) -> None:
    """Add the `prepare` command."""
    from . import add_command

    add_command(
        subparsers,
        "prepare",
        PrepareConfig,
        run,
        help="read a COCO split into contexts.jsonl (captions, boxes, keypoints per image)",
        description=(
            "Read COCO's captions, instances and person_keypoints files of one split and write "
            "one image context per line: captions, object boxes, person boxes and 17 keypoints, "
            "normalized to [0, 1]. By default only human-centric images are kept."
        ),
        examples="""
  llava-pose prepare --out contexts.jsonl                        # bundled 8-image sample
  llava-pose prepare --coco /data/coco --split train2017 --out train.jsonl
  llava-pose prepare --coco /data/coco --split val2017 --max-images 500 --seed 1 --out val500.jsonl
  llava-pose prepare --coco /data/coco --split train2017 --min-keypoints 10 --min-persons 2 --out busy.jsonl
  llava-pose prepare --coco /data/coco --split val2017 --all-images --no-check-images --out all.jsonl
""",
    )
