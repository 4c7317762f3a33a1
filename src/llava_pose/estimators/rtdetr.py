"""RT-DETR (transformers' `RTDetrForObjectDetection`, Apache-2.0): the person boxes a top-down
pose model needs, and the other objects of the image for the context, in one pass per batch.

The `vitpose` backend always uses it; `mediapipe` uses it with ``--person-detector``, where its
own single-person detector would miss the people of a crowd. Loaded by hub id or local folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError
from . import FoundObject, PixelBox


def load_pretrained(loader: Any, source: str, flag: str, **kwargs: Any) -> Any:
    """`loader.from_pretrained(source)`, a failure said in one line that names the flag; no
    "Loading weights" bar (the command's own progress is the images)."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return loader.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(
            f"{flag}: cannot load {source!r} ({first}); give a hub id (with network access or "
            "the model in the Hugging Face cache) or a local folder saved by save_pretrained"
        ) from None
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def torch_device(device: str) -> Any:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: torch sees no CUDA device here; use --device cpu")
    return torch.device(device)


def revision(model: Any) -> str:
    """``@<commit>`` of a hub checkpoint, when transformers recorded it; '' for a folder."""
    commit = getattr(model.config, "_commit_hash", None)
    return f"@{commit[:12]}" if commit else ""


class PersonDetector:
    """Boxes of people (with scores) and of other objects, per image, in pixels."""

    def __init__(self, source: str, device: str, min_score: float, flag: str) -> None:
        from transformers import AutoImageProcessor, RTDetrForObjectDetection

        self.device = torch_device(device)
        self.processor = load_pretrained(AutoImageProcessor, source, flag)
        self.model = load_pretrained(RTDetrForObjectDetection, source, flag).to(self.device)
        self.model.eval()
        self.min_score = min_score
        labels = {int(k): str(v) for k, v in self.model.config.id2label.items()}
        people = [k for k, v in labels.items() if v.lower() == "person"]
        if not people:
            raise ConfigError(f"{flag}: {source!r} has no 'person' label (its id2label)")
        self.person = people[0]
        self.labels = labels
        self.name = f"rtdetr:{source}{revision(self.model)}"

    def detect(
        self, images: Sequence[Any]
    ) -> list[tuple[list[tuple[PixelBox, float]], list[FoundObject]]]:
        """(persons as (box, score), other objects) per image, highest score first."""
        import torch

        if not images:
            return []
        inputs = self.processor(images=list(images), return_tensors="pt").to(self.device)
        with torch.inference_mode():
            outputs = self.model(**inputs)
        sizes = [(int(im.shape[0]), int(im.shape[1])) for im in images]
        results = self.processor.post_process_object_detection(
            outputs, threshold=self.min_score, target_sizes=sizes
        )
        out = []
        for result in results:
            persons: list[tuple[PixelBox, float]] = []
            objects: list[FoundObject] = []
            order = torch.argsort(result["scores"], descending=True).tolist()
            for i in order:
                box = tuple(float(v) for v in result["boxes"][i].tolist())
                score = float(result["scores"][i])
                label = int(result["labels"][i])
                if label == self.person:
                    persons.append((box, score))  # type: ignore[arg-type]
                else:
                    name = self.labels.get(label, str(label))
                    objects.append(FoundObject(name, box, score))  # type: ignore[arg-type]
            out.append((persons, objects))
        return out
