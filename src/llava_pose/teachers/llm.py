"""An LLM as the teacher: a backend of `llava_pose.llm` behind the shared runner.

The prompts themselves are built by `llava_pose.prompts` (the requests every teacher takes);
this wrapper only gives a backend the teacher interface of `llava_pose.teachers`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from ..llm.base import Backend
from ..llm.pricing import Price, PriceTable
from ..llm.runner import ModelOptions, Runner


class LLMTeacher:
    """A language model that reads the prompts: calls are cached, priced and rate-limited."""

    reads_prompt = True

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @property
    def spec(self) -> str:
        return self.backend.spec

    @property
    def model(self) -> str:
        return self.backend.model

    @property
    def free(self) -> bool:
        return self.backend.free

    def describe(self) -> str:
        return self.backend.describe()

    def price(self, prices: PriceTable) -> Price | None:
        return prices.for_backend(self.backend)

    def warm(self) -> None:
        self.backend.warm()

    @contextlib.contextmanager
    def open(
        self,
        cfg: ModelOptions,
        default_cache: str | Path,
        progress: str,
        prices: PriceTable | None = None,
    ) -> Iterator[Runner]:
        with cfg.open_runner(self.backend, default_cache, progress, prices) as runner:
            yield runner
