"""Plots for chapter 2, section 5: SAE variants on the L0 / explained-variance plane."""

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from torch import Tensor

from utils.plots.tms.superposition import TEMPLATE, to_numpy

__all__ = ["plot_pareto"]

ARCHITECTURE_COLORS = {
    "standard": "#7f8c8d",
    "gated": "#2e86c1",
    "jumprelu": "#c0392b",
    "topk": "#27ae60",
    "batchtopk": "#8e44ad",
}
DASHES = {"untied": "solid", "tied": "dash"}


def plot_pareto(table: Mapping[str, Mapping[str, Tensor]], true_l0: float | None = None) -> go.Figure:
    """Left: explained variance against L0, one line per architecture and weight-tying (tied dashed), one point per
    setting of its sweep. Right: the relative reconstruction bias γ = E‖ĥ‖² / E[h·ĥ] against L0 (below 1: the
    reconstructions shrink).

    `table["{architecture} {untied|tied}"]` holds [setting] tensors "l0", "explained_variance", "shrinkage" and the
    knob the sweep turned ("sparsity_coeff" or "k"); `true_l0`, if given, is drawn as the data's own mean L0.
    """
    fig = make_subplots(
        1, 2, horizontal_spacing=0.1,
        subplot_titles=["explained variance against L0", "γ = E‖ĥ‖² / E[h·ĥ] (1 = no shrinkage)"],
    )  # fmt: skip
    for key, metrics in table.items():
        architecture, kind = key.rsplit(" ", 1)
        l0 = to_numpy(metrics["l0"])
        order = np.argsort(l0)
        knob = "k" if "k" in metrics else "sparsity_coeff"
        labels = [f"{knob} = {v:.3g}" for v in to_numpy(metrics[knob])[order]]
        style = dict(color=ARCHITECTURE_COLORS.get(architecture, "#333"), dash=DASHES.get(kind, "solid"))
        for col, metric in enumerate(("explained_variance", "shrinkage"), start=1):
            fig.add_trace(
                go.Scatter(
                    x=l0[order], y=to_numpy(metrics[metric])[order], mode="lines+markers", name=key, line=style,
                    legendgroup=key, showlegend=col == 1, text=labels,
                    hovertemplate=f"{key}, %{{text}}: L0 %{{x:.2f}}, %{{y:.3f}}<extra></extra>",
                ),
                row=1, col=col,
            )  # fmt: skip
    if true_l0 is not None:
        for col in (1, 2):
            fig.add_vline(x=true_l0, line=dict(color="#888", dash="dot"), row=1, col=col)
    fig.update_xaxes(title_text="L0 (latents active per input)", type="log")
    fig.update_yaxes(title_text="explained variance", row=1, col=1)
    fig.update_yaxes(title_text="γ", row=1, col=2)
    fig.update_layout(
        template=TEMPLATE, width=960, height=520,
        title="Every architecture on the same toy data: up and to the left is better (dotted: the data's mean L0)",
        legend=dict(orientation="h", yanchor="top", y=-0.18, xanchor="center", x=0.5),
    )  # fmt: skip
    return fig
