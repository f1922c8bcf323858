"""Chapter 2, section 2: measuring what an SAE has recovered.

Two kinds of measure. On a toy model we know the true features, so we can ask directly how close the SAE's decoder
rows come to them (`feature_recovery`, whose mean over features is the MMCS of Sharkey et al., 2022). On real models
we only have the activations, so the libraries report how well they are reconstructed and how sparsely
(`sae_metrics`, in SAELens' conventions). The section's notebook shows that the two can disagree.
"""

import einops
import torch as t
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn


def feature_recovery(
    W_dec: Float[Tensor, "inst d_sae d_in"], true_features: Float[Tensor, "inst feats d_in"]
) -> Float[Tensor, "inst feats"]:
    """For every true feature, the cosine similarity of the decoder row closest to it (its best latent).

    The mean over features is the MMCS (mean max cosine similarity). A feature found by some latent scores ≈ 1; a
    feature no latent points at scores low. Rows or features that are all zeros count as orthogonal to everything.
    """
    latents = F.normalize(W_dec, dim=-1)
    features = F.normalize(true_features, dim=-1)
    cosines = einops.einsum(latents, features, "inst d_sae d_in, inst feats d_in -> inst d_sae feats")
    return cosines.max(dim=1).values


@t.no_grad()
def sae_metrics(sae: nn.Module, h: Float[Tensor, "batch inst d_in"]) -> dict[str, Float[Tensor, " inst"]]:
    """The reconstruction and sparsity metrics SAELens logs, per instance, on the batch `h`.

    l0: latents active per input (mean over the batch). explained_variance: 1 − E‖h − ĥ‖² / E‖h − h̄‖², with h̄ the
    batch mean (SAELens' definition: ratio of means, not mean of ratios). mse: E Σ_d (h − ĥ)², summed over d_in and
    averaged over the batch. dead: the fraction of latents that fire on no input of the batch.
    """
    _, _, acts, h_reconstructed = sae(h)
    squared_error = (h - h_reconstructed).pow(2).sum(-1)  # [batch inst]
    total_variance = (h - h.mean(dim=0)).pow(2).sum(-1)
    return {
        "l0": (acts > 0).float().sum(-1).mean(0),
        "explained_variance": 1 - squared_error.mean(0) / total_variance.mean(0),
        "mse": squared_error.mean(0),
        "dead": (acts > 0).any(dim=0).logical_not().float().mean(-1),
    }
