"""Plots for chapter 1, section 6: superposition, memorisation and double descent.

Every function builds and returns a plotly Figure; the notebook calls `.show()` on it. Inputs are tensors or
sequences (on any device); nothing here trains, writes files or changes global state.
"""

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from jaxtyping import Float
from plotly.subplots import make_subplots
from torch import Tensor

from utils.plots.common import TEMPLATE, to_numpy
from utils.plots.tms.superposition import feature_traces

__all__ = ["plot_dimensionality", "plot_features_and_data", "plot_losses"]

FEATURES_COLOR = "#3366cc"
DATA_COLOR = "#e8383d"
TEST_COLOR = "#e8383d"
TRAIN_COLOR = "#3366cc"


def plot_features_and_data(
    W: Sequence[Float[Tensor, "2 feats"]],
    hidden: Sequence[Float[Tensor, "points 2"]],
    dataset_sizes: Sequence[int],
) -> go.Figure:
    """For each dataset size (columns): the features W_i (top row) and the training points' hidden vectors h = W x
    (bottom row), each as a line from the origin.

    Each subplot has its own range (features of a memorising model are tiny, hidden vectors of a feature-learning
    one too), so read shapes within a subplot, not lengths across subplots.
    """
    n = len(dataset_sizes)
    if len(W) != n or len(hidden) != n:
        raise ValueError(f"got {len(W)} weight matrices and {len(hidden)} sets of hidden vectors for {n} dataset sizes")
    titles = [f"T = {size}" for size in dataset_sizes] + [""] * n
    fig = make_subplots(2, n, subplot_titles=titles, horizontal_spacing=0.02, vertical_spacing=0.06)
    layout = {}
    for column, (W_size, hidden_size) in enumerate(zip(W, hidden, strict=True)):
        for row, (vectors, color, name) in enumerate(
            [(to_numpy(W_size), FEATURES_COLOR, "feature"), (to_numpy(hidden_size).T, DATA_COLOR, "point")]
        ):
            traces = feature_traces(vectors, [color] * vectors.shape[1], None, name)
            traces[-1].hovertemplate = f"{name} %{{customdata[0]}}<br>norm %{{customdata[1]:.3f}}<extra></extra>"
            traces[-1].marker.size = 4
            traces[-1].name = f"{name}s"
            fig.add_traces(traces, rows=row + 1, cols=column + 1)
            cell = row * n + column + 1
            suffix = "" if cell == 1 else str(cell)
            limit = 1.1 * float(np.abs(vectors).max()) or 1.0
            axis = dict(range=[-limit, limit], showticklabels=False, zeroline=False, showgrid=False)
            layout[f"xaxis{suffix}"] = axis | dict(constrain="domain")
            layout[f"yaxis{suffix}"] = axis | dict(scaleanchor=f"x{suffix}", scaleratio=1)
    fig.update_layout(
        layout, template=TEMPLATE, showlegend=False, width=max(600, 130 * n), height=330,
        title="Top: features W<sub>i</sub>. Bottom: hidden vectors h = Wx of the training points",
        margin=dict(l=20, r=20, t=80, b=20),
    )  # fmt: skip
    return fig


def per_size_traces(sizes: np.ndarray, values: np.ndarray, color: str, name: str, yaxis: str = "y") -> list[go.Scatter]:
    """One marker per (size, seed) and a line through the mean over seeds: values are [size, seed]."""
    xs = np.repeat(sizes, values.shape[1])
    return [
        go.Scatter(
            x=xs, y=values.reshape(-1), mode="markers", name=f"{name} (each seed)", legendgroup=name,
            marker=dict(color=color, size=6, opacity=0.45), yaxis=yaxis,
            hovertemplate=f"T = %{{x}}<br>{name} = %{{y:.4g}}<extra></extra>",
        ),
        go.Scatter(
            x=sizes, y=values.mean(1), mode="lines+markers", name=f"{name} (mean over seeds)", legendgroup=name,
            line=dict(color=color, width=3), marker=dict(size=8), yaxis=yaxis,
            hovertemplate=f"T = %{{x}}<br>mean {name} = %{{y:.4g}}<extra></extra>",
        ),
    ]  # fmt: skip


def transition_line(fig: go.Figure, transition: float | None) -> None:
    if transition is not None:
        fig.add_vline(
            x=transition, line=dict(color="#777777", dash="dot"), annotation_text="T·p = 10",
            annotation_position="top",
        )  # fmt: skip


def plot_dimensionality(
    dataset_sizes: Sequence[int],
    feature_dimensionality: Float[Tensor, "size seed"],
    data_dimensionality: Float[Tensor, "size seed"],
    transition: float | None = None,
    d_hidden: int = 2,
) -> go.Figure:
    """The largest dimensionality D_i of any feature and of any training point, against the dataset size T (log
    scale), per seed and averaged; the dashed curve d_hidden / T is what every point of a regular T-gon gets."""
    sizes = np.asarray(dataset_sizes)
    polygon = np.geomspace(sizes.min(), sizes.max(), 100)
    traces = [
        *per_size_traces(sizes, to_numpy(data_dimensionality), DATA_COLOR, "largest D of a training point"),
        *per_size_traces(sizes, to_numpy(feature_dimensionality), FEATURES_COLOR, "largest D of a feature"),
        go.Scatter(
            x=polygon, y=d_hidden / polygon, mode="lines", line=dict(color=DATA_COLOR, dash="dash", width=1),
            name=f"{d_hidden}/T: the points of a regular T-gon", hoverinfo="skip",
        ),
    ]  # fmt: skip
    fig = go.Figure(traces)
    transition_line(fig, transition)
    fig.update_layout(
        template=TEMPLATE, width=800, height=450,
        title="Small datasets: training points get directions of their own. Large ones: features do",
        xaxis=dict(title="dataset size T (log scale)", type="log"),
        yaxis=dict(title="dimensionality D<sub>i</sub>", range=[0, 1.05]),
        legend=dict(orientation="h", yanchor="top", y=-0.2, x=0),
    )  # fmt: skip
    return fig


def plot_losses(
    dataset_sizes: Sequence[int],
    train_loss: Float[Tensor, "size seed"],
    test_loss: Float[Tensor, "size seed"],
    baseline: float | None = None,
    transition: float | None = None,
) -> go.Figure:
    """Train and test loss against the dataset size T (both log scale), per seed and averaged over seeds.

    `baseline` draws the loss of the model that outputs zeros, the level a model that learned nothing reaches.
    """
    sizes = np.asarray(dataset_sizes)
    fig = go.Figure(
        [
            *per_size_traces(sizes, to_numpy(test_loss), TEST_COLOR, "test loss"),
            *per_size_traces(sizes, to_numpy(train_loss), TRAIN_COLOR, "train loss"),
        ]
    )
    if baseline is not None:
        fig.add_hline(
            y=baseline, line=dict(color="#333333", dash="dash"), annotation_text="output 0 everywhere",
            annotation_position="bottom right",
        )  # fmt: skip
    transition_line(fig, transition)
    fig.update_layout(
        template=TEMPLATE, width=800, height=430, title="Test loss rises, then falls: double descent in T",
        xaxis=dict(title="dataset size T (log scale)", type="log"), yaxis=dict(title="loss (log scale)", type="log"),
        legend=dict(orientation="h", yanchor="top", y=-0.2, x=0),
    )  # fmt: skip
    return fig
