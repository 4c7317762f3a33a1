"""LLaVA-1.5's conversation template, Vicuna v1 (package data ``data/train/conv_vicuna_v1.yaml``),
rendered as LLaVA's ``conv_vicuna_v1.get_prompt()``: what the paper trains and asks with."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import yaml

from ..errors import ConfigError

HUMAN, GPT = "human", "gpt"


@dataclass(frozen=True)
class Template:
    """A SeparatorStyle.TWO conversation template (LLaVA's conv_vicuna_v1)."""

    name: str
    system: str
    roles: tuple[str, str]
    sep: str
    sep2: str
    image_token: str = "<image>"

    @classmethod
    @functools.cache
    def load(cls, name: str = "vicuna_v1") -> Template:
        try:
            text = (
                resources.files("llava_pose")
                .joinpath(f"data/train/conv_{name}.yaml")
                .read_text("utf-8")
            )
        except FileNotFoundError:
            raise ConfigError(f"unknown conversation template {name!r}") from None
        data = yaml.safe_load(text)
        return cls(
            name=data["name"],
            system=data["system"],
            roles=(data["roles"][0], data["roles"][1]),
            sep=data["sep"],
            sep2=data["sep2"],
            image_token=data.get("image_token", "<image>"),
        )

    def render(
        self, turns: Sequence[tuple[str, str | None]], system: str | None = None
    ) -> tuple[str, list[tuple[int, int]]]:
        """The prompt text and the character spans the model learns (each answer plus sep2).

        `turns` alternate human/gpt; a final gpt turn of None leaves "ASSISTANT:" open for
        generation, as LLaVA's get_prompt does.
        """
        text = (self.system if system is None else system) + self.sep
        spans: list[tuple[int, int]] = []
        seps = (self.sep, self.sep2)
        for i, (speaker, message) in enumerate(turns):
            role = self.roles[0] if speaker == HUMAN else self.roles[1]
            if message is None:
                text += role + ":"
                continue
            text += role + ": "
            start = len(text)
            text += message + seps[i % 2]
            if speaker == GPT:
                spans.append((start, len(text)))
        return text, spans


def move_image_token_first(value: str, image_token: str = "<image>") -> str:
    """LLaVA's preprocess_multimodal: '<image>' leads its turn, followed by a newline."""
    if image_token not in value:
        return value
    return (image_token + "\n" + value.replace(image_token, "").strip()).strip()
