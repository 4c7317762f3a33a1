"""Progress for long commands, and log lines that never land glued onto a progress bar.

On a terminal: a tqdm bar on stderr, and log lines written above it (`LineHandler`). When
stderr is a file or a pipe (CI, nohup, a cluster's job log) a redrawn bar would be one endless
line of carriage returns with the next message glued to its end; there a plain line is logged
every `LINE_EVERY` seconds and at the end instead. Off under ``--quiet``.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

log = logging.getLogger("llava_pose")

LINE_EVERY = 30.0  # seconds between progress lines when stderr is not a terminal


def _terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def progress_bar(total: int, desc: str | None, unit: str = "it") -> Any:
    """A tqdm bar on a terminal, progress lines elsewhere; None when there is nothing to show
    or the user asked for quiet."""
    if desc is None or total == 0 or not log.isEnabledFor(logging.INFO):
        return None
    if not _terminal():
        return LineProgress(total, desc, unit)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=True)


class LineProgress:
    """The part of tqdm's interface the commands use, as whole log lines."""

    def __init__(self, total: int, desc: str, unit: str) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.n = 0
        self.postfix = ""
        self.started = self.said = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.said >= LINE_EVERY:
            self._say()

    def set_postfix(self, refresh: bool = True, **values: object) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfix = text

    def close(self) -> None:
        if self.total:
            self._say()
            self.total = 0  # closed: say it once

    def _say(self) -> None:
        self.said = time.monotonic()
        extra = f", {self.postfix}" if self.postfix else ""
        log.info(
            "%s: %d/%d %s%s (%.0fs)",
            self.desc,
            self.n,
            self.total,
            self.unit,
            extra,
            self.said - self.started,
        )


def _open_bars() -> list[Any]:
    tqdm_module = sys.modules.get("tqdm.std")
    return list(getattr(getattr(tqdm_module, "tqdm", None), "_instances", ()) or ())


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes each record on a line of its own: above any open bar (tqdm.write), else to
    stderr as looked up now (so a replaced stderr, as in tests, is honoured)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            if _open_bars():
                from tqdm.auto import tqdm

                tqdm.write(message, file=sys.stderr)
            else:
                sys.stderr.write(message + "\n")
                sys.stderr.flush()
        except Exception:
            self.handleError(record)


def end_progress_line() -> None:
    """Close any bar left open, so what is printed next starts on a line of its own."""
    for bar in _open_bars():
        bar.close()
