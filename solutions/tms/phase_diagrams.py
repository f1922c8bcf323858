"""Chapter 1, section 2: phase diagrams.

Two features and one hidden dimension are the smallest setting in which superposition can happen. There, the
candidate solutions are few enough to write down and their expected losses can be computed exactly, so a trained
model's phase can be compared with the phase the maths predicts. The section also contrasts the ReLU-output model
with its linear twin, which never uses superposition.
"""

import einops
import torch as t
from jaxtyping import Float
from torch import Tensor

from solutions.tms import superposition

PHASES = ("not represented", "dedicated", "superposition")


class LinearToyModel(superposition.ToyModel):
    """The toy model without its output ReLU: x' = Wᵀ W x + b_final, per instance.

    Everything else (data, loss, training) is the ReLU model's, so the two differ only in the non-linearity.
    """

    def forward(self, features: Float[Tensor, "... inst feats"]) -> Float[Tensor, "... inst feats"]:
        hidden = einops.einsum(features, self.W, "... inst feats, inst d_hidden feats -> ... inst d_hidden")
        out = einops.einsum(hidden, self.W, "... inst d_hidden, inst d_hidden feats -> ... inst feats")
        return out + self.b_final


def phase_losses(
    importance_ratio: Float[Tensor, "*shape"], density: Float[Tensor, "*shape"]
) -> Float[Tensor, "*shape 3"]:
    """Expected loss of the three candidate solutions of a 2-feature → 1-dimension ReLU toy model.

    Feature 1 has importance 1, feature 2 importance r = `importance_ratio`; each is present with probability
    p = `density`, with magnitude U[0, 1]. The loss is summed over the two features, L = Σ_i I_i E[(x_i − x'_i)²].
    Last axis, in order:
      0. ignore feature 2 (w = (1, 0), b = (0, p/2)): it is "not represented", and costs r·Var(x₂);
      1. dedicate the dimension to feature 2 (w = (0, 1), b = (p/2, 0)): feature 1 costs Var(x₁);
      2. antipodal superposition (w = (1, −1), b = 0): a feature is wrong only when both are present, by
         min(x₁, x₂), and E[min(x₁, x₂)²] = 1/6 for two uniforms.
    The two inputs broadcast against each other.
    """
    r, p = t.broadcast_tensors(importance_ratio, density)
    # An unrepresented feature is best replaced by its mean p/2 (through its bias): what is left is its variance.
    variance = p / 3 - p**2 / 4  # E[x²] − E[x]², with E[x²] = p/3 and E[x] = p/2
    ignore = r * variance
    dedicated = variance
    # Interference needs both features at once (probability p²); the ReLU then zeroes the smaller one.
    superposition = (1 + r) * p**2 / 6
    return t.stack([ignore, dedicated, superposition], dim=-1)


def classify_phase(W: Float[Tensor, "inst 1 2"], b_final: Float[Tensor, "inst 2"]) -> list[str]:
    """The phase of every instance of a trained 2-feature → 1-dimension model, read from its weights.

    The labels describe feature 2 (importance r). "not represented": feature 2 has no direction (|w₂| small),
    whatever feature 1 does, so also when neither feature is represented; "dedicated": feature 2 has the dimension
    and feature 1 has none; "superposition": both have a direction, necessarily the same line, whatever their
    signs (a trained model puts them on opposite sides of it, antipodal). The biases are not needed: a dropped
    feature's bias is just its mean p/2, which is tiny when p is, and a feature's sign says nothing about whether
    it is represented.
    """
    # Trained weights sit near 0 or near ±1 (0.7 to 1.1 in superposition), so any threshold in between gives the
    # same labels; a feature stored with a negative weight is represented as well as one with a positive weight.
    represented = W[:, 0, :].abs() > 0.5  # [inst 2]: does feature i have a direction?
    labels = []
    for first, second in represented.tolist():
        if not second:
            labels.append("not represented")
        elif not first:
            labels.append("dedicated")
        else:
            labels.append("superposition")
    return labels
