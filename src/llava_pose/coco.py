"""Read a COCO split into `ImageContext` records: captions, object boxes, person keypoints.

Layout: ``ROOT/annotations/{captions,instances,person_keypoints}_SPLIT.json`` (the official
files, unchanged) and images in ``ROOT/SPLIT/``. An image file is found by the ``file_name``
field first, then by the 2017 name ``000000397133.jpg``, then by a 2014 name
``COCO_<any>_000000397133.jpg``; the context stores the path relative to ROOT.

What goes into a context, and why:

- ``objects``: every non-crowd instance whose category is not ``person``. Persons come from
  the keypoints file instead, where they carry their keypoints.
- ``persons``: every non-crowd annotation of the keypoints file, ordered by annotation id.
  A person with no labelled keypoint stays (box plus 17 ``(0.0, 0.0, 0)``) so the teacher
  still knows someone is there; it does not count toward the human-centric filter.
- Crowd regions (``iscrowd=1``) are dropped from objects and persons: they mark a group, not
  one instance, and have no keypoints. The stats count them.
- Coordinates are divided by the image width/height and rounded to 3 decimals; boxes turn
  from COCO ``[x, y, w, h]`` into ``(x1, y1, x2, y2)``; unlabelled keypoints (v=0) become
  ``(0.0, 0.0, 0)``. A box or keypoint up to `TOLERANCE_PX` outside the image is clamped to
  it (float rounding in the annotation tools); further out is a bad-input error.
- Captions: all of them, in annotation-id order, whitespace collapsed to single spaces
  (some COCO captions hold newlines; prompts and the compact format are line-based).

Human-centric filter (the paper's data): an image is kept when it has at least
``min_persons`` non-crowd persons with at least ``min_keypoints`` labelled (v>0) keypoints each.
Defaults 1 and 5: five points (e.g. both shoulders, both hips, the head) are the least that
says something about a pose; COCO-MINI keeps 25 of 80 train2017 and 29 of 79 val2017 images.
``human_only=False`` keeps every image.

Bad input raises `InputError` naming the file and a JSON-path-like field, e.g.
``person_keypoints_val2017.json: annotations[12].keypoints: expected 51 numbers, got 50``.
Every image's annotations are checked, not only the kept images' (crowd regions and the person
copies in the instances file only for their image and category), and every kept image must
have a caption. Absurd values are errors, not silent nonsense: a side over `MAX_IMAGE_SIDE`
(at 10^30 px every coordinate would round to 0.0), a boolean where a number belongs (Python's
bool is an int), NaN or Infinity (Python's ``json.dump`` writes them; JSON has neither: the
error names the field, not only the column), and a ``file_name`` that leaves ``ROOT/SPLIT``
(absolute, ``..`` out of it, NUL: a crafted file could otherwise make ``bench answer`` read and
send any file, see `paths`).

Speed and memory: the instances file of full train2017 is ~450 MB, mostly segmentation
polygons. It is memory-mapped and decoded by msgspec into typed Structs that leave
``segmentation`` out, so the polygons are skipped without ever becoming Python objects;
keypoint arrays stay raw JSON (`msgspec.Raw`) until their person is converted, and the garbage
collector stays off while millions of small acyclic objects are made. ``perf/prepare_scale.py``
measures it against ``json.load`` at train2017 size: about 0.2x the time and memory.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import itertools
import json
import logging
import math
import mmap
import operator
import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, TypeVar

import msgspec

from .confidence import estimate_problem
from .context import NO_KEYPOINTS, UNLABELLED
from .errors import ConfigError, InputError
from .forked import Forked
from .images import MAX_IMAGE_SIDE
from .io import read_bytes, write_jsonl
from .paths import fold, path_problem
from .progress import progress_bar
from .records import KEYPOINT_NAMES, NUM_KEYPOINTS, Box, ImageContext, Keypoint, Obj, Person

log = logging.getLogger(__name__)

ANNOTATION_KINDS = ("captions", "instances", "person_keypoints")
DEFAULT_MIN_KEYPOINTS = 5
DEFAULT_MIN_PERSONS = 1
TOLERANCE_PX = 1.0  # how far outside the image a box or keypoint may be and still be clamped
SAMPLE_SPLIT = "train2017"
_FREEZE_AFTER = 100_000  # records in a load past which the loaded objects are gc-frozen

_ZERO_KEYPOINT: Keypoint = UNLABELLED  # one shared tuple, which `context` renders on sight
_ZEROS: tuple[Keypoint, ...] = NO_KEYPOINTS
_COCO2014_NAME = re.compile(r"COCO_[A-Za-z0-9]+_0*(\d+)\.jpg")

# -- what is decoded from the files (anything not named here is skipped unmaterialised) ----
_Positive = Annotated[int, msgspec.Meta(gt=0)]
_XYWH = tuple[float, float, float, float]


class _Image(msgspec.Struct, gc=False):
    id: int
    width: _Positive
    height: _Positive
    file_name: str | None = None


class _Category(msgspec.Struct, gc=False):
    id: int
    name: str


class _Instance(msgspec.Struct, gc=False):
    image_id: int
    category_id: int
    bbox: _XYWH
    id: int = 0
    iscrowd: int = 0


class _PersonAnnotation(msgspec.Struct, gc=False):
    image_id: int
    bbox: _XYWH
    keypoints: msgspec.Raw  # decoded per person: 51 floats as Python objects are costly
    id: int = 0
    iscrowd: int = 0


class _Caption(msgspec.Struct, gc=False):
    image_id: int
    caption: str
    id: int = 0


class _InstancesFile(msgspec.Struct):
    images: list[_Image]
    annotations: list[_Instance]
    categories: list[_Category]


class _KeypointsFile(msgspec.Struct):
    annotations: list[_PersonAnnotation]


class _SizedImage(msgspec.Struct, gc=False):
    id: int
    width: int
    height: int


class _KeypointsFileWithImages(msgspec.Struct):
    """The keypoints file and its own copy of the split's images (the official files carry
    one): their sizes let persons be read while another process reads the instances file."""

    annotations: list[_PersonAnnotation]
    images: list[_SizedImage] = []


class _CaptionsFile(msgspec.Struct):
    annotations: list[_Caption]


class _TypedPersonAnnotation(msgspec.Struct, gc=False):
    image_id: int
    bbox: _XYWH
    keypoints: list[float]
    id: int = 0
    iscrowd: int = 0


class _TypedKeypointsFile(msgspec.Struct):
    """The keypoints file with every number typed: only to say where a bad one is."""

    annotations: list[_TypedPersonAnnotation]


_DECODERS = {
    "instances": msgspec.json.Decoder(_InstancesFile),
    "person_keypoints": msgspec.json.Decoder(_KeypointsFile),
    "captions": msgspec.json.Decoder(_CaptionsFile),
}
_KEYPOINTS_WITH_IMAGES = msgspec.json.Decoder(_KeypointsFileWithImages)
_TYPED_DECODERS = {**_DECODERS, "person_keypoints": msgspec.json.Decoder(_TypedKeypointsFile)}
_FLOATS = msgspec.json.Decoder(list[float])
# ints stay ints (half the time of floats), and a bool is refused: Python's True == 1
_NUMBERS = msgspec.json.Decoder(list[int | float])
_PLAIN_NAME = re.compile(r"[^/\\\0:]+")  # a bare file name: nothing `paths` has to look at
_VISIBILITY = {1: 1, 2: 2}


class _Bad(Exception):
    """A problem in one value; the caller adds the file and the field prefix."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


