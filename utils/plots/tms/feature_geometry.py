"""Plots for chapter 1, section 5: feature geometry.

Every function builds and returns a plotly Figure; the notebook calls `.show()` on it. Nothing here writes files,
changes global state or needs widgets. Tensors may live on any device and may require grad: they are copied to the
CPU first.
"""

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from jaxtyping import Float
from torch import Tensor

from utils.plots.common import TEMPLATE, to_numpy

__all__ = ["plot_capacity", "plot_dimensions_per_feature", "plot_feature_dimensionalities"]

# The geometry behind each fraction at which feature dimensionalities stick.
GEOMETRY = {
    "1": "a dimension of its own",
    "3/4": "tetrahedron: 4 features in 3 dims",
    "2/3": "triangle: 3 features in 2 dims",
    "1/2": "antipodal pair: 2 features in 1 dim",
    "2/5": "pentagon: 5 features in 2 dims",
    "3/8": "square antiprism: 8 features in 3 dims",
}
LINE_COLOR = "#3366cc"
POINT_COLOR = "rgba(20, 20, 20, 0.35)"
GUIDE_COLOR = "#999999"
HALF_COLOR = "#d62728"
HOVER_D_STAR = "1/(1−S) = %{x:.2f} (p = %{customdata:.3f})<br>D* = %{y:.3f}<extra></extra>"
HOVER_FEATURE = "feature %{customdata[0]}, p = %{customdata[1]:.3f}<br>D<sub>i</sub> = %{y:.3f}<extra></extra>"
HOVER_CAPACITY = "feature %{customdata[0]} (importance %{customdata[1]:.3f})<br>C<sub>i</sub> = %{y:.3f}<extra></extra>"


def sparsity_axis(fig: go.Figure, feature_probability: np.ndarray) -> None:
    """A log x-axis of 1/(1 − S) = 1/p with ticks at round numbers inside the data's range."""
    ticks = [
        t
        for t in (1, 2, 3, 5, 10, 20, 50, 100)
        if 0.9 / feature_probability.max() <= t <= 1.1 / feature_probability.min()
    ]
    fig.update_xaxes(
        type="log", title="1 / (1 − S)   (1 / feature probability)", tickvals=ticks, ticktext=[str(t) for t in ticks]
    )


def plot_dimensions_per_feature(
    feature_probability: Float[Tensor, " inst"] | Sequence[float],
    dimensions_per_feature: Float[Tensor, " inst"] | Sequence[float],
    title: str = "Dimensions per feature D* = d_hidden / ‖W‖²<sub>F</sub>",
) -> go.Figure:
    """The paper's figure: D* of every model against 1/(1 − S) on a log axis, with the 1/2 of antipodal pairs."""
    p, D_star = to_numpy(feature_probability).ravel(), to_numpy(dimensions_per_feature).ravel()
    if p.shape != D_star.shape:
        raise ValueError(f"{p.shape[0]} feature probabilities but {D_star.shape[0]} values of D*")
    order = np.argsort(-p)
    fig = go.Figure(
        go.Scatter(
            x=1 / p[order], y=D_star[order], mode="lines+markers", name="D*", line=dict(color=LINE_COLOR, width=2),
            customdata=p[order], hovertemplate=HOVER_D_STAR,
        )
    )  # fmt: skip
    fig.add_hline(
        y=0.5, line=dict(color=HALF_COLOR, dash="dash", width=1),
        annotation_text="1/2: antipodal pairs", annotation_position="bottom left",
    )  # fmt: skip
    sparsity_axis(fig, p)
    fig.update_yaxes(title="D* (dimensions per feature)", range=[0, max(1.1, float(D_star.max()) + 0.05)])
    fig.update_layout(template=TEMPLATE, title=title, width=700, height=420, showlegend=False)
    return fig


