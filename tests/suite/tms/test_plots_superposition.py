"""The plots of chapter 1, section 1 show the right data: every test reads the figure's data, never its pixels.

Figures are built once per module from small seeded tensors (no training), because building them is most of
the cost of these tests.
"""

import einops
import numpy as np
import plotly.graph_objects as go
import pytest
import torch as t

from solutions.tms.superposition import ToyModel, ToyModelConfig, superposition_stats
from utils.plots.tms import superposition as plots

pytestmark = pytest.mark.usefixtures("no_show")  # plot functions return figures; never show


def random_W(n_inst: int, d_hidden: int, n_feats: int, seed: int = 0, scale: float = 1.0) -> t.Tensor:
    generator = t.Generator().manual_seed(seed)
    return t.randn((n_inst, d_hidden, n_feats), generator=generator) * scale


def array(values) -> np.ndarray:
    return np.asarray(values, dtype=float)


def on_axis(fig: go.Figure, xaxis: str, name: str | None = None) -> list:
    return [trace for trace in fig.data if trace.xaxis == xaxis and (name is None or trace.name == name)]


def axis_name(short: str, kind: str) -> str:
    """'x3' -> 'xaxis3', 'y' -> 'yaxis': the layout key of a trace's axis."""
    return f"{kind}axis{short[1:]}"


# ------------------------------------------------------------------------------------- features in 2-D

TITLES_2D = [f"1 - S = {p:.3f}" for p in (1.0, 0.3, 0.1, 0.03, 0.01)]


@pytest.fixture(scope="module")
def W_2d() -> t.Tensor:
    return random_W(5, 2, 4, seed=1, scale=0.5)


@pytest.fixture(scope="module")
def fig_2d(W_2d) -> go.Figure:
    return plots.plot_features_in_2d(W_2d, titles=TITLES_2D)


@pytest.fixture(scope="module")
def fig_2d_colored(W_2d) -> go.Figure:
    return plots.plot_features_in_2d(W_2d, colors=t.tensor([1.0, 0.9, 0.81, 0.729]), color_label="importance")


def instance_axes(fig: go.Figure) -> list[str]:
    return list(dict.fromkeys(trace.xaxis for trace in fig.data))


def test_2d_one_subplot_per_instance_with_titles(fig_2d):
    assert instance_axes(fig_2d) == ["x", "x2", "x3", "x4", "x5"]
    assert [annotation.text for annotation in fig_2d.layout.annotations] == TITLES_2D
    for xaxis in instance_axes(fig_2d):
        assert len(on_axis(fig_2d, xaxis, "features")) == 1, "one marker trace (the tips) per instance"
    assert all(fig_2d.layout[axis_name(xaxis, "x")].visible for xaxis in instance_axes(fig_2d))


@pytest.mark.parametrize("colored", [False, True])
def test_2d_lines_run_from_origin_to_W_columns(W_2d, fig_2d, fig_2d_colored, colored):
    fig = fig_2d_colored if colored else fig_2d
    for inst, xaxis in enumerate(instance_axes(fig)):
        lines = [trace for trace in on_axis(fig, xaxis) if trace.mode == "lines"]
        x = np.concatenate([array(trace.x) for trace in lines]).reshape(-1, 3)
        y = np.concatenate([array(trace.y) for trace in lines]).reshape(-1, 3)
        # Each segment is (origin, tip, gap).
        assert np.all(x[:, 0] == 0) and np.all(y[:, 0] == 0) and np.isnan(x[:, 2]).all()
        tips = sorted(zip(x[:, 1], y[:, 1], strict=True))
        expected = sorted(zip(W_2d[inst, 0].tolist(), W_2d[inst, 1].tolist(), strict=True))
        np.testing.assert_allclose(tips, expected, rtol=1e-6)

        (markers,) = on_axis(fig, xaxis, "features")
        np.testing.assert_allclose(array(markers.x), W_2d[inst, 0], rtol=1e-6)
        np.testing.assert_allclose(array(markers.y), W_2d[inst, 1], rtol=1e-6)
        hover = array(markers.customdata)
        np.testing.assert_array_equal(hover[:, 0], np.arange(4))
        np.testing.assert_allclose(hover[:, 1], W_2d[inst].norm(dim=0), rtol=1e-5)


