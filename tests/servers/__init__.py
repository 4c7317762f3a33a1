"""Loopback provider servers: the test double for paid APIs (see README.md here).

The server classes load on first use, so that ``python -m tests.servers.openai_server`` runs
its module once (as ``__main__``), not also as part of this package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .batches import HANG_POINTS, BatchItem, BatchRecord, StoredFile
from .core import Fault, LoopbackServer, Recorded, body_digest, canonical, count_tokens

if TYPE_CHECKING:
    from .anthropic_server import AnthropicServer
    from .openai_server import OpenAIServer

_LAZY = {
    "OpenAIServer": ".openai_server",
    "AnthropicServer": ".anthropic_server",
}

__all__ = [
    "HANG_POINTS",
    "AnthropicServer",
    "BatchItem",
    "BatchRecord",
    "Fault",
    "LoopbackServer",
    "OpenAIServer",
    "Recorded",
    "StoredFile",
    "body_digest",
    "canonical",
    "count_tokens",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
