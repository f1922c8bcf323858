"""The generator checks' probes, and the judge of independent magnitudes that they share."""

import pytest
import torch as t

from tests.harness import CheckFailed
from tests.stats import Budget
from tests.tms import correlated, double_descent
from tests.tms.common import (
    HINT_MAGNITUDES_ACROSS_INSTANCES,
    batch_probabilities,
    disjoint_neighbours,
    independent_pairings,
    judge_magnitudes_independent,
)

PROBES = {
    "generate_batch": batch_probabilities(4),
    "generate_correlated_features": t.tensor(correlated.CORRELATED_ROWS),
    "generate_anticorrelated_features": t.tensor(correlated.ANTICORRELATED_ROWS),
    "generate_uncorrelated_features": t.tensor(correlated.UNCORRELATED_ROWS),
    "generate_dataset": double_descent.dataset_probabilities(),
}


@pytest.mark.parametrize("name", PROBES)
def test_every_feature_and_every_instance_of_a_probe_has_its_own_probability(name):
    """Otherwise a generator that reads the wrong column (or row) of feature_probability would pass."""
    p = PROBES[name]
    assert all(row.unique().numel() == p.shape[1] for row in p), "two features of an instance share a probability"
    assert all(column.unique().numel() == p.shape[0] for column in p.T), "two instances share a probability"


@pytest.mark.parametrize("dim", [0, 1, 2, -1])
def test_disjoint_neighbours_pairs_each_entry_at_most_once(dim):
    x = t.arange(4 * 5 * 3).view(4, 5, 3)
    a, b = disjoint_neighbours(x, dim)
    entries = t.cat([a.flatten(), b.flatten()])
    assert entries.unique().numel() == entries.numel()
    assert ((b - a) == x.stride(dim)).all()  # neighbours along dim


def test_the_judge_passes_independent_magnitudes_and_names_shared_ones():
    g = t.Generator().manual_seed(0)
    present = t.rand((4000, 4, 6), generator=g) < 0.5
    independent = t.rand((4000, 4, 6), generator=g) * present
    judge_magnitudes_independent(independent_pairings(independent, -1, "features"), 0.5, 0.5, Budget(4))
    shared = t.rand((4000, 1, 6), generator=g) * present
    with pytest.raises(CheckFailed, match=HINT_MAGNITUDES_ACROSS_INSTANCES[:40]):
        judge_magnitudes_independent(independent_pairings(shared, -1, "features"), 0.5, 0.5, Budget(4))