def test_2d_axes_identical_symmetric_and_square(fig_2d):
    layout = fig_2d.layout
    ranges = [tuple(layout[axis_name(a, k)].range) for a in instance_axes(fig_2d) for k in ("x", "y")]
    assert set(ranges) == {(-1.5, 1.5)}, "small weights keep the default ±1.5 range in every subplot"
    for xaxis in instance_axes(fig_2d):
        yaxis = layout[axis_name("y" + xaxis[1:], "y")]
        assert yaxis.scaleanchor == xaxis and yaxis.scaleratio == 1, "equal aspect ratio"


def test_2d_range_grows_to_fit_long_features_and_empty_cells_are_hidden():
    W = random_W(3, 2, 5, seed=2, scale=3.0)
    fig = plots.plot_features_in_2d(W, n_cols=2)
    assert instance_axes(fig) == ["x", "x2", "x3"]
    assert fig.layout.xaxis4.visible is False and fig.layout.yaxis4.visible is False, "2 x 2 grid, one cell unused"
    limits = {tuple(fig.layout[axis_name(a, k)].range) for a in instance_axes(fig) for k in ("x", "y")}
    assert len(limits) == 1
    low, high = limits.pop()
    assert low == -high and high >= W.abs().max().item() > 1.5


def test_2d_colors_share_one_scale(W_2d, fig_2d, fig_2d_colored):
    importance = [1.0, 0.9, 0.81, 0.729]
    for xaxis in instance_axes(fig_2d_colored):
        (markers,) = on_axis(fig_2d_colored, xaxis, "features")
        np.testing.assert_allclose(array(markers.marker.color), importance, rtol=1e-6)
        assert markers.marker.coloraxis == "coloraxis"
        np.testing.assert_allclose(array(markers.customdata)[:, 2], importance, rtol=1e-6)
    coloraxis = fig_2d_colored.layout.coloraxis
    assert (coloraxis.cmin, coloraxis.cmax) == pytest.approx((0.729, 1.0))
    assert coloraxis.colorbar.title.text == "importance"
    # Default: one colour for every feature and no colour bar.
    assert {on_axis(fig_2d, x, "features")[0].marker.color for x in instance_axes(fig_2d)} == {plots.FEATURE_COLOR}
    assert fig_2d.layout.coloraxis.cmin is None


def test_2d_css_colors_and_single_instance():
    W = random_W(1, 2, 4, seed=3)[0]
    colors = ["red", "red", "blue", "blue"]
    fig = plots.plot_features_in_2d(W, colors=colors)
    assert instance_axes(fig) == ["x"]
    (markers,) = on_axis(fig, "x", "features")
    assert list(markers.marker.color) == colors
    assert {trace.line.color for trace in fig.data if trace.mode == "lines"} == {"red", "blue"}
    with pytest.raises(ValueError, match="colors"):
        plots.plot_features_in_2d(W, colors=colors[:3])


