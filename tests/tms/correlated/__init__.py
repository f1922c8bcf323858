"""Checks for chapter 1, section 3 (correlated and anticorrelated features), with their catalogues of mistakes.

The three generators are random, so every check tests a distribution: which features are present together (exactly:
a correlated pair is never half present, an anticorrelated pair never fully present), how often (Chernoff bounds),
magnitudes (mean, variance and Kolmogorov–Smirnov distance to U[0, 1]) and independence across the batch, pairs,
features and instances. Each test runs at level FALSE_FAILURE_RATE / (number of tests), so a correct implementation
fails a check with probability below one in a million, however it is written. When a test fails, the verdict works
out which known mistake explains the data, and names it.

One module per exercise (`correlated_pairs`, `anticorrelated`, `uncorrelated`), each with its verdict, its
catalogue of mistakes and its alternatives; `shared` holds the probe and the tests they share.
"""

from tests.tms.correlated.anticorrelated import (
    ANTICORRELATED_MISTAKES,
    anti_pair_then_coin,
    anti_with_arena_stack,
    anti_with_multinomial,
    verdict_generate_anticorrelated_features,
)
from tests.tms.correlated.correlated_pairs import (
    CORRELATED_MISTAKES,
    corr_with_loop_over_pairs,
    corr_with_repeat_interleave,
    verdict_generate_correlated_features,
)
from tests.tms.correlated.shared import (
    ANTICORRELATED_ROWS,
    CORRELATED_ROWS,
    N_PAIRS,
    N_PAIRS_SMALL,
    N_UNCORRELATED,
    N_UNCORRELATED_SMALL,
    UNCORRELATED_ROWS,
    exercise,
)
from tests.tms.correlated.uncorrelated import (
    UNCORRELATED_MISTAKES,
    unc_bernoulli,
    unc_magnitudes_first_float64,
    unc_one_uniform,
    verdict_generate_uncorrelated_features,
)

__all__ = ["ANTICORRELATED_ROWS", "CORRELATED_ROWS", "EXERCISES", "UNCORRELATED_ROWS"]

EXERCISES = [
    exercise(
        "generate_correlated_features",
        verdict=verdict_generate_correlated_features,
        rows=CORRELATED_ROWS,
        n_big=N_PAIRS,
        n_small=N_PAIRS_SMALL,
        mistakes=CORRELATED_MISTAKES,
        alternatives=[corr_with_repeat_interleave, corr_with_loop_over_pairs],
    ),
    exercise(
        "generate_anticorrelated_features",
        verdict=verdict_generate_anticorrelated_features,
        rows=ANTICORRELATED_ROWS,
        n_big=N_PAIRS,
        n_small=N_PAIRS_SMALL,
        mistakes=ANTICORRELATED_MISTAKES,
        alternatives=[anti_with_arena_stack, anti_pair_then_coin, anti_with_multinomial],
    ),
    exercise(
        "generate_uncorrelated_features",
        verdict=verdict_generate_uncorrelated_features,
        rows=UNCORRELATED_ROWS,
        n_big=N_UNCORRELATED,
        n_small=N_UNCORRELATED_SMALL,
        mistakes=UNCORRELATED_MISTAKES,
        alternatives=[unc_bernoulli, unc_one_uniform, unc_magnitudes_first_float64],
    ),
]
