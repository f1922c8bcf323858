"""Plots for chapter 1, section 4: superposition in a privileged basis (neurons).

Every function builds and returns a plotly Figure; the notebook calls `.show()` on it. Nothing here writes files,
changes global state or needs widgets. Tensors may live on any device and may require grad.
"""

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from jaxtyping import Float
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots
from torch import Tensor

from utils.plots.common import TEMPLATE, check_length, grid_shape, to_numpy

__all__ = [
    "neuron_order",
    "plot_computed_features",
    "plot_neuron_computation",
    "plot_neuron_trends",
    "plot_neuron_weights",
    "plot_neurons",
]

WEIGHT_SCALE = "RdBu_r"  # red = positive weight, blue = negative


def neuron_order(W: Float[np.ndarray, "d_hidden feats"]) -> np.ndarray:
    """Neurons sorted for reading: by their largest feature (most important first), then by monosemanticity.

    A monosemantic model then shows a diagonal, and polysemantic neurons collect at the bottom of the same block.
    """
    squared = W**2
    share = squared.max(-1) / np.maximum(squared.sum(-1), 1e-12)
    return np.lexsort((-share, squared.argmax(-1)))


def feature_palette(n_feats: int) -> list[str]:
    """One colour per feature, from dark (feature 0, the most important) to bright."""
    return sample_colorscale("Viridis", np.linspace(0, 0.95, n_feats).tolist())


def plot_neurons(
    W: Float[Tensor, "inst d_hidden feats"], titles: Sequence[str] | None = None, n_cols: int | None = None
) -> go.Figure:
    """One stacked bar per neuron: how its squared weight Σ_i W_ji² splits among the features i.

    A monosemantic neuron is a single-colour bar; a polysemantic one stacks several colours. Bars are normalised to
    1, and neurons are sorted as in `neuron_order`. Hover shows each feature's signed weight.
    """
    W_np = to_numpy(W)
    n_inst, d_hidden, n_feats = W_np.shape
    check_length("titles", titles, n_inst)
    n_rows, n_cols = grid_shape(n_inst, n_cols)
    fig = make_subplots(n_rows, n_cols, subplot_titles=titles, shared_yaxes=True, vertical_spacing=0.18)
    colors = feature_palette(n_feats)
    for inst in range(n_inst):
        order = neuron_order(W_np[inst])
        weights = W_np[inst][order]
        share = weights**2 / np.maximum((weights**2).sum(-1, keepdims=True), 1e-12)
        row, col = divmod(inst, n_cols)
        for feat in range(n_feats):
            fig.add_trace(
                go.Bar(
                    x=[f"n{j}" for j in order], y=share[:, feat], marker_color=colors[feat], name=f"feature {feat}",
                    legendgroup=f"feature {feat}", showlegend=inst == 0, customdata=weights[:, feat],
                    hovertemplate=f"feature {feat}<br>share %{{y:.2f}}<br>weight %{{customdata:.2f}}<extra></extra>",
                ),
                row=row + 1, col=col + 1,
            )  # fmt: skip
    fig.update_yaxes(range=[0, 1], title_text="share of ‖W<sub>j</sub>‖²", col=1)
    fig.update_xaxes(title_text="neuron")
    fig.update_layout(
        barmode="stack", template=TEMPLATE, title="What each neuron reads: one colour = monosemantic",
        width=n_cols * 230 + 200, height=n_rows * 280 + 100, legend=dict(title="feature (0 = most important)"),
    )  # fmt: skip
    return fig


def plot_neuron_weights(
    W: Float[Tensor, "inst d_hidden feats"], titles: Sequence[str] | None = None, n_cols: int | None = None
) -> go.Figure:
    """Heatmaps of W (neurons × features) per instance, neurons sorted as in `neuron_order`.

    Red = positive weight, blue = negative, on one symmetric scale for all instances. Features are in importance
    order (0 = most important at the left).
    """
    W_np = to_numpy(W)
    n_inst, d_hidden, n_feats = W_np.shape
    check_length("titles", titles, n_inst)
    n_rows, n_cols = grid_shape(n_inst, n_cols)
    fig = make_subplots(n_rows, n_cols, subplot_titles=titles, horizontal_spacing=0.04, vertical_spacing=0.15)
    for inst in range(n_inst):
        order = neuron_order(W_np[inst])
        row, col = divmod(inst, n_cols)
        fig.add_trace(
            go.Heatmap(
                z=W_np[inst][order], x=np.arange(n_feats), y=[f"n{j}" for j in order], coloraxis="coloraxis",
                hovertemplate="neuron %{y}, feature %{x}<br>W = %{z:.3f}<extra></extra>",
            ),
            row=row + 1, col=col + 1,
        )  # fmt: skip
    limit = float(np.abs(W_np).max()) or 1.0
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text="feature")
    fig.update_layout(
        coloraxis=dict(colorscale=WEIGHT_SCALE, cmin=-limit, cmax=limit, colorbar=dict(title="W", thickness=12)),
        template=TEMPLATE, title="W: rows are neurons, columns are features",
        width=n_cols * 230 + 150, height=n_rows * 260 + 100,
    )  # fmt: skip
    return fig