def plot_feature_dimensionalities(
    feature_probability: Float[Tensor, " inst"] | Sequence[float],
    dimensionality: Float[Tensor, "inst feats"],
    fractions: Mapping[str, float],
    dimensions_per_feature: Float[Tensor, " inst"] | Sequence[float] | None = None,
    min_dimensionality: float = 0.05,
    title: str = "Feature dimensionalities D<sub>i</sub> stick at simple fractions",
) -> go.Figure:
    """Every feature's D_i against 1/(1 − S), with `fractions` (label → value: section 1.5's STICKY_FRACTIONS) as
    guides and D* as a line if given.

    Features below `min_dimensionality` (those not represented) are left out: hundreds of points at 0 hide nothing
    but the picture. Points get a small deterministic horizontal jitter so that features at the same D_i don't
    hide each other.
    """
    p, D = to_numpy(feature_probability).ravel(), to_numpy(dimensionality)
    if D.ndim != 2 or D.shape[0] != p.shape[0]:
        raise ValueError(f"{p.shape[0]} feature probabilities but dimensionalities of shape {D.shape}")
    n_inst, n_feats = D.shape
    jitter = np.exp(np.random.default_rng(0).uniform(-0.04, 0.04, size=D.shape))
    x = (1 / p)[:, None] * jitter
    keep = D >= min_dimensionality
    inst, feat = np.nonzero(keep)
    fig = go.Figure(
        go.Scatter(
            x=x[keep], y=D[keep], mode="markers", name="D<sub>i</sub>", marker=dict(color=POINT_COLOR, size=5),
            customdata=np.stack([feat, p[inst]], axis=1),
            hovertemplate=HOVER_FEATURE,
        )
    )  # fmt: skip
    for label, value in fractions.items():
        color = HALF_COLOR if label == "1/2" else GUIDE_COLOR
        annotation = f"{label}  {GEOMETRY[label]}" if label in GEOMETRY else label
        fig.add_hline(
            y=value, line=dict(color=color, dash="dot", width=1), annotation_text=annotation,
            annotation_position="right", annotation_font=dict(size=10, color=color),
        )  # fmt: skip
    if dimensions_per_feature is not None:
        D_star = to_numpy(dimensions_per_feature).ravel()
        order = np.argsort(-p)
        fig.add_trace(
            go.Scatter(
                x=1 / p[order], y=D_star[order], mode="lines+markers", name="D*",
                line=dict(color=LINE_COLOR, width=2), hovertemplate="D* = %{y:.3f}<extra></extra>",
            )
        )  # fmt: skip
    sparsity_axis(fig, p)
    fig.update_yaxes(title="dimensionality", range=[0, 1.1])
    fig.update_layout(
        template=TEMPLATE, title=title, width=900, height=480, margin=dict(r=260),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="left", x=0),
    )  # fmt: skip
    return fig


def plot_capacity(
    importance: Float[Tensor, " feats"] | Sequence[float],
    capacity: Float[Tensor, "inst feats"],
    labels: Sequence[str] | None = None,
    d_hidden: int | None = None,
    title: str = "Capacity C<sub>i</sub> of every feature, in order of importance",
) -> go.Figure:
    """Each feature's capacity against its importance rank (most important first), one line per model.

    The legend shows each model's total capacity Σ_i C_i, which can never exceed `d_hidden`.
    """
    importance, C = to_numpy(importance).ravel(), to_numpy(capacity)
    C = C[None] if C.ndim == 1 else C
    if C.shape[1] != importance.shape[0]:
        raise ValueError(f"{importance.shape[0]} importances but capacities of shape {C.shape}")
    if labels is not None and len(labels) != C.shape[0]:
        raise ValueError(f"{len(labels)} labels for {C.shape[0]} models")
    order = np.argsort(-importance, kind="stable")
    rank = np.arange(len(order))
    colors = ["#08306b", "#2171b5", "#6baed6", "#fd8d3c", "#d94801", "#7f2704"]
    fig = go.Figure()
    for i, row in enumerate(C):
        name = labels[i] if labels is not None else f"model {i}"
        fig.add_trace(
            go.Scatter(
                x=rank, y=row[order], mode="lines+markers", name=f"{name} (Σ C<sub>i</sub> = {row.sum():.2f})",
                line=dict(color=colors[i % len(colors)], width=2), marker=dict(size=6),
                customdata=np.stack([order, importance[order]], axis=1),
                hovertemplate=HOVER_CAPACITY,
            )
        )  # fmt: skip
    subtitle = "" if d_hidden is None else f"  (total capacity ≤ d_hidden = {d_hidden})"
    fig.update_xaxes(title="features, most important first")
    fig.update_yaxes(title="capacity C<sub>i</sub>", range=[-0.05, 1.1])
    fig.update_layout(template=TEMPLATE, title=title + subtitle, width=800, height=420)
    return fig
