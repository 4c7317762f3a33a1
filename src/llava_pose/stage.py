"""The skeleton every model-calling command shares (generate, bench build, answer, judge):

    backend -> estimate (or dry run) -> runner, online or batch -> validate / re-ask
            -> stats -> exit code

A command builds its requests and writes its outputs; the steps between are here, once.
Online and batch are two ways of executing the same requests (`ModelOptions.open_runner`
picks one). `Stage.ask` runs items to their end: a `settle` hook looks at each result and
returns the items to ask again (an unusable reply re-asked with a new seed, an image replaced),
so the re-ask loop is written once for every stage. With ``--batch`` and no ``--wait``,
results still running come back `pending`: the stage counts them, and the command exits
`EXIT_PENDING` after saying how to collect them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from . import __version__
from .errors import EXIT_BUDGET, EXIT_OK, EXIT_PENDING, EXIT_SOME_FAILED, ConfigError
from .llm.batch import BATCH_PROVIDERS
from .llm.pricing import Estimate, Price, PriceTable, estimate
from .llm.results import Result, RunStats
from .llm.runner import ModelOptions
from .llm.usage import request_image_tokens
from .records import ChatRequest

log = logging.getLogger("llava_pose")

T = TypeVar("T")


def _log_lines(lines: list[str]) -> None:
    log.info("estimate before the run:")
    for line in lines:
        log.info("  %s", line)


class Caller(Protocol):
    """What executes requests: the online `Runner`, the `BatchRunner`, the offline teacher."""

    stats: RunStats

    def run(
        self,
        requests: Sequence[ChatRequest],
        on_result: Callable[[ChatRequest, Result], None] | None = None,
    ) -> list[Result]: ...


def make_stage(
    command: str, caller: Any, prices: PriceTable, cfg: ModelOptions, cache: str | Path
) -> Stage:
    """The stage of `command` calling `caller` (a Backend, or a Teacher that wraps one) with
    `cfg`'s options; `cache` is the command's default cache file (--cache overrides it)."""
    backend = getattr(caller, "backend", caller)
    provider = getattr(backend, "provider", "")
    if cfg.batch and provider not in BATCH_PROVIDERS:
        raise ConfigError(
            f"--batch: {caller.spec} has no batch API (OpenAI and Anthropic models have)"
            if provider
            else "--batch: the offline teacher (rules) calls no API; drop it"
        )
    price = prices.for_backend(backend) if hasattr(backend, "free") else None
    return Stage(
        command,
        model=getattr(caller, "model", ""),
        provider=provider,
        price=price,
        discount=prices.batch_discount(provider) if provider in BATCH_PROVIDERS else 1.0,
        batch=cfg.batch,
        cache=Path(cfg.cache or cache),
    )


@dataclass
class Stage:
    """One run of a model-calling command. `command` names it in logs (``bench judge``);
    `model` and `price` are the called model's (price None: unknown); `discount` is its
    provider's batch factor (1.0: no batch API); `cache` is the SQLite file its calls go to."""

    command: str
    model: str
    price: Price | None
    provider: str = ""
    discount: float = 1.0
    batch: bool = False
    cache: Path | None = None
    runner: Caller | None = None
    waiting: int = 0  # results still running in a batch
    asked: list[int] = field(default_factory=list)  # requests per round of `ask`

    # -- before the run ---------------------------------------------------------------------

    def estimate(
        self,
        requests: Sequence[ChatRequest],
        expected: Callable[[ChatRequest], int],
        adjust: Callable[[Estimate], Estimate] | None = None,
        chars: Sequence[int] | None = None,
    ) -> list[str]:
        """The estimate's lines: online and batch cost side by side where both exist. `chars`:
        the requests' `prompt_chars`, when the command has them already."""
        model = self.model or "gpt-4o"
        provider = self.provider or "openai"
        images = sum(request_image_tokens(r, provider, model) for r in requests if r.images)
        est = estimate(
            requests, model, self.price, expected, chars=chars, provider=provider,
            image_tokens=images,
        )  # fmt: skip
        if adjust is not None:
            est = adjust(est)
        lines = est.lines()
        if est.cost_expected is not None and est.cost_max is not None and self.discount < 1:
            d = self.discount
            mode = "this run (--batch)" if self.batch else "with --batch"
            lines.append(
                f"cost {mode}: ~${est.cost_expected * d:,.2f} expected, at most "
                f"${est.cost_max * d:,.2f} ({d:.0%} of online: the provider's batch API)"
            )
            lines += [f"{line} (with --batch)" for line in est.cache_lines(d) if "saved" in line]
        return lines

    def dry_run(
        self,
        requests: Sequence[ChatRequest],
        expected: Callable[[ChatRequest], int],
        adjust: Callable[[Estimate], Estimate] | None = None,
        chars: Sequence[int] | None = None,
    ) -> int:
        """Print the estimate, once, on stdout: it is the output of a dry run."""
        print("\n".join(self.estimate(requests, expected, adjust, chars)))
        return EXIT_OK

    def log_estimate(
        self,
        requests: Sequence[ChatRequest],
        expected: Callable[[ChatRequest], int],
        adjust: Callable[[Estimate], Estimate] | None = None,
        chars: Sequence[int] | None = None,
    ) -> None:
        """Log the estimate before the run (--max-cost is held by the runner's reservations,
        not by the estimate: it is said, not enforced)."""
        _log_lines(self.estimate(requests, expected, adjust, chars))

    # -- the run ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def open(self, runner: AbstractContextManager[Caller]) -> Iterator[Stage]:
        with runner as r:
            self.runner = r
            yield self

    def ask(
        self,
        items: Iterable[T],
        request: Callable[[T], ChatRequest],
        settle: Callable[[T, ChatRequest, Result], Iterable[T]] | None = None,
        on_result: Callable[[ChatRequest, Result], None] | None = None,
    ) -> list[tuple[T, ChatRequest, Result]]:
        """Run every item's request; `settle` (the validate hook) returns the items to ask
        again, which run in the next round, until none is left. Results still running in a
        batch are left out and counted in `waiting`. Returns (item, request, result) for every
        finished result, in the order they were asked."""
        assert self.runner is not None, "Stage.ask outside Stage.open"
        done: list[tuple[T, ChatRequest, Result]] = []
        pending = list(items)
        while pending:
            requests = [request(item) for item in pending]
            self.asked.append(len(requests))
            results = self.runner.run(requests, on_result)
            again: list[T] = []
            for item, req, result in zip(pending, requests, results, strict=True):
                if result.kind == "pending":
                    self.waiting += 1
                    continue
                done.append((item, req, result))
                if settle is not None:
                    again += settle(item, req, result)
            if again:
                log.info(
                    "%d repl%s unusable: asking again",
                    len(again),
                    "y" if len(again) == 1 else "ies",
                )
            pending = again
        return done

    # -- after the run ----------------------------------------------------------------------

    @property
    def stats(self) -> RunStats:
        assert self.runner is not None
        return self.runner.stats

    def run_stats(self) -> dict[str, Any]:
        """The calls' numbers, the same block in every command's stats file."""
        s = self.stats
        out: dict[str, Any] = {
            "llava_pose_version": __version__,
            "mode": "batch" if self.batch else "online",
            "requests": {
                "total": s.requests,
                "cached": s.cached,
                "called": s.called,
                "failed": s.failed,
                "skipped_budget": s.skipped_budget,
                "retries": s.retries,
                "waiting_in_batches": self.waiting,
            },
            "tokens": {
                "input": s.input_tokens,
                "output": s.output_tokens,
                # of input: read from and written to the provider's prompt cache
                "cache_read": s.cache_read_tokens,
                "cache_write": s.cache_write_tokens,
            },
            "cost_usd": {
                "this_run": round(s.cost, 4),
                "from_cache": round(s.cached_cost, 4),
                "saved_by_prompt_cache": round(s.cache_saving, 4),
                "priced": not s.unpriced,
            },
        }
        return out

    def pending_note(self) -> str:
        """What to say when batches still run: how many, and how to see or collect them."""
        submitted = getattr(self.runner, "submitted", 0)
        batches = getattr(self.runner, "batches_submitted", 0)
        open_ = getattr(self.runner, "waiting_batches", 0)
        where = f"--cache {self.cache}" if self.cache else ""
        head = (
            f"submitted {submitted} requests in {batches} batches"
            if submitted
            else f"{self.waiting} requests are still running in {open_} batches"
        )
        return (
            f"{head}; rerun the same command to collect (or add --wait). "
            f"See them with: llava-pose batch status {where}".rstrip()
        )

    def exit_code(self, failed: int = 0, failed_note: str = "") -> int:
        """Budget first (the user must raise it), then batches still running (rerun), then
        failures (`failed` outputs missing; `failed_note` says where they are listed)."""
        s = self.stats
        if s.skipped_budget:
            log.warning(
                "%s. %d requests not sent: rerun with a higher --max-cost to continue "
                "(finished calls come from the cache).",
                s.stop_reason,
                s.skipped_budget,
            )
            return EXIT_BUDGET
        if self.waiting:
            log.warning("%s", self.pending_note())
            return EXIT_PENDING
        if failed:
            log.warning("%s", failed_note)
            return EXIT_SOME_FAILED
        return EXIT_OK
