"""Processors that work without torchvision.

Qwen2/2.5/3-VL, SmolVLM, LLaVA-OneVision and InternVL processors hold a video processor, and
transformers builds every video processor on torchvision: without it, neither
``AutoProcessor.from_pretrained`` nor the processor's own constructor works (the constructor
type-checks the video processor against a class that does not exist then), although images
need nothing of it. `image_only(cls)` is the same processor class with the video processor left
out of its parts (`get_attributes`), so it loads, saves and processes images and text as the
original does; asking it for a video fails. Its saved files keep the original class name, and
its `save_pretrained` writes back the video processor's config the checkpoint came with, so a
machine that has torchvision loads the saved folder with plain ``AutoProcessor``.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path
from typing import Any

VIDEO_CONFIG = "video_preprocessor_config.json"


def has_torchvision() -> bool:
    return importlib.util.find_spec("torchvision") is not None


@functools.cache
def image_only(cls: type) -> type:
    """`cls` (a ProcessorMixin subclass) without its video processor part."""
    parts = [a for a in cls.get_attributes() if "video" not in a]

    def save_pretrained(self: Any, save_directory: Any, *args: Any, **kwargs: Any) -> Any:
        out = cls.save_pretrained(self, save_directory, *args, **kwargs)
        if self.video_config:
            Path(save_directory, VIDEO_CONFIG).write_text(
                json.dumps(self.video_config, indent=2) + "\n", "utf-8"
            )
        return out

    return type(
        cls.__name__,  # saved as processor_class: the folder stays a plain checkpoint
        (cls,),
        {
            "get_attributes": classmethod(lambda _: list(parts)),
            "save_pretrained": save_pretrained,
            "__module__": cls.__module__,
            "__doc__": f"{cls.__name__} without its video processor (no torchvision here).",
            "video_config": None,  # the checkpoint's video processor config, written back by save
        },
    )


def own_chat_template(processor: Any) -> str | None:
    """The processor's own chat template (a checkpoint may save several: its "default"), or
    None."""
    own = getattr(processor, "chat_template", None)
    if isinstance(own, dict):
        own = own.get("default")
    return str(own) if own else None


def needs_image_only(cls: type) -> bool:
    """Whether `cls` cannot be built here as it is."""
    return not has_torchvision() and any("video" in a for a in cls.get_attributes())


def processor_class(name: str) -> type | None:
    """The processor class a checkpoint folder or hub id names (processor_config.json,
    preprocessor_config.json or tokenizer_config.json), or None."""
    import transformers
    from transformers.utils import cached_file

    for file in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        try:
            path = cached_file(name, file, _raise_exceptions_for_missing_entries=False)
        except OSError:
            path = None
        if not path:
            continue
        class_name = json.loads(Path(path).read_text("utf-8")).get("processor_class")
        if class_name and hasattr(transformers, class_name):
            return getattr(transformers, class_name)
    return None


def load(name: str) -> Any:
    """AutoProcessor, or the image-only processor where torchvision is missing and the
    checkpoint's processor holds a video processor."""
    from transformers import AutoProcessor
    from transformers.utils import cached_file

    cls = processor_class(name) if not has_torchvision() else None
    if cls is None or not needs_image_only(cls):
        return AutoProcessor.from_pretrained(name)
    processor = image_only(cls).from_pretrained(name)
    try:
        video = cached_file(name, VIDEO_CONFIG, _raise_exceptions_for_missing_entries=False)
    except OSError:
        video = None
    if video:
        processor.video_config = json.loads(Path(video).read_text("utf-8"))
    return processor
