"""`llava-pose train` (placeholder until the stage lands)."""

from __future__ import annotations

from typing import Any


def register(subparsers: Any) -> None:
    """Add the `train` command."""
