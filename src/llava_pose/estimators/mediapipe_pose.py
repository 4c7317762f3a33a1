"""MediaPipe BlazePose (``mediapipe==0.10.14``, Apache-2.0): real weights with no download.

The wheel carries BlazePose's two models, ``pose_detection.tflite`` (a person detector) and
``pose_landmark_full.tflite`` (33 landmarks per person crop). MediaPipe's Tasks
``PoseLandmarker`` runs them as a pair and, unlike the legacy ``solutions.pose``, takes
``num_poses``: its detector proposes several people and the landmark model runs once per
proposal. The Tasks API wants a ``.task`` bundle with normalisation metadata, which the wheel's
bare models lack; `_bundle` writes that metadata (BlazePose's documented input ranges: [-1, 1]
for the detector, [0, 1] for the landmarks) with MediaPipe's own metadata writer and zips the
two, in memory, once per process.

Several people: the default detector is BlazePose's own, up to ``--max-people``; it was made
for one or a few people near the camera and misses small figures in a crowd (see the README's
measured recall). ``--person-detector ID`` (an RT-DETR hub id or folder, needs the [pose]
extra's torch and transformers) finds the people instead, and the landmark model runs on each
box (padded by a quarter on each side), which also brings RT-DETR's object boxes.

The 33 landmarks map onto COCO's 17 (`COCO_FROM_BLAZEPOSE`); a keypoint's score is its
landmark's ``visibility``. The person's score is RT-DETR's with ``--person-detector``; the
Tasks API keeps BlazePose's detection score to itself, so there it is the mean of the 17
keypoint scores, and the `Estimate` names the detector either way.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import sys
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from . import Detections, Estimator, FoundPerson, PixelBox, Settings, Spec

# COCO keypoint k is BlazePose landmark COCO_FROM_BLAZEPOSE[k] (nose, eyes, ears, shoulders,
# elbows, wrists, hips, knees, ankles; BlazePose's inner/outer eye points, mouth, hands and
# feet have no COCO counterpart).
COCO_FROM_BLAZEPOSE = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
CROP_PAD = 0.25  # of the box's size on each side: BlazePose wants the whole body with margin
_MODELS = {  # bundle name -> (file in the wheel, input mean, input std)
    "pose_detector.tflite": ("pose_detection/pose_detection.tflite", 127.5, 127.5),
    "pose_landmarks_detector.tflite": ("pose_landmark/pose_landmark_full.tflite", 0.0, 255.0),
}


def _import() -> Any:
    os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ INFO lines, before import
    try:
        import mediapipe
    except ImportError as e:
        raise ConfigError(
            f'--pose mediapipe: needs mediapipe==0.10.14 ({e}); pip install -e ".[mediapipe]"'
        ) from None
    return mediapipe


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """MediaPipe's C++ side writes INFO and WARNING lines (the XNNPACK delegate, EGL, feedback
    tensors) straight to file descriptor 2 while it sets up: kept out of the command's output.
    Python warnings are muted too; exceptions still surface once the descriptor is back."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@functools.cache
def _bundle() -> tuple[bytes, str]:
    """The PoseLandmarker bundle made from the wheel's two models, and a digest of them."""
    mp = _import()
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer, writer_utils

    modules = Path(mp.__file__).parent / "modules"
    digest = hashlib.sha256()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # protobuf's deprecation notes from the writer
        for name, (rel, mean, std) in _MODELS.items():
            model = (modules / rel).read_bytes()
            digest.update(model)
            writer = metadata_writer.MetadataWriter.create(bytearray(model))
            writer.add_general_info(name.removesuffix(".tflite"))
            writer.add_image_input(norm_mean=[mean], norm_std=[std])
            for _ in writer_utils.get_output_tensor_types(bytearray(model)):
                writer.add_feature_output()
            z.writestr(name, bytes(writer.populate()[0]))
    return out.getvalue(), digest.hexdigest()[:12]


