"""Plots for chapter 1, section 1: superposition in a non-privileged basis.

Every function builds and returns a plotly Figure; the notebook calls `.show()` on it. Nothing here writes
files, changes global state or needs widgets, so the figures render the same in JupyterLab, VS Code and Colab.
Tensors may live on any device and may require grad: they are copied to the CPU first.
"""

import math
from collections.abc import Sequence

import einops
import numpy as np
import plotly.graph_objects as go
import torch as t
from jaxtyping import Float
from plotly.colors import sample_colorscale, sequential
from plotly.subplots import make_subplots
from torch import Tensor, nn

from utils.plots.common import TEMPLATE, VALUE_SCALE, animation, check_length, frame_indices, grid_shape, to_numpy

__all__ = [
    "animate_features_in_2d",
    "animation",
    "plot_features_in_2d",
    "plot_features_in_Nd",
    "plot_hidden_states",
    "plot_loss_curves",
    "plot_representation_sweep",
]

FEATURE_COLOR = "#3366cc"
# Dark = a dimension of its own, bright = shares dimensions, as in the paper; the palest yellow of Inferno is
# dropped because it vanishes on a white background.
INTERFERENCE_SCALE = sequential.Inferno[:-1]
# Red where two features point the same way, blue where they point in opposite directions.
GRAM_SCALE = "RdBu_r"


# --------------------------------------------------------------------------------------- features in 2-D


def feature_colors(
    colors: Tensor | Sequence[str] | None, n_inst: int, n_feats: int
) -> tuple[np.ndarray | None, list[list[str]]]:
    """(values [inst, feats] or None, line colour of every feature of every instance).

    Values are shown on one colour scale shared by all instances. Line colours take 32 shades of that scale,
    more than the eye separates, so that lines can be drawn one trace per shade; markers carry the exact value.
    """
    if colors is None:
        return None, [[FEATURE_COLOR] * n_feats] * n_inst
    if isinstance(colors[0], str):
        check_length("colors", colors, n_feats)
        return None, [list(colors)] * n_inst
    values = np.broadcast_to(to_numpy(colors), (n_inst, n_feats))
    span = (values.max() - values.min()) or 1.0
    shades = np.round((values - values.min()) / span * 31) / 31
    return values, [sample_colorscale(VALUE_SCALE, row.tolist()) for row in shades]


def feature_trace_data(
    W: Float[np.ndarray, "2 feats"], line_colors: list[str], values: np.ndarray | None
) -> list[dict[str, np.ndarray]]:
    """The data of `feature_traces(W, ...)`, trace by trace: x and y (and the markers' customdata). An animation's
    frames carry only these, since nothing else changes from one step to the next."""
    data = []
    # One trace per colour rather than per feature, with the lines separated by NaN gaps, so that the
    # double-descent plots (a thousand features per instance) stay quick to build and to render.
    for color in dict.fromkeys(line_colors):
        tips = W[:, [i for i, c in enumerate(line_colors) if c == color]].T
        segments = np.stack([np.zeros_like(tips), tips, np.full_like(tips, np.nan)], axis=1).reshape(-1, 2)
        data.append(dict(x=segments[:, 0], y=segments[:, 1]))
    customdata = [np.arange(W.shape[1]), np.linalg.norm(W, axis=0)]
    if values is not None:
        customdata.append(values)
    return [*data, dict(x=W[0], y=W[1], customdata=np.stack(customdata, axis=1))]


def feature_traces(
    W: Float[np.ndarray, "2 feats"], line_colors: list[str], values: np.ndarray | None, color_label: str
) -> list[go.Scatter]:
    """Lines from the origin to every column of W, then one marker per feature at the tip (with the hover)."""
    *lines, tips = feature_trace_data(W, line_colors, values)
    traces = [
        go.Scatter(mode="lines", line=dict(color=color, width=2), hoverinfo="skip", **data)
        for color, data in zip(dict.fromkeys(line_colors), lines, strict=True)
    ]
    hover = "feature %{customdata[0]}<br>‖W<sub>i</sub>‖ = %{customdata[1]:.3f}"
    if values is not None:
        hover += f"<br>{color_label} = %{{customdata[2]:.3g}}"
    marker = dict(size=8, line=dict(color="#333333", width=1))
    if values is not None:
        marker |= dict(color=values, coloraxis="coloraxis")
    else:
        marker |= dict(color=line_colors[0] if len(set(line_colors)) == 1 else line_colors)
    markers = go.Scatter(
        mode="markers", marker=marker, hovertemplate=hover + "<extra></extra>", name="features", **tips
    )
    return [*traces, markers]