@dataclass
class LoadStats:
    """What a load read and kept, for the CLI summary and for logs."""

    split: str = ""
    images: int = 0  # images in the split
    kept: int = 0  # images returned
    persons: int = 0  # non-crowd persons in kept images
    persons_unlabelled: int = 0  # ... of them with no labelled keypoint
    objects: int = 0  # non-person, non-crowd objects in kept images
    crowd: int = 0  # crowd regions dropped from kept images
    captions: int = 0  # captions of kept images
    seconds: float = 0.0

    def summary(self, rule: str) -> str:
        return (
            f"{self.split}: kept {self.kept} of {self.images} images ({rule}); "
            f"{self.persons} persons ({self.persons_unlabelled} without keypoints), "
            f"{self.objects} objects, {self.captions} captions; "
            f"crowd regions dropped: {self.crowd}; {self.seconds:.1f} s"
        )


@dataclass
class SplitLoad:
    contexts: list[ImageContext]
    stats: LoadStats


def filter_rule(min_keypoints: int, min_persons: int, human_only: bool = True) -> str:
    """The human-centric rule in words, for summaries and error hints."""
    if not human_only:
        return "all images"
    persons = "1 person" if min_persons == 1 else f"{min_persons} persons"
    return f">= {persons} with >= {min_keypoints} labelled keypoints"


def splits_found(root: Path) -> list[str]:
    """The splits whose three official annotation files are all under ``root/annotations``."""
    found: dict[str, int] = {}
    for kind in ANNOTATION_KINDS:
        for path in (root / "annotations").glob(f"{kind}_*.json"):
            name = path.stem[len(kind) + 1 :]
            found[name] = found.get(name, 0) + 1
    return sorted(s for s, n in found.items() if n == len(ANNOTATION_KINDS))


def missing_split(root: Path, split: str) -> str:
    """What to say when `split`'s annotation files are not under `root`: the splits that are."""
    found = splits_found(root)
    where = f"annotations/{{captions,instances,person_keypoints}}_{split}.json under {root}"
    if found:
        return (
            f"annotation file not found (expected {where}); splits found there: "
            + ", ".join(found)
            + ": pass --split NAME"
        )
    return f"annotation file not found (expected the official COCO files {where})"


def load_split(
    root: str | Path,
    split: str,
    *,
    min_keypoints: int = DEFAULT_MIN_KEYPOINTS,
    min_persons: int = DEFAULT_MIN_PERSONS,
    human_only: bool = True,
    check_images: bool = True,
    image_ids: Iterable[int] | None = None,
) -> list[ImageContext]:
    """The contexts of one split, ordered by image id (see the module docstring for rules)."""
    return read_split(
        root,
        split,
        min_keypoints=min_keypoints,
        min_persons=min_persons,
        human_only=human_only,
        check_images=check_images,
        image_ids=image_ids,
    ).contexts


def read_split(
    root: str | Path,
    split: str,
    *,
    min_keypoints: int = DEFAULT_MIN_KEYPOINTS,
    min_persons: int = DEFAULT_MIN_PERSONS,
    human_only: bool = True,
    check_images: bool = True,
    image_ids: Iterable[int] | None = None,
) -> SplitLoad:
    """`load_split` plus the stats of the load."""
    if not 0 <= min_keypoints <= NUM_KEYPOINTS:
        raise ConfigError(f"--min-keypoints: must be 0 to {NUM_KEYPOINTS}, got {min_keypoints}")
    if min_persons < 1:
        raise ConfigError(
            f"--min-persons: must be at least 1, got {min_persons} (or use --all-images)"
        )
    start = time.perf_counter()
    root = Path(root)
    paths = {kind: root / "annotations" / f"{kind}_{split}.json" for kind in ANNOTATION_KINDS}
    for path in paths.values():  # fail before spending seconds on the big file
        if not path.is_file():
            raise InputError(path, missing_split(root, split))
    stats = LoadStats(split=split)
    # A big load makes millions of small, acyclic, long-lived objects (tuples, records). The
    # collector would walk them again and again for nothing: keep it off while loading, then
    # move what exists to the permanent generation (gc.freeze) so later passes skip it.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        contexts = _load(
            root,
            split,
            paths,
            stats,
            min_keypoints,
            min_persons,
            human_only,
            check_images,
            image_ids,
        )
        if stats.persons + stats.objects + stats.captions > _FREEZE_AFTER:
            gc.freeze()
    finally:
        if gc_was_enabled:
            gc.enable()
    stats.seconds = time.perf_counter() - start
    return SplitLoad(contexts, stats)


def _load(
    root: Path,
    split: str,
    paths: dict[str, Path],
    stats: LoadStats,
    min_keypoints: int,
    min_persons: int,
    human_only: bool,
    check_images: bool,
    image_ids: Iterable[int] | None,
) -> list[ImageContext]:
    inst_path, kp_path, cap_path = paths["instances"], paths["person_keypoints"], paths["captions"]
    lap = _Lap(split)
    folder = root / split
    # The instances file (~450 MB at train2017) is read in a second process while this one
    # reads the persons; errors still come in the order a one-process load finds them.
    job = _InstancesJob.start(inst_path, folder, cap_path if _CAPTIONS_ASIDE else None)
    try:
        if job is None:
            inst = _read_instances(inst_path, folder)
            lap("instances")
            persons = _read_persons(kp_path, inst_path, inst.sizes(), min_keypoints, inst.table)
            lap("persons")
        else:
            early = _persons_early(kp_path, inst_path, min_keypoints)
            lap("persons")
            inst = job.result()
            lap("instances")
            persons = early.check(inst, kp_path, inst_path, min_keypoints)
    finally:
        if job is not None:
            job.close()
    images, image_index = inst.images, inst.image_index
    stats.images = len(images)
    qualified = persons[2]
    kept = {i for i, n in qualified.items() if n >= min_persons} if human_only else set(images)
    if image_ids is not None:
        wanted = set(image_ids)
        unknown = sorted(wanted - images.keys())
        if unknown:
            raise InputError(
                inst_path, f"no image with id {unknown[0]} (asked for by id)", "images"
            )
        kept &= wanted

    objects, crowd_objects = inst.objects(inst_path, kept)
    lap("objects")
    captions = inst.captions(cap_path, inst_path, kept)
    del inst
    lap("captions")
    return _contexts(
        root, split, inst_path, cap_path, check_images, images, image_index, kept, stats,
        persons, objects, captions, crowd_objects, lap,
    )  # fmt: skip


