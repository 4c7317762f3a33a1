"""`llava-pose overlay`: a Figure-1 style PNG of one image, its skeletons, and optionally one
generated sample's text beside it (see `llava_pose.overlay` for what is drawn and why).

The image's context comes from the same loaders as every other command (`coco.load_split`
for --coco/--split, `coco.read_contexts` for --contexts); the photo from ``ROOT/<ctx.image>``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from ..config import option
from ..errors import ConfigError, InputError
from ..tasks import TASKS

log = logging.getLogger(__name__)


@dataclasses.dataclass
class OverlayConfig:
    out: str = option(
        help="PNG file to write (its folder must exist); written atomically",
        metavar="FILE.png",
        path="file",
    )
    image: str | None = option(
        None,
        "the image: COCO file stem (000000391895), id (391895) or file name "
        "(default with --record: the record's image)",
        metavar="IMAGE",
    )
    coco: str | None = option(
        None,
        "COCO root holding annotations/ and the image folders (default: the bundled sample)",
        metavar="ROOT",
    )
    split: str = option("train2017", "split the image is in", metavar="NAME")
    contexts: str | None = option(
        None,
        "contexts JSONL from `llava-pose prepare`, instead of --coco's annotations (the "
        "image file is still read from --coco)",
        metavar="FILE",
    )
    data: str | None = option(
        None,
        "LLaVA JSON records (e.g. out/llava_pose_all.json): show one record's text beside "
        "the image",
        metavar="FILE.json",
    )
    record: str | None = option(None, "id of the record to show (with --data)", metavar="ID")
    task: str | None = option(
        None,
        "with --data and no --record: show the image's record of this task (default: conversation)",
        choices=TASKS,
    )
    width: int | None = option(
        None,
        "scale the photo down to this width in px first, aspect kept (smaller files for docs; a smaller photo is not enlarged)",
        metavar="PX",
        at_least=32,
        at_most=10_000,
    )


def _check_out(out: str) -> Path:
    """--out names a .png file in a folder that exists (checked before any slow work)."""
    path = Path(out)
    if path.is_dir():
        raise ConfigError(f"--out: {out} is a folder, expected a .png file name")
    if path.suffix.lower() != ".png":
        raise ConfigError(f"--out: expected a .png file name, got {out!r}")
    if not path.parent.is_dir():
        raise ConfigError(f"--out: folder {path.parent} does not exist (create it first)")
    return path


def _context(config: OverlayConfig, image_id: int) -> tuple[Any, Path]:
    """The image's context and the COCO root its file is under."""
    from .. import coco

    if config.contexts:
        if not config.coco:
            raise ConfigError("--coco: give the COCO root the images of --contexts are under")
        for ctx in coco.read_contexts(config.contexts):
            if ctx.image_id == image_id:
                return ctx, Path(config.coco)
        raise InputError(config.contexts, f"no context of image {image_id} (--image)", "image_id")
    root = Path(config.coco) if config.coco else coco.sample_root()
    if config.coco is None:
        log.info("no --coco or --contexts given: using the bundled sample at %s", root)
    found = coco.load_split(
        root, config.split, human_only=False, check_images=False, image_ids=[image_id]
    )
    return found[0], root


def run(config: OverlayConfig) -> int:
    from .. import overlay

    out = _check_out(config.out)
    if config.data is None and (config.record is not None or config.task is not None):
        flag = "--record" if config.record is not None else "--task"
        raise ConfigError(f"{flag}: needs --data (the records file to show it from)")
    if config.record is not None and config.task is not None:
        raise ConfigError("--task: give --record or --task, not both")
    image_id = overlay.parse_image(config.image) if config.image is not None else None
    row = None
    if config.data is not None:  # the records first: a wrong id fails before the COCO load
        records = overlay.read_records(config.data)
        row = overlay.pick_record(
            records, config.data, record=config.record, image_id=image_id, task=config.task
        )
        if image_id is None:
            image_id = overlay.record_image_id(row)
            if image_id is None:
                raise InputError(
                    config.data,
                    f"record {row['id']} names no COCO image ({row.get('image')!r}); give --image",
                    "image",
                )
    if image_id is None:
        raise ConfigError("--image: required (a file stem, id or file name), or --data --record")
    ctx, root = _context(config, image_id)
    photo = overlay.open_photo(root / ctx.image, (ctx.width, ctx.height))
    if photo.size != (ctx.width, ctx.height):  # a smaller copy of the same shape
        log.warning(
            "%s is %dx%d px, the annotations say %dx%d: drawing at the file's size",
            root / ctx.image,
            *photo.size,
            ctx.width,
            ctx.height,
        )
    if config.width is not None:
        if config.width > photo.width:
            log.info(
                "--width %d: the photo is %d px wide; drawn at its own size, not enlarged",
                config.width,
                photo.width,
            )
        photo = overlay.resize_to_width(photo, config.width)
    panel = (str(row["id"]), overlay.record_turns(row)) if row is not None else None
    figure = overlay.render(photo, ctx, panel)
    overlay.write_png(figure, out)
    n = len(ctx.persons)
    shown = f", record {row['id']}" if row is not None else ""
    print(
        f"wrote {out} ({figure.width}x{figure.height} px, image {ctx.image_id}, "
        f"{n} {'person' if n == 1 else 'people'}{shown})"
    )
    return 0


def register(subparsers: Any) -> None:
    """Add the `overlay` command."""
    from . import add_command

    add_command(
        subparsers,
        "overlay",
        OverlayConfig,
        run,
        help="draw one image's skeletons (and one sample's text) as a Figure-1 style PNG",
        description=(
            "Draw the people of one COCO image over the photo: keypoints and limbs in the "
            "person's own left/right colours, hidden (v=1) points as rings, boxes and a label "
            "per person (P1 is the leftmost, as the text counts people), and a legend. With "
            "--data, one record's turns go in a panel beside the image, as in the paper's "
            "Figure 1 (--record picks it by id; else the image's --task record)."
        ),
        examples="""
  llava-pose overlay --coco /data/coco --split val2017 --image 000000391895 --out fig.png
  llava-pose overlay --coco /data/coco --split val2017 --image 391895 --data out/llava_pose_all.json --out fig.png
  llava-pose overlay --coco /data/coco --split val2017 --data out/llava_pose_all.json --record 391895-detail --out fig.png
  llava-pose overlay --coco /data/coco --contexts val.jsonl --image 000000391895.jpg --task reasoning --data out/llava_pose_all.json --out fig.png
""",
    )
