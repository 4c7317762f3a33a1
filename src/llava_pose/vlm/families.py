"""The registry of vision-language architectures (package data ``data/vlm/families.yaml``): which
modules are the vision tower, the connector and the language model, which prompt a family is
trained and asked with, and how its tiny preset is made.

The paper's split (tower frozen; connector and language model trained) is stated once here
as data, per family, and every other module asks `Family.part_of`: freezing, the connector's
learning rate, LoRA's targets, the check after setup and the trainable summary.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError

# A parameter's part. "adapter" is a LoRA matrix wherever it sits; "other" is a module the
# family's entry does not name (a registry bug: check_trainable refuses it).
VISION, CONNECTOR, LANGUAGE, ADAPTER, OTHER = "vision", "connector", "language", "adapter", "other"
PRESET = "tiny"  # `--model tiny` is llava's preset; `tiny-<family>` the others'


@dataclass(frozen=True)
class Family:
    """One architecture: its model types, its parts, its prompt and its tiny preset."""

    name: str
    model_types: tuple[str, ...]
    tower: tuple[str, ...]
    connector: tuple[str, ...]
    language: tuple[str, ...]
    template: str | None = None  # package data path of the prompt, {% generation %} marked
    pad_to_square: bool = False
    # connector parameters LoRA leaves as the checkpoint has them (bare parameters, which
    # PEFT's modules_to_save cannot hold); a full fine-tune trains them
    frozen_with_lora: tuple[str, ...] = ()
    tiny: dict[str, Any] = field(default_factory=dict)

    @property
    def preset(self) -> str | None:
        """The `--model` name of the family's tiny preset, if it has one."""
        if not self.tiny:
            return None
        return PRESET if self.name == "llava" else f"{PRESET}-{self.name}"

    def part_of(self, name: str) -> str:
        """Which part a parameter (or module) named `name` belongs to; the longest matching
        module path wins, so a connector inside the tower is the connector."""
        if "lora_" in name:
            return ADAPTER
        dotted = f".{name}."
        best, depth = OTHER, 0
        for part, paths in (
            (VISION, self.tower),
            (CONNECTOR, self.connector),
            (LANGUAGE, self.language),
        ):
            for path in paths:
                if f".{path}." in dotted and len(path) > depth:
                    best, depth = part, len(path)
        return best

    def frozen_under_lora(self, name: str) -> bool:
        """Whether LoRA leaves parameter `name` (a connector's bare parameter) untrained."""
        dotted = f".{name}."
        return any(f".{path}." in dotted for path in self.frozen_with_lora)

    def lora_targets(self, linear_names: list[str]) -> str:
        """PEFT's target_modules: every nn.Linear (given by module name) of the language model,
        none in the tower, the connector or lm_head (LLaVA's find_all_linear_names)."""
        language = [p for p in self.language if p != "lm_head"]
        suffixes = sorted(
            {n.rsplit(".", 1)[-1] for n in linear_names if self.part_of(n) == LANGUAGE}
        )
        suffixes = [s for s in suffixes if s != "lm_head"]
        if not suffixes:
            raise ConfigError(f"LoRA: the {self.name} language model has no linear layers to adapt")
        paths = "|".join(p.replace(".", r"\.") for p in language)
        return rf"(.*\.)?({paths})\..*\.({'|'.join(suffixes)})"

    def prompt_template(self) -> str | None:
        """The family's own prompt (a jinja chat template), when it has one."""
        return read_template(self.template) if self.template else None


def read_template(ref: str) -> str:
    """A chat template by reference: ``trl:NAME`` is TRL's copy of a checkpoint's template
    (trl/chat_templates/NAME.jinja); anything else is a path in the package data."""
    if ref.startswith("trl:"):
        import trl

        path = Path(trl.__file__).parent / "chat_templates" / f"{ref[4:]}.jinja"
        if not path.is_file():
            raise ConfigError(f"chat template {ref}: TRL {trl.__version__} ships no {path.name}")
        return path.read_text("utf-8")
    return resources.files("llava_pose").joinpath("data", *ref.split("/")).read_text("utf-8")


@functools.cache
def families() -> dict[str, Family]:
    """The registry, by family name, in file order."""
    text = resources.files("llava_pose").joinpath("data/vlm/families.yaml").read_text("utf-8")
    out = {}
    for name, entry in yaml.safe_load(text).items():
        out[name] = Family(
            name=name,
            model_types=tuple(entry["model_types"]),
            tower=tuple(entry["tower"]),
            connector=tuple(entry["connector"]),
            language=tuple(entry["language"]),
            template=entry.get("template"),
            pad_to_square=bool(entry.get("pad_to_square", False)),
            frozen_with_lora=tuple(entry.get("frozen_with_lora") or ()),
            tiny=entry.get("tiny") or {},
        )
    return out


def family_of(model_type: str) -> Family | None:
    """The family a config.json `model_type` belongs to, or None."""
    for family in families().values():
        if model_type in family.model_types:
            return family
    return None


def family_for(config: Any, name: str) -> Family:
    """The family of a loaded config; one that is none of ours is a one-line error naming
    the ones there are (`name`: the model as the user gave it)."""
    model_type = str(getattr(config, "model_type", "") or "unknown")
    family = family_of(model_type)
    if family is None:
        known = ", ".join(t for f in families().values() for t in f.model_types)
        raise ConfigError(
            f"{name}: model_type {model_type!r} is not in llava_pose's architecture registry "
            f"(data/vlm/families.yaml knows: {known})"
        )
    return family


def presets() -> dict[str, Family]:
    """`--model` preset name -> family."""
    return {f.preset: f for f in families().values() if f.preset}
