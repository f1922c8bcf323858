"""Chapter 1, section 5: feature geometry.

How many dimensions does each feature get? The paper's two measures (the dimensionality D_i of every feature and
the dimensions per feature D* of a whole model), and Scherlis et al.'s capacity (the same number as D_i, arrived at
from a different question). The experiments of the notebook are in `feature_geometry_experiments.py`.
"""

import einops
from jaxtyping import Float
from torch import Tensor


def compute_dimensionality(W: Float[Tensor, "inst d_hidden feats"]) -> Float[Tensor, "inst feats"]:
    """Dimensionality of every feature: D_i = ‖W_i‖² / Σ_j (Ŵ_i·W_j)², with Ŵ_i = W_i / ‖W_i‖.

    The sum runs over every j, including j = i (which contributes ‖W_i‖²), so D_i = 1 for a feature with a dimension
    to itself and D_i < 1 for one that shares. A dead feature (W_i = 0) gets 0, not 0/0.
    """
    norms = W.norm(dim=1)
    W_normed = W / norms.clamp_min(1e-8).unsqueeze(1)
    overlaps = einops.einsum(W_normed, W, "inst d_hidden feat_i, inst d_hidden feat_j -> inst feat_i feat_j")
    # A dead feature has numerator 0 and denominator 0; the clamp turns 0/0 into 0/1e-12 = 0.
    return norms**2 / (overlaps**2).sum(-1).clamp_min(1e-12)


def dimensions_per_feature(W: Float[Tensor, "inst d_hidden feats"]) -> Float[Tensor, " inst"]:
    """D* = d_hidden / ‖W‖_F², per instance: about how many hidden dimensions each represented feature gets.

    ‖W‖_F² = Σ_i ‖W_i‖² counts the represented features (each contributes ≈1, dead ones ≈0).
    """
    return W.shape[1] / W.pow(2).sum(dim=(1, 2))


def capacity(W: Float[Tensor, "inst d_hidden feats"]) -> Float[Tensor, "inst feats"]:
    """Scherlis et al.'s capacity C_i = (W_i·W_i)² / Σ_j (W_i·W_j)² of every feature, from the Gram matrix WᵀW.

    The fraction of a dimension feature i gets: 1 for a dimension of its own, 0 when ignored. Dividing numerator
    and denominator by ‖W_i‖² shows it is the dimensionality D_i. Summed over features it is at most d_hidden.
    """
    gram = einops.einsum(W, W, "inst d_hidden feat_i, inst d_hidden feat_j -> inst feat_i feat_j")
    return gram.diagonal(dim1=1, dim2=2) ** 2 / (gram**2).sum(-1).clamp_min(1e-24)
