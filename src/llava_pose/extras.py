"""Optional extras, checked before any work: a command that needs torch says so in one line."""

from __future__ import annotations

import importlib.util

from .errors import ConfigError

# What `pip install -e ".[train]"` brings; fine-tuning, chat, export and hf: models need it.
TRAIN_MODULES = ("torch", "transformers", "accelerate", "peft", "safetensors")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require_train(what: str, *more: str) -> None:
    """Stop before any work when the [train] extra is missing, naming the install command;
    `more`: modules of the extra that only this command needs (training: trl)."""
    missing = [m for m in (*TRAIN_MODULES, *more) if not _installed(m)]
    if missing:
        raise ConfigError(
            f"{what} needs the [train] extra ({', '.join(missing)} not installed): "
            'pip install -e ".[train]" (install the torch build for your machine first, '
            "see the README)"
        )
