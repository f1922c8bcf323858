"""The plots of chapter 1, section 3 show the right data: every test reads the figure's data, never its pixels."""

import numpy as np
import pytest
import torch as t

from utils.plots.tms import correlated as plots

pytestmark = pytest.mark.usefixtures("no_show")  # plot functions return figures; never show


def test_pairs_share_a_colour_and_kinds_differ():
    colors = plots.pair_colors(2, 1, 8)
    assert colors[0] == colors[1] and colors[2] == colors[3] and colors[4] == colors[5]
    assert len({colors[0], colors[2], colors[4]}) == 3, "every pair its own colour"
    assert colors[6] == colors[7] == plots.INDEPENDENT_COLOR
    assert colors[4] in plots.ANTICORRELATED_COLORS and colors[0] in plots.CORRELATED_COLORS
    assert plots.feature_groups(2, 1, 8) == ["C0", "C0", "C1", "C1", "A0", "A0", "–", "–"]
    with pytest.raises(ValueError, match="do not fit"):
        plots.pair_colors(2, 1, 5)


def test_features_by_pair_colours_each_instance_by_pair():
    W = t.randn((3, 2, 4), generator=t.Generator().manual_seed(0))
    fig = plots.plot_features_by_pair(W, n_correlated_pairs=2, titles=["a", "b", "c"])
    markers = [trace for trace in fig.data if trace.name == "features"]
    assert len(markers) == 3
    for inst, trace in enumerate(markers):
        np.testing.assert_allclose(np.asarray(trace.x, dtype=float), W[inst, 0], rtol=1e-6)
        assert list(trace.marker.color) == plots.pair_colors(2, 0, 4)
    assert [annotation.text for annotation in fig.layout.annotations] == ["a", "b", "c"]
    assert "correlated" in fig.layout.title.text


@pytest.fixture(scope="module")
def batch() -> t.Tensor:
    """Instance 0: a correlated pair, an anticorrelated pair and two independent features, written out by hand."""
    g = t.Generator().manual_seed(1)
    n = 4000
    pair = t.rand(n, generator=g) < 0.3
    u = t.rand(n, generator=g)
    present = t.stack([pair, pair, u < 0.2, u >= 0.8, t.rand(n, generator=g) < 0.5, t.rand(n, generator=g) < 0.1], -1)
    x = t.rand((n, 6), generator=g) * present
    return t.stack([x, t.zeros_like(x)], dim=1)  # [batch inst feats], a second (empty) instance


def test_cooccurrence_shows_the_samples_and_the_conditional_presence(batch):
    fig = plots.plot_batch_cooccurrence(batch, n_correlated_pairs=1, n_anticorrelated_pairs=1, n_samples=25)
    samples, conditional = fig.data
    np.testing.assert_allclose(np.asarray(samples.z, dtype=float), batch[:25, 0], rtol=1e-6)
    assert list(samples.x) == ["0 C0", "1 C0", "2 A0", "3 A0", "4 –", "5 –"]
    z = np.asarray(conditional.z, dtype=float)
    np.testing.assert_allclose(np.diag(z), 1.0)
    assert z[0, 1] == z[1, 0] == 1.0, "a correlated pair is always present together"
    assert z[2, 3] == z[3, 2] == 0.0, "an anticorrelated pair never is"
    present = (batch[:, 0] > 0).double()
    expected = (present.T @ present) / present.sum(0)[:, None]
    np.testing.assert_allclose(z, expected.numpy(), rtol=1e-9)
    assert abs(z[0, 4] - 0.5) < 0.06 and abs(z[0, 5] - 0.1) < 0.04, "independent features: just their own p"


def test_cooccurrence_of_another_instance_with_absent_features(batch):
    fig = plots.plot_batch_cooccurrence(batch, instance=1, n_samples=10)
    samples, conditional = fig.data
    assert np.asarray(samples.z, dtype=float).shape == (10, 6) and not np.asarray(samples.z, dtype=float).any()
    assert np.isnan(np.asarray(conditional.z, dtype=float)).all(), "never present: no conditional probability"
    assert list(samples.x)[0] == "0 –"
