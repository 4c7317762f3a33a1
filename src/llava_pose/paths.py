"""Containment of paths that come from data.

An image path inside a COCO annotation file, a contexts JSONL, a LLaVA record or a benchmark's
questions file is relative to a root the user declared (``--coco``, ``--image-root``, the
manifest's root). Such a path must stay inside that root: no absolute path, no ``..`` that
climbs out, no NUL byte. Otherwise a crafted annotation file could make ``bench answer`` read
``/home/you/.ssh/id_rsa`` and send it, base64, to a paid API.

The check is lexical on purpose: a symlink the user placed inside the root (an image folder
linked to another disk is common) is the user's choice and keeps working. Only paths a user
types on the command line (``chat --image``) are taken as given and never pass through here.
"""

from __future__ import annotations

import ntpath
import posixpath
from pathlib import Path

from .errors import InputError


def escape_problem(rel: str) -> str | None:
    """Why `rel` may not be joined to a data root, or None when it stays inside. Pure."""
    if not isinstance(rel, str) or not rel:
        return "empty path"
    if "\0" in rel:
        return "path contains a NUL byte"
    if posixpath.isabs(rel) or ntpath.isabs(rel) or ntpath.splitdrive(rel)[0]:
        return f"absolute path {rel!r} (must be relative to the data root)"
    depth = 0
    for part in rel.replace("\\", "/").split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return f"path {rel!r} climbs out of the data root with '..'"
        elif part not in ("", "."):
            depth += 1
    return None


def inside(root: str | Path, rel: str, *, source: str | Path, field: str) -> Path:
    """``root / rel`` when `rel` stays inside `root`; else an `InputError` naming the data file
    (`source`), the record and the field (`field`, e.g. ``"images[3].file_name"``)."""
    problem = escape_problem(rel)
    if problem is not None:
        raise InputError(source, f"{problem}; refusing to read outside {root}", field=field)
    return Path(root) / rel


def fold(rel: str) -> str:
    """`rel` folded lexically: ``/`` separators, no ``.``, no inner ``..``. Pure; for a path
    that `escape_problem` accepts.

    Why: the OS resolves ``link/..`` through the link, so ``val2017/../x`` with ``val2017``
    linked to another disk would read beside that disk's folder although it looks inside the
    root. Opening the folded form never hands the OS a ``..``.
    """
    parts: list[str] = []
    for part in rel.replace("\\", "/").split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/".join(parts)


def path_problem(rel: str) -> str | None:
    """`escape_problem`, and a path that folds to nothing (``.``, ``a/..``) names no file. Pure."""
    problem = escape_problem(rel)
    if problem is None and not fold(rel):
        return f"path {rel!r} names the data root itself, not a file"
    return problem


def join_inside(root: str | Path, rel: str, *, source: str | Path, field: str) -> Path:
    """The file to open for `rel` under `root`: checked like `inside` (same error), then
    folded (see `fold`), so a symlink inside the root cannot be climbed back out of."""
    problem = path_problem(rel)
    if problem is not None:
        raise InputError(source, f"{problem}; refusing to read outside {root}", field=field)
    return Path(root) / fold(rel)
