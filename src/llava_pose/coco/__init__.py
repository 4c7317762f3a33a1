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

from ._constants import (
    ANNOTATION_KINDS,
    DEFAULT_MIN_KEYPOINTS,
    DEFAULT_MIN_PERSONS,
    SAMPLE_SPLIT,
    TOLERANCE_PX,
)
from .contexts import (
    context_problem,
    non_finite_field,
    read_contexts,
    read_jsonl_numbered,
    sample_root,
    select_images,
    selection_key,
    write_contexts,
)
from .filenames import (
    image_id_of,
    image_names,
    match_context,
    names_2014,
)
from .load import (
    LoadStats,
    SplitLoad,
    filter_rule,
    load_split,
    missing_split,
    read_split,
    splits_found,
)

__all__ = [
    "ANNOTATION_KINDS",
    "DEFAULT_MIN_KEYPOINTS",
    "DEFAULT_MIN_PERSONS",
    "SAMPLE_SPLIT",
    "TOLERANCE_PX",
    "LoadStats",
    "SplitLoad",
    "context_problem",
    "filter_rule",
    "image_id_of",
    "image_names",
    "load_split",
    "match_context",
    "missing_split",
    "names_2014",
    "non_finite_field",
    "read_contexts",
    "read_jsonl_numbered",
    "read_split",
    "sample_root",
    "select_images",
    "selection_key",
    "splits_found",
    "write_contexts",
]
