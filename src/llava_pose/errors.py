"""User-facing errors. The CLI prints any `LlavaPoseError` as one line and exits with its code.

Messages name the file and the field and, where there is one, the fix. They never carry
secrets: `redact` scrubs known API keys from any text that leaves the process.
"""

from __future__ import annotations

import os
from pathlib import Path

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_BUDGET = 3
EXIT_INTERRUPTED = 130


class LlavaPoseError(Exception):
    """Base of every error meant for the user, not for a traceback."""

    exit_code = EXIT_BAD_INPUT

    def __str__(self) -> str:
        return redact(super().__str__())


class InputError(LlavaPoseError):
    """Bad input data: a missing file, invalid JSON, a field of the wrong shape."""

    def __init__(self, path: str | Path, problem: str, field: str | None = None) -> None:
        where = f"{path}: {field}" if field else str(path)
        super().__init__(f"{where}: {problem}")
        self.path = str(path)
        self.field = field
        self.problem = problem


class ConfigError(LlavaPoseError):
    """A bad option, config file key or model spec."""


class BackendError(LlavaPoseError):
    """A remote model refused the whole run (bad key, unknown model): no point retrying."""


class BudgetExceeded(LlavaPoseError):
    """The next request would pass --max-cost."""

    exit_code = EXIT_BUDGET


_SECRET_ENV = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AZURE_OPENAI_API_KEY", "LLAVA_POSE_API_KEY")
_extra_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret given on the command line so `redact` scrubs it too."""
    if value and len(value) >= 6:
        _extra_secrets.add(value)


def redact(text: str) -> str:
    """Replace every known API key in `text` with `***`."""
    secrets = {os.environ.get(name, "") for name in _SECRET_ENV} | _extra_secrets
    for secret in secrets:
        if secret and len(secret) >= 6 and secret in text:
            text = text.replace(secret, "***")
    return text
