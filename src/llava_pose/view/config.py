"""The options of `llava-pose view` and where the view finds the people it draws: the
records' contexts, from the options or from the data's own source (a COCO root, a contexts
file, the bundled sample). Below both the dataset and the benchmark views, which read them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..config import option
from ..ehpaub.files import ManifestCheck
from ..errors import InputError
from ..records import ImageContext
from ..sources import ImageSource, PoseOptions, estimate_images

DEFAULT_PORT = 8765


@dataclasses.dataclass
class ViewConfig(ManifestCheck, PoseOptions):
    """Options of `llava-pose view`."""

    folder: str = option(
        help="generate output folder (or a LLaVA JSON file), E-HPAUB folder, PoseQA folder, "
        "or a folder written by --export (served as it is)",
        positional=True,
        metavar="DIR",
    )
    answers: list[str] = option(
        [],
        "benchmarks: the models' answers files, or folders of them (default: the files the "
        "reviews name, where they lie inside the folder that holds the review folder)",
        nargs="+",
        metavar="FILE_OR_DIR",
    )
    reviews: list[str] = option(
        [],
        "E-HPAUB: review folders from `bench judge`, one per judge",
        nargs="+",
        metavar="DIR",
    )
    claims: list[str] = option(
        [],
        "datasets: claims.jsonl of `llava-pose verify --out` to highlight (besides DIR's own)",
        nargs="+",
        metavar="FILE",
    )
    coco: str | None = option(
        None,
        "COCO root with annotations/ and images (default: the one DIR was made from)",
        metavar="ROOT",
    )
    split: str | None = option(
        None, "split to read keypoints from (default: DIR's, else train2017)", metavar="NAME"
    )
    contexts: str | None = option(
        None, "contexts JSONL from `llava-pose prepare`, instead of --coco", metavar="FILE"
    )
    image_root: str | None = option(
        None,
        "folder the records' image paths are relative to (default: the COCO root, or --images)",
        metavar="DIR",
    )
    images: str | None = option(
        None,
        "a folder of images (as `prepare --images` takes): where the records' images are, and, "
        "without contexts, their people estimated now by --pose",
        metavar="DIR",
    )
    host: str = option(
        "127.0.0.1",
        "address to serve on, IPv4 or IPv6 (the default is this machine only; any other "
        "exposes the data to the network, with a warning)",
    )
    port: int = option(
        DEFAULT_PORT, "port to serve on (0: any free port)", at_least=0, at_most=65535
    )
    export: str | None = option(
        None,
        "write the pages as a static folder (opens from disk, no server) instead of serving",
        metavar="OUT",
        path="dir",
    )


# -- keypoints and images ---------------------------------------------------------------------


@dataclasses.dataclass
class Contexts:
    """The contexts found, matched to records by image path or COCO id, and the image root."""

    by_path: dict[str, ImageContext]
    by_id: dict[int, ImageContext]
    image_root: Path | None

    def find(self, image: str) -> ImageContext | None:
        from ..coco import match_context

        return match_context(image, self.by_path, self.by_id)


def _stats_source(folder: Path, stats: dict[str, Any]) -> tuple[str, str | None]:
    """("coco", ROOT) / ("contexts", FILE) / ("sample", None) from a stats.json ``source``; a
    ROOT of plain images (`generate --images DIR`) is told apart by `load_contexts`."""
    source = stats.get("source")
    if not source or source == "bundled sample":
        return "sample", None
    for candidate in (Path(source), folder / source):
        if candidate.is_dir():
            return "coco", str(candidate)
        if candidate.is_file():
            return "contexts", str(candidate)
    raise InputError(
        folder / "stats.json",
        f"source {source!r} not found from here: give --coco ROOT --split NAME or --contexts FILE",
        field="source",
    )


def load_contexts(
    cfg: ViewConfig,
    default_kind: str,
    default_source: str | None,
    default_split: str | None,
    images: list[str],
) -> Contexts:
    """Contexts of the images the data names, from the options, else the data's own source."""
    from .. import coco

    if cfg.contexts:
        kind, source = "contexts", cfg.contexts
    elif cfg.coco:
        kind, source = "coco", cfg.coco
    elif cfg.images and default_kind != "contexts":
        kind, source = "images", cfg.images
    else:
        kind, source = default_kind, default_source
    split = cfg.split or default_split or coco.SAMPLE_SPLIT
    given_root = cfg.image_root or cfg.images
    if kind == "coco" and source and not (Path(source) / "annotations").is_dir():
        kind = "images"  # a root of plain images (a benchmark built from --images)
    if kind == "contexts":
        assert source is not None
        contexts = coco.read_contexts(source)
        root = Path(given_root) if given_root else None
    elif kind == "images":  # estimated now, only the images the data names
        assert source is not None
        contexts = estimate_images(ImageSource(images=source), cfg, only=images)
        root = Path(given_root or source)
    elif kind == "none":
        contexts, root = [], Path(given_root) if given_root else None
    else:
        root = Path(source) if kind == "coco" and source else coco.sample_root()
        ids = {coco.image_id_of(Path(i).name) for i in images}
        ids.discard(None)
        contexts = coco.load_split(
            root, split, human_only=False, check_images=False, image_ids=ids or None
        )
        root = Path(cfg.image_root) if cfg.image_root else root
    return Contexts({c.image: c for c in contexts}, {c.image_id: c for c in contexts}, root)
