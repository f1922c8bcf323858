"""Plots for chapter 2, section 1: an SAE on a toy model's hidden activations.

Every function builds and returns a plotly Figure; the notebook calls `.show()` on it. Tensors may live on any device
and may require grad: they are copied to the CPU first.
"""

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from jaxtyping import Bool, Float
from plotly.colors import qualitative, sample_colorscale
from plotly.subplots import make_subplots
from torch import Tensor

from utils.plots.common import TEMPLATE, VALUE_SCALE, animation, check_length, frame_indices, grid_shape, to_numpy
from utils.plots.tms.superposition import plot_features_in_2d

__all__ = ["animate_sae_in_2d", "plot_sae_in_2d", "plot_sae_training"]

FEATURE_GREY = "#b0b0b0"


def latent_color(latent: int) -> str:
    return qualitative.Dark24[latent % len(qualitative.Dark24)]


def plot_sae_in_2d(
    features: Float[Tensor, "inst 2 feats"],
    decoder: Float[Tensor, "inst d_sae 2"],
    titles: Sequence[str] | None = None,
    hidden: Float[Tensor, "batch inst 2"] | None = None,
    title: str = "The toy model's features (grey) and the SAE's decoder directions (coloured)",
    n_cols: int | None = None,
    marked: Bool[Tensor, "inst d_sae"] | np.ndarray | None = None,
    mark_label: str = "resampled",
) -> go.Figure:
    """One subplot per instance: the toy model's feature directions W_i as grey lines, and the SAE's decoder rows,
    normalised, as coloured dashed lines with a diamond at the tip (one colour per latent, the same in every subplot).

    A latent that has found a feature lies on top of its grey line; one between two lines has found neither.
    `hidden` adds hidden states h = W x as faint points. `marked` latents get a large star at the tip, and
    `mark_label` in their hover.
    """
    features_np, decoder_np = to_numpy(features), to_numpy(decoder)
    n_inst, d_sae = decoder_np.shape[0], decoder_np.shape[1]
    if features_np.shape[0] != n_inst or features_np.shape[1] != 2 or decoder_np.shape[2] != 2:
        raise ValueError(
            f"features {features_np.shape} and decoder {decoder_np.shape} are not [inst 2 feats], [inst d_sae 2]"
        )
    fig = plot_features_in_2d(
        features, colors=[FEATURE_GREY] * features_np.shape[2], titles=titles, hidden=hidden, title=title, n_cols=n_cols
    )
    n_rows, n_cols = grid_shape(n_inst, n_cols)
    for inst in range(n_inst):
        row, col = divmod(inst, n_cols)
        for latent in range(d_sae):
            fig.add_trace(
                go.Scatter(mode="lines+markers", name=f"latent {latent}",
                           line=dict(color=latent_color(latent), width=2, dash="dash")),
                row=row + 1, col=col + 1,
            )  # fmt: skip
    for trace, data in zip(fig.data[-n_inst * d_sae :], latent_trace_data(decoder_np, marked, mark_label), strict=True):
        trace.update(data)
    return fig


def latent_trace_data(
    decoder: Float[np.ndarray, "inst d_sae 2"], marked: Bool[Tensor, "inst d_sae"] | np.ndarray | None, mark_label: str
) -> list[dict]:
    """What `plot_sae_in_2d` draws of every latent of every instance, trace by trace: its decoder row at unit length
    (x, y), the tip's marker (a star if marked) and the hover. An animation's frames carry only these."""
    unit = decoder / np.maximum(np.linalg.norm(decoder, axis=-1, keepdims=True), 1e-12)
    marked_np = np.zeros(decoder.shape[:2], dtype=bool) if marked is None else to_numpy(marked).astype(bool)
    data = []
    for inst in range(decoder.shape[0]):
        for latent in range(decoder.shape[1]):
            tip, size, note = ("star", 16, f" ({mark_label})") if marked_np[inst, latent] else ("diamond", 9, "")
            data.append(
                dict(
                    x=[0.0, float(unit[inst, latent, 0])], y=[0.0, float(unit[inst, latent, 1])],
                    marker=dict(symbol=["circle-open", tip], size=[1, size], color=latent_color(latent)),
                    hovertemplate=f"latent {latent}{note}<br>decoder direction (%{{x:.2f}}, %{{y:.2f}})<extra></extra>",
                )
            )  # fmt: skip
    return data


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


def animate_sae_in_2d(
    features: Float[Tensor, "inst 2 feats"],
    log: dict[str, Tensor],
    titles: Sequence[str] | None = None,
    n_cols: int | None = None,
    marked: Bool[Tensor, "n_logs inst d_sae"] | None = None,
    mark_label: str = "resampled",
    max_frames: int = 41,
    title: str = "The SAE's decoder directions (coloured) finding the toy model's features (grey) during training",
) -> go.Figure:
    """`plot_sae_in_2d` of the decoder `ToySAE.optimize` logged ("W_dec": [n_logs, inst, d_sae, 2]), one frame per
    logged step (at most `max_frames`, evenly spread). `marked` [n_logs, inst, d_sae] stars latents frame by frame
    (e.g. `resampled_since`: the latents the last resampling gave a new start)."""
    decoder_log, steps = to_numpy(log["W_dec"]), to_numpy(log["step"])
    if marked is not None and tuple(marked.shape) != decoder_log.shape[:3]:
        raise ValueError(f"marked has shape {tuple(marked.shape)}, not [n_logs, inst, d_sae] = {decoder_log.shape[:3]}")
    kept = frame_indices(len(steps), max_frames)
    first = None if marked is None else marked[kept[0]]
    fig = plot_sae_in_2d(features, decoder_log[kept[0]], titles, title=title, n_cols=n_cols, marked=first,
                         mark_label=mark_label)  # fmt: skip
    n_latents = decoder_log.shape[1] * decoder_log.shape[2]
    frames = [
        latent_trace_data(decoder_log[index], None if marked is None else marked[index], mark_label) for index in kept
    ]
    if marked is None:  # markers and hovers never change: frames carry the directions only (a third of the size)
        frames = [[{"x": data["x"], "y": data["y"]} for data in frame] for frame in frames]
    return animation(fig, frames, steps[kept], traces=range(len(fig.data) - n_latents, len(fig.data)))
