"""The shared language-model layer: teacher, benchmark answerer and judge all go through it.

A model is named by a spec, ``provider:model``::

    openai:gpt-4o                       OpenAI, Azure's v1 endpoint, or any OpenAI-compatible
                                        server (vLLM, Ollama, llama.cpp) via --base-url
    anthropic:claude-sonnet-4-20250514  Anthropic's messages API
    hf:PATH_OR_HUB_ID                   a local transformers vision-language model (bench answer)

Backends are registered by import path so that heavy ones load only when used. The spec
``rules`` names the built-in offline teacher: it is no language model (`llava_pose.teachers`
builds it), but it parses and has a role here, so that every role error lists it.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError
from .base import Backend

BACKENDS: dict[str, str] = {
    "openai": "llava_pose.llm.openai_api:OpenAIBackend",
    "anthropic": "llava_pose.llm.anthropic_api:AnthropicBackend",
    "hf": "llava_pose.llm.hf:HFBackend",
}

# Specs that are a whole name, with no model: the offline teacher (llava_pose.teachers.rules).
NOT_MODELS = frozenset({"rules"})

# What each provider is meant to do. The offline teacher writes data, not answers or reviews;
# an hf: model is a local vision-language model that answers benchmark questions (as a teacher
# or judge, serve an LLM behind an OpenAI-compatible server and use openai:MODEL --base-url).
ROLES: dict[str, frozenset[str]] = {
    "openai": frozenset({"teacher", "answerer", "judge"}),
    "anthropic": frozenset({"teacher", "answerer", "judge"}),
    "rules": frozenset({"teacher"}),
    "hf": frozenset({"answerer"}),
}

# Options every model-calling command passes; a backend that has no use for them ignores them.
# Any other option the backend does not take is an error, not silently dropped.
COMMON_OPTIONS = frozenset({"timeout", "key_env"})


def register_backend(
    provider: str, import_path: str, roles: frozenset[str] = ROLES["openai"]
) -> None:
    """Make `provider:model` specs resolve to the class at `module:Class`."""
    BACKENDS[provider] = import_path
    ROLES[provider] = roles


def parse_spec(spec: str) -> tuple[str, str]:
    """Split ``provider:model``; a bare provider (``rules``) has an empty model."""
    provider, _, model = spec.partition(":")
    provider = provider.strip().lower()
    if provider not in BACKENDS and provider not in NOT_MODELS:
        known = ", ".join(p if p in NOT_MODELS else f"{p}:MODEL" for p in ROLES)
        raise ConfigError(f"unknown model spec {spec!r}: expected one of {known}")
    if provider not in NOT_MODELS and not model:
        raise ConfigError(f"model spec {spec!r} names no model: write {provider}:MODEL")
    return provider, model


def check_role(spec: str, role: str, flag: str) -> tuple[str, str]:
    """`parse_spec`, and refuse a provider not meant for `role` (teacher, answerer, judge)."""
    provider, model = parse_spec(spec)
    if role not in ROLES.get(provider, frozenset()):
        can = [
            p if p in NOT_MODELS else f"{p}:MODEL" for p, roles in ROLES.items() if role in roles
        ]
        hint = (
            "; for a local model, serve it with an OpenAI-compatible server (vLLM, llama.cpp) "
            "and use openai:MODEL --base-url URL"
            if provider == "hf"
            else ""
        )
        raise ConfigError(f"{flag} {spec}: not usable as the {role}: use {', '.join(can)}{hint}")
    return provider, model


def check_options(
    provider: str, accepted: Sequence[str], options: dict[str, Any]
) -> dict[str, Any]:
    """The options given (not None); one `provider` does not take is an error naming it."""
    given = {k: v for k, v in options.items() if v is not None}
    for name in given:
        if name not in accepted and name not in COMMON_OPTIONS:
            raise ConfigError(
                f"--{name.replace('_', '-')}: {provider}: models do not take it "
                f"(they take: {', '.join(accepted) or 'no options'})"
            )
    return given


def make_backend(
    spec: str, role: str, flag: str, *, dry_run: bool = False, **options: Any
) -> Backend:
    """Instantiate the backend for `spec` in `role` (`flag` names the option in errors).

    Options left at None are not passed; one the backend does not take is an error. A
    `dry_run` backend is never called, so it needs no API key."""
    provider, model = check_role(spec, role, flag)
    if provider in NOT_MODELS:
        raise ConfigError(f"{flag} {spec}: not a language model (llava_pose.teachers builds it)")
    if provider == "hf":
        from ..extras import require_train

        require_train(f"{flag} {spec}")
    module_name, _, class_name = BACKENDS[provider].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    accepted: tuple[str, ...] = getattr(cls, "options", ())
    given = check_options(provider, accepted, options)
    if dry_run and "need_key" in accepted:
        given["need_key"] = False
    return cls(model, **{k: v for k, v in given.items() if k in accepted})
