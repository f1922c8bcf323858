"""Section 1.6's claims, asserted with numbers at exactly the notebook's settings (`DOUBLE_DESCENT`).

The sweep trains once per module (the solutions notebook trains the same sweep). What must come out (target T11,
CPU-sized: n = 1000, m = 2, p = 0.01, unit-norm points):

* small datasets: the training points' hidden vectors form a regular T-gon (each point has dimensionality 2/T),
  and the largest feature dimensionality is much smaller;
* in between (T·p from 1 to 4): neither points nor features get a direction of their own (all D small);
* large datasets (T·p ≥ 10): about 5 features take the plane (largest D > 0.2), training points do not;
* the test loss has a bump just before T·p ≈ 10 (each feature seen about 10 times), above both ends and above the
  loss of a model that outputs 0, and at the largest T the model beats that zero model.
"""

import pytest
import torch as t

from solutions.tms.double_descent import DoubleDescentModel
from solutions.tms.double_descent_experiments import (
    DOUBLE_DESCENT,
    SparseDataset,
    reconstruction_loss,
    reconstruction_loss_reference,
    summarise,
    train_double_descent,
    zero_model_loss,
)
from solutions.tms.superposition import ToyModelConfig


@pytest.fixture(scope="module")
def summary():
    return summarise(train_double_descent(DOUBLE_DESCENT))


def table(summary) -> str:
    """The measured numbers, per dataset size and seed, for assertion messages."""
    lines = []
    for i, size in enumerate(summary.dataset_sizes):
        round_ = lambda x, k=3: [round(v, k) for v in x[i].tolist()]  # noqa: E731
        lines.append(
            f"T={size:5d} largest D: points {round_(summary.data_dimensionality)} features "
            f"{round_(summary.feature_dimensionality)}, polygon error {round_(summary.polygon_error)}, "
            f"represented {summary.n_features_represented[i].tolist()}, train {round_(summary.train_loss, 7)}, "
            f"test {round_(summary.test_loss, 7)}"
        )
    return "\n".join(lines)


def test_the_fast_loss_matches_the_plain_one_in_value_and_gradient():
    t.manual_seed(0)
    model = DoubleDescentModel(ToyModelConfig(3, 40, 2), feature_probability=t.tensor([[0.05], [0.1], [0.3]]))
    with t.no_grad():
        model.W.mul_(5)
        model.b_final.copy_(t.randn(3, 40) * 0.3)
    points = model.generate_dataset(60)
    points[4, 1] = 0  # an empty point
    fast = reconstruction_loss(model.W, model.b_final, SparseDataset.from_dense(points))
    fast_grads = t.autograd.grad(fast.sum(), [model.W, model.b_final])
    plain = reconstruction_loss_reference(model, points)
    plain_grads = t.autograd.grad(plain.sum(), [model.W, model.b_final])
    t.testing.assert_close(fast, plain)
    for got, expected in zip(fast_grads, plain_grads, strict=True):
        t.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_small_datasets_are_memorised_as_a_polygon(summary):
    points, features = summary.data_dimensionality.mean(1), summary.feature_dimensionality.mean(1)
    assert summary.polygon_error[summary.size(5)].max() < 0.1, table(summary)
    for T in (3, 5):
        assert points[summary.size(T)] > 2 * features[summary.size(T)], table(summary)


@pytest.mark.slow
def test_in_between_neither_points_nor_features_get_a_direction(summary):
    points, features = summary.data_dimensionality.mean(1), summary.feature_dimensionality.mean(1)
    for T in (100, 200, 400):
        assert points[summary.size(T)] < 0.05 and features[summary.size(T)] < 0.12, table(summary)


@pytest.mark.slow
def test_large_datasets_learn_a_handful_of_features(summary):
    points, features = summary.data_dimensionality.mean(1), summary.feature_dimensionality.mean(1)
    for T in (1000, 2000):
        i = summary.size(T)
        assert features[i] > 0.2 and features[i] > 3 * points[i], table(summary)
        assert all(4 <= n <= 6 for n in summary.n_features_represented[i].tolist()), table(summary)


@pytest.mark.slow
def test_test_loss_has_a_bump_before_each_feature_is_seen_ten_times(summary):
    test = summary.test_loss.mean(1)
    p = DOUBLE_DESCENT.feature_probability
    baseline = zero_model_loss(DOUBLE_DESCENT.n_features, p)
    peak = int(test.argmax())
    assert 1 <= summary.dataset_sizes[peak] * p < 10, table(summary)
    assert test[peak] > 2 * max(test[0], test[-1], baseline), table(summary)
    assert test[-1] < baseline and test[-2] < baseline, f"zero model {baseline:.4e}\n" + table(summary)
