"""Load a COCO split (see the package docstring): the three files read and checked in order, the
instances file in a second process where it is big (`forked.Forked`), the kept images joined
with their persons, objects and captions."""

from __future__ import annotations

import functools
import gc
import logging
import operator
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from ..errors import ConfigError, InputError
from ..forked import Forked
from ..images import MAX_IMAGE_SIDE
from ..paths import path_problem
from ..progress import progress_bar
from ..records import NUM_KEYPOINTS, ImageContext, Obj, Person
from ._constants import (
    _FREEZE_AFTER,
    _ZEROS,
    ANNOTATION_KINDS,
    DEFAULT_MIN_KEYPOINTS,
    DEFAULT_MIN_PERSONS,
    TOLERANCE_PX,
)
from .columns import (
    _box,
    _keypoints,
    _ObjectColumns,
    _Scale,
    _Size,
    _Table,
)
from .decode import (
    _KEYPOINTS_WITH_IMAGES,
    _PLAIN_NAME,
    _Bad,
    _Caption,
    _CaptionsFile,
    _decode,
    _Image,
    _Instance,
    _InstancesFile,
    _KeypointsFile,
    _map,
    _PersonAnnotation,
)
from .filenames import (
    _ImageFiles,
)

log = logging.getLogger("llava_pose.coco")


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
