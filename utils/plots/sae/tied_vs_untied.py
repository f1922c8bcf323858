"""Plots for chapter 2, section 3: tied against untied SAEs."""

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from torch import Tensor

from utils.plots.common import TEMPLATE, to_numpy

__all__ = ["plot_recovery_by_feature", "plot_tied_vs_untied"]

KIND_COLORS = {"untied": "#2e86c1", "tied": "#e67e22"}


def plot_tied_vs_untied(
    summary: Mapping[str, Mapping[str, Mapping[str, float]]], metrics: Mapping[str, str]
) -> go.Figure:
    """One panel per metric, a pair of bars (untied, tied) per experiment.

    `summary[experiment][kind][metric]` is a number; `metrics` maps each metric's key to its panel title.
    """
    experiments = list(summary)
    fig = make_subplots(1, len(metrics), subplot_titles=list(metrics.values()), horizontal_spacing=0.05)
    for col, metric in enumerate(metrics, start=1):
        for kind, color in KIND_COLORS.items():
            values = [summary[experiment][kind][metric] for experiment in experiments]
            fig.add_trace(
                go.Bar(
                    x=experiments, y=values, name=kind, marker_color=color, legendgroup=kind, showlegend=col == 1,
                    text=[f"{v:.3g}" for v in values], textposition="outside",
                    hovertemplate=f"%{{x}}, {kind}: %{{y:.4g}}<extra></extra>",
                ),
                row=1, col=col,
            )  # fmt: skip
    fig.update_xaxes(tickangle=-35)
    fig.update_layout(
        template=TEMPLATE, barmode="group", width=320 * len(metrics) + 100, height=480,
        title="Tied against untied SAEs, on the kept seed of every experiment (the lowest SAE loss)",
    )  # fmt: skip
    return fig


def plot_recovery_by_feature(
    recovery: Mapping[str, Tensor],
    norms: Tensor,
    titles: Sequence[str],
    chance: float | None = None,
) -> go.Figure:
    """One panel per setting: the toy model's feature norms ‖W_i‖ as grey bars (features in order of decreasing
    importance), and every feature's best cosine with the SAE's decoder rows, untied and tied, as lines.

    `recovery[kind]` is [setting feats]; `chance`, if given, is drawn as a dotted baseline: the best cosine a
    feature gets without being learnt.
    """
    norms_np = to_numpy(norms)
    n_settings, n_feats = norms_np.shape
    features = np.arange(n_feats)
    fig = make_subplots(n_settings, 1, subplot_titles=list(titles), shared_xaxes=True, vertical_spacing=0.08)
    for row in range(1, n_settings + 1):
        fig.add_trace(
            go.Bar(x=features, y=norms_np[row - 1], name="‖W_i‖ (toy model)", marker_color="#c8c8c8",
                   legendgroup="norm", showlegend=row == 1,
                   hovertemplate="feature %{x}: ‖W‖ = %{y:.3f}<extra></extra>"),
            row=row, col=1,
        )  # fmt: skip
        for kind, values in recovery.items():
            fig.add_trace(
                go.Scatter(x=features, y=to_numpy(values)[row - 1], mode="lines+markers", name=f"best cosine, {kind}",
                           line=dict(color=KIND_COLORS[kind]), legendgroup=kind, showlegend=row == 1,
                           hovertemplate=f"feature %{{x}}, {kind}: %{{y:.3f}}<extra></extra>"),
                row=row, col=1,
            )  # fmt: skip
        if chance is not None:
            fig.add_hline(y=chance, line=dict(color="#888", dash="dot"), row=row, col=1)
        fig.update_yaxes(range=[0, 1.2], row=row, col=1)
    fig.update_xaxes(title_text="feature (importance 0.85^i: most important first)", row=n_settings, col=1)
    fig.update_layout(
        template=TEMPLATE, width=900, height=250 * n_settings + 120,
        title="Which features an SAE recovers: the toy model's norms (bars) and the SAE's best cosine (lines)",
    )  # fmt: skip
    return fig
