"""User-facing errors. The CLI prints any `LlavaPoseError` as one line and exits with its code.

Messages name the file and the field and, where there is one, the fix. They never carry
secrets: `redact` scrubs known API keys from any text that leaves the process.
"""

from __future__ import annotations

import base64
import errno
import functools
import os
import re
import urllib.parse
from pathlib import Path

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_BUDGET = 3
# --batch without --wait: requests were submitted or are still running; rerun to collect
# (sysexits' EX_TEMPFAIL: "try again later").
EXIT_PENDING = 75
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


class OutputError(LlavaPoseError):
    """An output cannot be written where it was asked for: a read-only mount, a full disk,
    no permission. Not a bug: one line naming the path."""

    def __init__(self, path: str | Path, error: OSError) -> None:
        super().__init__(f"{path}: {os_error_problem(error)}")
        self.path = str(path)


class CacheError(InputError):
    """The cache file cannot be read or written as a llava-pose cache."""


# What the machine, not the code, gets wrong: the path, the mount, the disk.
_ENVIRONMENT_ERRNOS = {
    errno.EROFS,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EFBIG,
    errno.EACCES,
    errno.EPERM,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.ENAMETOOLONG,
    errno.ELOOP,
    errno.EMFILE,
}
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def os_error_problem(e: OSError) -> str:
    """What went wrong, with the fix where there is one. Pure."""
    what = e.strerror or type(e).__name__
    if e.errno in _FULL:
        return (
            f"cannot write ({what}): free some space and rerun; finished calls are in the "
            "cache, so nothing paid for is asked again"
        )
    if e.errno == errno.EROFS:
        return f"cannot write ({what}): choose an output on a writable disk"
    return f"cannot write ({what})" if e.errno in (errno.EACCES, errno.EPERM) else what


def environment_error(e: OSError) -> str | None:
    """One line for an `OSError` the environment caused (a read-only mount, a full disk, a
    missing permission, a file where a folder belongs), or None for what is a bug."""
    if e.errno not in _ENVIRONMENT_ERRNOS:
        return None
    path = e.filename if e.filename is not None else None
    return f"{path}: {os_error_problem(e)}" if path else os_error_problem(e)


class BudgetExceeded(LlavaPoseError):
    """The next request would pass --max-cost."""

    exit_code = EXIT_BUDGET


_SECRET_ENV = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AZURE_OPENAI_API_KEY", "LLAVA_POSE_API_KEY")
_extra_secrets: set[str] = set()
# Secrets shorter than this are matched only whole; longer ones also by any fragment of this
# many characters (a server that quotes "sk-proj-abcd...wxyz" leaks part of the key).
_MIN_SECRET = 6
_FRAGMENT = 8
# A key-like token: what a fragment found inside it is widened to, so "sk-SECRETLEAKT...3456"
# goes as a whole and not as "***...3456".
_TOKEN = re.compile(r"[^\s\"'`<>()\[\]{},;]+")


def register_secret(value: str | None) -> None:
    """Remember a secret (a key read from --api-key-env, a password in --base-url) so that
    `redact` scrubs it too."""
    if value and len(value) >= _MIN_SECRET:
        _extra_secrets.add(value)


def _secrets() -> set[str]:
    found = {os.environ.get(name, "") for name in _SECRET_ENV} | _extra_secrets
    return {s for s in found if len(s) >= _MIN_SECRET}


def forget_secrets() -> None:
    """Drop the secrets registered by a command (the CLI calls it when the command ends), so
    a long-lived process does not keep scrubbing one command's key from the next one's text."""
    _extra_secrets.clear()


@functools.lru_cache(maxsize=64)
def _fragments(secret: str) -> tuple[str, ...]:
    """The key's fragments worth matching: a low-variety run such as ``00000000`` also occurs
    in innocent text (COCO's zero-padded file names), so only fragments of 4+ distinct
    characters count."""
    n = min(_FRAGMENT, len(secret))
    parts = (secret[i : i + n] for i in range(len(secret) - n + 1))
    return tuple(dict.fromkeys(p for p in parts if len(set(p)) >= min(4, len(set(secret)))))


def redact(text: str) -> str:
    """Replace every known secret in `text`, whole or in part, with ``***``.

    A fragment of 8 or more characters of a key marks the whole token around it as secret.
    Cheap when nothing matches (a substring test per fragment), since every reply passes here.
    """
    for secret in _secrets():
        if secret in text:
            text = text.replace(secret, "***")
        fragments = [f for f in _fragments(secret) if f in text]
        if not fragments:
            continue
        spans = []
        for fragment in fragments:
            start = text.find(fragment)
            while start != -1:
                spans.append((start, start + len(fragment)))
                start = text.find(fragment, start + 1)
        text = _mask(text, spans)
    return text


def _mask(text: str, spans: list[tuple[int, int]]) -> str:
    """Widen each span to its surrounding token and replace the tokens by ``***``."""
    tokens = []
    for start, end in spans:
        m = next((t for t in _TOKEN.finditer(text, max(0, start - 200)) if t.end() >= end), None)
        tokens.append((m.start(), m.end()) if m and m.start() <= start else (start, end))
    out, last = [], 0
    for start, end in sorted(set(tokens)):
        if start < last:
            start = last
        if start >= end:
            continue
        out.append(text[last:start] + "***")
        last = end
    out.append(text[last:])
    return "".join(out)


def register_userinfo(url: str | None) -> bool:
    """Register every form in which a URL's ``user:password`` can come back: the password as
    written, percent-decoded and percent-encoded, and the ``base64(user:password)`` of the
    HTTP Basic header the SDK's HTTP client makes of it (a server that echoes its headers
    would otherwise hand back a string that decodes to the password). Whether the URL has
    any."""
    if not url:
        return False
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return False
    user, password = parts.username or "", parts.password or ""
    plain_user, plain = urllib.parse.unquote(user), urllib.parse.unquote(password)
    for form in {password, plain, urllib.parse.quote(plain, safe="")}:
        register_secret(form)
    for u, p in {(plain_user, plain), (user, password)}:
        if p:
            register_secret(base64.b64encode(f"{u}:{p}".encode()).decode())
    return True


def display_url(url: str | None) -> str | None:
    """A URL fit to print: a password in it (``http://user:pass@host``) becomes ``***``."""
    if not url:
        return url
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    register_secret(urllib.parse.unquote(parts.password))
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
