"""Plots for chapter 2, section 4: dead latents and resampling.

Every function builds and returns a plotly Figure (or the data one needs); the notebook calls `.show()` on it.
"""

import numpy as np
import torch as t
from jaxtyping import Bool
from torch import Tensor

__all__ = ["resampled_since"]


def resampled_since(log: dict[str, Tensor]) -> Bool[Tensor, "n_logs inst d_sae"]:
    """For every logged step of `ToySAE.optimize`'s log, the latents that the latest resampling before it gave a new
    start (none before the first resampling), for `animate_sae_in_2d(..., marked=...)`.

    A resampling runs after the update of its step, so a snapshot logged at a later step shows its result.
    """
    steps, resample_steps = log["step"], log["resample_step"]
    latents = log["resampled_latents"]  # [n_resamples inst d_sae]
    # index of the latest resampling strictly before every logged step, -1 for none
    latest = t.from_numpy(np.searchsorted(resample_steps.numpy(), steps.numpy(), side="left")) - 1
    n_inst, d_sae = log["W_dec"].shape[1:3]
    marked = t.zeros((len(steps), n_inst, d_sae), dtype=t.bool)
    after = latest >= 0
    marked[after] = latents[latest[after]]
    return marked