class MediaPipe(Estimator):
    def __init__(self, spec: Spec, settings: Settings) -> None:
        super().__init__(spec, settings)
        if settings.device != "cpu":
            raise ConfigError("--device: the mediapipe backend runs on the CPU here (--device cpu)")
        if settings.model not in (None, spec.model):
            raise ConfigError(
                f"--pose-model: the mediapipe backend runs the {spec.model} model its wheel "
                f"carries; got {settings.model!r}"
            )
        mp = _import()
        from mediapipe.tasks import python as tasks
        from mediapipe.tasks.python import vision

        bundle, digest = _bundle()
        self.boxes: Any = None
        if settings.detector not in (None, spec.detector):
            from .rtdetr import PersonDetector

            self.boxes = PersonDetector(
                settings.detector or "", "cpu", self.min_score, "--person-detector"
            )
        options = vision.PoseLandmarkerOptions(
            base_options=tasks.BaseOptions(model_asset_buffer=bundle),
            running_mode=vision.RunningMode.IMAGE,
            num_poses=1 if self.boxes is not None else settings.max_people,
            min_pose_detection_confidence=self.min_score,
            min_pose_presence_confidence=self.min_score,
        )
        with _quiet():
            self.landmarker = vision.PoseLandmarker.create_from_options(options)
            self.landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=_blank()))
        self.mp = mp
        self.model = f"mediapipe:{spec.model} sha256:{digest}"
        self.detector = self.boxes.name if self.boxes is not None else f"mediapipe:{spec.detector}"
        self.version = f"mediapipe {mp.__version__}"

    def _landmarks(self, image: Any) -> list[Any]:
        import numpy as np

        frame = self.mp.Image(
            image_format=self.mp.ImageFormat.SRGB, data=np.ascontiguousarray(image)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # protobuf's deprecation note, once per call site
            return list(self.landmarker.detect(frame).pose_landmarks)

    def _person(
        self,
        landmarks: Any,
        x0: float,
        y0: float,
        w: int,
        h: int,
        found: tuple[PixelBox, float] | None,
    ) -> FoundPerson:
        points = tuple(
            (x0 + landmarks[i].x * w, y0 + landmarks[i].y * h, float(landmarks[i].visibility))
            for i in COCO_FROM_BLAZEPOSE
        )
        if found is not None:
            box, score = found
        else:
            xs = [x0 + p.x * w for p in landmarks]
            ys = [y0 + p.y * h for p in landmarks]
            box = (min(xs), min(ys), max(xs), max(ys))
            score = sum(s for _, _, s in points) / len(points)
        return FoundPerson(box, score, points)

    def estimate(self, images: Sequence[Any]) -> list[Detections]:
        if self.boxes is None:
            out = []
            for image in images:
                h, w = image.shape[:2]
                people = [self._person(lm, 0, 0, w, h, None) for lm in self._landmarks(image)]
                out.append(Detections(tuple(people)))
            return out
        out = []
        for image, (persons, objects) in zip(images, self.boxes.detect(images), strict=True):
            found = []
            for box, score in persons[: self.settings.max_people]:
                x0, y0, crop = _crop(image, box)
                landmarks = self._landmarks(crop)
                if landmarks:
                    ch, cw = crop.shape[:2]
                    found.append(self._person(landmarks[0], x0, y0, cw, ch, (box, score)))
            out.append(Detections(tuple(found), tuple(objects)))
        return out


def _blank() -> Any:
    """A small black frame: the first call, made while MediaPipe's set-up lines are muted."""
    import numpy as np

    return np.zeros((64, 64, 3), np.uint8)


def _crop(image: Any, box: PixelBox) -> tuple[int, int, Any]:
    """The region of `box` padded by `CROP_PAD` on each side, clipped to the image."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    px, py = (x2 - x1) * CROP_PAD, (y2 - y1) * CROP_PAD
    left, top = max(0, int(x1 - px)), max(0, int(y1 - py))
    right, bottom = min(w, int(x2 + px) + 1), min(h, int(y2 + py) + 1)
    return left, top, image[top:bottom, left:right]
