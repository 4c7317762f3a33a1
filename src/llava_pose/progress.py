"""Progress bars for long commands: tqdm on stderr, off under ``--quiet``."""

from __future__ import annotations

import logging
from typing import Any


def progress_bar(total: int, desc: str | None, unit: str = "it") -> Any:
    """A tqdm bar, or None when there is nothing to show or the user asked for quiet."""
    if desc is None or total == 0 or not logging.getLogger("llava_pose").isEnabledFor(logging.INFO):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=True)
