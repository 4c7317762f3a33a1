"""Score parsing, aggregation and statistics against hand-computed values."""

from __future__ import annotations

import math

import pytest

from llava_pose.ehpaub.judge import MODEL_FIRST, REF_FIRST, combine, derive_seed, to_ref_model
from llava_pose.ehpaub.scores import (
    Relative,
    kendall_tau,
    median,
    parse_scores,
    pearson,
    ranks,
    relative_score,
    spearman,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8 7\nAssistant 1 is better.", (8, 7)),  # LLaVA's protocol
        ("8,7", (8, 7)),
        ("8, 7\n", (8, 7)),
        ("**8 7**\n\nExplanation...", (8, 7)),
        ("8.5 7", (8.5, 7)),
        ("(9, 6)", (9, 6)),
        ("8/10 7/10", (8, 7)),
        ("Assistant 1: 8/10, Assistant 2: 7/10", (8, 7)),
        ("Assistant 1: 8\nAssistant 2: 7\n\nAssistant 1 covers the pose.", (8, 7)),
        ("## Evaluation\n**Assistant 1:** 9\n**Assistant 2:** 4\nWhy...", (9, 4)),
        ("Scores:\n9 6\nbecause", (9, 6)),
        ("Assistant 1 receives a score of 8, while Assistant 2 receives 6.", (8, 6)),
        ("10 3", (10, 3)),
        ("  \n7 7", (7, 7)),
        ("Assistant 1 scores 8 out of 10 and Assistant 2 scores 7 out of 10.", (8, 7)),
    ],
)
def test_parse_scores_accepts_what_judges_write(text: str, expected: tuple[float, float]) -> None:
    parsed = parse_scores(text)
    assert parsed.ok, parsed.problem
    assert (parsed.first, parsed.second) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "I cannot evaluate these answers.",
        "8",  # one score
        "8 7 6",  # three numbers on the score line
        "11 3",  # out of range
        "-1 -1",  # LLaVA's error marker is not a score
        "Scores for the 2 assistants:\n8 7",  # the first line with numbers is not two scores
    ],
)
def test_parse_scores_rejects_with_a_reason(text: str) -> None:
    parsed = parse_scores(text)
    assert not parsed.ok and parsed.first is None and parsed.problem


def test_relative_score_is_a_ratio_of_means_as_llava_computes_it() -> None:
    # reference mean 8.0, model mean 20/3 = 6.667 (rounded to 3 decimals first, as LLaVA does)
    pairs = [(8.0, 6.0), (9.0, 7.0), (7.0, 7.0)]
    assert relative_score(pairs) == Relative(relative=83.3, reference_x10=80.0, model_x10=66.7, n=3)
    # not the mean of per-question ratios (which would be 84.3)
    assert round(sum(m / r for r, m in pairs) / 3 * 100, 1) == 84.3
    assert relative_score([]) is None
    assert relative_score([(0.0, 5.0)]) is None  # undefined, not infinite


def test_relative_score_rounds_the_means_like_summarize_gpt_review() -> None:
    # means 54/9 = 6.0 and 53/9 = 5.888...: LLaVA rounds to 5.889 first and prints 98.2, where
    # the unrounded ratio would print 98.1. The same review file must give the same number.
    ref = [10, 8, 1, 4, 5, 2, 5, 9, 10]
    model = [3, 7, 8, 2, 8, 4, 9, 7, 5]
    result = relative_score(list(zip(ref, model, strict=True)))
    assert result == Relative(relative=98.2, reference_x10=60.0, model_x10=58.9, n=9)
    assert round(53 / 54 * 100, 1) == 98.1


def test_median_and_ranks() -> None:
    assert median([3, 1, 2]) == 2
    assert median([4, 1, 3, 2]) == 2.5
    assert ranks([2, 4, 5, 4, 5]) == [1, 2.5, 4.5, 2.5, 4.5]
    with pytest.raises(ValueError):
        median([])


def test_correlations_against_hand_computed_values() -> None:
    x, y = [1, 2, 3, 4, 5], [2, 4, 5, 4, 5]
    # Pearson: sxy = 6, sxx = 10, syy = 6 -> 6 / sqrt(60)
    assert pearson(x, y) == pytest.approx(6 / math.sqrt(60))
    # Spearman: ranks of y are 1, 2.5, 4.5, 2.5, 4.5 -> 7 / sqrt(90)
    assert spearman(x, y) == pytest.approx(7 / math.sqrt(90))
    # Kendall tau-b: 7 concordant, 1 discordant, 2 ties in y -> 6 / sqrt(10 * 8)
    assert kendall_tau(x, y) == pytest.approx(6 / math.sqrt(80))
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0
    assert pearson([1, 2], [5, 5]) is None  # no variance
    assert pearson([1], [2]) is None
    assert kendall_tau([1, 1], [1, 2]) is None


def test_swap_maps_scores_back_and_cancels_position_bias() -> None:
    assert to_ref_model(REF_FIRST, 9, 5) == (9, 5)
    assert to_ref_model(MODEL_FIRST, 6, 8) == (8, 6)
    # a judge that adds 1 to whoever is shown first: ref 8 / model 5 really
    by_order = {
        REF_FIRST: [to_ref_model(REF_FIRST, 9, 5)],
        MODEL_FIRST: [to_ref_model(MODEL_FIRST, 6, 8)],
    }
    assert combine(by_order, (REF_FIRST, MODEL_FIRST)) == [8.5, 5.5]
    # samples: the median per order, then the mean of the orders
    by_order = {REF_FIRST: [(8, 5), (9, 6), (2, 6)], MODEL_FIRST: [(7, 4)]}
    assert combine(by_order, (REF_FIRST, MODEL_FIRST)) == [7.5, 5.0]
    # an order without any score: no score (the bias would not cancel)
    assert combine({REF_FIRST: [(8, 5)]}, (REF_FIRST, MODEL_FIRST)) is None


def test_derived_seeds_are_stable_and_distinct() -> None:
    assert derive_seed(0, 0, 0) == 0 and derive_seed(7, 0, 0) == 7
    seeds = {derive_seed(0, k, a) for k in range(5) for a in range(3)}
    assert len(seeds) == 15
    assert derive_seed(0, 2, 1) == derive_seed(0, 2, 1)
