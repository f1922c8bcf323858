"""The phase-diagram plots show exactly the data they are given (tested on figure data, never on pixels)."""

import numpy as np
import plotly.graph_objects as go
import pytest
import torch as t

from solutions.tms.phase_diagrams import PHASES as LABELS
from solutions.tms.phase_diagrams_experiments import superposition_boundary
from utils.plots.tms import phase_diagrams as plots

pytestmark = pytest.mark.usefixtures("no_show")  # plot functions return figures; never show

RATIO = t.tensor([0.1, 0.5, 2.0, 10.0])
DENSITY = t.tensor([1.0, 0.2, 0.01])
# phases[i_ratio, i_density], deliberately not symmetric so that a transposition shows
PHASES = t.tensor([[0, 0, 2], [0, 2, 2], [1, 1, 2], [1, 0, 2]])


def array(values) -> np.ndarray:
    return np.asarray(values, dtype=float)


@pytest.fixture(scope="module")
def fig() -> go.Figure:
    highlight = t.zeros(4, 3, dtype=t.bool)
    highlight[3, 1] = True
    return plots.plot_phase_diagram(RATIO, DENSITY, PHASES, LABELS, superposition_boundary, highlight=highlight)


def test_heatmap_rows_are_densities_and_columns_ratios(fig):
    (heatmap,) = [trace for trace in fig.data if trace.type == "heatmap"]
    np.testing.assert_array_equal(array(heatmap.z), PHASES.T.numpy())
    np.testing.assert_allclose(array(heatmap.x), np.log10(RATIO.numpy()), atol=1e-6)
    np.testing.assert_allclose(array(heatmap.y), np.log10(DENSITY.numpy()), atol=1e-6)
    labels = np.asarray(heatmap.customdata)[..., 2]
    assert labels[2, 0] == "superposition" and labels[0, 2] == "dedicated" and labels[1, 3] == "not represented"
    assert list(heatmap.colorbar.ticktext) == ["not represented", "dedicated", "superposition"]


def test_each_phase_gets_its_own_colour_band(fig):
    (heatmap,) = [trace for trace in fig.data if trace.type == "heatmap"]
    zmin, zmax = heatmap.zmin, heatmap.zmax
    for phase, color in enumerate(plots.PHASE_COLORS):
        position = (phase - zmin) / (zmax - zmin)
        # the colour of the stretch between the two stops around this position (a band has equal colours at both)
        stops = list(heatmap.colorscale)
        (band,) = [(a[1], b[1]) for a, b in zip(stops[:-1], stops[1:], strict=True) if a[0] < position < b[0]]
        assert band == (color, color), f"phase {phase} maps to {band}"


def test_analytic_boundary_follows_the_closed_form(fig):
    curve, vertical = [trace for trace in fig.data if trace.name == "analytic boundary"]
    r, p = 10 ** array(curve.x), 10 ** array(curve.y)
    expected = np.where(r <= 1, 4 * r / (2 + 5 * r), 4 / (5 + 2 * r))
    np.testing.assert_allclose(p, expected, rtol=1e-6)
    assert r.min() <= 0.1 and r.max() >= 10, "the curve spans the whole grid"
    np.testing.assert_allclose(array(vertical.x), [0, 0])  # r = 1
    assert array(vertical.y)[0] == pytest.approx(np.log10(4 / 7)), "r = 1 line starts where both boundaries meet"


def test_highlighted_cells_are_circled(fig):
    (markers,) = [trace for trace in fig.data if trace.name == "disagrees with the closed form"]
    np.testing.assert_allclose(array(markers.x), [1.0], atol=1e-6)
    np.testing.assert_allclose(array(markers.y), [np.log10(0.2)], atol=1e-6)


def test_axes_are_labelled_with_the_values():
    fig = plots.plot_phase_diagram(RATIO, DENSITY, PHASES, LABELS, superposition_boundary)
    assert list(fig.layout.xaxis.ticktext) == ["0.1", "0.5", "2", "10"]
    assert list(fig.layout.yaxis.ticktext) == ["1", "0.2", "0.01"]
    assert not [trace for trace in fig.data if trace.name == "disagrees with the closed form"]


def test_wrong_shapes_are_refused():
    with pytest.raises(ValueError, match="phases"):
        plots.plot_phase_diagram(RATIO, DENSITY, PHASES.T, LABELS, superposition_boundary)
    with pytest.raises(ValueError, match="highlight"):
        plots.plot_phase_diagram(
            RATIO, DENSITY, PHASES, LABELS, superposition_boundary, highlight=t.zeros(3, 4, dtype=t.bool)
        )


def test_candidate_losses_one_line_per_candidate_and_the_lowest_marked():
    density = t.logspace(0, -2, 30)
    losses = t.stack([0.5 * (density / 3 - density**2 / 4), density / 3 - density**2 / 4, 1.5 * density**2 / 6], -1)
    fig = plots.plot_candidate_losses(density, losses, importance_ratio=0.5)
    lines = [trace for trace in fig.data if trace.mode == "lines"]
    assert len(lines) == 3
    for k, line in enumerate(lines):
        np.testing.assert_allclose(array(line.x), density.numpy(), rtol=1e-6)
        np.testing.assert_allclose(array(line.y), losses[:, k].numpy(), rtol=1e-6)
    (lowest,) = [trace for trace in fig.data if trace.name == "lowest"]
    np.testing.assert_allclose(array(lowest.y), losses.min(-1).values.numpy(), rtol=1e-6)
    best = losses.argmin(-1).tolist()
    assert list(lowest.marker.color) == [plots.PHASE_COLORS[k] for k in best]
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    with pytest.raises(ValueError, match="losses"):
        plots.plot_candidate_losses(density, losses[:, :2], importance_ratio=0.5)