def _contexts(
    root: Path,
    split: str,
    inst_path: Path,
    cap_path: Path,
    check_images: bool,
    images: dict[int, _Image],
    image_index: dict[int, int],
    kept: set[int],
    stats: LoadStats,
    read_persons: _Persons,
    objects: dict[int, list[Obj]],
    captions: dict[int, list[str]],
    crowd_objects: dict[int, int],
    lap: _Lap,
) -> list[ImageContext]:
    """The kept images joined with their persons, objects and captions."""
    persons, crowd_persons, _, unlabelled = read_persons
    kept_ids = sorted(kept)
    for image_id in kept_ids:
        if image_id not in captions:
            raise InputError(
                cap_path,
                f"image {image_id} (images[{image_index[image_id]}] of {inst_path.name}) "
                "has no caption",
                "annotations",
            )
    files = _ImageFiles(root, split, check_images)

    contexts = []
    for image_id in kept_ids:
        im = images[image_id]
        people = tuple(persons.pop(image_id, ()))
        things = tuple(objects.pop(image_id, ()))
        texts = tuple(captions.pop(image_id))
        contexts.append(
            ImageContext(
                image_id=image_id,
                image=files.resolve(im, image_index[image_id], inst_path),
                width=im.width,
                height=im.height,
                captions=texts,
                objects=things,
                persons=people,
            )
        )
        stats.persons += len(people)
        stats.persons_unlabelled += unlabelled.get(image_id, 0)
        stats.objects += len(things)
        stats.captions += len(texts)
        stats.crowd += crowd_persons.get(image_id, 0) + crowd_objects.get(image_id, 0)
    stats.kept = len(contexts)
    lap("contexts")
    return contexts


@dataclass
class _Instances:
    """What a load takes from the instances file: the images (checked), the categories, and
    the objects, as `_ObjectColumns` or, when one annotation is wrong, the decoded file (or,
    from the second process, the error that names it)."""

    images: dict[int, _Image]
    image_index: dict[int, int]  # image id -> its index in the file's images
    categories: dict[int, str]
    columns: _ObjectColumns | None = None
    data: _InstancesFile | None = None
    error: InputError | None = None
    # Read by the second process too: every caption as (image ids, texts), or the error
    found_captions: tuple[Any, list[str]] | InputError | None = None

    @functools.cached_property
    def table(self) -> _Table | None:
        return _Table.of(self.images)

    def sizes(self) -> dict[int, _Size]:
        return _sizes((im.id, im.width, im.height) for im in self.images.values())

    def objects(self, path: Path, kept: set[int]) -> tuple[dict[int, list[Obj]], dict[int, int]]:
        if self.error is not None:
            raise self.error
        if self.columns is not None:
            return self.columns.select(kept, self.categories)
        data = self.data if self.data is not None else _decode(path, "instances")
        return _read_objects(path, data, self.sizes(), self.categories, kept)

    def captions(self, path: Path, inst_path: Path, kept: set[int]) -> dict[int, list[str]]:
        """`_read_captions`' result: from what the second process read, or read now."""
        found = self.found_captions
        if found is None:
            return _read_captions(path, inst_path, self.images, kept)
        if isinstance(found, InputError):
            raise found
        captions: dict[int, list[str]] = {}
        for image_id, text in zip(*found, strict=True):
            if image_id in kept:
                texts = captions.get(image_id)
                if texts is None:
                    captions[image_id] = [text]
                else:
                    texts.append(text)
        return captions


def _sizes(images: Iterable[tuple[int, int, int]]) -> dict[int, _Size]:
    scale = _Scale()
    return {i: (w, h, scale(w), scale(h)) for i, w, h in images}


def _read_instances(path: Path, folder: Path) -> _Instances:
    """Decode the instances file, check its images and make the object columns."""
    instances: _InstancesFile = _decode(path, "instances")
    images: dict[int, _Image] = {}
    image_index: dict[int, int] = {}
    for i, im in enumerate(instances.images):
        if im.id in images:
            raise InputError(path, f"duplicate image id {im.id}", f"images[{i}].id")
        _check_image(im, i, path, folder)
        images[im.id] = im
        image_index[im.id] = i
    categories = {c.id: c.name for c in instances.categories}
    inst = _Instances(images, image_index, categories)
    table = inst.table
    if table is not None:
        inst.columns = table.object_columns(instances.annotations, categories)
    if inst.columns is None:
        inst.data = instances  # the one-at-a-time path finds what is wrong
    return inst


# Instances files from this size are read in a second process (Linux): train2017's 450 MB
# take seconds of decoding that the persons, read meanwhile, would otherwise wait for.
_PARALLEL_BYTES = 64 << 20
_CAPTIONS_ASIDE = True  # the second process reads the captions file too


class _InstancesJob:
    """`_read_instances` in a `Forked` child; it sends the images, the categories and the
    object columns as arrays (not millions of Python objects)."""

    def __init__(self, path: Path, folder: Path, child: Forked) -> None:
        self.path, self.folder, self.child = path, folder, child

    @classmethod
    def start(cls, path: Path, folder: Path, captions: Path | None = None) -> _InstancesJob | None:
        try:
            if path.stat().st_size < _PARALLEL_BYTES:
                return None
        except OSError:
            return None
        import numpy  # noqa: F401  -- imported once, before the fork

        child = Forked.start(_child_result, path, folder, captions)
        return cls(path, folder, child) if child is not None else None

    def result(self) -> _Instances:
        """The child's `_Instances` (raising the instances file's own errors, as a
        one-process load would before any in the keypoints file)."""
        found = self.child.result()
        if found is None:
            log.debug("the instances reader process failed; reading in this one")
            return _read_instances(self.path, self.folder)
        if "error" in found:
            raise InputError(*found["error"])
        images = msgspec.msgpack.decode(found["images"], type=list[_Image])
        inst = _Instances(
            {im.id: im for im in images},
            {im.id: i for i, im in enumerate(images)},
            found["categories"],
            found["columns"],
        )
        if found["objects_error"] is not None:
            inst.error = InputError(*found["objects_error"])
        captions = found["captions"]
        if captions is not None and "error" in captions:
            inst.found_captions = InputError(*captions["error"])
        elif captions is not None:
            texts = msgspec.msgpack.decode(captions["texts"], type=list[str])
            inst.found_captions = (captions["image_ids"], texts)
        return inst

    def close(self) -> None:
        self.child.close()


def _child_result(path: Path, folder: Path, captions: Path | None = None) -> dict[str, Any]:
    """What `_InstancesJob`'s child sends: plain data, arrays and error tuples; with
    `captions`, that file read too (the persons, read meanwhile, take longer)."""
    try:
        inst = _read_instances(path, folder)
    except InputError as e:
        return {"error": (e.path, e.problem, e.field)}
    error = None
    if inst.columns is None:  # find the wrong annotation now: the parent has no decoded file
        try:
            _read_objects(path, inst.data, inst.sizes(), inst.categories, set())  # type: ignore[arg-type]
        except InputError as e:
            error = (e.path, e.problem, e.field)
    found: dict[str, Any] | None = None
    if captions is not None:
        try:
            ids, texts = _caption_columns(captions, path, inst.images)
            found = {"image_ids": ids, "texts": msgspec.msgpack.encode(texts)}
        except InputError as e:
            found = {"error": (e.path, e.problem, e.field)}
    return {
        "images": msgspec.msgpack.encode(list(inst.images.values())),
        "categories": inst.categories,
        "columns": inst.columns,
        "objects_error": error,
        "captions": found,
    }