def plot_features_in_2d(
    W: Float[Tensor, "inst 2 feats"] | Float[Tensor, "2 feats"],
    colors: Float[Tensor, "inst feats"] | Float[Tensor, " feats"] | Sequence[str] | None = None,
    titles: Sequence[str] | None = None,
    n_cols: int | None = None,
    hidden: Float[Tensor, "batch inst 2"] | None = None,
    color_label: str = "importance",
    title: str | None = None,
) -> go.Figure:
    """Every feature of every instance as a line from the origin to its direction W[:, i] in the hidden plane.

    One square subplot per instance, all on the same symmetric axis range so that lengths compare across
    instances. `colors`: one value per feature shown on a shared colour scale (e.g. importance), or one CSS
    colour per feature (e.g. to mark correlated pairs); default one colour for all. `hidden` adds hidden states
    h = W x as faint points.
    """
    W_np = to_numpy(W if W.ndim == 3 else W[None])
    hidden_np = None if hidden is None else to_numpy(hidden)
    n_inst, _, n_feats = W_np.shape
    check_length("titles", titles, n_inst)
    values, line_colors = feature_colors(colors, n_inst, n_feats)
    n_rows, n_cols = grid_shape(n_inst, n_cols)

    traces, cells = [], []
    for inst in range(n_inst):
        if hidden_np is not None:
            points = go.Scatter(
                x=hidden_np[:, inst, 0], y=hidden_np[:, inst, 1], mode="markers", name="hidden states",
                marker=dict(color="rgba(110, 110, 110, 0.3)", size=4), hoverinfo="skip",
            )  # fmt: skip
            traces.append(points)
        inst_values = None if values is None else values[inst]
        traces += feature_traces(W_np[inst], line_colors[inst], inst_values, color_label)
        cells += [divmod(inst, n_cols)] * (len(traces) - len(cells))
    fig = make_subplots(n_rows, n_cols, subplot_titles=titles)
    fig.add_traces(traces, rows=[row + 1 for row, _ in cells], cols=[col + 1 for _, col in cells])

    # The same range everywhere (so that lengths compare across subplots), grown only if something sticks out.
    extent = max(np.abs(W_np).max(), 0 if hidden_np is None else np.abs(hidden_np).max())
    limit = max(1.5, 1.1 * float(extent))
    axis = dict(range=[-limit, limit], constrain="domain", nticks=5)
    axes = {}
    for cell in range(n_rows * n_cols):
        # make_subplots numbers its axes row by row: x, x2, x3, ...; cells past the last instance stay empty.
        suffix, visible = str(cell + 1) if cell else "", cell < n_inst
        axes[f"xaxis{suffix}"] = axis | dict(visible=visible)
        axes[f"yaxis{suffix}"] = axis | dict(visible=visible, scaleanchor=f"x{suffix}", scaleratio=1)

    if values is not None:
        colorbar = dict(title=dict(text=color_label, side="right"), thickness=12, lenmode="pixels", len=200)
        axes["coloraxis"] = dict(colorscale=VALUE_SCALE, cmin=values.min(), cmax=values.max(), colorbar=colorbar)
    top, right = (90 if title else 50), (110 if values is not None else 30)
    fig.update_layout(
        axes, template=TEMPLATE, showlegend=False, title=title, margin=dict(l=40, r=right, t=top, b=30),
        width=n_cols * 230 + right + 40, height=n_rows * 250 + top + 30,
    )  # fmt: skip
    return fig


