"""The generator checks' probes, and the judge of independent magnitudes that they share."""

import pytest
import torch as t

from tests import check
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


def test_generate_dataset_on_a_wrong_generate_batch_says_to_fix_generate_batch_first():
    """The dataset is generate_batch's points rescaled: when both are wrong, the check names generate_batch (kit 7)."""
    from solutions.tms.double_descent import DoubleDescentModel

    class SharedAcrossInstances(DoubleDescentModel):
        def generate_batch(self, batch_size):  # one draw broadcast over the instance axis
            shape = (batch_size, 1, self.feature_probability.shape[1])
            return t.where(t.rand(shape) <= self.feature_probability, t.rand(shape), 0.0)

    with pytest.raises(CheckFailed) as failure:
        check("tms.double_descent.generate_dataset", SharedAcrossInstances)
    message = str(failure.value)
    assert "`ToyModel.generate_batch`" in message or "generate_batch`, which it uses" in message, message
    assert "fix that first" in message and "check('tms.generate_batch', ...)" in message, message
