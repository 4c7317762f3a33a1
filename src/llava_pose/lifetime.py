"""What a command leaves for the process's exit to drop.

Freeing train2017's millions of objects (contexts, requests, results) one by one takes ~2 s
that nobody waits for on purpose. Under the console script (`cli.entry`), which ends the
process without tearing down the heap, a command hands them here instead; called in-process
(tests, notebooks) nothing is held.
"""

from __future__ import annotations

# A list only under `cli.entry`; None otherwise, so nothing is held.
KEEP: list[object] | None = None


def keep_until_exit(*objects: object) -> None:
    """Leave `objects` alive until the process ends (only under the console script)."""
    if KEEP is not None:
        KEEP.extend(objects)
