"""Where a command's images come from: the one option group every command shares.

Three sources give the same `ImageContext` records:

* ``--coco ROOT --split NAME``: COCO's official files (`llava_pose.coco`); without any source,
  the bundled sample;
* ``--contexts FILE``: a contexts JSONL that ``prepare`` wrote (from COCO or from a folder);
* ``--images DIR``: a folder of images (or a list file of their paths) through a pose model
  (``--pose``; `llava_pose.folder`, `llava_pose.estimators`), captions optional
  (``--captions FILE.jsonl``).

With ``--contexts``, ``--coco`` or ``--images`` only says where the image files are (`image_root`):
nothing is estimated twice. The groups are dataclass mixins (`ImageSource`, `PoseOptions`,
`ImageFilter`; `SourceOptions` is all three), so a command declares where its images come from
by inheriting them, and a new source is added here once.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from .coco import (
    DEFAULT_MIN_KEYPOINTS,
    DEFAULT_MIN_PERSONS,
    filter_rule,
    read_contexts,
    read_split,
    sample_root,
    select_images,
)
from .config import option
from .errors import ConfigError
from .records import ImageContext

log = logging.getLogger("llava_pose")


@dataclass(kw_only=True)  # keyword-only: it mixes into configs with positional fields
class ImageSource:
    """Where the images come from: a COCO split, a contexts JSONL, or a folder of images.
    Shared by every command that reads images."""

    coco: str | None = option(
        None,
        "COCO root holding annotations/ and the image folders (default: the bundled sample)",
        metavar="ROOT",
    )
    split: str = option("train2017", "split name, e.g. train2017, val2017, val2014", metavar="NAME")
    contexts: str | None = option(
        None,
        "contexts JSONL from `llava-pose prepare`, instead of --coco; the image files are under "
        "--coco or --images",
        metavar="FILE",
    )
    images: str | None = option(
        None,
        "a folder of images (jpg, png, webp; nested folders) or a text file listing their paths: "
        "each image's people and 17 keypoints are estimated by --pose; with --contexts, only "
        "where the image files are",
        metavar="DIR",
    )

    def folder_source(self) -> str | None:
        """The folder (or list file) of images, if any: --images, or where a command's
        --images means something else (bench build's count), the option it names it by."""
        return self.images


@dataclass(kw_only=True)
class PoseOptions:
    """How keypoints are estimated for --images (a pose model: the [mediapipe] or [pose] extra)."""

    captions: str | None = option(
        None,
        'with --images: JSONL of {"image": PATH, "caption": TEXT} (or "captions": [...]), '
        "paths relative to --images; without it the prompts say the image has no captions",
        metavar="FILE.jsonl",
    )
    pose: str = option(
        "vitpose",
        "pose backend: vitpose (ViTPose on RT-DETR's people; torch) or mediapipe (BlazePose, "
        "CPU); see data/pose/estimators.yaml",
        metavar="NAME",
    )
    pose_model: str | None = option(
        None,
        "the pose model: a hub id or a local folder (default: the backend's, e.g. "
        "usyd-community/vitpose-base-simple)",
        metavar="ID",
    )
    person_detector: str | None = option(
        None,
        "the person detector: an RT-DETR hub id or folder (default: vitpose: "
        "PekingU/rtdetr_r50vd_coco_o365; mediapipe: BlazePose's own detector)",
        metavar="ID",
    )
    device: str = option("cpu", "where the pose model runs", choices=("cpu", "cuda"))
    keypoint_thresholds: list[float] | None = option(
        None,
        "LABELLED,VISIBLE: a keypoint scored at least VISIBLE gets COCO's v=2, at least "
        "LABELLED v=1, less v=0 (default: the backend's, 0.3,0.5)",
        metavar="L,V",
    )
    min_person_score: float | None = option(
        None,
        "keep a detected person from this score (default: the backend's, 0.5)",
        at_least=0,
        at_most=1,
    )
    max_people: int = option(20, "most people estimated per image", at_least=1)
    batch_size: int = option(8, "images read and estimated together", at_least=1)


@dataclass(kw_only=True)
class ImageFilter:
    """Which of the images a command keeps."""

    max_images: int | None = option(
        None, "use at most this many images, a seeded sample (stable as it grows)", at_least=1
    )
    min_keypoints: int = option(
        DEFAULT_MIN_KEYPOINTS,
        "an image is human-centric if a person has at least this many labelled keypoints",
        at_least=0,
        at_most=17,
    )
    min_persons: int = option(
        DEFAULT_MIN_PERSONS, "... and at least this many such persons", at_least=1
    )
    all_images: bool = option(False, "keep images without people too (no human-centric filter)")
    check_images: bool = option(
        True, "check that every image file exists (--no-check-images for annotations only)"
    )


@dataclass(kw_only=True)
class SourceOptions(ImageSource, ImageFilter, PoseOptions):
    """Where the images come from, which are kept, and how --images are estimated."""


def check(cfg: ImageSource | SourceOptions) -> None:
    """The source options agree with each other (before any slow work)."""
    if cfg.coco and cfg.folder_source() and not cfg.contexts:
        raise ConfigError(
            "--images: give --coco or --images, not both (with --contexts, one of them says "
            "where the image files are)"
        )
    if getattr(cfg, "captions", None) and (not cfg.folder_source() or cfg.contexts):
        raise ConfigError("--captions: only with --images (the captions of a folder of images)")


def image_root(cfg: ImageSource) -> Path | None:
    """The folder the contexts' image paths are relative to: --images (a list file's own
    folder), --coco, the bundled sample without any source, or None (--contexts alone)."""
    folder = cfg.folder_source()
    if folder:
        path = Path(folder)
        return path.parent if path.is_file() else path
    if cfg.coco:
        return Path(cfg.coco)
    return None if cfg.contexts else sample_root()


def source_name(cfg: ImageSource) -> str:
    """Where the contexts came from, as the user named it (stats.json's ``source``)."""
    return cfg.contexts or cfg.folder_source() or cfg.coco or "bundled sample"


def pose_settings(cfg: PoseOptions) -> object:
    from .estimators import Settings

    thresholds = cfg.keypoint_thresholds
    if thresholds is not None and len(thresholds) != 2:
        raise ConfigError(
            f"--keypoint-thresholds: expected two numbers LABELLED,VISIBLE, got {len(thresholds)}"
        )
    return Settings(
        model=cfg.pose_model,
        detector=cfg.person_detector,
        device=cfg.device,
        min_score=cfg.min_person_score,
        thresholds=(thresholds[0], thresholds[1]) if thresholds else None,
        max_people=cfg.max_people,
    )


def make_estimator(cfg: PoseOptions) -> object:
    from .estimators import make_estimator as make

    estimator = make(cfg.pose, pose_settings(cfg))  # type: ignore[arg-type]
    log.info("pose model: %s", estimator.describe())
    return estimator


def pick(rels: list[str], max_images: int | None, seed: int) -> list[str]:
    """`max_images` of a folder's images, by the seeded hash order `coco.select_images` uses
    (a larger N keeps a smaller N's images), back in path order. Pure."""
    from .folder import image_id

    if max_images is None:
        return rels
    ids = {image_id(r): r for r in rels}
    chosen = set(select_images(list(ids), max_images, seed))
    return [r for r in rels if image_id(r) in chosen]


def estimate_images(
    cfg: ImageSource,
    pose: PoseOptions,
    only: Collection[str] | None = None,
    max_images: int | None = None,
    seed: int = 0,
) -> list[ImageContext]:
    """The contexts of --images (those named in `only`, when given; `max_images` of them
    picked before any is estimated), estimated now, in memory, captions added.
    `prepare --images` is the resumable, sharded way for a large folder."""
    from . import folder

    source = cfg.folder_source()
    assert source is not None
    listing = folder.list_images(source)
    rels = pick(listing.images, max_images, seed)
    if only is not None:
        wanted = set(only)
        rels = [r for r in rels if r in wanted]
    captions = folder.read_captions(pose.captions) if pose.captions else {}
    outcomes, tally = folder.run(listing, rels, lambda: make_estimator(pose), pose.batch_size)
    log.info("%s: %s", source, tally.line())
    found = [o.context for o in outcomes if o.context is not None]
    return folder.with_captions(found, captions)


def human_centric(
    contexts: list[ImageContext], min_keypoints: int, min_persons: int
) -> list[ImageContext]:
    """The contexts with at least `min_persons` persons of `min_keypoints` labelled keypoints."""
    return [
        c
        for c in contexts
        if sum(1 for p in c.persons if p.num_labelled >= min_keypoints) >= min_persons
    ]


def load(
    cfg: ImageSource,
    pose: PoseOptions,
    *,
    seed: int = 0,
    max_images: int | None = None,
    min_keypoints: int = DEFAULT_MIN_KEYPOINTS,
    min_persons: int = DEFAULT_MIN_PERSONS,
    human_only: bool = True,
    check_images: bool = True,
    only: Collection[str] | None = None,
) -> list[ImageContext]:
    """Contexts of the configured images: --contexts as written, --coco (or the bundled
    sample) read and filtered, --images estimated (only those named in `only`, when given)
    and filtered alike; then `max_images` of them, a seeded sample."""
    check(cfg)
    rule = filter_rule(min_keypoints, min_persons, human_only)
    if cfg.contexts:
        contexts = read_contexts(cfg.contexts)
    elif cfg.folder_source():
        estimated = estimate_images(cfg, pose, only, max_images=max_images, seed=seed)
        contexts = human_centric(estimated, min_keypoints, min_persons) if human_only else estimated
        log.info(
            "%s: kept %d of %d images (%s)",
            cfg.folder_source(),
            len(contexts),
            len(estimated),
            rule,
        )
    else:
        root = Path(cfg.coco) if cfg.coco else sample_root()
        if not cfg.coco:
            log.info("no --coco given: using the bundled COCO sample (%s)", root)
        loaded = read_split(
            root,
            cfg.split,
            min_keypoints=min_keypoints,
            min_persons=min_persons,
            human_only=human_only,
            check_images=check_images,
        )
        log.info("%s", loaded.stats.summary(rule))
        contexts = loaded.contexts
    if max_images is not None:
        contexts = select_images(contexts, max_images, seed)
    return contexts


def load_source(cfg: SourceOptions, seed: int) -> list[ImageContext]:
    """`load` with the command's own filter options; no image left is an error."""
    contexts = load(
        cfg,
        cfg,
        seed=seed,
        max_images=cfg.max_images,
        min_keypoints=cfg.min_keypoints,
        min_persons=cfg.min_persons,
        human_only=not cfg.all_images,
        check_images=cfg.check_images,
    )
    if not contexts:
        raise ConfigError(
            "no images left after filtering: check --split, --min-keypoints or --all-images"
        )
    return contexts
