"""Atomic writes and JSON/JSONL helpers.

Every output file is written to a temporary sibling and renamed into place, so a crash or a
bad input never leaves a half-written file that looks complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

import msgspec

from .errors import InputError, OutputError, environment_error

T = TypeVar("T")

_encoder = msgspec.json.Encoder()
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temp file next to `path`; rename it over `path` only if the block succeeds.

    A write the machine refuses (a read-only mount, a full disk) is an `OutputError` naming
    `path`, and nothing is left behind."""
    with _staged(path, mode) as (f, tmp):
        yield f
    _replace(tmp, Path(path))


@contextlib.contextmanager
def _staged(path: str | Path, mode: str) -> Iterator[tuple[IO[Any], str]]:
    """A temp file next to `path`, written by the block, flushed and synced; removed when the
    block fails (the caller renames it into place when it succeeds)."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f, tmp
            f.flush()
            os.fsync(f.fileno())
    except BaseException as e:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(e, OSError) and environment_error(e) is not None:
            raise OutputError(path, e) from None
        raise


def _replace(tmp: str, path: Path) -> None:
    try:
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OutputError(path, e) from None


class FileSet:
    """Output files that change as one: a rerun that fails half-way never leaves new files
    beside old ones under a marker that says the set is complete.

    Each file is written to a temporary sibling first (a full disk fails there, with the old
    set untouched). `commit` then replaces the marker (``stats.json``, ``manifest.json``) with
    `pending`, which says the set is being written, renames every file into place, and writes
    the real marker last. A reader therefore sees the old set, the new set, or a marker saying
    the set is incomplete: never a mix that claims to be whole."""

    def __init__(self, folder: str | Path, marker: str, pending: Any) -> None:
        self.folder = Path(folder)
        self.marker = marker
        self.pending = pending
        self._staged: dict[str, str] = {}
        self._removed: list[str] = []
        self.sha256: dict[str, str] = {}  # of each file as written: what a manifest records

    def _stage(self, name: str, data: Iterable[bytes]) -> None:
        digest = hashlib.sha256()
        with _staged(self.folder / name, "wb") as (f, tmp):
            for chunk in data:
                f.write(chunk)
                digest.update(chunk)
        self.sha256[name] = digest.hexdigest()
        old = self._staged.pop(name, None)
        if old is not None:
            os.unlink(old)
        self._staged[name] = tmp

    def json(self, name: str, obj: Any, indent: int = 2) -> None:
        self._stage(name, [msgspec.json.format(_encoder.encode(obj), indent=indent) + b"\n"])

    def jsonl(self, name: str, rows: Iterable[Any]) -> int:
        rows = list(rows)
        self._stage(name, (_encoder.encode(row) + b"\n" for row in rows))
        return len(rows)

    def remove(self, name: str) -> None:
        """`name` is not part of the new set: a stale one from an earlier run goes."""
        self._removed.append(name)

    def commit(self) -> None:
        if self.marker not in self._staged:
            raise ValueError(f"the set's marker {self.marker} was never written")
        write_json(self.folder / self.marker, self.pending)
        for name in [n for n in self._staged if n != self.marker]:
            _replace(self._staged.pop(name), self.folder / name)
        for name in self._removed:
            with contextlib.suppress(FileNotFoundError):
                (self.folder / name).unlink()
        _replace(self._staged.pop(self.marker), self.folder / self.marker)

    def discard(self) -> None:
        for tmp in self._staged.values():
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self._staged.clear()


@contextlib.contextmanager
def file_set(folder: str | Path, marker: str, pending: Any) -> Iterator[FileSet]:
    """A `FileSet` committed when the block succeeds, discarded when it fails."""
    files = FileSet(folder, marker, pending)
    try:
        yield files
        files.commit()
    finally:
        files.discard()


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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as f:
            f.write(_encoder.encode(row) + b"\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        if environment_error(e) is None:
            raise
        raise OutputError(path, e) from None


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