def test_hidden_states_are_W_times_a_fresh_batch():
    with t.random.fork_rng():
        t.manual_seed(0)
        model = ToyModel(ToyModelConfig(3, 5, 2), feature_probability=0.3, importance=0.9 ** t.arange(5))
        t.manual_seed(1)
        fig = plots.plot_hidden_states(model, batch_size=50, titles=["a", "b", "c"])
        t.manual_seed(1)
        batch = model.generate_batch(50)
    hidden = einops.einsum(batch, model.W.detach(), "batch inst feats, inst d_hidden feats -> batch inst d_hidden")
    assert [annotation.text for annotation in fig.layout.annotations] == ["a", "b", "c"]
    for inst, xaxis in enumerate(instance_axes(fig)):
        (points,) = on_axis(fig, xaxis, "hidden states")
        np.testing.assert_allclose(array(points.x), hidden[:, inst, 0], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(array(points.y), hidden[:, inst, 1], rtol=1e-5, atol=1e-7)
        (markers,) = on_axis(fig, xaxis, "features")
        np.testing.assert_allclose(array(markers.marker.color), 0.9 ** np.arange(5), rtol=1e-6)
    limit = fig.layout.xaxis.range[1]
    assert limit >= hidden.abs().max().item(), "no hidden state falls outside the axes"


# ------------------------------------------------------------------------------------- features in N-D


@pytest.fixture(scope="module")
def W_nd() -> t.Tensor:
    return random_W(3, 4, 6, seed=4, scale=0.6)


@pytest.fixture(scope="module")
def fig_nd(W_nd) -> go.Figure:
    return plots.plot_features_in_Nd(W_nd, superposition_stats(W_nd)[1], titles=["first", "second", "third"])


def by_type(fig: go.Figure, kind: str) -> list:
    return [trace for trace in fig.data if trace.type == kind]


def test_nd_bars_are_norms_coloured_by_interference(W_nd, fig_nd):
    bars = by_type(fig_nd, "bar")
    assert len(bars) == 3 and len(by_type(fig_nd, "heatmap")) == 3
    for inst, bar in enumerate(bars):
        W = W_nd[inst]
        # Interference written out the long way, independently of superposition_stats.
        unit = W / W.norm(dim=0)
        interference = [sum((unit[:, i] @ W[:, j]).item() ** 2 for j in range(6) if j != i) for i in range(6)]
        assert bar.orientation == "h"
        np.testing.assert_allclose(array(bar.x), W.norm(dim=0), rtol=1e-5)
        np.testing.assert_array_equal(array(bar.y), np.arange(6))
        np.testing.assert_allclose(array(bar.marker.color), interference, rtol=1e-4)
        assert bar.marker.coloraxis == "coloraxis"
    coloraxis = fig_nd.layout.coloraxis
    assert (coloraxis.cmin, coloraxis.cmax) == (0, 1), "interference scale: 0 = dedicated, 1 = fully shared"


def test_nd_heatmap_is_gram_matrix_on_a_centred_scale(W_nd, fig_nd):
    heatmaps = by_type(fig_nd, "heatmap")
    for inst, heatmap in enumerate(heatmaps):
        np.testing.assert_allclose(array(heatmap.z), W_nd[inst].T @ W_nd[inst], rtol=1e-5, atol=1e-6)
        assert heatmap.coloraxis == "coloraxis2"
    scale = fig_nd.layout.coloraxis2
    assert scale.cmin == -scale.cmax, "diverging scale centred at 0"
    assert scale.cmax == pytest.approx(max(np.abs(array(h.z)).max() for h in heatmaps))


def test_nd_one_row_per_instance_sharing_the_feature_axis(fig_nd):
    layout = fig_nd.layout
    for bar, heatmap in zip(by_type(fig_nd, "bar"), by_type(fig_nd, "heatmap"), strict=True):
        assert layout[axis_name(heatmap.yaxis, "y")].matches == bar.yaxis, "heatmap rows line up with the bars"
        assert layout[axis_name(bar.yaxis, "y")].autorange == "reversed", "feature 0 at the top"
    bar_ranges = {tuple(layout[axis_name(bar.xaxis, "x")].range) for bar in by_type(fig_nd, "bar")}
    assert len(bar_ranges) == 1, "bar lengths compare across instances"
    texts = [annotation.text for annotation in layout.annotations]
    assert [text for text in texts if text in ("first", "second", "third")] == ["first", "second", "third"]
    assert "W<sup>T</sup>W" in texts


def test_nd_custom_colors(W_nd):
    colors = t.linspace(0, 2, 6)  # one value per feature, the same for every instance
    fig = plots.plot_features_in_Nd(W_nd[:2], colors, color_label="importance")
    for bar in by_type(fig, "bar"):
        np.testing.assert_allclose(array(bar.marker.color), colors, rtol=1e-6)
    assert (fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax) == (0, 2)
    assert fig.layout.coloraxis.colorbar.title.text == "importance"


# ----------------------------------------------------------------------------------------- sweeps


@pytest.fixture(scope="module")
def sweep_inputs() -> dict[str, t.Tensor]:
    # Features and densities deliberately out of order: importance order is 1, 3, 0, 2; density order is
    # 0.01, 0.1, 1.
    return dict(
        norms=t.tensor([[0.9, 1.0, 0.2, 1.1], [0.1, 1.0, 0.0, 0.95], [1.0, 1.1, 0.7, 1.0]]),
        importance=t.tensor([0.5, 1.0, 0.1, 0.8]),
        density=t.tensor([0.1, 1.0, 0.01]),
    )


def test_sweep_heatmap_sorted_by_importance_and_density(sweep_inputs):
    fig = plots.plot_representation_sweep(**sweep_inputs)
    heatmap = by_type(fig, "heatmap")[0]
    expected = [[1.1, 1.0, 1.0], [1.0, 1.1, 0.95], [1.0, 0.9, 0.1], [0.7, 0.2, 0.0]]
    np.testing.assert_allclose(array(heatmap.z), expected, rtol=1e-6)
    np.testing.assert_allclose(array(heatmap.x), [-2, -1, 0], atol=1e-6)
    assert list(fig.layout.yaxis.ticktext) == ["1", "3", "0", "2"]
    assert list(fig.layout.xaxis.ticktext) == ["0.01", "0.1", "1"]
    assert tuple(fig.layout.yaxis.range) == (3.5, -0.5), "most important at the top"


# A norm equal to the threshold does not count (1.0 at threshold 1.0): represented means ‖W_i‖ > threshold.
@pytest.mark.parametrize(("threshold", "counts"), [(0.5, [4, 3, 2]), (0.96, [3, 2, 1]), (1.0, [1, 1, 0])])
def test_sweep_counts_represented_features(sweep_inputs, threshold, counts):
    fig = plots.plot_representation_sweep(**sweep_inputs, threshold=threshold)
    (line,) = by_type(fig, "scatter")
    np.testing.assert_array_equal(array(line.y), counts)
    np.testing.assert_allclose(array(line.x), [-2, -1, 0], atol=1e-6)
    # Count k on the right axis must sit on the boundary below the k-th row of the left axis.
    assert line.yaxis == "y2" and tuple(fig.layout.yaxis2.range) == (4, 0)
    assert fig.layout.yaxis2.overlaying == "y"


# ------------------------------------------------------------------------------------------ losses


def test_loss_curves_one_log_scale_line_per_instance():
    log = {"step": t.arange(0, 100, 10), "loss": t.rand((10, 3), generator=t.Generator().manual_seed(5)) + 0.01}
    fig = plots.plot_loss_curves(log, labels=["p = 1", "p = 0.1", "p = 0.01"])
    assert [trace.name for trace in fig.data] == ["p = 1", "p = 0.1", "p = 0.01"]
    for inst, trace in enumerate(fig.data):
        np.testing.assert_array_equal(array(trace.x), np.arange(0, 100, 10))
        np.testing.assert_allclose(array(trace.y), log["loss"][:, inst], rtol=1e-6)
    assert fig.layout.yaxis.type == "log"
    assert [trace.name for trace in plots.plot_loss_curves(log).data] == ["instance 0", "instance 1", "instance 2"]
    with pytest.raises(ValueError, match="labels"):
        plots.plot_loss_curves(log, labels=["only one"])


# -------------------------------------------------------------------------------------- side effects


def animation_log(n_logs: int = 7, n_inst: int = 3, n_feats: int = 5) -> dict[str, t.Tensor]:
    return {"step": t.arange(n_logs) * 100, "W": t.stack([random_W(n_inst, 2, n_feats, seed=k) for k in range(n_logs)])}


def test_animation_has_a_frame_per_logged_step_holding_that_steps_weights():
    log = animation_log()
    fig = plots.animate_features_in_2d(log, colors=t.arange(5.0), titles=["a", "b", "c"])
    assert [frame.name for frame in fig.frames] == [str(step) for step in log["step"].tolist()]
    assert [step.label for step in fig.layout.sliders[0].steps] == [frame.name for frame in fig.frames]
    assert [button.label for button in fig.layout.updatemenus[0].buttons] == ["▶ play", "❚❚ pause"]
    for frame, W in zip(fig.frames, log["W"], strict=True):
        markers = [data for data in frame.data if data.customdata is not None]  # one marker trace per instance
        assert len(markers) == 3
        for inst, data in enumerate(markers):
            np.testing.assert_allclose(array(data.x), W[inst, 0].numpy(), rtol=1e-6)
            np.testing.assert_allclose(array(data.y), W[inst, 1].numpy(), rtol=1e-6)
    # the figure itself shows the first frame, and every frame updates every trace it has
    assert all(len(frame.data) == len(fig.data) for frame in fig.frames)
    first_markers = next(trace for trace in fig.data if trace.customdata is not None)
    np.testing.assert_allclose(array(first_markers.x), log["W"][0, 0, 0].numpy(), rtol=1e-6)
    # one axis range holds every frame
    reach = fig.layout.xaxis.range[1]
    assert reach >= float(log["W"].abs().max())


def test_animation_keeps_at_most_max_frames_spread_from_first_to_last_step():
    log = animation_log(n_logs=101, n_inst=1)
    fig = plots.animate_features_in_2d(log, max_frames=11)
    assert [frame.name for frame in fig.frames] == [str(step) for step in range(0, 10_001, 1000)]
    np.testing.assert_allclose(array(fig.frames[-1].data[-1].x), log["W"][-1, 0, 0].numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="n_logs, inst, 2, feats"):
        plots.animate_features_in_2d({"step": log["step"], "W": log["W"][:, :, :1]})
