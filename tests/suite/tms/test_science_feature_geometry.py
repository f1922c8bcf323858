"""Science of chapter 1, section 5, asserted with numbers at exactly the settings the notebook shows.

Target T7: with 200 equally important features in 20 dimensions, dimensions per feature D* = m / ‖W‖_F² is ≈1
when features are dense, falls as they become sparse, and sticks at 1/2 (antipodal pairs) over a range of
sparsities. Capacity (Scherlis et al. 2022) equals dimensionality, sums to at most d_hidden, and goes to the most
important features first.
"""

import pytest
import torch as t

from solutions.tms.feature_geometry import capacity, compute_dimensionality, dimensions_per_feature
from solutions.tms.feature_geometry_experiments import (
    CAPACITY,
    DIMENSIONALITY,
    STICKY_FRACTIONS,
    is_line,
    line_counts,
    order_violations,
    pooled_dimensionalities,
    rank_correlation,
)
from utils.sweeps import SweepResult, train_sweep

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def geometry() -> SweepResult:
    return train_sweep(DIMENSIONALITY)


@pytest.fixture(scope="module")
def allocation() -> SweepResult:
    return train_sweep(CAPACITY)


def describe(result: SweepResult) -> str:
    D_star = dimensions_per_feature(result.W)
    return ", ".join(
        f"1/p={1 / p:.2f}: {d:.3f}" for p, d in zip(result.sweep.feature_probabilities, D_star.tolist(), strict=True)
    )


# ------------------------------------------------------------------------------------------------------ T7


def test_dense_models_use_one_dimension_per_feature(geometry):
    D_star = dimensions_per_feature(geometry.W)[DIMENSIONALITY.setting(1.0)]
    assert 0.95 <= D_star <= 1.05, f"D* at p = 1 is {D_star:.3f}, expected ≈1 ({describe(geometry)})"


def test_dimensions_per_feature_fall_with_sparsity(geometry):
    D_star = dimensions_per_feature(geometry.W)  # settings ordered from dense to sparse
    rises = (D_star[1:] - D_star[:-1]).max()
    assert rises <= 0.02, f"D* should not rise as features get sparser (largest rise {rises:.3f}): {describe(geometry)}"
    assert D_star[-1] < 0.2, f"D* at p = 0.05 is {D_star[-1]:.3f}, expected < 0.2: {describe(geometry)}"


def test_dimensions_per_feature_stick_at_one_half(geometry):
    D_star = dimensions_per_feature(geometry.W)
    at_plateau = D_star[DIMENSIONALITY.setting(20 ** (-8 / 19))]  # p ≈ 0.283, 1/(1 − S) ≈ 3.5
    assert 0.47 <= at_plateau <= 0.53, f"D* at 1/(1−S) ≈ 3.5 is {at_plateau:.3f}: {describe(geometry)}"
    near_half = int(((D_star - 0.5).abs() <= 0.03).sum())
    assert near_half >= 3, f"only {near_half} sparsity levels have D* within 0.03 of 1/2: {describe(geometry)}"


def test_the_plateau_is_made_of_antipodal_pairs(geometry):
    D = compute_dimensionality(geometry.W)[DIMENSIONALITY.setting(20 ** (-8 / 19))]
    at_half = int(((D - 0.5).abs() <= 0.02).sum())
    represented = int((D > 0.1).sum())
    assert at_half >= 36 and at_half == represented, (
        f"at 1/(1−S) ≈ 3.5, {at_half} features have D_i ≈ 1/2 and {represented} have D_i > 0.1; expected ≥ 36 "
        "(≈ 2 per dimension), all of them at 1/2"
    )


def test_pooled_dimensionalities_form_a_line_at_one_half(geometry):
    D = pooled_dimensionalities(geometry.W)
    centre, below, above = line_counts(D, 0.5)
    assert is_line(D, 0.5), f"{centre} features at D_i = 1/2 ± 0.005, flanks {below} and {above}"


@pytest.mark.xfail(
    strict=False,
    reason="seed-dependent at the notebook's CPU budget: lines at 2/5 or 3/8 need models that split into orthogonal "
    "pentagons or antiprisms, which 2k steps (or the paper's settings for 6k steps) rarely reach. Measured: passes at "
    "the notebook's seed with one feature to spare (2/5: 11 features, flanks 5 and 0); failed in 2 of 3 seeds of an "
    "11-level variant of this sweep",
)
def test_pooled_dimensionalities_form_a_second_line(geometry):
    D = pooled_dimensionalities(geometry.W)
    counts = {name: line_counts(D, value) for name, value in STICKY_FRACTIONS.items() if name not in ("1", "1/2")}
    assert any(is_line(D, STICKY_FRACTIONS[name]) for name in counts), f"(centre, flank below, flank above): {counts}"


# ------------------------------------------------------------------------------------------------ capacity


def test_capacity_equals_dimensionality(geometry, allocation):
    for result in (geometry, allocation):
        gap = (capacity(result.W) - compute_dimensionality(result.W)).abs().max()
        assert gap < 1e-5, f"capacity and dimensionality differ by up to {gap:.2e}"


def test_total_capacity_is_at_most_d_hidden():
    generator = t.Generator().manual_seed(0)
    for shape in ((64, 5, 20), (16, 20, 200), (16, 20, 10)):
        W = t.randn(shape, generator=generator) * t.rand((shape[0], 1, shape[2]), generator=generator)
        total = capacity(W).sum(-1)
        assert (total <= shape[1] + 1e-4).all(), f"random W {shape}: Σ C_i up to {total.max():.4f} > {shape[1]}"


def test_trained_models_fill_their_capacity_without_exceeding_it(geometry, allocation):
    for result in (geometry, allocation):
        total = capacity(result.W).sum(-1)
        d_hidden = result.sweep.d_hidden
        assert (total <= d_hidden + 1e-4).all() and (total >= d_hidden - 0.1).all(), (
            f"Σ C_i = {[round(x, 3) for x in total.tolist()]}, expected ≤ {d_hidden} and ≥ {d_hidden - 0.1}"
        )


def test_capacity_goes_to_the_most_important_features(allocation):
    importance = CAPACITY.importance()
    C = capacity(allocation.W)
    for p, row in zip(CAPACITY.feature_probabilities, C, strict=True):
        rho, violations = rank_correlation(importance, row), order_violations(importance, row)
        assert rho >= 0.8 and violations <= 0.02, (
            f"p = {p}: rank correlation {rho:.3f} (≥ 0.8 expected), {violations:.1%} of pairs out of order "
            f"(≤ 2% expected); capacities {[round(c, 2) for c in row.tolist()]}"
        )
