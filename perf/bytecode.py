"""Byte-compile the installed llava_pose before a timed start, as `pip install` does.

A start timed on a development checkout with PYTHONDONTWRITEBYTECODE set (as CI images often
have it) would otherwise measure Python compiling our sources on every run (~0.15 s of a
2 s start), which no installed copy pays."""

from __future__ import annotations

import compileall
from pathlib import Path

import llava_pose


def compile_package() -> None:
    compileall.compile_dir(str(Path(llava_pose.__file__).parent), quiet=1)