@dataclass
class _EarlyPersons:
    """Persons read with the keypoints file's own image sizes, before the instances file's are
    known; `check` keeps them only when both files give every image the same size."""

    sizes: dict[int, tuple[int, int]] | None
    result: _Persons | None = None
    error: InputError | None = None

    def check(self, inst: _Instances, path: Path, inst_path: Path, min_keypoints: int) -> _Persons:
        same = self.sizes is not None and self.sizes == {
            i: (im.width, im.height) for i, im in inst.images.items()
        }
        if not same:  # read again by the instances file's sizes, as a one-process load does
            return _read_persons(path, inst_path, inst.sizes(), min_keypoints, inst.table)
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def _persons_early(path: Path, inst_path: Path, min_keypoints: int) -> _EarlyPersons:
    try:
        data = _KEYPOINTS_WITH_IMAGES.decode(_map(path))
    except (msgspec.DecodeError, InputError):
        return _EarlyPersons(None)  # read (and its error said) again in order, later
    sizes: dict[int, tuple[int, int]] = {}
    for im in data.images:
        if (
            im.id in sizes
            or not 0 < im.width <= MAX_IMAGE_SIDE
            or not 0 < im.height <= MAX_IMAGE_SIDE
        ):
            return _EarlyPersons(None)
        sizes[im.id] = (im.width, im.height)
    if not sizes:
        return _EarlyPersons(None)
    table = _Table.of({i: _Image(i, w, h) for i, (w, h) in sizes.items()})
    persons = _KeypointsFile(data.annotations)
    try:
        result = _read_persons(
            path, inst_path, _sizes((i, w, h) for i, (w, h) in sizes.items()), min_keypoints,
            table, persons,
        )  # fmt: skip
    except InputError as e:
        return _EarlyPersons(sizes, error=e)
    return _EarlyPersons(sizes, result)


def _check_image(im: _Image, index: int, inst_path: Path, folder: Path) -> None:
    """A size no real image has, or a file name that leaves the split folder: input errors."""
    for side, value in (("width", im.width), ("height", im.height)):
        if value > MAX_IMAGE_SIDE:
            raise InputError(
                inst_path,
                f"{value:,} px is beyond any real image (at most {MAX_IMAGE_SIDE:,} px per side)",
                f"images[{index}].{side}",
            )
    name = im.file_name
    if name and (name in (".", "..") or not _PLAIN_NAME.fullmatch(name)):
        problem = path_problem(name)
        if problem is not None:
            raise InputError(
                inst_path,
                f"{problem}; refusing to read outside {folder}",
                f"images[{index}].file_name",
            )


class _Lap:
    """A progress bar over the load's steps, and a debug log of how long each took (``-v``)."""

    STEPS = 5  # the calls in `_load`

    def __init__(self, split: str) -> None:
        self.last = time.perf_counter()
        self.bar = progress_bar(self.STEPS, f"reading {split}", unit="step")

    def __call__(self, step: str) -> None:
        now = time.perf_counter()
        log.debug("%s: %.2f s", step, now - self.last)
        self.last = now
        if self.bar is not None:
            self.bar.set_postfix_str(step, refresh=False)
            self.bar.update(1)
            if self.bar.n >= self.STEPS:
                self.bar.close()


def _id_order(annotations: Sequence[_Caption | _Instance | _PersonAnnotation]) -> Sequence[int]:
    """Indices of `annotations` by annotation id (file order for equal ids).

    Walking a file in id order fills each image's lists already sorted, with no sort per
    image; COCO files are mostly in id order already, which the sort finds in one pass.
    """
    ids = [a.id for a in annotations]
    if all(map(operator.le, ids, ids[1:])):
        return range(len(ids))
    return sorted(range(len(ids)), key=ids.__getitem__)


# (width, height, normalized-x cache, normalized-y cache) of each image
_Size = tuple[int, int, dict[float, float], dict[float, float]]


def _read_persons(
    path: Path,
    inst_path: Path,
    sizes: dict[int, _Size],
    min_keypoints: int,
    table: _Table | None = None,
    data: _KeypointsFile | None = None,
) -> _Persons:
    """By image: persons, crowd regions, persons with enough keypoints, persons with none."""
    if data is None:
        data = _decode(path, "person_keypoints")
        log.debug("decoded person keypoints")
    # Every box at once when none is wrong; else each on its own, which says where.
    boxes = table.person_boxes(data.annotations) if table is not None else None
    persons: dict[int, list[Person]] = {}
    crowd: dict[int, int] = {}
    qualified: dict[int, int] = {}
    unlabelled: dict[int, int] = {}
    annotations = data.annotations
    # The raw JSON of an all-unlabelled keypoint array: ~40% of COCO's persons have one, all
    # spelled the same, so a byte comparison skips decoding them.
    zero_raw = msgspec.Raw(b"[" + b", ".join([b"0"] * 3 * NUM_KEYPOINTS) + b"]")
    for i in _id_order(annotations):
        a = annotations[i]
        image_id = a.image_id
        size = sizes.get(image_id)
        if size is None:
            raise _unknown_image(path, inst_path, i, image_id)
        if a.iscrowd:
            crowd[image_id] = crowd.get(image_id, 0) + 1
            continue
        try:
            box = boxes[i] if boxes is not None else _box(a.bbox, size)
            raw = a.keypoints
            if raw == zero_raw:
                keypoints, labelled = _ZEROS, 0
            else:
                keypoints, labelled = _keypoints(raw, size)
        except _Bad as e:
            raise InputError(path, e.problem, f"annotations[{i}].{e.field}") from None
        person = Person(box, keypoints)
        people = persons.get(image_id)
        if people is None:
            persons[image_id] = [person]
        else:
            people.append(person)
        if labelled == 0:
            unlabelled[image_id] = unlabelled.get(image_id, 0) + 1
        elif labelled >= min_keypoints:
            qualified[image_id] = qualified.get(image_id, 0) + 1
    return persons, crowd, qualified, unlabelled


_Persons = tuple[dict[int, list[Person]], dict[int, int], dict[int, int], dict[int, int]]


def _read_objects(
    path: Path,
    data: _InstancesFile,
    sizes: dict[int, _Size],
    categories: dict[int, str],
    kept: set[int],
) -> tuple[dict[int, list[Obj]], dict[int, int]]:
    """Non-person objects of kept images, one annotation at a time; every annotation is
    checked, and the error names the first wrong one (`_ObjectColumns` is the fast way)."""
    person_ids = {cid for cid, name in categories.items() if name == "person"}
    objects: dict[int, list[Obj]] = {}
    crowd: dict[int, int] = {}
    tol = TOLERANCE_PX
    annotations = data.annotations
    for i in _id_order(annotations):
        a = annotations[i]
        image_id = a.image_id
        size = sizes.get(image_id)
        if size is None:
            raise _unknown_image(path, path, i, image_id)
        category = a.category_id
        name = categories.get(category)
        if name is None:
            raise InputError(
                path,
                f"unknown category {category} (not in categories)",
                f"annotations[{i}].category_id",
            )
        if category in person_ids:
            continue  # persons (and their crowd regions) come from the keypoints file
        if a.iscrowd:
            if image_id in kept:
                crowd[image_id] = crowd.get(image_id, 0) + 1
            continue
        if image_id in kept:
            try:
                box = _box(a.bbox, size)
            except _Bad as e:
                raise InputError(path, e.problem, f"annotations[{i}].{e.field}") from None
            things = objects.get(image_id)
            if things is None:
                objects[image_id] = [Obj(name, box)]
            else:
                things.append(Obj(name, box))
        else:  # checked all the same: a bad file is bad wherever the error is
            x, y, w, h = a.bbox
            if (
                w < 0 or h < 0 or x < -tol or y < -tol
                or x + w > size[0] + tol or y + h > size[1] + tol
            ):  # fmt: skip
                # _box raises the error with its message
                try:
                    _box(a.bbox, size)
                except _Bad as e:
                    raise InputError(path, e.problem, f"annotations[{i}].{e.field}") from None
    return objects, crowd


