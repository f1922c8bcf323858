"""Chapter 2, section 1: the toy model the section's SAEs read, and the settings of its notebook's training run.

The SAEs of this chapter read the hidden activations of toy models whose true features we know. The first one is
the pentagon: section 1.1's 5 → 2 model at low density stores its five features as a regular pentagon, so here every
instance holds the ideal pentagon directly (feature k at angle 2πk/5, unit norm). Every SAE instance then sees the
same data distribution, and the differences between instances come from the SAEs' own initialisations.
"""

import math

import torch as t
from jaxtyping import Float
from torch import Tensor

from solutions.tms.superposition import ToyModel, ToyModelConfig

PENTAGON_FEATURE_PROBABILITY = 0.025  # 5 features × 0.025: one feature in 8 inputs on average, rarely two at once

# The notebook's run: 8 SAEs of 5 latents (as many as the features), ARENA's sparsity coefficient 0.2.
DEMO_INSTANCES = 8
DEMO_STEPS = 4_000


def pentagon_directions() -> Float[Tensor, "2 5"]:
    """The five unit directions of a regular pentagon, feature k at angle 2πk/5."""
    angles = t.arange(5, dtype=t.float32) * 2 * math.pi / 5
    return t.stack([angles.cos(), angles.sin()])


def pentagon_model(
    n_inst: int,
    feature_probability: float | Tensor = PENTAGON_FEATURE_PROBABILITY,
    device: t.device | str | None = None,
) -> ToyModel:
    """A 5 → 2 toy model whose every instance stores its features as the ideal pentagon."""
    model = ToyModel(ToyModelConfig(n_inst, 5, 2), feature_probability=feature_probability, device=device)
    with t.no_grad():
        model.W.copy_(pentagon_directions().expand(n_inst, 2, 5))
    return model
