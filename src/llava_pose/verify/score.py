"""Counting verdicts, and scoring the checker against hand labels (tests and
perf/verify_precision.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from .check import Claim
from .text import KINDS, VERDICTS


def summarize(claims: Iterable[Claim]) -> dict[str, Any]:
    """Counts of claims by verdict and by kind and verdict (zeros included, stable keys)."""
    by_verdict: Counter[str] = Counter()
    by_kind: dict[str, Counter[str]] = {k: Counter() for k in KINDS}
    for c in claims:
        by_verdict[c.verdict] += 1
        by_kind[c.kind][c.verdict] += 1
    total = sum(by_verdict.values())
    return {
        "claims": total,
        **{v: by_verdict[v] for v in VERDICTS},
        "contradicted_share": round(by_verdict["contradicted"] / total, 4) if total else 0.0,
        "by_kind": {k: {v: by_kind[k][v] for v in VERDICTS} for k in KINDS},
    }


def align(
    expected: Sequence[tuple[str, str]], claims: Sequence[Claim]
) -> list[tuple[str | None, str | None]]:
    """(labelled verdict, checker verdict) pairs: each labelled (kind, verdict) takes the next
    found claim of that kind; a claim nobody labelled pairs with None, and so does a label the
    checker did not find."""
    used: set[int] = set()
    pairs: list[tuple[str | None, str | None]] = []
    for kind, verdict in expected:
        k = next((i for i, c in enumerate(claims) if i not in used and c.kind == kind), None)
        if k is None:
            pairs.append((verdict, None))
        else:
            used.add(k)
            pairs.append((verdict, claims[k].verdict))
    pairs += [(None, c.verdict) for i, c in enumerate(claims) if i not in used]
    return pairs


def precision_recall(pairs: Iterable[tuple[str | None, str | None]]) -> dict[str, dict[str, Any]]:
    """Per verdict: how many the checker said, how many of those the label agrees with
    (precision), and how many labelled ones it said (recall). A claim the checker found but
    nobody labelled counts against precision; a label it missed counts against recall."""
    pairs = list(pairs)
    out: dict[str, dict[str, Any]] = {}
    for v in VERDICTS:
        said = sum(1 for _, g in pairs if g == v)
        labelled = sum(1 for e, _ in pairs if e == v)
        right = sum(1 for e, g in pairs if e == g == v)
        out[v] = {
            "said": said,
            "labelled": labelled,
            "correct": right,
            "precision": round(right / said, 3) if said else None,
            "recall": round(right / labelled, 3) if labelled else None,
        }
    return out
