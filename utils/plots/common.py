"""What every plot of the course shares, whatever the chapter: the look (template, colour scale), the small helpers
that turn tensors into plotly's inputs and lay out grids of subplots, and animations of training."""

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from torch import Tensor

TEMPLATE = "plotly_white"
# One value per feature or latent (importance, activation, ...) on a sequential scale.
VALUE_SCALE = "Viridis"


def to_numpy(x: Tensor | np.ndarray | Sequence[float]) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float32)


def check_length(name: str, items: Sequence | None, n: int) -> None:
    if items is not None and len(items) != n:
        raise ValueError(f"`{name}` has {len(items)} entries but there are {n} to label")


def grid_shape(n_plots: int, n_cols: int | None) -> tuple[int, int]:
    """Rows and columns for `n_plots` subplots: at most five columns, rows as evenly filled as possible."""
    if n_cols is None:
        n_cols = math.ceil(n_plots / math.ceil(n_plots / 5))
    return math.ceil(n_plots / n_cols), n_cols


# --------------------------------------------------------------------------------------- animations of training


def frame_indices(n_logs: int, max_frames: int) -> list[int]:
    """At most `max_frames` of `n_logs` logged steps, evenly spread, always with the first and the last."""
    if n_logs <= max_frames:
        return list(range(n_logs))
    return sorted({round(k * (n_logs - 1) / (max_frames - 1)) for k in range(max_frames)})


def animation(
    fig: go.Figure,
    frames: Sequence[Sequence[dict]],
    steps: Sequence[int] | np.ndarray,
    traces: Sequence[int] | None = None,
    frame_ms: int = 150,
) -> go.Figure:
    """`fig` (drawn at the first step), animated: one frame per entry of `steps`, frame k setting the attributes in
    `frames[k]` (x and y, say: only what changes) of the traces numbered `traces` (all, by default), with a play/pause
    button and a slider labelled by step.

    An animation is plain plotly JSON: it plays in JupyterLab, VS Code, Colab and an exported HTML page, with no
    widget and no kernel.
    """
    names = [str(int(step)) for step in steps]
    if len(frames) != len(names):
        raise ValueError(f"{len(frames)} frames for {len(names)} steps")
    traces = list(range(len(fig.data))) if traces is None else list(traces)
    fig.frames = [go.Frame(data=list(data), traces=traces, name=name) for data, name in zip(frames, names, strict=True)]
    play = dict(frame=dict(duration=frame_ms, redraw=True), transition=dict(duration=0), fromcurrent=True)
    pause = dict(frame=dict(duration=0, redraw=False), transition=dict(duration=0), mode="immediate")
    jump = dict(frame=dict(duration=0, redraw=True), transition=dict(duration=0), mode="immediate")
    buttons = [
        dict(label="▶ play", method="animate", args=[None, play]),
        dict(label="❚❚ pause", method="animate", args=[[None], pause]),
    ]
    fig.update_layout(
        updatemenus=[
            dict(type="buttons", direction="left", showactive=False, buttons=buttons, x=0, y=0, xanchor="left",
                 yanchor="top", pad=dict(t=40, r=10))
        ],
        sliders=[
            dict(active=0, x=0.2, len=0.8, y=0, yanchor="top", pad=dict(t=30), currentvalue=dict(prefix="step "),
                 steps=[dict(label=name, method="animate", args=[[name], jump]) for name in names])
        ],
        margin=dict(b=110),
        height=(fig.layout.height or 450) + 80,
    )  # fmt: skip
    return fig