def _read_captions(
    path: Path, inst_path: Path, images: dict[int, _Image], kept: set[int]
) -> dict[int, list[str]]:
    data: _CaptionsFile = _decode(path, "captions")
    captions: dict[int, list[str]] = {}
    annotations = data.annotations
    for i in _id_order(annotations):
        a = annotations[i]
        image_id = a.image_id
        if image_id in kept:
            text = " ".join(a.caption.split())  # COCO has captions with newlines inside
            if text:
                texts = captions.get(image_id)
                if texts is None:
                    captions[image_id] = [text]
                else:
                    texts.append(text)
        elif image_id not in images:
            raise _unknown_image(path, inst_path, i, image_id)
    return captions


def _caption_columns(
    path: Path, inst_path: Path, images: dict[int, _Image]
) -> tuple[list[int], list[str]]:
    """Every caption of the file as `_read_captions` keeps it (whitespace collapsed, empty
    ones out), in id order, with its image id: for all images, as the kept ones are not known
    yet where this runs (the second process)."""
    data: _CaptionsFile = _decode(path, "captions")
    ids: list[int] = []
    texts: list[str] = []
    annotations = data.annotations
    for i in _id_order(annotations):
        a = annotations[i]
        if a.image_id not in images:
            raise _unknown_image(path, inst_path, i, a.image_id)
        text = " ".join(a.caption.split())
        if text:
            ids.append(a.image_id)
            texts.append(text)
    return ids, texts


def _unknown_image(path: Path, inst_path: Path, index: int, image_id: int) -> InputError:
    return InputError(
        path,
        f"unknown image {image_id} (not in the images of {inst_path.name})",
        f"annotations[{index}].image_id",
    )


class _Scale:
    """Caches of x / size rounded to 3 decimals, one per size.

    COCO coordinates repeat a lot (integer keypoints, 2-decimal boxes, a few hundred image
    sizes), so the caches save most `round` calls and share the result's float objects. Keys
    are values clamped to [0, size]: a cache hit also proves the value is inside the image.
    """

    def __init__(self) -> None:
        self._by_size: dict[int, dict[float, float]] = {}

    def __call__(self, size: int) -> dict[float, float]:
        cache = self._by_size.get(size)
        if cache is None:
            cache = self._by_size[size] = {}
        return cache


def _norm(cache: dict[float, float], value: float, size: int) -> float | None:
    """The slow path of a cache miss: clamp, divide, round, remember; None when outside."""
    if value < -TOLERANCE_PX or value > size + TOLERANCE_PX:
        return None
    if value <= 0.0:
        value = 0.0  # also turns -0.0 into 0.0
    elif value > size:
        value = float(size)
    out = cache.get(value)
    if out is None:
        out = cache[value] = _round3(value / size)
    return out


def _box(b: tuple[float, float, float, float], size: _Size) -> Box:
    """COCO [x, y, w, h] in pixels -> normalized (x1, y1, x2, y2).

    Not cached: box values have 2 decimals and x + w adds float noise, so they rarely repeat.
    """
    x, y, w, h = b
    x2, y2 = x + w, y + h
    width, height = size[0], size[1]
    tol = TOLERANCE_PX
    if w < 0 or h < 0 or x < -tol or y < -tol or x2 > width + tol or y2 > height + tol:
        if w < 0 or h < 0:
            raise _Bad("bbox", f"negative size in [x, y, w, h] = {_fmt(b)}")
        raise _Bad(
            "bbox",
            f"box [x, y, w, h] = {_fmt(b)} reaches outside the {width}x{height} image "
            f"(more than {tol:g} px)",
        )
    return (  # clamped into the image; 0.0 also stands for -0.0
        0.0 if x <= 0.0 else 1.0 if x >= width else _round3(x / width),
        0.0 if y <= 0.0 else 1.0 if y >= height else _round3(y / height),
        0.0 if x2 <= 0.0 else 1.0 if x2 >= width else _round3(x2 / width),
        0.0 if y2 <= 0.0 else 1.0 if y2 >= height else _round3(y2 / height),
    )


class _Table:
    """The split's images as sorted arrays, to check and normalize annotations by the hundred
    thousand with numpy (train2017: 860k instances, 262k persons) instead of one at a time.

    Each method computes exactly what the one-at-a-time code does (`_box`, `_round3`: same
    IEEE operations, ties to `round`), or returns None when any annotation is wrong or out of
    numpy's range; the one-at-a-time code then runs and raises the error naming the first.
    """

    def __init__(self, ids: Any, width: Any, height: Any) -> None:
        self.ids, self.width, self.height = ids, width, height

    @classmethod
    def of(cls, images: dict[int, _Image]) -> _Table | None:
        import numpy as np

        n = len(images)
        if n == 0:
            return None
        try:
            ids = np.fromiter(images, np.int64, n)
        except OverflowError:
            return None
        order = np.argsort(ids)
        width = np.fromiter((im.width for im in images.values()), np.float64, n)
        height = np.fromiter((im.height for im in images.values()), np.float64, n)
        return cls(ids[order], width[order], height[order])

    def _find(self, image_ids: Any) -> tuple[Any, bool]:
        """Positions of `image_ids` in the table, and whether all of them are there."""
        import numpy as np

        pos = np.minimum(np.searchsorted(self.ids, image_ids), len(self.ids) - 1)
        return pos, bool((self.ids[pos] == image_ids).all())

    def person_boxes(self, annotations: Sequence[_PersonAnnotation]) -> list[Box] | None:
        """`_box` of every annotation (crowd regions: unchecked, as they are not read)."""
        columns = _columns(annotations, ("image_id", "iscrowd"))
        if columns is None:
            return None
        image_ids, crowd = columns
        pos, known = self._find(image_ids)
        if not known:
            return None
        bbox = _bboxes(annotations)
        w, h = self.width[pos], self.height[pos]
        if _outside(bbox, w, h)[crowd == 0].any():
            return None
        return list(map(tuple, _normalized(bbox, w, h).tolist()))

    def object_columns(
        self, annotations: Sequence[_Instance], categories: dict[int, str]
    ) -> _ObjectColumns | None:
        """Every object the load reads (not a person, not a crowd region), checked and
        normalized, in annotation-id order; None when an annotation is wrong."""
        import numpy as np

        columns = _columns(annotations, ("image_id", "category_id", "iscrowd", "id"))
        if columns is None:
            return None
        image_ids, category_ids, crowd, ann_ids = columns
        if not len(image_ids):
            return _ObjectColumns(image_ids, category_ids, np.empty((0, 4)), image_ids)
        pos, known = self._find(image_ids)
        try:
            known_categories = np.fromiter(categories, np.int64, len(categories))
            persons = np.fromiter(
                (c for c, name in categories.items() if name == "person"), np.int64
            )
        except OverflowError:
            return None
        if not known or not np.isin(category_ids, known_categories).all():
            return None
        person = np.isin(category_ids, persons)
        crowd = crowd != 0
        read = ~person & ~crowd  # crowd regions and persons are neither read nor checked
        bbox = _bboxes(annotations)
        w, h = self.width[pos], self.height[pos]
        if (_outside(bbox, w, h) & read).any():
            return None
        order = np.argsort(ann_ids, kind="stable")  # id order, file order for equal ids
        take = order[read[order]]
        return _ObjectColumns(
            image_ids[take],
            category_ids[take],
            _normalized(bbox[take], w[take], h[take]),
            image_ids[~person & crowd],
        )


