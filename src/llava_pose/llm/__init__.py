"""The shared language-model layer: teacher, benchmark answerer and judge all go through it.

A model is named by a spec, ``provider:model``::

    openai:gpt-4o                       OpenAI, Azure's v1 endpoint, or any OpenAI-compatible
                                        server (vLLM, Ollama, llama.cpp) via --base-url
    anthropic:claude-sonnet-4-20250514  Anthropic's messages API
    rules                               the built-in offline teacher (no network, no key)
    hf:PATH_OR_HUB_ID                   a local transformers vision-language model (bench answer)

Backends are registered by import path so that heavy ones load only when used.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import ConfigError
from .base import Backend

BACKENDS: dict[str, str] = {
    "openai": "llava_pose.llm.openai_api:OpenAIBackend",
    "anthropic": "llava_pose.llm.anthropic_api:AnthropicBackend",
    "rules": "llava_pose.llm.rules:RulesBackend",
    "hf": "llava_pose.train.infer:HFBackend",
}


def register_backend(provider: str, import_path: str) -> None:
    """Make `provider:model` specs resolve to the class at `module:Class`."""
    BACKENDS[provider] = import_path


def parse_spec(spec: str) -> tuple[str, str]:
    """Split ``provider:model``; a bare provider (``rules``) has an empty model."""
    provider, _, model = spec.partition(":")
    provider = provider.strip().lower()
    if provider not in BACKENDS:
        known = ", ".join(f"{p}:MODEL" if p != "rules" else p for p in BACKENDS)
        raise ConfigError(f"unknown model spec {spec!r}: expected one of {known}")
    if provider not in ("rules",) and not model:
        raise ConfigError(f"model spec {spec!r} names no model: write {provider}:MODEL")
    return provider, model


def make_backend(spec: str, **options: Any) -> Backend:
    """Instantiate the backend for `spec`; options the backend does not take are ignored."""
    provider, model = parse_spec(spec)
    module_name, _, class_name = BACKENDS[provider].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    accepted = getattr(cls, "options", ())
    return cls(model, **{k: v for k, v in options.items() if k in accepted and v is not None})
