"""What a run of calls produces, the same for the online and the batch runner: each request's
`Result`, the run's `RunStats`, and `scrub`, which every completion passes before it is kept.
Both runners import these from here (they used to from each other)."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from ..errors import redact
from ..records import Completion
from .pricing import Price


class Result(msgspec.Struct, frozen=True):
    """The outcome of one request: a completion, or a failure with its reason."""

    request_id: str
    completion: Completion | None = None
    error: str | None = None
    kind: str = "ok"  # ok | failed | budget | cancelled

    @property
    def ok(self) -> bool:
        return self.completion is not None


@dataclass
class RunStats:
    requests: int = 0
    cached: int = 0
    called: int = 0
    failed: int = 0
    skipped_budget: int = 0
    retries: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0  # of input_tokens: read from the provider's prompt cache
    cache_write_tokens: int = 0  # of input_tokens: written to it
    cache_saving: float = 0.0  # USD the prompt cache saved this run (writes count against)
    cost: float = 0.0  # paid in this run
    cached_cost: float = 0.0  # paid in earlier runs, served from the cache now
    unpriced: bool = False
    elapsed: float = 0.0
    timeouts: int = 0
    failures_by_reason: dict[str, int] = field(default_factory=dict)
    # Why the run stopped launching calls (the budget, an unknowable cost); None if it did not.
    stop_reason: str | None = None

    def add_call(self, completion: Completion, price: Price | None) -> float:
        """Count a call this run paid for; its cost (its cached prompt tokens at their
        rates)."""
        self.called += 1
        self.input_tokens += completion.input_tokens
        self.output_tokens += completion.output_tokens
        self.cache_read_tokens += completion.cache_read_tokens
        self.cache_write_tokens += completion.cache_write_tokens
        if price is None:
            self.unpriced = True
            return 0.0
        cost = price.of(completion)
        self.cost += cost
        self.cache_saving += price.cache_saving(completion)
        return cost

    def as_dict(self) -> dict[str, object]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def scrub(completion: Completion) -> Completion:
    """The completion with any secret the server echoed back replaced, before it is kept."""
    text, model = redact(completion.text), redact(completion.model)
    if text == completion.text and model == completion.model:
        return completion
    return msgspec.structs.replace(completion, text=text, model=model)
