"""The plots of chapter 1, section 4 show the right data: every test reads the figure's data, never its pixels."""

import numpy as np
import plotly.graph_objects as go
import pytest
import torch as t

from utils.plots.tms import privileged_basis as plots

pytestmark = pytest.mark.usefixtures("no_show")  # plot functions return figures; never show


def W_example() -> t.Tensor:
    """Two instances: a monosemantic one (neurons read features 2, 0, 1 in a shuffled order) and a random one."""
    mono = t.zeros(3, 4)
    mono[0, 2], mono[1, 0], mono[2, 1] = 1.0, -0.8, 1.2
    random = t.randn((3, 4), generator=t.Generator().manual_seed(0))
    return t.stack([mono, random]).requires_grad_(True)


def test_neuron_order_puts_a_monosemantic_model_on_the_diagonal():
    W = W_example()[0].detach().numpy()
    assert plots.neuron_order(W).tolist() == [1, 2, 0]


def test_stacked_bars_show_each_neurons_split_over_features():
    W = W_example()
    fig = plots.plot_neurons(W, titles=["mono", "random"])
    bars = [trace for trace in fig.data if isinstance(trace, go.Bar)]
    assert len(bars) == 2 * 4, "one bar trace per (instance, feature)"
    assert [annotation.text for annotation in fig.layout.annotations] == ["mono", "random"]
    first = [bar for bar in bars if bar.xaxis == "x"]
    shares = np.stack([np.asarray(bar.y) for bar in first])  # [feature, neuron]
    np.testing.assert_allclose(shares.sum(0), 1.0, rtol=1e-6)
    # sorted neurons n1, n2, n0 read features 0, 1, 2 only
    assert list(first[0].x) == ["n1", "n2", "n0"]
    np.testing.assert_allclose(shares, np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]]), atol=1e-6)
    np.testing.assert_allclose(first[0].customdata, [-0.8, 0, 0], atol=1e-6)
    assert fig.layout.barmode == "stack"


def test_weight_heatmaps_use_one_symmetric_scale_and_sorted_neurons():
    W = W_example()
    fig = plots.plot_neuron_weights(W, titles=["mono", "random"])
    heatmaps = [trace for trace in fig.data if isinstance(trace, go.Heatmap)]
    assert len(heatmaps) == 2
    np.testing.assert_allclose(np.asarray(heatmaps[0].z), W[0].detach().numpy()[[1, 2, 0]])
    limit = float(W.detach().abs().max())
    assert fig.layout.coloraxis.cmin == -limit and fig.layout.coloraxis.cmax == limit


def test_trend_plot_has_both_counts_on_a_log_axis():
    density = t.tensor([0.75, 0.1, 0.01])
    fig = plots.plot_neuron_trends(density, t.tensor([5, 7, 10]), t.tensor([5, 1, 0]), n_features=10, d_hidden=5)
    assert [list(trace.y) for trace in fig.data] == [[5, 7, 10], [5, 1, 0]]
    np.testing.assert_allclose(fig.data[0].x, density.numpy())
    assert fig.layout.xaxis.type == "log"


def test_computed_features_plot_marks_m_and_m_over_2():
    counts = {"signed halves": t.tensor([10, 14]), "features": t.tensor([5, 4])}
    fig = plots.plot_computed_features(t.tensor([1.0, 0.01]), counts, d_hidden=10)
    assert [trace.name for trace in fig.data] == list(counts) and list(fig.data[0].y) == [10, 14]
    assert sorted(shape.y0 for shape in fig.layout.shapes) == [5, 10]


def test_computation_plot_shows_W1_and_W2_transposed():
    g = t.Generator().manual_seed(1)
    W1, W2 = t.randn((3, 5), generator=g), t.randn((5, 3), generator=g)
    fig = plots.plot_neuron_computation(W1, W2, title="x")
    order = plots.neuron_order(W1.numpy())
    np.testing.assert_allclose(np.asarray(fig.data[0].z), W1.numpy()[order])
    np.testing.assert_allclose(np.asarray(fig.data[1].z), W2.numpy().T[order])
