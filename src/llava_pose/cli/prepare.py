"""`llava-pose prepare`: images -> contexts.jsonl, one `ImageContext` per line.

From a COCO split (its annotation files), or from any folder of images through a pose model
(``--images DIR``: people, 17 keypoints with scores, boxes; resumable, batched, sharded; see
`llava_pose.folder`). The file is what every other command reads with ``--contexts``, so they
never parse COCO or run a pose model twice and a run can be pinned to an exact image set
(``--max-images N --seed S``).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from ..config import option
from ..errors import ConfigError, InputError
from ..sources import SourceOptions, check

log = logging.getLogger(__name__)


@dataclasses.dataclass
class PrepareConfig(SourceOptions):
    """Options of `llava-pose prepare`."""

    out: str = option(
        "",
        "JSONL file to write, one image context per line (required)",
        short="-o",
        metavar="FILE",
        path="file",
    )
    seed: int = option(0, "seed of the --max-images pick", metavar="S")
    shard: str | None = option(
        None,
        "with --images: do the K-th of N equal slices of the sorted image list (1/4 ... 4/4), "
        "e.g. one per machine or SLURM array task; the N outputs concatenated in K order are "
        "the whole folder's",
        metavar="K/N",
    )


def run(config: PrepareConfig) -> int:
    if not config.out:
        raise ConfigError("--out: required (the JSONL file to write, e.g. --out contexts.jsonl)")
    if config.contexts:
        raise ConfigError(
            "--contexts: prepare writes contexts; read images with --coco or --images"
        )
    check(config)
    if config.images:
        return run_images(config)
    if config.shard:
        raise ConfigError("--shard: only with --images (a COCO split is read in seconds)")
    from .. import coco

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


def journal_settings(config: PrepareConfig) -> dict[str, Any]:
    """What decides an image's context: a journal made with other values is not reused."""
    assert config.images is not None
    return {
        "images": str(Path(config.images).resolve()),
        "pose": config.pose,
        "pose_model": config.pose_model,
        "person_detector": config.person_detector,
        "keypoint_thresholds": config.keypoint_thresholds,
        "min_person_score": config.min_person_score,
        "max_people": config.max_people,
    }


def run_images(config: PrepareConfig) -> int:
    """``prepare --images``: estimate, resumably, write the kept contexts atomically."""
    from .. import coco, folder
    from ..lock import hold
    from ..sources import human_centric, make_estimator, pick

    listing = folder.list_images(config.images or "")
    if not listing.images:
        raise InputError(listing.source, "no images (.jpg, .jpeg, .png, .webp) found there")
    rels = folder.pick_shard(
        pick(listing.images, config.max_images, config.seed), folder.parse_shard(config.shard)
    )
    captions = folder.read_captions(config.captions) if config.captions else {}
    hold(config.out, "prepare")
    journal = folder.Journal(config.out, journal_settings(config))
    outcomes, tally = folder.run(
        listing, rels, lambda: make_estimator(config), config.batch_size, journal
    )
    contexts = folder.with_captions([o.context for o in outcomes if o.context], captions)
    kept = contexts
    if not config.all_images:
        kept = human_centric(contexts, config.min_keypoints, config.min_persons)
    n = coco.write_contexts(config.out, kept)
    journal.remove()
    rule = coco.filter_rule(config.min_keypoints, config.min_persons, not config.all_images)
    shard = f" (shard {config.shard} of {len(listing.images)} images)" if config.shard else ""
    print(tally.line())
    if captions:
        with_text = sum(1 for c in contexts if c.captions)
        print(f"captions for {with_text} of {len(contexts)} images from {config.captions}")
    print(f"kept {len(kept)} of {len(contexts)} images ({rule}){shard}")
    print(f"wrote {n} image contexts to {config.out}")
    if not kept:
        log.warning("no image kept: lower --min-keypoints/--min-persons or pass --all-images")
    return 0


def register(subparsers: Any) -> None:
    """Add the `prepare` command."""
    from . import add_command

    add_command(
        subparsers,
        "prepare",
        PrepareConfig,
        run,
        help="read a COCO split, or any folder of images through a pose model, into contexts.jsonl",
        description=(
            "Read COCO's captions, instances and person_keypoints files of one split, or "
            "estimate the people and 17 keypoints of every image in a folder with a pose model "
            "(--images), and write one image context per line: captions, object boxes, person "
            "boxes and 17 keypoints, normalized to [0, 1]. By default only human-centric images "
            "are kept. With --images a killed run resumes where it stopped and --shard K/N "
            "splits a folder between machines."
        ),
        examples="""
  llava-pose prepare --out contexts.jsonl                        # bundled 8-image sample
  llava-pose prepare --coco /data/coco --split train2017 --out train.jsonl
  llava-pose prepare --coco /data/coco --split val2017 --max-images 500 --seed 1 --out val500.jsonl
  llava-pose prepare --coco /data/coco --split train2017 --min-keypoints 10 --min-persons 2 --out busy.jsonl
  llava-pose prepare --coco /data/coco --split val2017 --all-images --no-check-images --out all.jsonl
  llava-pose prepare --images photos/ --pose mediapipe --out photos.jsonl          # CPU, no download
  llava-pose prepare --images photos/ --captions captions.jsonl --device cuda --out photos.jsonl
  llava-pose prepare --images /data/frames --shard 3/8 --device cuda --out frames-3.jsonl
""",
    )
