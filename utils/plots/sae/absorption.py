"""Plots for chapter 2, section 6: feature absorption.

Every function builds and returns a plotly Figure; the notebook calls `.show()` on it.
"""

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from jaxtyping import Float
from plotly.colors import qualitative
from plotly.subplots import make_subplots
from torch import Tensor

from utils.plots.common import TEMPLATE, VALUE_SCALE, animation, frame_indices, to_numpy

__all__ = [
    "animate_firing_by_input",
    "plot_absorption_by_kind",
    "plot_absorption_map",
    "plot_absorption_vs_sparsity",
    "plot_firing_by_input",
]

KIND_COLORS = {"untied": "#2e86c1", "tied": "#e67e22", "matryoshka": "#27ae60"}


def plot_absorption_by_kind(
    summary: Mapping[str, Mapping[str, float]], metrics: Mapping[str, str], title: str = ""
) -> go.Figure:
    """One panel per metric, one bar per kind of SAE: `summary[kind][metric]` is a number, `metrics` maps each
    metric's key to its panel title. Ground-truth metrics and reconstruction metrics side by side."""
    kinds = list(summary)
    fig = make_subplots(1, len(metrics), subplot_titles=list(metrics.values()), horizontal_spacing=0.06)
    for col, metric in enumerate(metrics, start=1):
        values = [summary[kind][metric] for kind in kinds]
        fig.add_trace(
            go.Bar(
                x=kinds, y=values, marker_color=[KIND_COLORS.get(kind, "#888") for kind in kinds], showlegend=False,
                text=[f"{v:.3g}" for v in values], textposition="outside",
                hovertemplate="%{x}: %{y:.4g}<extra></extra>",
            ),
            row=1, col=col,
        )  # fmt: skip
        fig.update_yaxes(range=[0, 1.15], row=1, col=col)
    title = title or "Absorption against the usual metrics, on the kept seed of every kind"
    fig.update_layout(template=TEMPLATE, width=230 * len(metrics) + 100, height=400, title=title)
    return fig


def plot_absorption_vs_sparsity(
    sparsity_coeffs: Sequence[float],
    rates: Float[Tensor, "setting seed"],
    kept: Float[Tensor, " setting"] | None = None,
    title: str = "Absorption rate against the sparsity coefficient",
) -> go.Figure:
    """Every seed's absorption rate at every sparsity coefficient (grey points, log-scaled x axis), and the kept
    seed of each coefficient as a line, if given."""
    rates_np = to_numpy(rates)
    x = np.asarray(sparsity_coeffs, dtype=np.float64)
    fig = go.Figure()
    for seed in range(rates_np.shape[1]):
        fig.add_trace(
            go.Scatter(x=x, y=rates_np[:, seed], mode="markers", marker=dict(color="#999", size=8),
                       name="every seed", legendgroup="seeds", showlegend=seed == 0,
                       hovertemplate="λ = %{x:.3g}: %{y:.3f}<extra></extra>")
        )  # fmt: skip
    if kept is not None:
        fig.add_trace(
            go.Scatter(x=x, y=to_numpy(kept), mode="lines+markers", line=dict(color=KIND_COLORS["untied"]),
                       name="kept seed (lowest loss)", hovertemplate="λ = %{x:.3g}: %{y:.3f}<extra></extra>")
        )  # fmt: skip
    fig.update_xaxes(type="log", title_text="sparsity coefficient")
    fig.update_yaxes(range=[-0.05, 1.05], title_text="absorption rate")
    fig.update_layout(template=TEMPLATE, width=650, height=400, title=title)
    return fig


def plot_firing_by_input(
    firing: Mapping[str, Float[Tensor, "kinds d_sae"]],
    input_kinds: Sequence[str],
    latent_labels: Mapping[str, Sequence[str]] | None = None,
) -> go.Figure:
    """One heatmap per SAE: how often each latent (column) fires on each kind of input (row), from 0 to 1.

    A parent latent that is absorbed has a hole: it fires on "parent alone" but not on "parent + child"."""
    names = list(firing)
    fig = make_subplots(1, len(names), subplot_titles=names, horizontal_spacing=0.08)
    for col, name in enumerate(names, start=1):
        z = to_numpy(firing[name])
        labels = list((latent_labels or {}).get(name, [f"latent {k}" for k in range(z.shape[1])]))
        fig.add_trace(
            go.Heatmap(
                z=z, x=labels, y=list(input_kinds), zmin=0, zmax=1, colorscale=VALUE_SCALE, showscale=col == 1,
                text=np.round(z, 2), texttemplate="%{text}", hovertemplate="%{y}, %{x}: %{z:.3f}<extra></extra>",
            ),
            row=1, col=col,
        )  # fmt: skip
        fig.update_yaxes(autorange="reversed", showticklabels=col == 1, row=1, col=col)
    fig.update_layout(template=TEMPLATE, width=330 * len(names) + 150, height=360,
                      title="How often each latent fires, by what the input contains")  # fmt: skip
    return fig


