"""Judge replies -> score pairs, and the arithmetic of the report. Pure functions, no I/O.

`parse_scores` accepts what real judges write on their first line, not only LLaVA's ``8 7``:
markdown (``**8 7**``), commas (``8, 7``), half points (``8.5 7``), a tuple (``(8, 7)``),
``8/10 7/10``, ``Assistant 1: 8  Assistant 2: 7`` (on one line or two), a heading line
before the scores. Anything else is *unparseable* and says why: it is re-asked, and in the
end recorded as a failure; it never becomes LLaVA's ``[-1, -1]`` in an average.

Statistics are written out here (no scipy): Pearson, Spearman (Pearson of average ranks) and
Kendall's tau-b (ties corrected). They return None where the value is undefined (fewer than
two points, or no variance), which the report prints as "n/a".
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

MIN_SCORE = 0.0  # the prompt asks for 1-10; a 0 is still a score, not garbage
MAX_SCORE = 10.0

_MARKDOWN = re.compile(r"[*_`#>|]")
_NUMBER = r"-?\d+(?:\.\d+)?"
# "-1" stays negative (out of range); in "8-7" the dash separates.
_NUM = re.compile(r"(?<![\w.])" + _NUMBER)
_OUT_OF_TEN = re.compile(r"\s*(?:/|out\s+of)\s*10(?:\.0+)?\b", re.IGNORECASE)
_LABEL = re.compile(r"\b(?:assistant|answer|response)\s*#?\s*([12])\b", re.IGNORECASE)
_LABELLED = {
    k: re.compile(
        rf"\b(?:assistant|answer|response)\s*#?\s*{k}\b[^\d\n]{{0,40}}?({_NUMBER})"
        rf"(?:\s*(?:/|out\s+of)\s*10)?",
        re.IGNORECASE,
    )
    for k in ("1", "2")
}
# How many non-empty lines may come before the score line ("Scores:", "## Evaluation").
_HEAD_LINES = 3


@dataclass(frozen=True)
class ParsedScores:
    """Two scores in the order the assistants were shown, or why there are none."""

    first: float | None = None
    second: float | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def _numbers(line: str) -> list[float]:
    line = _OUT_OF_TEN.sub(" ", line)
    line = _LABEL.sub(" ", line)
    return [float(m) for m in _NUM.findall(line)]


def _in_range(*values: float) -> bool:
    return all(MIN_SCORE <= v <= MAX_SCORE for v in values)


def parse_scores(text: str) -> ParsedScores:
    """The two scores of a review (see the module docstring for the accepted shapes)."""
    clean = _MARKDOWN.sub("", text.replace("\r\n", "\n"))
    lines = [line.strip() for line in clean.split("\n") if line.strip()]
    if not lines:
        return ParsedScores(problem="empty review")
    # 1. LLaVA's protocol: the first line (after at most a short heading) holds two numbers.
    for line in lines[:_HEAD_LINES]:
        numbers = _numbers(line)
        if not numbers:
            continue  # a heading such as "Scores:" or "Evaluation"
        if len(numbers) == 2 and _in_range(*numbers):
            return ParsedScores(numbers[0], numbers[1])
        break  # the first line with numbers is the score line; it is not two scores
    # 2. Labelled scores anywhere: "Assistant 1: 8" ... "Assistant 2: 7".
    found = {k: pattern.search(clean) for k, pattern in _LABELLED.items()}
    if found["1"] and found["2"]:
        a, b = float(found["1"].group(1)), float(found["2"].group(1))
        if _in_range(a, b):
            return ParsedScores(a, b)
        return ParsedScores(problem=f"scores out of range 0-10: {a:g} {b:g}")
    first = next((line for line in lines[:_HEAD_LINES] if _NUM.search(line)), lines[0])
    return ParsedScores(problem=f"no two scores on the first line: {first[:80]!r}")


# -- aggregation ------------------------------------------------------------------------------


# The mean of the middle two for an even count; StatisticsError (a ValueError) on nothing.
median = statistics.median


def mean(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("mean of nothing")
    return sum(values) / len(values)


@dataclass(frozen=True)
class Relative:
    """One row cell of the paper's tables, as LLaVA's summarize_gpt_review.py computes it."""

    relative: float  # mean(model) / mean(reference) * 100, one decimal
    reference_x10: float  # mean(reference) * 10, one decimal
    model_x10: float  # mean(model) * 10, one decimal
    n: int


def relative_score(pairs: Sequence[tuple[float, float]]) -> Relative | None:
    """Ratio of means of (reference, model) score pairs; None without pairs or a zero mean.

    Means are rounded to 3 decimals before the ratio, exactly as LLaVA's script does, so a
    review file gives the same numbers with either tool."""
    if not pairs:
        return None
    ref = round(mean([p[0] for p in pairs]), 3)
    model = round(mean([p[1] for p in pairs]), 3)
    if ref == 0:
        return None
    return Relative(
        relative=round(model / ref * 100, 1),
        reference_x10=round(ref * 10, 1),
        model_x10=round(model * 10, 1),
        n=len(pairs),
    )


# -- agreement --------------------------------------------------------------------------------


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    if len(x) != len(y):
        raise ValueError("pearson: sequences of different lengths")
    n = len(x)
    if n < 2:
        return None
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties given the average of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        rank = (i + j) / 2 + 1
        for k in range(i, j + 1):
            out[order[k]] = rank
        i = j + 1
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    if len(x) != len(y):
        raise ValueError("spearman: sequences of different lengths")
    return pearson(ranks(x), ranks(y))


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b: (concordant - discordant) / sqrt((n0 - ties_x)(n0 - ties_y))."""
    if len(x) != len(y):
        raise ValueError("kendall_tau: sequences of different lengths")
    concordant = discordant = ties_x = ties_y = 0
    n = len(x)
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                ties_x += 1
                ties_y += 1
            elif dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    n0 = n * (n - 1) // 2
    denominator = math.sqrt((n0 - ties_x) * (n0 - ties_y))
    if denominator == 0:
        return None
    return (concordant - discordant) / denominator
