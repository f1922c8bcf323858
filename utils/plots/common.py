"""What every plot of the course shares, whatever the chapter: the look (template, colour scale) and the small helpers
that turn tensors into plotly's inputs and lay out grids of subplots."""

import math
from collections.abc import Sequence

import numpy as np
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
