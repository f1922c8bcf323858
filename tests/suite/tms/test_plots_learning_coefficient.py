"""The plots of chapter 1, section 7 show the right data: every test reads the figure's data, never its pixels.

Figures are built from small seeded tensors and the exact k-gons (no training, no sampling).
"""

import numpy as np
import pytest
import torch as t

from solutions.tms.learning_coefficient_experiments import kgon_levels, kgon_point, population_loss
from utils.plots.tms import learning_coefficient as plots

pytestmark = pytest.mark.usefixtures("no_show")  # plot functions return figures; never show


def test_kgon_panels_draw_every_live_column_and_title_the_loss():
    points = {"5⁺": kgon_point(5, 6, 1), "6": kgon_point(6, 6)}
    losses = {name: float(population_loss(*point)) for name, point in points.items()}
    fig = plots.plot_kgons(points, losses)
    for trace, (W, _) in zip(fig.data, points.values(), strict=True):
        ends = np.array([[x, y] for x, y in zip(trace.x, trace.y, strict=True) if x is not None])[1::2]
        live = W.norm(dim=0) > 0
        np.testing.assert_allclose(ends, W[:, live].T.numpy(), atol=1e-6)
    titles = [annotation.text for annotation in fig.layout.annotations]
    assert titles == [f"{name}: L = {losses[name]:.5f}" for name in points]


def test_kgon_panels_refuse_missing_losses():
    with pytest.raises(ValueError, match="losses"):
        plots.plot_kgons({"6": kgon_point(6, 6)}, {"5": 0.1})


def test_training_losses_have_one_line_per_instance_and_a_line_per_kgon_level():
    steps = t.arange(0, 500, 100)
    losses = t.rand((5, 3), generator=t.Generator().manual_seed(0))
    levels = kgon_levels(6)
    fig = plots.plot_training_losses(steps, losses, levels)
    assert len(fig.data) == 3
    for inst, trace in enumerate(fig.data):
        np.testing.assert_allclose(trace.x, steps.numpy())
        np.testing.assert_allclose(trace.y, losses[:, inst].numpy())
    assert sorted(shape.y0 for shape in fig.layout.shapes) == pytest.approx(sorted(levels.values()))
    assert fig.layout.yaxis.type == "log"


def test_llc_traces_show_each_chains_scaled_excess_loss_and_the_estimate():
    losses = 0.05 + 0.01 * t.rand((4, 50), generator=t.Generator().manual_seed(1))
    fig = plots.plot_llc_traces(losses, 0.05, 100.0, burn_in=10)
    assert len(fig.data) == 4
    np.testing.assert_allclose(fig.data[2].y, 100.0 * (losses[2].numpy() - 0.05), rtol=1e-5)
    hline = [shape for shape in fig.layout.shapes if shape.type == "line"][0]
    assert hline.y0 == pytest.approx(float(100.0 * (losses[:, 10:] - 0.05).mean()), rel=1e-5)
    with pytest.raises(ValueError, match="burn_in"):
        plots.plot_llc_traces(losses, 0.05, 100.0, burn_in=50)


def test_llc_by_plateau_shows_each_plateaus_loss_llc_and_chain_range():
    chains = [[2.0, 3.0, 4.0], [5.0, 6.5, 7.0], [8.0, 8.5, 9.5]]
    fig = plots.plot_llc_by_plateau([0.097, 0.067, 0.062], [3.0, 6.0, 8.5], chains, ["4⁺⁺", "5", "5⁺"])
    (points,) = fig.data
    np.testing.assert_allclose(points.x, [0.097, 0.067, 0.062])
    np.testing.assert_allclose(points.y, [3.0, 6.0, 8.5])
    assert list(points.text) == ["4⁺⁺", "5", "5⁺"]
    np.testing.assert_allclose(points.error_y.array, [1.0, 1.0, 1.0])  # up to the highest chain
    np.testing.assert_allclose(points.error_y.arrayminus, [1.0, 1.0, 0.5])  # down to the lowest
    assert fig.layout.xaxis.autorange == "reversed"
    with pytest.raises(ValueError, match="one entry per plateau"):
        plots.plot_llc_by_plateau([0.1, 0.2], [1.0], [[1.0]], ["4"])
