"""Teachers: what writes the instruction data and the benchmark's reference answers.

Two kinds stand side by side behind one interface (`Teacher`): an LLM (`teachers.llm`: any
backend of `llava_pose.llm` behind the shared runner, reading the prompts) and the built-in
offline teacher (`teachers.rules`: each reply written straight from the image's context, the
task and the seed). Both take the pipeline's requests and give one result per request, so
generate and bench build do not branch on which one runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from ..errors import ConfigError
from ..llm import check_options, check_role, make_backend
from ..llm.pricing import Price, PriceTable
from ..llm.results import Result, RunStats
from ..llm.runner import ModelOptions
from ..records import ChatRequest

__all__ = ["Teacher", "TeacherRun", "make_teacher"]


class TeacherRun(Protocol):
    """What `Teacher.open` gives: the runner's interface."""

    stats: RunStats

    def run(
        self,
        requests: Sequence[ChatRequest],
        on_result: Callable[[ChatRequest, Result], None] | None = None,
    ) -> list[Result]: ...


class Teacher(Protocol):
    """A teacher, as generate and bench build use it."""

    @property
    def spec(self) -> str:
        """Its name in logs, stats.json and manifests (``openai:gpt-4o``, ``rules``)."""
        ...

    @property
    def model(self) -> str:
        """The model name the requests carry ("" for the offline teacher)."""
        ...

    @property
    def free(self) -> bool: ...

    # False for the offline teacher: it writes from the context alone, so prompt options,
    # context windows and prompt-token estimates mean nothing to it, and its text needs no
    # pose check (it is made from the very facts the checker reads).
    reads_prompt: bool

    def describe(self) -> str:
        """One line for the start of a run."""
        ...

    def price(self, prices: PriceTable) -> Price | None: ...

    def warm(self) -> None:
        """Load what its first call waits for (an SDK), while the prompts are rendered."""
        ...

    def open(
        self,
        cfg: ModelOptions,
        default_cache: str | Path,
        progress: str,
        prices: PriceTable | None = None,
    ) -> AbstractContextManager[TeacherRun]:
        """A run of this teacher with `cfg`'s runner options and cache, closed on the way out."""
        ...


# Prompt options and their defaults: with a teacher that reads no prompt, any other value would
# silently do nothing, so it is an error.
_PROMPT_OPTIONS = {"format": "paper", "fewshot": False, "cues": False}


def make_teacher(
    spec: str,
    flag: str = "--teacher",
    *,
    dry_run: bool = False,
    prompt: dict[str, object] | None = None,
    **options: Any,
) -> Teacher:
    """The teacher for `spec`. `prompt` holds the prompt options as given (format, fewshot,
    cues); `options` the backend options, as for `llava_pose.llm.make_backend`."""
    provider, _ = check_role(spec, "teacher", flag)
    if provider == "rules":
        from .rules import RulesTeacher

        check_options(provider, (), options)
        for name, value in (prompt or {}).items():
            if value != _PROMPT_OPTIONS.get(name, value):
                raise ConfigError(
                    f"--{name}: the offline teacher (rules) reads no prompt; "
                    "drop it or use an LLM teacher"
                )
        return RulesTeacher()
    from .llm import LLMTeacher

    return LLMTeacher(make_backend(spec, "teacher", flag, dry_run=dry_run, **options))
