"""The statistical budget of a verdict, and the generic tests it hands out."""

import pytest
import torch as t

from tests.stats import FALSE_FAILURE_RATE, Budget, binomial_range, hoeffding_radius, outside, uniform_ks_distance


def test_every_test_of_a_budget_runs_at_the_false_failure_rate_over_the_budget():
    budget = Budget(40)
    assert budget.alpha == FALSE_FAILURE_RATE / 40
    assert budget.spend(3) == budget.alpha
    assert budget.binomial_range(1000, 0.3) == binomial_range(1000, 0.3, FALSE_FAILURE_RATE / 40)
    assert budget.hoeffding_radius(1000, 2.0) == hoeffding_radius(1000, 2.0, FALSE_FAILURE_RATE / 40)


def test_a_budget_counts_what_each_test_spends():
    budget = Budget(20)
    budget.spend(2)
    budget.binomial_outliers(t.full((2, 3), 50), 100, t.full((2, 3), 0.5))  # one test per rate
    budget.hoeffding_radius(100, 1.0)
    budget.mean_is_off(t.rand(100), 0.5, 1.0)
    budget.not_uniform(t.rand(1000), 0.0, 1.0)
    assert budget.spent == 2 + 6 + 1 + 1 + 1


def test_overspending_a_budget_is_a_bug_in_the_check():
    budget = Budget(5)
    budget.spend(5)
    with pytest.raises(RuntimeError, match="more than the 5 tests"):
        budget.hoeffding_radius(100, 1.0)
    with pytest.raises(RuntimeError):
        Budget(3).binomial_outliers(t.zeros(4), 100, t.full((4,), 0.5))


def test_outside_names_the_counts_out_of_their_range():
    counts = t.tensor([[500, 900], [510, 100]])
    assert outside(counts, 1000, t.full((2, 2), 0.5), 1e-6) == [(0, 1), (1, 1)]


def test_the_grid_ks_distance_is_small_for_uniform_values_and_large_otherwise():
    g = t.Generator().manual_seed(0)
    uniform = 2 * t.rand(100_000, generator=g) - 1
    assert uniform_ks_distance(uniform, -1.0, 1.0) < 0.01
    assert uniform_ks_distance(uniform.abs(), -1.0, 1.0) > 0.4
    assert Budget(1).not_uniform(uniform, -1.0, 1.0, bins=1000) is None
    assert Budget(1).not_uniform(uniform**2, -1.0, 1.0) > 0.4