@dataclass
class _ObjectColumns:
    """The objects of every image, as `_Table.object_columns` makes them: one row per object
    in annotation-id order, and the image of each crowd region (they are only counted)."""

    image_ids: Any  # int64
    category_ids: Any  # int64
    boxes: Any  # float64 (n, 4): normalized (x1, y1, x2, y2)
    crowd_image_ids: Any  # int64

    def select(
        self, kept: set[int], categories: dict[int, str]
    ) -> tuple[dict[int, list[Obj]], dict[int, int]]:
        """`_read_objects`'s result: the objects and crowd counts of the kept images."""
        import numpy as np

        wanted = np.fromiter(kept, np.int64, len(kept))
        crowd: dict[int, int] = {}
        for image_id in self.crowd_image_ids[np.isin(self.crowd_image_ids, wanted)].tolist():
            crowd[image_id] = crowd.get(image_id, 0) + 1
        take = np.isin(self.image_ids, wanted)
        objects: dict[int, list[Obj]] = {}
        rows = zip(
            self.image_ids[take].tolist(),
            self.category_ids[take].tolist(),
            self.boxes[take].tolist(),
            strict=True,
        )
        for image_id, category, box in rows:
            obj = Obj(categories[category], tuple(box))  # type: ignore[arg-type]
            things = objects.get(image_id)
            if things is None:
                objects[image_id] = [obj]
            else:
                things.append(obj)
        return objects, crowd


def _columns(annotations: Sequence[Any], names: tuple[str, ...]) -> list[Any] | None:
    """Integer fields of every annotation as int64 arrays; None if one does not fit."""
    import numpy as np

    n = len(annotations)
    try:
        return [
            np.fromiter(map(operator.attrgetter(name), annotations), np.int64, n) for name in names
        ]
    except OverflowError:
        return None


def _bboxes(annotations: Sequence[_Instance | _PersonAnnotation]) -> Any:
    import numpy as np

    n = len(annotations)
    flat = itertools.chain.from_iterable(map(operator.attrgetter("bbox"), annotations))
    return np.fromiter(flat, np.float64, 4 * n).reshape(n, 4)


def _outside(bbox: Any, width: Any, height: Any) -> Any:
    """Where `_box` raises: a negative size, or more than `TOLERANCE_PX` outside the image."""
    x, y, w, h = bbox.T
    tol = TOLERANCE_PX
    return (
        (w < 0) | (h < 0) | (x < -tol) | (y < -tol)
        | (x + w > width + tol) | (y + h > height + tol)
    )  # fmt: skip


def _normalized(bbox: Any, width: Any, height: Any) -> Any:
    """`_box` of each row, for rows `_outside` passes."""
    import numpy as np

    x, y, w, h = bbox.T
    out = np.empty_like(bbox)
    for column, (value, size) in enumerate(
        ((x, width), (y, height), (x + w, width), (y + h, height))
    ):
        out[:, column] = _round3_clamped(value, size)
    return out


def _round3_clamped(value: Any, size: Any) -> Any:
    """``0.0 if v <= 0 else 1.0 if v >= size else _round3(v / size)``, elementwise: the same
    product, the same round-half-even, the same int / 1000; near a tie, `round` decides."""
    import numpy as np

    a = value / size
    r = a * 1000.0
    k = np.rint(r)
    out = k / 1000.0
    inside = (value > 0.0) & (value < size)
    near_tie = ~((r - k > -0.4999) & (r - k < 0.4999)) & inside
    for i in np.flatnonzero(near_tie).tolist():
        out[i] = round(float(a[i]), 3)
    out[value <= 0.0] = 0.0
    out[~(value <= 0.0) & (value >= size)] = 1.0
    return out


def _round3(a: float) -> float:
    """Exactly `round(a, 3)` for 0 <= a <= 1, in half the time (round formats decimals).

    r = a * 1000.0 is within 1e-13 of the exact product, so unless r is within 1e-4 of a
    half-integer, the exact product rounds to the same integer k as r; k / 1000 (int / int,
    correctly rounded) is then the same double `round` returns. Near a tie, `round` decides.
    """
    r = a * 1000.0
    k = round(r)
    return k / 1000 if -0.4999 < r - k < 0.4999 else round(a, 3)


class _Outside(Exception):
    pass


def _norm_inside(cache: dict[float, float], value: float, size: int) -> float:
    out = _norm(cache, value, size)
    if out is None:
        raise _Outside
    return out


def _keypoints(raw: msgspec.Raw, size: _Size) -> tuple[tuple[Keypoint, ...], int]:
    """17 normalized (x, y, v) and how many are labelled.

    The fast path decodes ints as ints (COCO's integer coordinates: half the time of floats)
    and builds the tuple in one comprehension; anything unusual goes the slow way.
    """
    try:
        k = _NUMBERS.decode(raw)
        if len(k) == 3 * NUM_KEYPOINTS:
            vs = k[2::3]
            unlabelled = vs.count(0)
            if unlabelled == NUM_KEYPOINTS:
                return _ZEROS, 0
            if unlabelled + vs.count(2) + vs.count(1) == NUM_KEYPOINTS:
                width, height, cx, cy = size
                # a cached 0.0 is falsy: _norm_inside then returns it again
                out = tuple(
                    [
                        _ZERO_KEYPOINT
                        if v == 0
                        else (
                            cx.get(x) or _norm_inside(cx, x, width),
                            cy.get(y) or _norm_inside(cy, y, height),
                            _VISIBILITY[v],
                        )
                        for x, y, v in zip(k[0::3], k[1::3], vs, strict=True)
                    ]
                )
                return out, NUM_KEYPOINTS - unlabelled
    except (_Outside, TypeError, KeyError, msgspec.ValidationError):
        pass  # a string, bool, null, out of the image...: the slow path says which
    return _keypoints_checked(raw, size)


def _keypoints_checked(raw: msgspec.Raw, size: _Size) -> tuple[tuple[Keypoint, ...], int]:
    """`_keypoints` the slow way, with typed decoding: says exactly what is wrong."""
    try:
        k = _FLOATS.decode(raw)
    except msgspec.ValidationError as e:
        field, problem = _split_validation(e)
        index = re.fullmatch(r"\[(\d+)\]", field)
        if index and int(index.group(1)) % 3 == 2 and problem.endswith("got bool"):
            j = int(index.group(1)) // 3
            problem = f"visibility v of {KEYPOINT_NAMES[j]} must be 0, 1 or 2, got a boolean"
        if field:
            raise _Bad(f"keypoints{field}", problem) from None
        raise _Bad("keypoints", f"expected {3 * NUM_KEYPOINTS} numbers, {problem}") from None
    if len(k) != 3 * NUM_KEYPOINTS:
        raise _Bad("keypoints", f"expected {3 * NUM_KEYPOINTS} numbers, got {len(k)}")
    width, height, cx, cy = size
    out: list[Keypoint] = []
    append = out.append
    labelled = 0
    for j, (x, y, v) in enumerate(zip(k[0::3], k[1::3], k[2::3], strict=True)):
        if v == 0:
            append(_ZERO_KEYPOINT)  # one shared tuple: most keypoints of COCO are unlabelled
            continue
        if v != 2 and v != 1:
            raise _Bad(
                f"keypoints[{3 * j + 2}]",
                f"visibility v of {KEYPOINT_NAMES[j]} must be 0, 1 or 2, got {v:g}",
            )
        nx = cx.get(x)
        if nx is None:
            nx = _norm(cx, x, width)
        ny = cy.get(y)
        if ny is None:
            ny = _norm(cy, y, height)
        if nx is None or ny is None:
            raise _Bad(
                f"keypoints[{3 * j}]",
                f"{KEYPOINT_NAMES[j]} at ({x:g}, {y:g}) is outside the {width}x{height} image "
                f"(more than {TOLERANCE_PX:g} px)",
            )
        append((nx, ny, 2 if v == 2 else 1))
        labelled += 1
    return tuple(out), labelled


