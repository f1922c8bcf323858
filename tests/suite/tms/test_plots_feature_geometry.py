"""The plots of chapter 1, section 5 show the right data: every test reads the figure's data, never its pixels.

Figures are built from small seeded tensors (no training).
"""

import numpy as np
import plotly.graph_objects as go
import pytest
import torch as t

from solutions.tms.feature_geometry import capacity, compute_dimensionality, dimensions_per_feature
from solutions.tms.feature_geometry_experiments import STICKY_FRACTIONS
from utils.plots.tms import feature_geometry as plots

pytestmark = pytest.mark.usefixtures("no_show")  # plot functions return figures; never show


P = t.tensor([1.0, 0.5, 0.25, 0.1, 0.05])


@pytest.fixture(scope="module")
def W() -> t.Tensor:
    generator = t.Generator().manual_seed(0)
    W = t.randn((5, 4, 12), generator=generator) * t.rand((5, 1, 12), generator=generator)
    W[2, :, 3] = 0.0  # a dead feature
    return W


def hlines(fig: go.Figure) -> list[float]:
    return sorted(shape.y0 for shape in fig.layout.shapes if shape.y0 == shape.y1)


def test_dimensions_per_feature_plot_shows_D_star_against_one_over_p_on_a_log_axis(W):
    D_star = dimensions_per_feature(W)
    fig = plots.plot_dimensions_per_feature(P, D_star)
    (trace,) = fig.data
    np.testing.assert_allclose(trace.x, 1 / P.numpy(), rtol=1e-6)
    np.testing.assert_allclose(trace.y, D_star.numpy(), rtol=1e-6)
    assert fig.layout.xaxis.type == "log"
    assert hlines(fig) == [0.5]


def test_dimensions_per_feature_plot_sorts_settings_from_dense_to_sparse(W):
    D_star = dimensions_per_feature(W)
    order = t.tensor([3, 0, 4, 1, 2])
    fig = plots.plot_dimensions_per_feature(P[order], D_star[order])
    np.testing.assert_allclose(fig.data[0].x, 1 / P.numpy(), rtol=1e-6)
    np.testing.assert_allclose(fig.data[0].y, D_star.numpy(), rtol=1e-6)


def test_dimensions_per_feature_plot_refuses_mismatched_lengths(W):
    with pytest.raises(ValueError, match="feature probabilities"):
        plots.plot_dimensions_per_feature(P[:3], dimensions_per_feature(W))


def test_feature_scatter_shows_every_represented_feature_and_the_sticky_fractions(W):
    D = compute_dimensionality(W)
    fig = plots.plot_feature_dimensionalities(P, D, STICKY_FRACTIONS, dimensions_per_feature(W))
    points, line = fig.data
    keep = (D >= 0.05).numpy()
    assert len(points.y) == keep.sum()
    np.testing.assert_allclose(sorted(points.y), sorted(D.numpy()[keep]), rtol=1e-6)
    # x is 1/p up to a jitter of at most 5 %, per point, for the point's own model
    inst = np.nonzero(keep)[0]
    ratio = np.asarray(points.x) / (1 / P.numpy()[inst])
    assert (np.abs(ratio - 1) < 0.05).all()
    assert hlines(fig) == sorted(STICKY_FRACTIONS.values())
    labels = " ".join(annotation.text for annotation in fig.layout.annotations)
    assert all(name in labels for name in STICKY_FRACTIONS)
    np.testing.assert_allclose(line.y, dimensions_per_feature(W).numpy(), rtol=1e-6)
    assert fig.layout.xaxis.type == "log"


def test_feature_scatter_is_deterministic(W):
    D = compute_dimensionality(W)
    first, second = (plots.plot_feature_dimensionalities(P, D, STICKY_FRACTIONS) for _ in range(2))
    assert np.array_equal(first.data[0].x, second.data[0].x)


def test_capacity_plot_orders_features_by_importance_and_reports_totals(W):
    importance = t.tensor([0.2, 1.0, 0.5, 0.8, 0.1, 0.3, 0.9, 0.05, 0.6, 0.7, 0.4, 0.15])
    C = capacity(W)
    fig = plots.plot_capacity(importance, C, labels=[f"p = {p:.2f}" for p in P.tolist()], d_hidden=4)
    assert len(fig.data) == len(P)
    order = importance.argsort(descending=True).numpy()
    for trace, row in zip(fig.data, C.numpy(), strict=True):
        np.testing.assert_allclose(trace.y, row[order], rtol=1e-6)
        assert f"{row.sum():.2f}" in trace.name
    assert "d_hidden = 4" in fig.layout.title.text


def test_capacity_plot_accepts_one_model_and_refuses_mismatched_importance(W):
    C = capacity(W)[0]
    fig = plots.plot_capacity(t.ones(12), C)
    assert len(fig.data) == 1
    with pytest.raises(ValueError, match="importances"):
        plots.plot_capacity(t.ones(5), C)


def test_plots_accept_tensors_on_any_device_that_require_grad(W):
    W = W.clone().requires_grad_(True)
    D = compute_dimensionality(W)
    plots.plot_feature_dimensionalities(P, D, STICKY_FRACTIONS, dimensions_per_feature(W))
    plots.plot_dimensions_per_feature(P, dimensions_per_feature(W))
    plots.plot_capacity(t.ones(12), capacity(W))
