"""`llava-pose overlay`: a Figure-1 style PNG of one image, its skeletons, and optionally one
generated sample's text beside it (see `llava_pose.overlay` for what is drawn and why).

The image's context comes from the same loaders as every other command (`coco.load_split`
for --coco/--split, `coco.read_contexts` for --contexts); the photo from ``ROOT/<ctx.image>``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path, PurePosixPath
from typing import Any

from ..config import option
from ..errors import ConfigError, InputError
from ..folder import image_id as image_id_of_path
from ..sources import ImageSource, PoseOptions
from ..tasks import TASKS

log = logging.getLogger(__name__)


@dataclasses.dataclass
class OverlayConfig(ImageSource, PoseOptions):
    """Options of `llava-pose overlay`."""

    out: str = option(
        "",
        "PNG file to write (its folder must exist); written atomically (required)",
        metavar="FILE.png",
        path="file",
    )
    image: str | None = option(
        None,
        "the image: COCO file stem (000000391895), id (391895) or file name; with --images, "
        "its path in that folder (default with --record: the record's image)",
        metavar="IMAGE",
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
    if not out:
        raise ConfigError("--out: required (the .png file to write)")
    path = Path(out)
    if path.is_dir():
        raise ConfigError(f"--out: {out} is a folder, expected a .png file name")
    if path.suffix.lower() != ".png":
        raise ConfigError(f"--out: expected a .png file name, got {out!r}")
    if not path.parent.is_dir():
        raise ConfigError(f"--out: folder {path.parent} does not exist (create it first)")
    return path


def _context(config: OverlayConfig, image_id: int, name: str | None) -> tuple[Any, Path]:
    """The image's context and the root its file is under (--coco, --images or the bundled
    sample); with --images and no --contexts, the one image `name` is estimated now."""
    from .. import coco
    from ..sources import check, estimate_images, image_root

    check(config)
    root = image_root(config)
    if config.contexts:
        if root is None:
            raise ConfigError(
                "--coco: give the COCO root (or --images, the folder) the images of "
                "--contexts are under"
            )
        for ctx in coco.read_contexts(config.contexts):
            if ctx.image_id == image_id:
                return ctx, root
        raise InputError(config.contexts, f"no context of image {image_id} (--image)", "image_id")
    if config.images:
        assert root is not None and name is not None
        found = estimate_images(config, config, only={name})
        if not found:
            raise InputError(root / name, "not an image of --images that could be read")
        return found[0], root
    assert root is not None  # --coco, or the bundled sample
    if config.coco is None:
        log.info("no --coco or --contexts given: using the bundled sample at %s", root)
    found = coco.load_split(
        root, config.split, human_only=False, check_images=False, image_ids=[image_id]
    )
    return found[0], root


def _folder_path(text: str) -> str:
    """An image's path in an --images folder, as contexts store it (posix, no ``./``)."""
    return PurePosixPath(text.strip().replace("\\", "/")).as_posix()


def run(config: OverlayConfig) -> int:
    from .. import overlay

    out = _check_out(config.out)
    if config.data is None and (config.record is not None or config.task is not None):
        flag = "--record" if config.record is not None else "--task"
        raise ConfigError(f"{flag}: needs --data (the records file to show it from)")
    if config.record is not None and config.task is not None:
        raise ConfigError("--task: give --record or --task, not both")
    folder_mode = bool(config.images)  # images named by their path in the folder
    name = _folder_path(config.image) if folder_mode and config.image is not None else None
    if folder_mode:
        image_id = image_id_of_path(name) if name is not None else None
    else:
        image_id = overlay.parse_image(config.image) if config.image is not None else None
    row = None
    if config.data is not None:  # the records first: a wrong id fails before the COCO load
        records = overlay.read_records(config.data)
        row = overlay.pick_record(
            records, config.data, record=config.record, image_id=image_id, task=config.task
        )
        if image_id is None and folder_mode and isinstance(row.get("image"), str):
            name = _folder_path(row["image"])
            image_id = image_id_of_path(name)
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
    ctx, root = _context(config, image_id, name)
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
  llava-pose overlay --images photos/ --pose mediapipe --image beach/run.jpg --out fig.png
  llava-pose overlay --contexts photos.jsonl --images photos/ --data out/llava_pose_all.json --record 8812347103-detail --out fig.png
""",
    )