def _fmt(values: Iterable[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"


_COCO2017_NAME = re.compile(r"(\d{12})\.jpg")


def match_context(
    image: str, by_path: dict[str, ImageContext], by_id: dict[int, ImageContext]
) -> ImageContext | None:
    """The context of a record's image: the same path, else the COCO id in its file name
    (2014 and 2017 names alike)."""
    hit = by_path.get(image)
    if hit is not None:
        return hit
    image_id = image_id_of(PurePosixPath(image).name)
    return None if image_id is None else by_id.get(image_id)


def image_id_of(name: str) -> int | None:
    """The image id in a COCO file name, 2017 (``000000397133.jpg``) or 2014
    (``COCO_val2014_000000397133.jpg``); None for any other name."""
    m = _COCO2017_NAME.fullmatch(name) or _COCO2014_NAME.fullmatch(name)
    return int(m.group(1)) if m else None


def names_2014(listing: Iterable[str]) -> dict[int, str]:
    """The 2014-style names (``COCO_<split>_<id>.jpg``) of a folder listing, by image id."""
    by_id: dict[int, str] = {}
    for name in listing:
        m = _COCO2014_NAME.fullmatch(name)
        if m:
            by_id.setdefault(int(m.group(1)), name)
    return by_id


def image_names(file_name: str | None, image_id: int | None, by_id: dict[int, str]) -> list[str]:
    """The names a COCO image may have in its folder, in the order they are tried: `file_name`,
    the 2017 name ``000000397133.jpg``, then a 2014 name from `names_2014` (one rule for
    `prepare` and `train`, whichever COCO download the user has)."""
    names = [file_name] if file_name else []
    if image_id is not None:
        names += [f"{image_id:012d}.jpg", by_id.get(image_id, "")]
    return [n for n in dict.fromkeys(names) if n]


class _ImageFiles:
    """Finds image files by listing the split folder once (118k stat calls are slow on NFS)."""

    def __init__(self, root: Path, split: str, check: bool) -> None:
        self.root, self.split, self.check = root, split, check
        self.names: set[str] = set()
        self.by_id: dict[int, str] = {}
        if check:
            folder = root / split
            try:
                self.names = set(os.listdir(folder))
            except (FileNotFoundError, NotADirectoryError):
                raise InputError(
                    folder, "image folder not found (or pass --no-check-images to skip the check)"
                ) from None
            self.by_id = names_2014(self.names)

    def resolve(self, im: _Image, index: int, inst_path: Path) -> str:
        name2017 = f"{im.id:012d}.jpg"
        given = im.file_name or None  # contained (`_check_image`); folded unless bare
        if given and not _PLAIN_NAME.fullmatch(given):
            given = fold(given)
        if not self.check:
            return f"{self.split}/{given or name2017}"
        for name in image_names(given, im.id, self.by_id):
            if name in self.names or ("/" in name and (self.root / self.split / name).is_file()):
                return f"{self.split}/{name}"
        raise InputError(
            inst_path,
            f"image file {self.root / self.split / (im.file_name or name2017)} not found "
            f"(nor {name2017} or COCO_*_{im.id:012d}.jpg; --no-check-images skips the check)",
            f"images[{index}].file_name",
        )


def _decode(path: Path, kind: str) -> Any:
    """Decode one annotation file from a read-only memory map.

    A map skips copying hundreds of MB into a bytes object; the pages are the OS file cache.
    The map closes when nothing refers to it any more (`msgspec.Raw` values do).
    """
    data = _map(path)
    log.debug("reading %s (%.1f MB)", path, len(data) / 1e6)
    start = time.perf_counter()
    try:
        result = _DECODERS[kind].decode(data)
    except msgspec.ValidationError as e:
        field, problem = _split_validation(e)
        raise InputError(path, problem, field.lstrip(".") or None) from None
    except msgspec.DecodeError as e:
        raise _decode_error(path, kind, data, str(e)) from None
    log.debug("decoded %s in %.2f s", path.name, time.perf_counter() - start)
    return result


_NON_FINITE = re.compile(rb"-?Infinity|NaN")
_NOT_A_NUMBER = "not a finite number (NaN or Infinity, which JSON does not have)"


def _decode_error(path: Path, kind: str, data: mmap.mmap | bytes, message: str) -> InputError:
    """Invalid JSON, with its line and column. NaN and Infinity (Python's ``json.dump`` writes
    them) also get the field that holds one, e.g. ``annotations[12].bbox[2]``: the file is
    decoded again, typed, with each such token written as a number out of range, which the
    decoder refuses at its path. Only on this error path; a NaN in a field that is never read
    (``segmentation``) keeps the line and column."""
    at = _BYTE.search(message)
    offset = int(at.group(1)) if at else -1
    if offset >= 0 and (
        data[offset : offset + 3] == b"NaN" or data[offset : offset + 8] == b"Infinity"
    ):
        try:
            _TYPED_DECODERS[kind].decode(_NON_FINITE.sub(b"1e999", data))
        except msgspec.ValidationError as e:
            field, problem = _split_validation(e)
            if problem == "number out of range":
                problem = _NOT_A_NUMBER
            return InputError(path, problem, field.lstrip(".") or None)
        except msgspec.DecodeError:
            pass  # another syntax error further on: the first one is the one to fix
        return InputError(path, f"{_json_problem(message, data)}: {_NOT_A_NUMBER}")
    return InputError(path, _json_problem(message, data))


def _map(path: Path) -> mmap.mmap | bytes:
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                return b""
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except IsADirectoryError:
        raise InputError(path, "is a directory, expected a file") from None
    except OSError as e:
        raise InputError(path, f"cannot read ({e.strerror or e})") from None


_AT = re.compile(r"^(.*) - at `\$(.*)`$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(.*)`$")


def _split_validation(e: msgspec.ValidationError) -> tuple[str, str]:
    """msgspec's "Expected `int`, got `str` - at `$.images[3].width`" -> (".images[3].width",
    "expected int, got str"); a missing field moves into the path."""
    text = str(e)
    m = _AT.match(text)
    message, field = (m.group(1), m.group(2)) if m else (text, "")
    missing = _MISSING.match(message)
    if missing:
        return f"{field}.{missing.group(1)}", "missing"
    message = message.replace("`", "")
    return field, message[:1].lower() + message[1:]


_BYTE = re.compile(r"\(byte (\d+)\)")


def _json_problem(message: str, data: mmap.mmap | bytes) -> str:
    m = _BYTE.search(message)
    if m:
        offset = int(m.group(1))
        head = bytes(data[:offset])
        line = head.count(b"\n") + 1
        column = offset - (head.rfind(b"\n") + 1) + 1
        message = _BYTE.sub(f"(line {line}, column {column})", message)
    if "truncated" in message:
        message = "the file ends early (empty or cut off)"
    return f"invalid JSON: {message.removeprefix('JSON is malformed: ')}"


# -- selection, files, the bundled sample ----------------------------------------------------

T = TypeVar("T", ImageContext, int)
T_Row = TypeVar("T_Row")


def selection_key(image_id: int, seed: int) -> bytes:
    """Where an image falls in the seeded order: the same on every machine and Python."""
    return hashlib.blake2b(f"{seed}:{image_id}".encode(), digest_size=8).digest()


def select_images(items: Sequence[T], n: int | None, seed: int = 0) -> list[T]:
    """The first `n` of `items` (contexts or image ids) in a seeded hash order of image id.

    Returned in that order, so a larger `n` with the same seed extends a smaller one: work
    already done on the first images is reused. `n=None` returns `items` unchanged.
    """
    if n is None:
        return list(items)
    if n < 0:
        raise ConfigError(f"--max-images: must be 0 or more, got {n}")

    def key(item: T) -> tuple[bytes, int]:
        image_id = item if isinstance(item, int) else item.image_id
        return selection_key(image_id, seed), image_id

    return sorted(items, key=key)[:n]


def write_contexts(path: str | Path, contexts: Iterable[ImageContext]) -> int:
    """Write contexts as JSONL, atomically (a failed run leaves no partial file)."""
    return write_jsonl(path, contexts)


def read_contexts(path: str | Path) -> list[ImageContext]:
    """Read a contexts JSONL (`llava-pose prepare`'s, perhaps edited by hand), each line checked
    as `prepare` checks COCO (`context_problem`); an error names the line and the field.

    As in `read_split`, the collector pauses while the file's millions of small acyclic
    objects are made (54k train2017 contexts: 2x faster), and a big result is frozen."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        contexts = []
        for n, ctx in read_jsonl_numbered(path, ImageContext):
            problem = context_problem(ctx)
            if problem is not None:
                raise InputError(path, problem[1], f"line {n}: {problem[0]}")
            contexts.append(ctx)
        if len(contexts) > _FREEZE_AFTER // 10:
            gc.freeze()
    finally:
        if enabled:
            gc.enable()
    return contexts


def context_problem(ctx: ImageContext) -> tuple[str, str] | None:
    """(field, problem) of the first absurd value in a context, or None. Pure.

    Values are what `prepare` writes: an image path inside the COCO root, sides of 1 to
    `MAX_IMAGE_SIDE` px, boxes and keypoints normalized to [0, 1], 17 keypoints with v in 0-2.
    """
    if not _PLAIN_PATH.fullmatch(ctx.image):  # else `paths` has nothing to say about it
        problem = path_problem(ctx.image)
        if problem is not None:
            return "image", f"{problem}; refusing to read outside the COCO root"
    for side, value in (("width", ctx.width), ("height", ctx.height)):
        if not 1 <= value <= MAX_IMAGE_SIDE:
            return side, f"must be 1 to {MAX_IMAGE_SIDE:,} px, got {value:,}"
    for kind, items in (("objects", ctx.objects), ("persons", ctx.persons)):
        for i, item in enumerate(items):
            box = item.box
            if not (0.0 <= box[0] <= box[2] <= 1.0 and 0.0 <= box[1] <= box[3] <= 1.0):
                return (
                    f"{kind}[{i}].box",
                    f"expected (x1, y1, x2, y2) with 0 <= x1 <= x2 <= 1, got {_fmt(box)}",
                )
    for i, person in enumerate(ctx.persons):
        points = person.keypoints
        if len(points) != NUM_KEYPOINTS:
            return (
                f"persons[{i}].keypoints",
                f"expected {NUM_KEYPOINTS} keypoints, got {len(points)}",
            )
        if person.estimate is not None:  # a pose model's person: its scores (llava_pose.folder)
            problem = estimate_problem(person.estimate)
            if problem is not None:
                return f"persons[{i}].estimate.{problem[0]}", problem[1]
        if points is _ZEROS or _plausible(points):
            continue
        for j, (x, y, v) in enumerate(points):
            if v not in _V:
                return f"persons[{i}].keypoints[{j}][2]", f"visibility must be 0, 1 or 2, got {v}"
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                return f"persons[{i}].keypoints[{j}]", f"({x:g}, {y:g}) is not in [0, 1]"
    return None


def _plausible(points: tuple[Keypoint, ...]) -> bool:
    """Every x and y in [0, 1] and every v in 0-2, by C-level min, max and sum over the
    flattened points (a NaN fails the sum's self-comparison), not a loop per point."""
    try:
        flat = list(itertools.chain.from_iterable(points))
        xy = flat[0::3] + flat[1::3]
        total = sum(xy)
        return (
            len(flat) == 3 * len(points)
            and total == total
            and min(xy) >= 0.0
            and max(xy) <= 1.0
            and _V_SET.issuperset(flat[2::3])
        )
    except TypeError:  # not numbers: the loop says which
        return False


_V = (0, 1, 2)
_V_SET = frozenset(_V)
# Relative paths of word-character names (dots inside a name only): no root, drive, NUL, '.'
# or '..' part, so `path_problem` would pass them; checking that costs more than this match.
_PLAIN_PATH = re.compile(r"[\w-]+(?:\.[\w-]+)*(?:/[\w-]+(?:\.[\w-]+)*)*")


def read_jsonl_numbered(path: str | Path, type: type[T_Row]) -> list[tuple[int, T_Row]]:
    """(line number, record) of every non-empty line of a JSONL file. An error names the file,
    the line and the field, NaN and Infinity included (`non_finite_field`)."""
    decoder = msgspec.json.Decoder(type)
    rows: list[tuple[int, T_Row]] = []
    for n, line in enumerate(read_bytes(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append((n, decoder.decode(line)))
        except msgspec.ValidationError as e:
            field, problem = _split_validation(e)
            field = field.lstrip(".")
            raise InputError(
                path, problem, f"line {n}: {field}" if field else f"line {n}"
            ) from None
        except msgspec.DecodeError as e:
            field = non_finite_field(line)
            if field is not None:
                raise InputError(path, _NOT_A_NUMBER, f"line {n}: {field}") from None
            problem = _json_problem(str(e), line).replace("(line 1, column", "(column")
            raise InputError(path, problem, f"line {n}") from None
    return rows


def non_finite_field(line: bytes) -> str | None:
    """Where one JSON text holds NaN or Infinity (Python's json writes them, JSON has neither),
    e.g. ``persons[0].keypoints[3][1]``; None when it holds none. For error messages only."""
    try:
        value = json.loads(line)
    except ValueError:
        return None
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        at, v = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            return at.lstrip(".") or "(the value)"
        if isinstance(v, dict):
            stack += reversed([(f"{at}.{k}", x) for k, x in v.items()])
        elif isinstance(v, list):
            stack += reversed([(f"{at}[{i}]", x) for i, x in enumerate(v)])
    return None


def sample_root() -> Path:
    """The bundled 8-image COCO root (split `SAMPLE_SPLIT`), for demos and offline runs."""
    return Path(str(resources.files("llava_pose") / "data" / "sample"))
