"""Plots for chapter 1, section 3: correlated and anticorrelated features.

Every function builds and returns a plotly Figure; the notebook calls `.show()` on it. Tensors may live on any
device and may require grad: they are copied to the CPU first.
"""

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from jaxtyping import Float
from plotly.subplots import make_subplots
from torch import Tensor

from utils.plots.common import TEMPLATE, to_numpy
from utils.plots.tms.superposition import plot_features_in_2d

__all__ = ["feature_groups", "pair_colors", "plot_batch_cooccurrence", "plot_features_by_pair"]

# One hue per pair: blues and greens for correlated pairs, reds and oranges for anticorrelated ones.
CORRELATED_COLORS = ["#1f77b4", "#2ca02c", "#17becf", "#9467bd", "#8c564b"]
ANTICORRELATED_COLORS = ["#d62728", "#ff7f0e", "#e377c2", "#bcbd22", "#7f7f7f"]
INDEPENDENT_COLOR = "#aaaaaa"
PRESENCE_SCALE = "Blues"


def feature_groups(n_correlated_pairs: int, n_anticorrelated_pairs: int, n_features: int) -> list[str]:
    """A short label for every feature in the course's layout: "C0" for correlated pair 0, "A1", then "–"."""
    labels = [f"C{k}" for k in range(n_correlated_pairs) for _ in range(2)]
    labels += [f"A{k}" for k in range(n_anticorrelated_pairs) for _ in range(2)]
    if len(labels) > n_features:
        raise ValueError(f"{len(labels)} paired features do not fit in {n_features} features")
    return labels + ["–"] * (n_features - len(labels))


def pair_colors(n_correlated_pairs: int, n_anticorrelated_pairs: int, n_features: int) -> list[str]:
    """One CSS colour per feature: both members of a pair share their pair's colour; independent features are grey."""
    if max(n_correlated_pairs, n_anticorrelated_pairs) > len(CORRELATED_COLORS):
        raise ValueError(f"at most {len(CORRELATED_COLORS)} pairs of each kind have their own colour")
    colors = [CORRELATED_COLORS[k] for k in range(n_correlated_pairs) for _ in range(2)]
    colors += [ANTICORRELATED_COLORS[k] for k in range(n_anticorrelated_pairs) for _ in range(2)]
    if len(colors) > n_features:
        raise ValueError(f"{len(colors)} paired features do not fit in {n_features} features")
    return colors + [INDEPENDENT_COLOR] * (n_features - len(colors))


def plot_features_by_pair(
    W: Float[Tensor, "inst 2 feats"],
    n_correlated_pairs: int = 0,
    n_anticorrelated_pairs: int = 0,
    titles: Sequence[str] | None = None,
    title: str | None = None,
) -> go.Figure:
    """Every feature's direction in the hidden plane, one subplot per instance, both members of a pair in one colour.

    Blues and greens are correlated pairs, reds and oranges anticorrelated pairs, grey independent features.
    """
    colors = pair_colors(n_correlated_pairs, n_anticorrelated_pairs, W.shape[-1])
    kinds = "correlated" if n_correlated_pairs else "anticorrelated" if n_anticorrelated_pairs else "independent"
    default = f"Features of {kinds} pairs (one colour per pair)"
    return plot_features_in_2d(W, colors=colors, titles=titles, title=title or default)


def plot_batch_cooccurrence(
    batch: Float[Tensor, "batch inst feats"],
    n_correlated_pairs: int = 0,
    n_anticorrelated_pairs: int = 0,
    instance: int = 0,
    n_samples: int = 40,
) -> go.Figure:
    """Which features are present together, in one instance's data.

    Left: the first `n_samples` samples as a heatmap (one row per sample, white = absent). Right, from the whole
    batch: P(feature j present | feature i present). A correlated pair shows 1 off the diagonal, an anticorrelated
    pair 0, and independent features just p, the probability of the other feature.
    """
    x = to_numpy(batch[:, instance])
    n_batch, n_feats = x.shape
    labels = [
        f"{i} {group}" for i, group in enumerate(feature_groups(n_correlated_pairs, n_anticorrelated_pairs, n_feats))
    ]
    present = (x > 0).astype(np.float64)
    counts = present.sum(0)
    together = present.T @ present
    with np.errstate(invalid="ignore", divide="ignore"):
        conditional = np.where(counts[:, None] > 0, together / counts[:, None], np.nan)

    shown = x[:n_samples]
    fig = make_subplots(
        1, 2, column_widths=[0.5, 0.5], horizontal_spacing=0.16,
        subplot_titles=[f"the first {len(shown)} samples (instance {instance})",
                        f"P(column present | row present), {n_batch} samples"],
    )  # fmt: skip
    fig.add_trace(
        go.Heatmap(
            z=shown, x=labels, y=np.arange(len(shown)), coloraxis="coloraxis", name="magnitude",
            hovertemplate="sample %{y}, feature %{x}<br>magnitude %{z:.3f}<extra></extra>",
        ),
        row=1, col=1,
    )  # fmt: skip
    fig.add_trace(
        go.Heatmap(
            z=conditional, x=labels, y=labels, coloraxis="coloraxis2", name="P(j | i)",
            text=np.round(conditional, 2), texttemplate="%{text}",
            hovertemplate="P(%{x} present | %{y} present) = %{z:.3f}<extra></extra>",
        ),
        row=1, col=2,
    )  # fmt: skip
    fig.update_yaxes(autorange="reversed", title_text="sample", row=1, col=1)
    fig.update_yaxes(autorange="reversed", title_text="given feature (row)", row=1, col=2)
    fig.update_xaxes(title_text="feature (pair)", row=1, col=1)
    fig.update_xaxes(title_text="feature (pair)", row=1, col=2)
    fig.update_layout(
        template=TEMPLATE, width=950, height=480, margin=dict(l=60, r=90, t=90, b=60),
        title="Correlated pairs (C) are present together, anticorrelated pairs (A) never",
        coloraxis=dict(colorscale=PRESENCE_SCALE, cmin=0, cmax=1,
                       colorbar=dict(title=dict(text="magnitude", side="right"), thickness=12, x=0.43, len=0.9)),
        coloraxis2=dict(colorscale="Viridis", cmin=0, cmax=1,
                        colorbar=dict(title=dict(text="P(j | i)", side="right"), thickness=12, len=0.9)),
    )  # fmt: skip
    return fig
