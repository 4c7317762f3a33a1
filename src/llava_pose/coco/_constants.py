"""Constants every part of the COCO reader shares."""

from __future__ import annotations

import re

from ..records import NO_KEYPOINTS, UNLABELLED, Keypoint

ANNOTATION_KINDS = ("captions", "instances", "person_keypoints")
DEFAULT_MIN_KEYPOINTS = 5
DEFAULT_MIN_PERSONS = 1
TOLERANCE_PX = 1.0  # how far outside the image a box or keypoint may be and still be clamped
SAMPLE_SPLIT = "train2017"
_FREEZE_AFTER = 100_000  # records in a load past which the loaded objects are gc-frozen

_ZERO_KEYPOINT: Keypoint = UNLABELLED  # one shared tuple, which `context` renders on sight
_ZEROS: tuple[Keypoint, ...] = NO_KEYPOINTS
_COCO2014_NAME = re.compile(r"COCO_[A-Za-z0-9]+_0*(\d+)\.jpg")
