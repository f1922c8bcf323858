"""Plots for chapter 2, section 1: an SAE on a toy model's hidden activations.

Every function builds and returns a plotly Figure; the notebook calls `.show()` on it. Tensors may live on any device
and may require grad: they are copied to the CPU first.
"""

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from jaxtyping import Float
from plotly.colors import qualitative, sample_colorscale
from plotly.subplots import make_subplots
from torch import Tensor

from utils.plots.common import TEMPLATE, VALUE_SCALE, check_length, grid_shape, to_numpy
from utils.plots.tms.superposition import plot_features_in_2d

__all__ = ["plot_sae_in_2d", "plot_sae_training"]

FEATURE_GREY = "#b0b0b0"


def latent_color(latent: int) -> str:
    return qualitative.Dark24[latent % len(qualitative.Dark24)]


def plot_sae_in_2d(
    features: Float[Tensor, "inst 2 feats"],
    decoder: Float[Tensor, "inst d_sae 2"],
    titles: Sequence[str] | None = None,
    hidden: Float[Tensor, "batch inst 2"] | None = None,
    title: str = "The toy model's features (grey) and the SAE's decoder directions (coloured)",
) -> go.Figure:
    """One subplot per instance: the toy model's feature directions W_i as grey lines, and the SAE's decoder rows,
    normalised, as coloured dashed lines with a diamond at the tip (one colour per latent, the same in every subplot).

    A latent that has found a feature lies on top of its grey line; one between two lines has found neither.
    `hidden` adds hidden states h = W x as faint points.
    """
    features_np, decoder_np = to_numpy(features), to_numpy(decoder)
    n_inst, d_sae = decoder_np.shape[0], decoder_np.shape[1]
    if features_np.shape[0] != n_inst or features_np.shape[1] != 2 or decoder_np.shape[2] != 2:
        raise ValueError(
            f"features {features_np.shape} and decoder {decoder_np.shape} are not [inst 2 feats], [inst d_sae 2]"
        )
    fig = plot_features_in_2d(
        features, colors=[FEATURE_GREY] * features_np.shape[2], titles=titles, hidden=hidden, title=title
    )
    n_rows, n_cols = grid_shape(n_inst, None)
    unit = decoder_np / np.maximum(np.linalg.norm(decoder_np, axis=-1, keepdims=True), 1e-12)
    for inst in range(n_inst):
        row, col = divmod(inst, n_cols)
        for latent in range(d_sae):
            x, y = unit[inst, latent]
            fig.add_trace(
                go.Scatter(
                    x=[0, x], y=[0, y], mode="lines+markers", name=f"latent {latent}",
                    line=dict(color=latent_color(latent), width=2, dash="dash"),
                    marker=dict(symbol=["circle-open", "diamond"], size=[1, 9], color=latent_color(latent)),
                    hovertemplate=f"latent {latent}<br>decoder direction (%{{x:.2f}}, %{{y:.2f}})<extra></extra>",
                ),
                row=row + 1, col=col + 1,
            )  # fmt: skip
    return fig


def plot_sae_training(log: dict[str, Tensor], labels: Sequence[str] | None = None) -> go.Figure:
    """Three panels against the training step, one line per instance, from `ToySAE.optimize`'s log: the loss (log
    scale), L0 (latents active per input) and the fraction of latents alive (active at least once in the window)."""
    steps = to_numpy(log["step"])
    panels = [("loss", "loss", "log"), ("l0", "L0", "linear"), ("frac_alive", "fraction of latents alive", "linear")]
    n_inst = to_numpy(log["loss"]).shape[1]
    check_length("labels", labels, n_inst)
    labels = labels or [f"instance {inst}" for inst in range(n_inst)]
    colors = sample_colorscale(VALUE_SCALE, np.linspace(0, 0.9, n_inst).tolist())
    fig = make_subplots(1, 3, subplot_titles=[name for _, name, _ in panels], horizontal_spacing=0.08)
    for col, (key, _, _) in enumerate(panels, start=1):
        values = to_numpy(log[key])
        for inst in range(n_inst):
            fig.add_trace(
                go.Scatter(
                    x=steps, y=values[:, inst], mode="lines", name=labels[inst], legendgroup=labels[inst],
                    showlegend=col == 1, line=dict(color=colors[inst]),
                ),
                row=1, col=col,
            )  # fmt: skip
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_yaxes(range=[0, 1.05], row=1, col=3)
    fig.update_xaxes(title_text="step")
    # the legend goes below the panels: at the side it pushed the third panel out of a notebook's ~1000 px
    fig.update_layout(
        template=TEMPLATE, width=960, height=440, title="Training of every SAE instance",
        legend=dict(orientation="h", yanchor="top", y=-0.22, xanchor="center", x=0.5),
    )  # fmt: skip
    return fig
