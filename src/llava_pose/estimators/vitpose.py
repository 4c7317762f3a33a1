"""ViTPose through transformers (`VitPoseForPoseEstimation`, Apache-2.0), top-down on the people
RT-DETR finds: the pair of transformers' own ViTPose example. Both load by hub id or local
folder (``--pose-model``, ``--person-detector``); a batch of images goes through the detector in
one pass and all of its people through the pose model in one more. A ViTPose++ checkpoint
(several experts) is asked for COCO's head (``dataset_index`` 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

from . import Detections, Estimator, FoundPerson, Settings, Spec
from .rtdetr import PersonDetector, load_pretrained, revision, torch_device


class VitPose(Estimator):
    def __init__(self, spec: Spec, settings: Settings) -> None:
        super().__init__(spec, settings)
        try:
            import torch  # noqa: F401
            from transformers import AutoImageProcessor, VitPoseForPoseEstimation
        except ImportError as e:
            raise_missing(e)
        self.device = torch_device(settings.device)
        source = settings.model or spec.model
        self.boxes = PersonDetector(
            settings.detector or spec.detector, settings.device, self.min_score, "--person-detector"
        )
        self.processor = load_pretrained(AutoImageProcessor, source, "--pose-model")
        self.pose = load_pretrained(VitPoseForPoseEstimation, source, "--pose-model")
        self.pose.to(self.device).eval()
        experts = getattr(self.pose.config.backbone_config, "num_experts", 1)
        self.experts = int(experts or 1) > 1
        import transformers

        self.model = f"vitpose:{source}{revision(self.pose)}"
        self.detector = self.boxes.name
        self.version = f"transformers {transformers.__version__}"

    def estimate(self, images: Sequence[Any]) -> list[Detections]:
        import torch

        found = self.boxes.detect(images)
        people = [persons[: self.settings.max_people] for persons, _ in found]
        busy = [i for i, p in enumerate(people) if p]
        keypoints: dict[int, list[Any]] = {}
        if busy:
            boxes = [[_xywh(box) for box, _ in people[i]] for i in busy]
            inputs = self.processor([images[i] for i in busy], boxes=boxes, return_tensors="pt")
            pixels = inputs["pixel_values"].to(self.device)
            extra = {}
            if self.experts:
                extra["dataset_index"] = torch.zeros(
                    len(pixels), dtype=torch.long, device=self.device
                )
            with torch.inference_mode():
                outputs = self.pose(pixel_values=pixels, **extra)
            results = self.processor.post_process_pose_estimation(outputs, boxes=boxes)
            keypoints = dict(zip(busy, results, strict=True))
        out = []
        for i, (_, objects) in enumerate(found):
            mine = []
            for (box, score), pose in zip(people[i], keypoints.get(i, []), strict=True):
                points = tuple(
                    (float(x), float(y), float(s))
                    for (x, y), s in zip(
                        pose["keypoints"].tolist(), pose["scores"].tolist(), strict=True
                    )
                )
                mine.append(FoundPerson(box, score, points))
            out.append(Detections(tuple(mine), tuple(objects)))
        return out


def _xywh(box: tuple[float, float, float, float]) -> list[float]:
    """COCO's box format, which ViTPose's processor takes."""
    x1, y1, x2, y2 = box
    return [x1, y1, x2 - x1, y2 - y1]


def raise_missing(e: ImportError) -> NoReturn:
    from ..errors import ConfigError

    raise ConfigError(
        f"--pose vitpose: needs torch and transformers ({e}); pip install torch==2.13.0 "
        '(or your CUDA build) and then pip install -e ".[pose]"'
    ) from None
