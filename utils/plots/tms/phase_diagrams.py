"""Plots for chapter 1, section 2: phase diagrams.

Every function builds and returns a plotly Figure; the notebook calls `.show()` on it. Nothing here writes files,
changes global state or needs widgets. Tensors may live on any device: they are copied to the CPU first.
"""

from collections.abc import Callable, Sequence

import numpy as np
import plotly.graph_objects as go
import torch as t
from jaxtyping import Float, Int
from torch import Tensor

from utils.plots.common import TEMPLATE, to_numpy

__all__ = ["PHASE_COLORS", "plot_candidate_losses", "plot_phase_diagram"]

# One colour per phase, in the order of section 1.2's PHASES ("not represented", "dedicated", "superposition"):
# grey = feature 2 dropped, orange = feature 2 alone, purple = both.
PHASE_COLORS = ("#9aa5b1", "#f0a030", "#7b3fb0")


def log_ticks(values: np.ndarray) -> dict:
    """Tick positions (log10 of the values) labelled with the values themselves."""
    return dict(tickvals=np.log10(values), ticktext=[f"{v:.2g}" for v in values])


def boundary_curve(
    boundary: Callable[[Tensor], Tensor], r_min: float, r_max: float, n: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """log10 r and log10 p along a boundary p = boundary(r), for r from r_min to r_max."""
    r = t.logspace(np.log10(r_min), np.log10(r_max), n, dtype=t.float64)
    return np.log10(r.numpy()), np.log10(boundary(r).numpy())


def plot_phase_diagram(
    importance_ratio: Float[Tensor, " n_ratio"],
    density: Float[Tensor, " n_density"],
    phases: Int[Tensor, "n_ratio n_density"],
    labels: Sequence[str],
    boundary: Callable[[Tensor], Tensor],
    highlight: Tensor | None = None,
    title: str = "Trained phase of 2 features in 1 dimension (best seed per cell) and the analytic boundary",
) -> go.Figure:
    """The phase of every cell of a grid (x: importance ratio r, y: density p, both log scale), with the boundary.

    `phases` holds indices into `labels` (section 1.2's PHASES: "not represented", "dedicated", "superposition").
    The dashed lines are the closed-form boundaries between the three candidate solutions: superposition below the
    curve p = boundary(r), "not represented" above it for r < 1 and "dedicated" for r > 1. `highlight`
    ([n_ratio n_density] booleans) circles cells, e.g. those where training disagrees with the closed form.
    """
    ratio_np, density_np, phases_np = to_numpy(importance_ratio), to_numpy(density), to_numpy(phases).astype(int)
    if phases_np.shape != (len(ratio_np), len(density_np)):
        raise ValueError(f"`phases` has shape {phases_np.shape}, expected ({len(ratio_np)}, {len(density_np)})")
    x, y = np.log10(ratio_np), np.log10(density_np)
    # Heatmap rows are densities (y) and columns ratios (x). Three colour bands on a 0..2 scale: one per phase.
    bands = [[0, PHASE_COLORS[0]], [1 / 3, PHASE_COLORS[0]], [1 / 3, PHASE_COLORS[1]], [2 / 3, PHASE_COLORS[1]],
             [2 / 3, PHASE_COLORS[2]], [1, PHASE_COLORS[2]]]  # fmt: skip
    names = np.array(labels, dtype=object)[phases_np.T]
    customdata = np.stack(np.broadcast_arrays(ratio_np[None, :], density_np[:, None], names), axis=-1)
    heatmap = go.Heatmap(
        z=phases_np.T, x=x, y=y, zmin=-0.5, zmax=2.5, colorscale=bands, customdata=customdata, name="trained phase",
        colorbar=dict(tickvals=[0, 1, 2], ticktext=list(labels), title=dict(text="trained phase", side="right")),
        hovertemplate="r = %{customdata[0]:.3g}, p = %{customdata[1]:.3g}<br>%{customdata[2]}<extra></extra>",
    )  # fmt: skip
    step_x = (x[1] - x[0]) / 2 if len(x) > 1 else 0.5
    step_y = abs(y[1] - y[0]) / 2 if len(y) > 1 else 0.5
    curve_x, curve_y = boundary_curve(boundary, 10 ** (x.min() - step_x), 10 ** (x.max() + step_x))
    line = dict(color="black", width=2, dash="dash")
    traces = [
        heatmap,
        go.Scatter(x=curve_x, y=curve_y, mode="lines", line=line, name="analytic boundary", hoverinfo="skip"),
        # r = 1 separates "not represented" from "dedicated", above the superposition region (p > 4/7)
        go.Scatter(
            x=[0, 0], y=[np.log10(4 / 7), y.max() + step_y], mode="lines", line=line, showlegend=False,
            name="analytic boundary", hoverinfo="skip",
        ),
    ]  # fmt: skip
    if highlight is not None:
        mask = to_numpy(highlight).astype(bool)
        if mask.shape != phases_np.shape:
            raise ValueError(f"`highlight` has shape {mask.shape}, expected {phases_np.shape}")
        i_ratio, i_density = np.nonzero(mask)
        traces.append(
            go.Scatter(
                x=x[i_ratio], y=y[i_density], mode="markers", name="disagrees with the closed form",
                marker=dict(symbol="circle-open", size=22, color="#e8383d", line=dict(width=3)), hoverinfo="skip",
            )
        )  # fmt: skip
    fig = go.Figure(traces)
    fig.update_layout(
        template=TEMPLATE, title=title, width=760, height=600,
        xaxis=dict(title="relative importance r of feature 2 (log scale)", **log_ticks(ratio_np),
                   range=[x.min() - step_x, x.max() + step_x]),
        yaxis=dict(title="density p = 1 − S (log scale)", **log_ticks(density_np),
                   range=[y.min() - step_y, y.max() + step_y]),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0),
    )  # fmt: skip
    return fig


def plot_candidate_losses(
    density: Float[Tensor, " n"],
    losses: Float[Tensor, "n 3"],
    importance_ratio: float,
    names: Sequence[str] = ("ignore feature 2", "dedicate to feature 2", "antipodal superposition"),
) -> go.Figure:
    """The expected loss of each candidate solution against density, for one importance ratio (log-log axes).

    The lowest line is the solution gradient descent should find; where two lines cross, the phase changes.
    """
    density_np, losses_np = to_numpy(density), to_numpy(losses)
    if losses_np.shape != (len(density_np), 3):
        raise ValueError(f"`losses` has shape {losses_np.shape}, expected ({len(density_np)}, 3)")
    best = losses_np.argmin(axis=-1)
    traces = [
        go.Scatter(x=density_np, y=losses_np[:, k], mode="lines", name=names[k],
                   line=dict(color=PHASE_COLORS[k], width=3))
        for k in range(3)
    ]  # fmt: skip
    traces.append(
        go.Scatter(
            x=density_np, y=losses_np.min(axis=-1), mode="markers", name="lowest",
            marker=dict(color=[PHASE_COLORS[k] for k in best], size=5, line=dict(color="black", width=0.5)),
            hoverinfo="skip",
        )
    )  # fmt: skip
    fig = go.Figure(traces)
    fig.update_layout(
        template=TEMPLATE, width=760, height=450,
        title=f"Expected loss of the three candidate solutions, r = {importance_ratio:.3g}",
        xaxis=dict(title="density p (log scale)", type="log"),
        yaxis=dict(title="expected loss (log scale)", type="log"),
    )  # fmt: skip
    return fig