def plot_neuron_trends(
    density: Float[Tensor, " setting"],
    n_represented: Float[Tensor, " setting"],
    n_monosemantic: Float[Tensor, " setting"],
    n_features: int,
    d_hidden: int,
) -> go.Figure:
    """Features represented and monosemantic neurons against feature probability (sparse on the left)."""
    density_np = to_numpy(density)
    names = ["features with ‖W<sub>i</sub>‖ > 0.5", "monosemantic neurons (≥ 90 %)"]
    traces = [
        go.Scatter(x=density_np, y=to_numpy(counts), mode="lines+markers", name=name)
        for counts, name in zip([n_represented, n_monosemantic], names, strict=True)
    ]
    fig = go.Figure(traces)
    fig.add_hline(y=d_hidden, line_dash="dot", annotation_text=f"{d_hidden} neurons")
    fig.add_hline(y=n_features, line_dash="dot", annotation_text=f"{n_features} features")
    fig.update_layout(
        template=TEMPLATE, title="Sparser features: more features represented, fewer monosemantic neurons",
        xaxis=dict(title="feature probability p (log scale)", type="log"),
        yaxis=dict(title="count", rangemode="tozero"), width=750, height=420, legend=dict(orientation="h", y=-0.25),
    )  # fmt: skip
    return fig


def plot_computed_features(
    density: Float[Tensor, " setting"], counts: dict[str, Float[Tensor, " setting"]], d_hidden: int
) -> go.Figure:
    """Counts of what the abs model computes (e.g. signed halves, features) at each feature probability.

    Dotted lines at d_hidden (one signed half per neuron: the most a model without superposition computes) and
    d_hidden / 2 (features computed with two neurons each).
    """
    fig = go.Figure(
        [go.Scatter(x=to_numpy(density), y=to_numpy(y), mode="lines+markers", name=name) for name, y in counts.items()]
    )
    fig.add_hline(y=d_hidden, line_dash="dot", annotation_text=f"{d_hidden} neurons")
    fig.add_hline(y=d_hidden / 2, line_dash="dot", annotation_text="2 neurons per feature")
    fig.update_layout(
        template=TEMPLATE, title="Computation in superposition: what the abs model computes, on single-feature inputs",
        xaxis=dict(title="feature probability p (log scale)", type="log"),
        yaxis=dict(title="count", rangemode="tozero"), width=750, height=420, legend=dict(orientation="h", y=-0.25),
    )  # fmt: skip
    return fig


def plot_neuron_computation(
    W1: Float[Tensor, "d_hidden feats"], W2: Float[Tensor, "feats d_hidden"], title: str = ""
) -> go.Figure:
    """Input weights W1 and output weights W2ᵀ of one model, side by side (neurons × features).

    A feature computed with two dedicated neurons shows as a +/− pair in its column of W1, each writing back
    positively to the same feature in W2ᵀ; in superposition a neuron reads several features.
    """
    W1_np, W2_np = to_numpy(W1), to_numpy(W2).T
    order = neuron_order(W1_np)
    limit = float(max(np.abs(W1_np).max(), np.abs(W2_np).max())) or 1.0
    fig = make_subplots(1, 2, subplot_titles=["W1: what each neuron reads", "W2ᵀ: what each neuron writes"])
    for col, z in enumerate([W1_np[order], W2_np[order]]):
        fig.add_trace(
            go.Heatmap(
                z=z, x=np.arange(z.shape[1]), y=[f"n{j}" for j in order], coloraxis="coloraxis",
                hovertemplate="neuron %{y}, feature %{x}<br>%{z:.3f}<extra></extra>",
            ),
            row=1, col=col + 1,
        )  # fmt: skip
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text="feature")
    fig.update_layout(
        coloraxis=dict(colorscale=WEIGHT_SCALE, cmin=-limit, cmax=limit, colorbar=dict(thickness=12)),
        template=TEMPLATE, title=title, width=900, height=420,
    )  # fmt: skip
    return fig
