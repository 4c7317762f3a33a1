"""`llava-pose batch {status,cancel}`: see and stop the provider batches a --batch run left open."""

from __future__ import annotations

from typing import Any

STATUS_EXAMPLES = """
  llava-pose batch status --out out/                      # generate, bench build, bench judge
  llava-pose batch status --out answers/gpt-4o.jsonl      # bench answer
  llava-pose batch status --cache out/cache.sqlite --local
"""

CANCEL_EXAMPLES = """
  llava-pose batch cancel --out out/
"""


def _status(config: Any) -> int:
    from ..llm.batch import run_status

    return run_status(config)


def _cancel(config: Any) -> int:
    from ..llm.batch import run_cancel

    return run_cancel(config)


def register(subparsers: Any) -> None:
    """Add `batch` and its two steps."""
    from ..llm.batch import BatchControlConfig
    from . import add_command, add_group

    steps = add_group(
        subparsers,
        "batch",
        help="see or cancel the provider batches of a --batch run (status, cancel)",
        description=(
            "A command run with --batch submits its calls to the provider's batch API and "
            "records every batch in its cache. These steps read that cache: `status` lists "
            "the batches with the provider's live progress, `cancel` stops the open ones. "
            "Rerunning the command itself collects the results."
        ),
    )
    add_command(
        steps,
        "status",
        BatchControlConfig,
        _status,
        help="list the batches of a cache with their live status",
        description=(
            "One line per batch: its provider id, model, requests, state in the cache "
            "(preparing, open, collected), the provider's status and progress."
        ),
        examples=STATUS_EXAMPLES,
    )
    add_command(
        steps,
        "cancel",
        BatchControlConfig,
        _cancel,
        help="cancel the open batches of a cache",
        description=(
            "Ask the provider to cancel every open batch. Requests it already finished stay "
            "paid and are collected by the next run; cancelled ones count as one failed try "
            "and are resubmitted within --batch-retries by that run."
        ),
        examples=CANCEL_EXAMPLES,
    )
