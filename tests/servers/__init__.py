"""Loopback provider servers: the test double for paid APIs (see README.md here)."""

from .anthropic_server import AnthropicServer
from .core import Fault, LoopbackServer, Recorded, body_digest, canonical, count_tokens
from .openai_server import OpenAIServer

__all__ = [
    "AnthropicServer",
    "Fault",
    "LoopbackServer",
    "OpenAIServer",
    "Recorded",
    "body_digest",
    "canonical",
    "count_tokens",
]