def plot_hidden_states(model: nn.Module, batch_size: int = 200, titles: Sequence[str] | None = None) -> go.Figure:
    """The features of a 2-D model (coloured by importance) over the hidden states h = W x of a fresh batch.

    With sparse features most points lie on the feature lines (one feature active at a time) or at the origin;
    with dense features they fill the plane, and nearby features can no longer be told apart.
    """
    with t.no_grad():
        batch = model.generate_batch(batch_size)
        hidden = einops.einsum(batch, model.W, "batch inst feats, inst d_hidden feats -> batch inst d_hidden")
    return plot_features_in_2d(
        model.W, colors=model.importance, titles=titles, hidden=hidden,
        title="Features (lines) and hidden states h = Wx (points)",
    )  # fmt: skip


# --------------------------------------------------------------------------------------- features in N-D


def plot_features_in_Nd(
    W: Float[Tensor, "inst d_hidden feats"],
    colors: Float[Tensor, "inst feats"],
    titles: Sequence[str] | None = None,
    color_label: str = "interference",
) -> go.Figure:
    """The paper's picture of a large model, one row per instance: ‖W_i‖ as bars, and WᵀW as a heatmap.

    Each bar is coloured by `colors` (one value per feature, or per instance and feature): the paper colours it by
    the feature's interference Σ_{j≠i}(Ŵ_i·W_j)², from `superposition_stats`, on a scale from 0 (dark: a dimension
    to itself) to 1 (bright: in superposition); any other `color_label` gets a scale from the values' minimum to
    their maximum. Feature 0 is at the top; order features by decreasing importance (as the course's runs do) to
    read "most important at the top".
    """
    W_cpu = W.detach().float().cpu()
    gram = einops.einsum(W_cpu, W_cpu, "inst d_hidden feat_i, inst d_hidden feat_j -> inst feat_i feat_j").numpy()
    norms = W_cpu.norm(dim=1).numpy()
    values = np.broadcast_to(to_numpy(colors), norms.shape)
    interference = color_label == "interference"
    n_inst, n_feats = norms.shape
    check_length("titles", titles, n_inst)

    # Rows tall enough to see 100 bars as a silhouette, short enough that ten instances fit in a scroll.
    row_height, gap, top, bottom = min(260, 140 + 1.2 * n_feats), 60, 120, 50
    plot_height = n_inst * row_height + (n_inst - 1) * gap
    subplot_titles = [text for row_title in titles or [""] * n_inst for text in (row_title, "")]
    subplot_titles[1] = "W<sup>T</sup>W"
    fig = make_subplots(
        n_inst, 2, shared_yaxes=True, column_widths=[0.62, 0.38], horizontal_spacing=0.12,
        vertical_spacing=gap / plot_height if n_inst > 1 else 0, subplot_titles=subplot_titles,
    )  # fmt: skip

    features = np.arange(n_feats)
    bar_hover = f"feature %{{y}}<br>‖W<sub>i</sub>‖ = %{{x:.3f}}<br>{color_label} = %{{customdata:.3f}}<extra></extra>"
    traces = []
    for inst in range(n_inst):
        bars = go.Bar(
            x=norms[inst], y=features, orientation="h", marker=dict(color=values[inst], coloraxis="coloraxis"),
            customdata=values[inst], name="‖W_i‖", hovertemplate=bar_hover,
        )  # fmt: skip
        heatmap = go.Heatmap(
            z=gram[inst], x=features, y=features, coloraxis="coloraxis2",
            hovertemplate="W<sub>%{y}</sub>·W<sub>%{x}</sub> = %{z:.3f}<extra></extra>",
        )  # fmt: skip
        traces += [bars, heatmap]
    fig.add_traces(traces, rows=[inst + 1 for inst in range(n_inst) for _ in range(2)], cols=[1, 2] * n_inst)

    fig.update_xaxes(range=[0, 1.05 * max(1.0, float(norms.max()))], col=1)
    fig.update_xaxes(title_text="‖W<sub>i</sub>‖", row=n_inst, col=1)
    fig.update_xaxes(title_text="feature j", row=n_inst, col=2)
    fig.update_yaxes(autorange="reversed", title_text="feature i", col=1)

    # Both colour bars hang from the top of the figure, at a fixed pixel length however many rows there are;
    # the first sits between the two columns, next to the bars it explains.
    colorbar = dict(thickness=12, lenmode="pixels", len=min(260.0, 0.9 * plot_height), y=1, yanchor="top")
    bar_colorbar = colorbar | dict(x=fig.layout.xaxis.domain[1] + 0.01, title=dict(text=color_label, side="right"))
    if interference:
        # Interference is capped at 1 on the scale: that much is already as much as a whole other feature.
        bar_colorbar |= dict(tickvals=[0, 0.5, 1], ticktext=["0", "0.5", "≥1"])
        scale = dict(cmin=0, cmax=1, colorbar=bar_colorbar)
        explanation = "dark = a dimension of its own, bright = in superposition"
    else:
        scale = dict(cmin=float(values.min()), cmax=float(values.max()), colorbar=bar_colorbar)
        explanation = f"colour = {color_label}"
    gram_max = float(np.abs(gram).max()) or 1.0
    gram_colorbar = colorbar | dict(title=dict(text="W<sub>i</sub>·W<sub>j</sub>", side="right"))
    fig.update_layout(
        coloraxis=dict(colorscale=INTERFERENCE_SCALE, **scale),
        coloraxis2=dict(colorscale=GRAM_SCALE, cmin=-gram_max, cmax=gram_max, colorbar=gram_colorbar),
        title=dict(
            text=f"Left: norm ‖W<sub>i</sub>‖ of each feature, coloured by {color_label}"
            + (" Σ<sub>j≠i</sub>(Ŵ<sub>i</sub>·W<sub>j</sub>)²" if interference else "")
            + f"<br>({explanation}). Right: W<sup>T</sup>W (red = same direction, blue = opposite).",
            font=dict(size=14),
        ),
        template=TEMPLATE, showlegend=False, bargap=0.1, width=950, height=int(plot_height + top + bottom),
        margin=dict(l=60, r=90, t=top, b=bottom),
    )  # fmt: skip
    return fig