def animate_firing_by_input(
    firing_log: Float[Tensor, "n_logs kinds d_sae"],
    steps: Sequence[int] | Tensor,
    input_kinds: Sequence[str],
    latent_labels: Sequence[str] | None = None,
    max_frames: int = 41,
) -> go.Figure:
    """How often each latent fires on each kind of input, one frame per logged step (at most `max_frames`, evenly
    spread): one group of bars per kind of input, one bar per latent.

    Watch the parent's latent: it fires on "parent alone" and "parent + child" at first, then goes silent on
    "parent + child" as the child's latent takes the parent's part of those inputs."""
    values, steps_np = to_numpy(firing_log), to_numpy(steps)
    if values.ndim != 3 or values.shape[1] != len(input_kinds) or len(steps_np) != values.shape[0]:
        raise ValueError(f"firing_log {values.shape} is not [n_logs={len(steps_np)}, kinds={len(input_kinds)}, d_sae]")
    labels = list(latent_labels or [f"latent {k}" for k in range(values.shape[2])])
    kept = frame_indices(len(steps_np), max_frames)
    colors = qualitative.Dark24
    fig = go.Figure(
        [
            go.Bar(x=list(input_kinds), y=values[kept[0], :, latent], name=label,
                   marker_color=colors[latent % len(colors)],
                   hovertemplate=f"{label}<br>%{{x}}: fires on %{{y:.3f}}<extra></extra>")
            for latent, label in enumerate(labels)
        ]
    )  # fmt: skip
    fig.update_layout(
        template=TEMPLATE, barmode="group", width=760, height=420, yaxis=dict(range=[0, 1.05]),
        yaxis_title="fraction of inputs it fires on", title="How often each latent fires during training",
    )  # fmt: skip
    frames = [[dict(y=values[index, :, latent]) for latent in range(len(labels))] for index in kept]
    return animation(fig, frames, steps_np[kept])


PHASE_COLORS = {"clean": "#27ae60", "absorbing": "#c0392b", "other": "#bbbbbb"}


def plot_absorption_map(
    child_probabilities: Sequence[float],
    lambdas: Sequence[float],
    kept_phases: Mapping[str, Sequence[str]],
    predicted: Sequence[str],
    boundary: float,
) -> go.Figure:
    """One panel per kind of SAE over P(child | parent) × λ: each setting's kept seed as a coloured square (its
    phase, `kept_phases[kind]`, settings in order q-major), the closed form's phase for the tied unit-matrix SAE
    (`predicted`) as the text in it, and the first-order boundary q = `boundary` as a dashed line."""
    kinds = list(kept_phases)
    fig = make_subplots(1, len(kinds), subplot_titles=kinds, horizontal_spacing=0.08, shared_yaxes=True)
    n_lambdas = len(lambdas)
    for col, kind in enumerate(kinds, start=1):
        for phase, color in PHASE_COLORS.items():
            cells = [i for i, p in enumerate(kept_phases[kind]) if p == phase]
            fig.add_trace(
                go.Scatter(
                    x=[child_probabilities[i // n_lambdas] for i in cells],
                    y=[lambdas[i % n_lambdas] for i in cells],
                    mode="markers+text", marker=dict(symbol="square", size=34, color=color),
                    text=[predicted[i][:4] for i in cells] if col == 1 else None, textfont=dict(color="white"),
                    name=f"trained: {phase}", legendgroup=phase, showlegend=col == 1,
                    hovertemplate=f"{kind}: q %{{x}}, λ %{{y}}: {phase}<extra></extra>",
                ),
                row=1, col=col,
            )  # fmt: skip
        fig.add_vline(x=boundary, line=dict(color="#444", dash="dash"), row=1, col=col)
        fig.update_xaxes(title_text="P(child | parent)", range=[0, 0.85], row=1, col=col)
    fig.update_yaxes(title_text="λ (reconstruction summed over d_in)", type="log", row=1, col=1)
    fig.update_layout(
        template=TEMPLATE, width=330 * len(kinds) + 120, height=420,
        title="Which solution the kept seed learns (colour); text in the first panel: the closed form's phase;"
        " dashed: q = √2 − 1",
    )  # fmt: skip
    return fig
