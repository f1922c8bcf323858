"""Plots for chapter 1, section 7: singular learning theory on the toy model.

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

__all__ = ["plot_kgons", "plot_llc_by_plateau", "plot_llc_traces", "plot_training_losses"]


def plot_kgons(
    points: dict[str, tuple[Float[Tensor, "2 feats"], Float[Tensor, " feats"]]], losses: dict[str, float]
) -> go.Figure:
    """Each critical point (W, b) in its own panel: every live column W_i as a line from the origin, titled with
    the point's name and loss. Dead columns (zero) are not drawn; their biases are listed in the hover text."""
    names = list(points)
    if set(losses) != set(names):
        raise ValueError(f"got losses for {sorted(losses)} but points {sorted(names)}")
    titles = [f"{name}: L = {losses[name]:.5f}" for name in names]
    fig = make_subplots(1, len(names), subplot_titles=titles, horizontal_spacing=0.03)
    limit = 1.1 * max(float(to_numpy(W).__abs__().max()) for W, _ in points.values())
    layout = {}
    for column, name in enumerate(names):
        W, b = (to_numpy(tensor) for tensor in points[name])
        live = np.flatnonzero(np.linalg.norm(W, axis=0) > 0)
        xs = [value for i in live for value in (0.0, W[0, i], None)]
        ys = [value for i in live for value in (0.0, W[1, i], None)]
        fig.add_trace(
            go.Scatter(x=xs, y=ys, mode="lines+markers", name=name, showlegend=False,
                       hovertext=[f"feature {i}, bias {b[i]:.3f}" for i in live for _ in range(3)]),
            row=1, col=column + 1,
        )  # fmt: skip
        suffix = "" if column == 0 else str(column + 1)
        axis = dict(range=[-limit, limit], showticklabels=False, zeroline=True, showgrid=False)
        layout[f"xaxis{suffix}"] = axis | dict(constrain="domain")
        layout[f"yaxis{suffix}"] = axis | dict(scaleanchor=f"x{suffix}", scaleratio=1)
    fig.update_layout(layout, template=TEMPLATE, width=max(500, 220 * len(names)), height=300,
                      title="Critical points of the toy model: live columns of W, population loss")  # fmt: skip
    return fig


def plot_training_losses(
    steps: Float[Tensor, " logs"], losses: Float[Tensor, "logs inst"], levels: dict[str, float]
) -> go.Figure:
    """The empirical loss of every instance along training (log scale), with a dotted line at each k-gon's loss."""
    steps, losses = to_numpy(steps), to_numpy(losses)
    if losses.shape[0] != len(steps):
        raise ValueError(f"got {losses.shape[0]} logged losses for {len(steps)} steps")
    fig = go.Figure()
    for inst in range(losses.shape[1]):
        fig.add_trace(go.Scatter(x=steps, y=losses[:, inst], mode="lines", name=f"seed {inst}", line=dict(width=1.5)))
    for name, level in levels.items():
        fig.add_hline(y=level, line=dict(dash="dot", width=1, color="grey"), annotation_text=f"{name}-gon",
                      annotation_position="right")  # fmt: skip
    fig.update_layout(template=TEMPLATE, xaxis_title="step", yaxis_title="loss L_n", yaxis_type="log",
                      title="Training from random starts: the loss steps down through the k-gon levels")  # fmt: skip
    return fig


def plot_llc_traces(
    losses: Float[Tensor, "chains steps"], init_loss: float, n_beta: float, burn_in: int, title: str = ""
) -> go.Figure:
    """Each chain's nβ (L(w_t) − L(w*)) along its steps, the quantity λ̂ averages: burn-in (shaded) and chains that
    drift away from the others are visible at a glance. The dashed line is λ̂ (the mean after burn-in)."""
    values = n_beta * (to_numpy(losses) - init_loss)
    if not 0 <= burn_in < values.shape[1]:
        raise ValueError(f"burn_in = {burn_in} for chains of {values.shape[1]} steps")
    fig = go.Figure()
    for chain, trace in enumerate(values):
        fig.add_trace(go.Scatter(y=trace, mode="lines", name=f"chain {chain}", line=dict(width=1), opacity=0.7))
    fig.add_vrect(x0=0, x1=burn_in, fillcolor="grey", opacity=0.15, line_width=0, annotation_text="burn-in")
    fig.add_hline(y=float(values[:, burn_in:].mean()), line=dict(dash="dash", color="black"), annotation_text="λ̂")
    fig.update_layout(template=TEMPLATE, xaxis_title="SGLD step", yaxis_title="nβ (L(w_t) − L(w*))",
                      title=title or "SGLD chains")  # fmt: skip
    return fig


def plot_llc_by_plateau(
    losses: Sequence[float] | Tensor,
    llcs: Sequence[float] | Tensor,
    per_chain: Sequence[Sequence[float]] | Tensor,
    names: Sequence[str],
) -> go.Figure:
    """λ̂ against the loss of the plateau it was estimated on, one point per plateau labelled with its k-gon, the
    error bar spanning its chains (lowest to highest). The loss axis runs from high to low, the way training goes."""
    losses, llcs = (np.asarray(to_numpy(v) if isinstance(v, Tensor) else v, dtype=float) for v in (losses, llcs))
    chains = [np.asarray(to_numpy(c) if isinstance(c, Tensor) else c, dtype=float) for c in per_chain]
    if not len(losses) == len(llcs) == len(chains) == len(names):
        raise ValueError("losses, llcs, per_chain and names must have one entry per plateau")
    low = np.array([c.min() for c in chains])
    high = np.array([c.max() for c in chains])
    error = dict(type="data", symmetric=False, array=high - llcs, arrayminus=llcs - low)
    fig = go.Figure(go.Scatter(x=losses, y=llcs, error_y=error, mode="markers+text", text=list(names),
                               textposition="middle right", name="λ̂"))  # fmt: skip
    fig.update_xaxes(title_text="loss L_n of the plateau", autorange="reversed")
    fig.update_yaxes(title_text="λ̂ (bars: lowest to highest chain)")
    fig.update_layout(template=TEMPLATE, title="Local learning coefficient on the plateaus where training ends")
    return fig
