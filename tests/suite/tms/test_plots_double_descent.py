"""The plots of chapter 1, section 6 show the right data: every test reads the figure's data, never its pixels."""

import numpy as np
import pytest
import torch as t

from utils.plots.tms import double_descent as plots

pytestmark = pytest.mark.usefixtures("no_show")  # plot functions return figures; never show

SIZES = (3, 10, 100, 1000)


def values(size_by_seed: tuple[int, int], seed: int) -> t.Tensor:
    return t.rand(size_by_seed, generator=t.Generator().manual_seed(seed)) + 0.1


def test_features_and_data_draw_every_vector_in_its_own_subplot():
    generator = t.Generator().manual_seed(0)
    W = [t.randn(2, 50, generator=generator) for _ in SIZES]
    hidden = [t.randn(size, 2, generator=generator) for size in SIZES]
    fig = plots.plot_features_and_data(W, hidden, SIZES)
    markers = [trace for trace in fig.data if trace.mode == "markers"]
    assert len(markers) == 2 * len(SIZES)
    for column, size in enumerate(SIZES):
        features, points = markers[2 * column], markers[2 * column + 1]
        np.testing.assert_allclose(features.x, W[column][0].numpy(), rtol=1e-6)
        np.testing.assert_allclose(points.y, hidden[column][:, 1].numpy(), rtol=1e-6)
        assert len(points.x) == size
        # features on the top row, training points below, in the column of their dataset size
        assert features.xaxis == ("x" if column == 0 else f"x{column + 1}")
        assert points.xaxis == f"x{len(SIZES) + column + 1}"
    assert [a.text for a in fig.layout.annotations] == [f"T = {size}" for size in SIZES]


def test_features_and_data_refuse_mismatched_inputs():
    with pytest.raises(ValueError, match="dataset sizes"):
        plots.plot_features_and_data([t.zeros(2, 3)], [t.zeros(3, 2), t.zeros(4, 2)], SIZES)


def test_dimensionality_plot_has_every_seed_and_the_mean_on_a_log_axis():
    features, data = values((4, 3), 1), values((4, 3), 2)
    fig = plots.plot_dimensionality(SIZES, features, data, transition=1000)
    assert fig.layout.xaxis.type == "log"
    by_name = {trace.name: trace for trace in fig.data}
    np.testing.assert_allclose(by_name["largest D of a feature (each seed)"].y, features.reshape(-1).numpy(), rtol=1e-6)
    np.testing.assert_allclose(
        by_name["largest D of a training point (mean over seeds)"].y, data.mean(1).numpy(), rtol=1e-6
    )
    np.testing.assert_array_equal(by_name["largest D of a feature (mean over seeds)"].x, SIZES)
    polygon = by_name["2/T: the points of a regular T-gon"]
    np.testing.assert_allclose(polygon.y * polygon.x, 2.0, rtol=1e-6)
    assert any(shape.x0 == 1000 for shape in fig.layout.shapes)


def test_loss_plot_shows_train_test_and_the_zero_model():
    train, test = values((4, 2), 3), values((4, 2), 4)
    fig = plots.plot_losses(SIZES, train, test, baseline=1e-3)
    assert fig.layout.yaxis.type == "log" and fig.layout.xaxis.type == "log"
    by_name = {trace.name: trace for trace in fig.data}
    np.testing.assert_allclose(by_name["test loss (mean over seeds)"].y, test.mean(1).numpy(), rtol=1e-6)
    np.testing.assert_allclose(by_name["train loss (each seed)"].y, train.reshape(-1).numpy(), rtol=1e-6)
    np.testing.assert_array_equal(by_name["train loss (each seed)"].x, np.repeat(SIZES, 2))
    assert any(shape.y0 == 1e-3 for shape in fig.layout.shapes)
