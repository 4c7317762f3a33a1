"""Atomic writes and JSON/JSONL helpers.

Every output file is written to a temporary sibling and renamed into place, so a crash or a
bad input never leaves a half-written file that looks complete.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

import msgspec

from .errors import InputError

T = TypeVar("T")

_encoder = msgspec.json.Encoder()
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temp file next to `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | Path, obj: Any, indent: int = 2) -> None:
    data = msgspec.json.format(_encoder.encode(obj), indent=indent)
    with atomic_open(path, "wb") as f:
        f.write(data + b"\n")


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> int:
    n = 0
    with atomic_open(path, "wb") as f:
        for row in rows:
            f.write(_encoder.encode(row) + b"\n")
            n += 1
    return n


def append_jsonl(path: str | Path, row: Any) -> None:
    """Append one line and flush it to disk: for logs that must survive a crash."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        f.write(_encoder.encode(row) + b"\n")
        f.flush()
        os.fsync(f.fileno())


def read_bytes(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except IsADirectoryError:
        raise InputError(path, "is a directory, expected a file") from None


def read_json(path: str | Path, type: type[T] | Any = Any) -> T:
    """Decode a JSON file into `type`; any error names the file and the field."""
    data = read_bytes(path)
    try:
        return msgspec.json.decode(data, type=type)
    except msgspec.ValidationError as e:
        raise InputError(path, _validation_message(e)) from None
    except msgspec.DecodeError as e:
        raise InputError(path, f"invalid JSON ({e})") from None


def read_jsonl(path: str | Path, type: type[T] | Any = Any) -> list[T]:
    """Decode a JSONL file, one `type` per non-empty line; errors name the line."""
    decoder = msgspec.json.Decoder(type)
    rows: list[T] = []
    for lineno, line in enumerate(read_bytes(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(decoder.decode(line))
        except msgspec.ValidationError as e:
            raise InputError(path, _validation_message(e), field=f"line {lineno}") from None
        except msgspec.DecodeError as e:
            raise InputError(path, f"invalid JSON ({e})", field=f"line {lineno}") from None
    return rows


def _validation_message(e: msgspec.ValidationError) -> str:
    # msgspec says e.g. "Expected `int`, got `str` - at `$.images[3].id`": keep it, it names the field.
    return str(e).replace(" - at `$", " at `")
