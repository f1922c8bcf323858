"""Chapter 2, section 6: feature absorption.

When one feature only ever occurs together with another (a *child*, "this word starts with a capital S", that implies
its *parent*, "this word starts with S"), an untied SAE can save L1 by folding the parent into the child's latent:
the child's latent writes parent + child, and the parent's latent learns to stay silent whenever the child is there.
Its reconstruction stays perfect, so nothing in the usual metrics shows that the parent's latent has a hole in it
(Chanin et al., "A is for Absorption", 2024). `generate_hierarchical_batch` makes such data; `absorption_rate`
measures the hole.
"""

import einops
import torch as t
from jaxtyping import Bool, Float, Int
from torch import Tensor

from solutions.sae.toy_sae import ToySAE


def generate_hierarchical_batch(
    batch_size: int,
    n_inst: int,
    p_parent: float,
    p_child_given_parent: float,
    p_other: float,
    n_other: int,
    magnitude_min: float = 1.0,
) -> Float[Tensor, "batch inst feats"]:
    """A batch of `2 + n_other` features per input and instance: feature 0 is the parent, feature 1 its child, and
    features 2, 3, ... are independent of both and of each other.

    The parent is present with probability `p_parent`; the child only when the parent is, with probability
    `p_child_given_parent` (so P(child) = p_parent · p_child_given_parent, and never without its parent); each other
    feature with probability `p_other`. Every draw is independent across inputs, instances and features. A present
    feature has its own magnitude, uniform on [magnitude_min, 1] (all exactly 1 by default); an absent one is 0.
    """
    shape = (batch_size, n_inst)
    parent = t.rand(shape) < p_parent
    child = parent & (t.rand(shape) < p_child_given_parent)
    others = t.rand((*shape, n_other)) < p_other
    present = t.cat([parent[..., None], child[..., None], others], dim=-1)
    magnitudes = magnitude_min + (1 - magnitude_min) * t.rand(present.shape)
    return t.where(present, magnitudes, 0.0)


def absorption_rate(
    acts: Float[Tensor, "batch inst d_sae"],
    parent_latent: Int[Tensor, " inst"],
    child_present: Bool[Tensor, "batch inst"],
    parent_present: Bool[Tensor, "batch inst"],
) -> Float[Tensor, " inst"]:
    """Per instance, the fraction of inputs with both the parent and the child present on which the parent's latent
    (`parent_latent[i]` for instance i) is silent: its activation is not positive.

    1 means the child has absorbed the parent completely, 0 not at all. Inputs with only one of the two present do
    not count. An instance with no input that has both gets NaN: its rate is undefined (0 would claim "no
    absorption" without evidence).
    """
    both = child_present & parent_present  # [batch inst]
    instances = t.arange(acts.shape[1], device=acts.device)
    silent = acts[:, instances, parent_latent] <= 0  # [batch inst]
    return (silent & both).sum(0) / both.sum(0)


class MatryoshkaToySAE(ToySAE):
    """A Matryoshka SAE (Nabeshima, 2024; Bussmann et al., 2025): section 2.1's SAE whose loss also asks every
    *prefix* of the dictionary, latents 0 … m − 1 for each m in `widths`, to reconstruct the input on its own.

    The first latents then have to stand for something on every input where they could help, so a general feature
    (a parent) keeps a latent of its own at the front instead of being folded into the latents of its children.
    The loss is Σ_m L_reconstruction(prefix m) + sparsity_coeff · L_sparsity; the full dictionary's term keeps the name
    L_reconstruction and each narrower prefix adds a term L_reconstruction_<m>.
    """

    widths: tuple[int, ...] = (1,)  # the prefixes narrower than the whole dictionary (which is always the last)

    def loss_terms(
        self,
        h: Float[Tensor, "batch inst d_in"],
        pre_activations: Float[Tensor, "batch inst d_sae"],
        acts: Float[Tensor, "batch inst d_sae"],
        h_reconstructed: Float[Tensor, "batch inst d_in"],
    ) -> dict[str, Float[Tensor, "batch inst"]]:
        terms = super().loss_terms(h, pre_activations, acts, h_reconstructed)
        decoder = self.W_dec_normalized
        for m in self.widths:
            prefix = einops.einsum(acts[..., :m], decoder[:, :m], "batch inst m, inst m d_in -> batch inst d_in")
            terms[f"L_reconstruction_{m}"] = self.reconstruction_loss(h, prefix + self.b_dec)
        return terms

    def loss_coefficients(self) -> dict[str, float | Tensor]:
        """Section 2.1's weights, and 1 for every prefix's reconstruction."""
        return super().loss_coefficients() | {f"L_reconstruction_{m}": 1.0 for m in self.widths}
