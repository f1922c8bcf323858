"""Chapter 1, section 6: superposition, memorisation and double descent.

Henighan et al. (2023) train the toy model on a *fixed* training set of T points instead of fresh batches. With few
points the model memorises them: the hidden vectors of the training points, not the features, get directions of
their own. With many points it learns features instead. In between, the test loss rises before it falls again.

This module holds the two exercises (`DoubleDescentModel.generate_dataset`, `warmup_cosine_lr`); the sweep of the
notebook, the full-batch loss it trains with and its measurements are in `double_descent_experiments.py`.
"""

import math

from jaxtyping import Float
from torch import Tensor

from solutions.tms.superposition import ToyModel


class DoubleDescentModel(ToyModel):
    """The ReLU-output toy model, trained on fixed datasets of unit-norm points (the double-descent setup)."""

    def generate_dataset(self, n_points: int) -> Float[Tensor, "n_points inst feats"]:
        """A training set of `n_points` sparse points for every instance, each point rescaled to unit L2 norm.

        Points are drawn as in `generate_batch` (feature f of instance i present with probability
        `feature_probability[i, f]`, magnitude U[0, 1]), then every row [point, inst, :] is divided by its norm;
        a row with no feature present stays all zeros. Every call draws a new, independent dataset: draw it once
        and train on the same points at every step (full-batch training), and draw the test set by another call.
        """
        points = self.generate_batch(n_points)
        # Clamping the norm keeps an all-zero row at zero instead of turning it into 0/0 = NaN.
        return points / points.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def warmup_cosine_lr(step: int, steps: int, warmup_steps: int) -> float:
    """Learning-rate multiplier: linear warm-up from 0 to 1 over `warmup_steps`, then cosine decay from 1 to 0.

    step < warmup_steps: step / warmup_steps (0 at step 0);
    otherwise: ½ (1 + cos(π · (step − warmup_steps) / (steps − warmup_steps))), which is 1 at step = warmup_steps
    and would reach 0 at step = steps, one past the last step (the convention of Hugging Face's
    `get_cosine_schedule_with_warmup`). Pass `functools.partial(warmup_cosine_lr, warmup_steps=...)` as `lr_scale`.
    """
    if step < warmup_steps:
        return step / warmup_steps
    progress = (step - warmup_steps) / (steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * progress))
