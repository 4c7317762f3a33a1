"""Pose estimators: images in, people with COCO's 17 keypoints and their scores out.

One small interface, as the LLM layer has one: an `Estimator` takes a batch of RGB images
(numpy, H x W x 3) and returns what it found in each (`Detections`: persons with a box, a score
and 17 keypoints in pixels with a score each; objects where its detector names them). Backends
are registry entries in package data (``data/pose/estimators.yaml``: class, default model and
detector, thresholds, licence), imported only when chosen; `register_estimator` adds one.

`to_person` and `to_object` turn a detection into the records every other stage reads
(normalised, clamped, rounded as `coco` writes them; the score thresholds give COCO's v, and
the person keeps its `records.Estimate`). Pure functions.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from ..errors import ConfigError
from ..records import NUM_KEYPOINTS, UNLABELLED, Box, Estimate, Obj, Person

# (x, y, score) in pixels of the image, one per COCO keypoint
PixelPoint = tuple[float, float, float]
PixelBox = tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels


@dataclass(frozen=True)
class FoundPerson:
    box: PixelBox
    score: float
    keypoints: tuple[PixelPoint, ...]


@dataclass(frozen=True)
class FoundObject:
    category: str
    box: PixelBox
    score: float


@dataclass(frozen=True)
class Detections:
    """What a backend found in one image."""

    persons: tuple[FoundPerson, ...] = ()
    objects: tuple[FoundObject, ...] = ()


@dataclass(frozen=True)
class Spec:
    """One registry entry (``data/pose/estimators.yaml``)."""

    name: str
    cls: str  # module:Class
    summary: str
    model: str
    detector: str
    thresholds: tuple[float, float]
    min_score: float
    licence: str
    needs: str


@dataclass(frozen=True)
class Settings:
    """What the user chose (None: the registry's default)."""

    model: str | None = None
    detector: str | None = None
    device: str = "cpu"
    min_score: float | None = None
    thresholds: tuple[float, float] | None = None
    max_people: int = 20


class Estimator:
    """A pose backend. A subclass loads its models in `__init__` (hub id or folder), sets
    `model`, `detector` and `version` (what each person's `Estimate` records), and
    implements `estimate`."""

    model: str = ""
    detector: str = ""
    version: str = ""

    def __init__(self, spec: Spec, settings: Settings) -> None:
        self.spec = spec
        self.settings = settings
        self.min_score = spec.min_score if settings.min_score is None else settings.min_score
        self.thresholds = settings.thresholds or spec.thresholds

    @property
    def name(self) -> str:
        return self.spec.name

    def estimate(self, images: Sequence[Any]) -> list[Detections]:
        """One `Detections` per image of the batch, in order."""
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.model} on {self.detector} ({self.version})"

    def provenance(self, score: float, keypoint_scores: Sequence[float]) -> Estimate:
        return Estimate(
            model=self.model,
            detector=self.detector,
            version=self.version,
            score=_score(score),
            keypoint_scores=tuple(_score(s) for s in keypoint_scores),
            thresholds=self.thresholds,
        )


def _score(value: float) -> float:
    """A model's score as a context keeps it: in [0, 1] (a heatmap peak can pass either end),
    3 decimals."""
    return round(min(max(float(value), 0.0), 1.0), 3)


_EXTRA: dict[str, Spec] = {}


@functools.cache
def _registry() -> dict[str, Spec]:
    text = resources.files("llava_pose").joinpath("data/pose/estimators.yaml").read_text("utf-8")
    out = {}
    for name, entry in yaml.safe_load(text).items():
        entry = dict(entry)
        out[name] = Spec(
            name=name,
            cls=entry.pop("class"),
            thresholds=(float(entry["thresholds"][0]), float(entry["thresholds"][1])),
            **{k: v for k, v in entry.items() if k != "thresholds"},
        )
    return out


def registry() -> dict[str, Spec]:
    """Every backend by name: the package's, then those registered at run time."""
    return {**_registry(), **_EXTRA}


def register_estimator(spec: Spec) -> None:
    """Add a backend (e.g. rtmlib's ONNX models: a class whose `estimate` returns
    `Detections`); its name then works wherever ``--pose`` does."""
    _EXTRA[spec.name] = spec


def make_estimator(name: str, settings: Settings) -> Estimator:
    """The backend `name`, loaded; an unknown name or a missing library is one line."""
    specs = registry()
    spec = specs.get(name)
    if spec is None:
        raise ConfigError(f"--pose: unknown backend {name!r}: choose one of {', '.join(specs)}")
    if settings.device not in ("cpu", "cuda"):
        raise ConfigError(f"--device: choose cpu or cuda, got {settings.device!r}")
    low, high = settings.thresholds or spec.thresholds
    if not 0.0 <= low <= high <= 1.0:
        raise ConfigError(
            f"--keypoint-thresholds: expected LABELLED,VISIBLE with 0 <= LABELLED <= VISIBLE "
            f"<= 1, got {low:g},{high:g}"
        )
    module, _, cls = spec.cls.partition(":")
    estimator: Estimator = getattr(importlib.import_module(module), cls)(spec, settings)
    return estimator


# -- pure: detections -> records ------------------------------------------------------------------


def _unit(value: float, size: int) -> float:
    return round(min(max(float(value) / size, 0.0), 1.0), 3)


def to_box(box: PixelBox, width: int, height: int) -> Box:
    """A pixel box as a context's box: normalised, clamped to the image, x1 <= x2."""
    x1, y1, x2, y2 = (
        _unit(box[0], width),
        _unit(box[1], height),
        _unit(box[2], width),
        _unit(box[3], height),
    )
    return (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))


def visibility(score: float, thresholds: tuple[float, float]) -> int:
    """COCO's v for a keypoint score: 2 at or above the visible threshold, 1 at or above the
    labelled one, else 0."""
    return 2 if score >= thresholds[1] else 1 if score >= thresholds[0] else 0


def to_person(found: FoundPerson, width: int, height: int, estimator: Estimator) -> Person:
    """A found person as a context's `Person`: keypoints normalised to [0, 1] (a point
    outside the image is clamped to its edge), v from the scores (v=0 points at (0, 0), as
    COCO writes them), and the `Estimate` that says how it was made."""
    if len(found.keypoints) != NUM_KEYPOINTS:
        raise ValueError(f"expected {NUM_KEYPOINTS} keypoints, got {len(found.keypoints)}")
    points = []
    for x, y, score in found.keypoints:
        v = visibility(_score(score), estimator.thresholds)  # the score as the file keeps it
        points.append((_unit(x, width), _unit(y, height), v) if v else UNLABELLED)
    return Person(
        box=to_box(found.box, width, height),
        keypoints=tuple(points),
        estimate=estimator.provenance(found.score, [s for _, _, s in found.keypoints]),
    )


def to_object(found: FoundObject, width: int, height: int) -> Obj:
    return Obj(category=found.category, box=to_box(found.box, width, height))