# --------------------------------------------------------------------------------------------- sweeps


def plot_representation_sweep(
    norms: Float[Tensor, "n_density feats"],
    importance: Float[Tensor, " feats"],
    density: Float[Tensor, " n_density"],
    threshold: float = 0.5,
) -> go.Figure:
    """‖W_i‖ of every feature (rows, most important at the top) at every feature probability (columns).

    The line counts the features with ‖W_i‖ > `threshold` at each density, on the right-hand axis, aligned
    with the rows so that it traces the boundary between represented and dropped features when the
    represented ones are the most important. Density runs on a log scale from sparse (left) to dense (right).
    """
    norms_np, importance_np, density_np = to_numpy(norms), to_numpy(importance), to_numpy(density)
    by_density, by_importance = np.argsort(density_np), np.argsort(-importance_np, kind="stable")
    z = norms_np[by_density][:, by_importance].T
    density_np, importance_np = density_np[by_density], importance_np[by_importance]
    n_feats, n_density = z.shape
    counts = (z > threshold).sum(0)
    # Heatmaps on a log axis are fragile in plotly, so the x coordinate is log10(p) and only the labels are p.
    x = np.log10(density_np)
    x_ticks, y_ticks = slice(None, None, math.ceil(n_density / 10)), slice(None, None, math.ceil(n_feats / 20))

    customdata = np.stack(np.broadcast_arrays(by_importance[:, None], importance_np[:, None], density_np), -1)
    heatmap = go.Heatmap(
        z=z, x=x, y=np.arange(n_feats), customdata=customdata, coloraxis="coloraxis", name="‖W_i‖",
        hovertemplate="feature %{customdata[0]} (importance %{customdata[1]:.3g})<br>"
        "density %{customdata[2]:.3g}<br>‖W<sub>i</sub>‖ = %{z:.3f}<extra></extra>",
    )  # fmt: skip
    count_line = go.Scatter(
        x=x, y=counts, yaxis="y2", mode="lines+markers", line=dict(color="#e8383d", width=3, shape="hvh"),
        marker=dict(size=7, color="#e8383d", line=dict(color="white", width=1)), customdata=density_np,
        name=f"features with ‖W<sub>i</sub>‖ > {threshold} (right axis)",
        hovertemplate="density %{customdata:.3g}: %{y} features represented<extra></extra>",
    )  # fmt: skip
    fig = go.Figure([heatmap, count_line])
    fig.update_layout(
        template=TEMPLATE, width=850, height=min(700, 250 + 8 * n_feats),
        title="As features get denser, the least important ones are the first to stop being represented",
        xaxis=dict(title="feature probability p = 1 - S (log scale)", tickvals=x[x_ticks],
                   ticktext=[f"{p:.2g}" for p in density_np[x_ticks]]),
        # Count k on the right axis sits at the boundary below the k-th row on the left one.
        yaxis=dict(title="feature, by importance (most important at top)", range=[n_feats - 0.5, -0.5],
                   tickvals=np.arange(n_feats)[y_ticks], ticktext=[str(i) for i in by_importance[y_ticks]]),
        yaxis2=dict(title="features represented", overlaying="y", side="right", range=[n_feats, 0], showgrid=False),
        coloraxis=dict(colorscale=VALUE_SCALE, cmin=0, cmax=max(1.0, float(z.max())),
                       colorbar=dict(title=dict(text="‖W<sub>i</sub>‖", side="right"), x=1.1, thickness=12)),
        legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0), margin=dict(r=110),
    )  # fmt: skip
    return fig


