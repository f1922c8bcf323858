"""Plots for chapter 2, section 2: measuring what an SAE has recovered, and a dashboard of its latents.

`plot_latent_dashboard` is the toy analogue of SAE-VIS: for every latent of one instance, a row of four panels, its
decoder direction against the true features, the histogram of its activations (with how often it fires), the inputs
that activate it most, and what writing it into the hidden space does to the toy model's output. It needs only the
SAE (its `forward`, `W_dec_normalized` and `b_dec`) and the toy model (`generate_batch`, `W`, `b_final`).
"""

from collections.abc import Sequence

import einops
import numpy as np
import plotly.graph_objects as go
import torch as t
import torch.nn.functional as F
from plotly.subplots import make_subplots
from torch import Tensor, nn

from utils.batches import seeded_batch, toy_batches
from utils.plots.common import TEMPLATE, to_numpy

__all__ = ["plot_latent_dashboard", "plot_recovery"]

BAR_COLOR = "#3366cc"
EFFECT_COLORS = ("#c0392b", "#2e86c1")  # output decreases, increases


@t.no_grad()
def plot_latent_dashboard(
    sae: nn.Module,
    model: nn.Module,
    instance: int = 0,
    latents: Sequence[int] | None = None,
    batch_size: int = 4096,
    top_k: int = 8,
    seed: int = 0,
) -> go.Figure:
    """Four panels per latent of one SAE instance (rows: latents, all of them unless `latents` is given):

    1. the cosine of its decoder direction with every true feature of the toy model;
    2. the histogram of its positive activations on a fresh batch, and its density (fraction of inputs it fires on);
    3. the `top_k` inputs that activate it most, as a heatmap of their features;
    4. its effect on the toy model's output: ReLU(Wᵀ(b_dec + a·d̂) + b_final) − ReLU(Wᵀ b_dec + b_final), with d̂ its
       unit decoder direction and a its mean activation when it fires.

    The batch comes from a seeded stream of its own, so plotting never changes what training draws next.
    """
    x = seeded_batch(toy_batches(model), batch_size, seed, model.W.device)
    h = einops.einsum(x, model.W, "batch inst feats, inst d_in feats -> batch inst d_in")
    acts = sae(h)[2][:, instance].cpu()  # [batch d_sae]
    x = x[:, instance].cpu()
    decoder = sae.W_dec_normalized[instance].cpu()  # [d_sae d_in]
    W, b_final = model.W[instance].detach().cpu(), model.b_final[instance].detach().cpu()
    b_dec = sae.b_dec[instance].cpu()
    features = F.normalize(W.T, dim=-1)  # [feats d_in]
    n_feats = W.shape[1]
    latents = list(range(acts.shape[1])) if latents is None else list(latents)

    titles = []
    for latent in latents:
        density = float((acts[:, latent] > 0).float().mean())
        titles += [f"latent {latent}: cosine with each feature", f"activations (fires on {density:.2%})",
                   f"top {top_k} inputs (features)", "effect on the model's output"]  # fmt: skip
    fig = make_subplots(
        len(latents), 4, subplot_titles=titles, horizontal_spacing=0.06, vertical_spacing=0.3 / len(latents)
    )
    output = lambda hidden: t.relu(hidden @ W + b_final)  # noqa: E731
    for row, latent in enumerate(latents, start=1):
        active = acts[:, latent] > 0
        cosines = features @ decoder[latent]
        fig.add_trace(go.Bar(x=np.arange(n_feats), y=to_numpy(cosines), marker_color=BAR_COLOR,
                             hovertemplate="feature %{x}: cos %{y:.3f}<extra></extra>"), row=row, col=1)  # fmt: skip
        values = to_numpy(acts[active, latent]) if active.any() else np.zeros(0)
        fig.add_trace(go.Histogram(x=values, nbinsx=30, marker_color=BAR_COLOR), row=row, col=2)
        top = acts[:, latent].topk(min(top_k, acts.shape[0])).indices
        fig.add_trace(
            go.Heatmap(z=to_numpy(x[top]), colorscale="Blues", zmin=0, zmax=1, showscale=row == 1,
                       colorbar=dict(title="x", len=0.3, y=1, yanchor="top", thickness=10),
                       hovertemplate="input rank %{y}, feature %{x}: %{z:.2f}<extra></extra>"),
            row=row, col=3,
        )  # fmt: skip
        magnitude = float(acts[active, latent].mean()) if active.any() else 1.0
        effect = output(b_dec + magnitude * decoder[latent]) - output(b_dec)
        colors = [EFFECT_COLORS[v > 0] for v in effect.tolist()]
        fig.add_trace(
            go.Bar(x=np.arange(n_feats), y=to_numpy(effect), marker_color=colors,
                   hovertemplate="output %{x}: %{y:+.3f}<extra></extra>"),
            row=row, col=4,
        )  # fmt: skip
        fig.update_yaxes(range=[-1.05, 1.05], row=row, col=1)
        fig.update_yaxes(autorange="reversed", row=row, col=3)
    fig.update_xaxes(title_text="feature", row=len(latents), col=1)
    fig.update_xaxes(title_text="activation", row=len(latents), col=2)
    fig.update_xaxes(title_text="feature", row=len(latents), col=3)
    fig.update_xaxes(title_text="output feature", row=len(latents), col=4)
    fig.update_layout(
        template=TEMPLATE, showlegend=False, width=1150, height=150 + 220 * len(latents),
        title=f"Latent dashboard, SAE instance {instance}",
    )  # fmt: skip
    return fig


def plot_recovery(recovery: Tensor, titles: Sequence[str] | None = None, threshold: float = 0.9) -> go.Figure:
    """Heatmap of every feature's best cosine (from `feature_recovery`), one row per instance, with the count of
    features above `threshold` on the right."""
    values = to_numpy(recovery)
    n_inst, n_feats = values.shape
    titles = list(titles) if titles is not None else [f"instance {i}" for i in range(n_inst)]
    counts = (values > threshold).sum(-1)
    rows = [f"{title} ({count}/{n_feats})" for title, count in zip(titles, counts, strict=True)]
    fig = go.Figure(
        go.Heatmap(
            z=values, x=np.arange(n_feats), y=rows,
            zmin=0, zmax=1, colorscale="Viridis", colorbar=dict(title="best cosine"),
            hovertemplate="%{y}, feature %{x}: %{z:.3f}<extra></extra>",
        )
    )  # fmt: skip
    fig.update_layout(
        template=TEMPLATE, xaxis_title="true feature", yaxis=dict(autorange="reversed"),
        title=f"Best cosine of every true feature with any decoder row (recovered: > {threshold})",
        width=800, height=160 + 28 * n_inst,
    )  # fmt: skip
    return fig