def plot_loss_curves(log: dict[str, Tensor], labels: Sequence[str] | None = None) -> go.Figure:
    """The loss of every instance against the training step, on a log scale, from `ToyModel.optimize`'s log.

    Instances are coloured along a sequential scale because sweeps order them (e.g. by sparsity).
    """
    steps, loss = to_numpy(log["step"]), to_numpy(log["loss"])
    n_inst = loss.shape[1]
    check_length("labels", labels, n_inst)
    labels = labels or [f"instance {inst}" for inst in range(n_inst)]
    colors = sample_colorscale(VALUE_SCALE, np.linspace(0, 0.9, n_inst).tolist())
    fig = go.Figure(
        [
            go.Scatter(x=steps, y=loss[:, i], mode="lines", name=labels[i], line=dict(color=colors[i]))
            for i in range(n_inst)
        ]
    )
    fig.update_layout(
        template=TEMPLATE, title="Training loss of each instance", xaxis_title="step",
        yaxis=dict(title="loss", type="log"), width=800, height=420,
    )  # fmt: skip
    return fig


# --------------------------------------------------------------------------------------- animations of training


def animate_features_in_2d(
    log: dict[str, Tensor],
    colors: Float[Tensor, "inst feats"] | Float[Tensor, " feats"] | Sequence[str] | None = None,
    titles: Sequence[str] | None = None,
    n_cols: int | None = None,
    max_frames: int = 41,
    title: str = "Features of every instance during training",
) -> go.Figure:
    """`plot_features_in_2d` of the weights `ToyModel.optimize` logged ("W": [n_logs, inst, 2, feats]), one frame
    per logged step (at most `max_frames`, evenly spread), on one axis range that holds every frame."""
    W_log, steps = to_numpy(log["W"]), to_numpy(log["step"])
    if W_log.ndim != 4 or W_log.shape[2] != 2:
        raise ValueError(f'log["W"] has shape {W_log.shape}, not [n_logs, inst, 2, feats]')
    n_inst, n_feats = W_log.shape[1], W_log.shape[3]
    kept = frame_indices(len(steps), max_frames)
    fig = plot_features_in_2d(W_log[kept[0]], colors=colors, titles=titles, n_cols=n_cols, title=title)
    reach = max(1.5, 1.1 * float(np.abs(W_log).max()))  # plot_features_in_2d's range, for the largest frame
    fig.update_xaxes(range=[-reach, reach]).update_yaxes(range=[-reach, reach])
    values, line_colors = feature_colors(colors, n_inst, n_feats)
    frames = [
        [
            data
            for inst in range(n_inst)
            for data in feature_trace_data(
                W_log[index, inst], line_colors[inst], None if values is None else values[inst]
            )
        ]
        for index in kept
    ]
    return animation(fig, frames, steps[kept])
