"""Chapter 2, section 2: the full report on a trained SAE, and the runs of the section's notebook.

`recovery_report` gathers, per instance, every measure of the section on one large evaluation batch: ground-truth
recovery (MMCS of the decoder and of the encoder, features recovered at cosine 0.9 and 0.99, and the reverse MMCS,
which exposes duplicated or split latents), SAELens' reconstruction and sparsity metrics, the shrinkage diagnostics,
and the toy analogue of "loss recovered": how much of the toy model's own loss survives when its output layer reads
the SAE's reconstruction instead of the true hidden vector.
"""

import einops
import torch as t
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from solutions.sae.measuring_recovery import feature_recovery, sae_metrics
from solutions.sae.toy_sae import ToySAE, ToySAEConfig
from solutions.sae.toy_sae_experiments import pentagon_model
from utils.batches import seeded_batch, toy_batches

EVALUATION_BATCH = 1 << 14  # inputs per instance for every metric (the count the metric definitions are quoted at)


def true_features(model: nn.Module) -> Float[Tensor, "inst feats d_in"]:
    """The toy model's feature directions, one row per feature (`model.W` is [inst d_in feats])."""
    return model.W.detach().transpose(-1, -2)


def evaluation_batch(sae: nn.Module, batch_size: int = EVALUATION_BATCH, seed: int = 0) -> tuple[Tensor, Tensor]:
    """(features x, hidden activations h) of a batch from the SAE's toy model, drawn from a seeded stream of its own,
    so that evaluating never changes what training draws next."""
    x = seeded_batch(toy_batches(sae.model), batch_size, seed, sae.b_dec.device)
    with t.no_grad():
        return x, einops.einsum(x, sae.model.W, "batch inst feats, inst d_in feats -> batch inst d_in")


def toy_model_loss(model: nn.Module, h: Tensor, x: Tensor) -> Float[Tensor, " inst"]:
    """The toy model's importance-weighted loss when its output layer reads `h`: ReLU(Wᵀ h + b_final) against x."""
    out = F.relu(einops.einsum(h, model.W, "batch inst d_in, inst d_in feats -> batch inst feats") + model.b_final)
    return (model.importance * (out - x).pow(2)).mean(dim=(0, 2))


@t.no_grad()
def recovery_report(sae: nn.Module, batch_size: int = EVALUATION_BATCH, seed: int = 0) -> dict[str, Tensor]:
    """Every measure of section 2.2 for every instance of a trained SAE, each a tensor [inst] (on the CPU)."""
    x, h = evaluation_batch(sae, batch_size, seed)
    _, _, acts, h_reconstructed = sae(h)
    features = true_features(sae.model)
    recovery = feature_recovery(sae.W_dec, features)  # [inst feats]
    encoder_recovery = feature_recovery(sae.W_enc.transpose(-1, -2), features)
    pattern = "inst d_sae d_in, inst feats d_in -> inst d_sae feats"
    latent_cosines = einops.einsum(F.normalize(sae.W_dec, dim=-1), F.normalize(features, dim=-1), pattern)
    alive = (acts > 0).any(dim=0)  # [inst d_sae]
    reverse = (latent_cosines.max(dim=-1).values * alive).sum(-1) / alive.sum(-1).clamp_min(1)
    norms, reconstructed_norms = h.norm(dim=-1), h_reconstructed.norm(dim=-1)
    nonzero = norms > 0  # inputs with no feature present have h = 0: ratios to ‖h‖ leave them out
    over_nonzero = lambda values: (values * nonzero).sum(0) / nonzero.sum(0)  # noqa: E731
    loss_original = toy_model_loss(sae.model, h, x)
    loss_sae = toy_model_loss(sae.model, h_reconstructed, x)
    loss_zero = toy_model_loss(sae.model, t.zeros_like(h), x)
    report = {
        **sae_metrics(sae, h),
        "nmse": over_nonzero((h - h_reconstructed).pow(2).sum(-1) / norms.pow(2).clamp_min(1e-12)),
        "l1": acts.sum(-1).mean(0),
        "frac_alive": alive.float().mean(-1),
        "l2_ratio": over_nonzero(reconstructed_norms / norms.clamp_min(1e-12)),
        # the Gated SAE paper's γ = E‖ĥ‖² / E[ĥ·h]: below 1 when the L1 penalty shrinks the reconstruction
        "relative_reconstruction_bias": h_reconstructed.pow(2).sum(-1).mean(0) / (h_reconstructed * h).sum(-1).mean(0),
        "mmcs": recovery.mean(-1),
        "mmcs_encoder": encoder_recovery.mean(-1),
        "recovered_0.9": (recovery > 0.9).sum(-1),
        "recovered_0.99": (recovery > 0.99).sum(-1),
        "reverse_mmcs": reverse,
        "loss_recovered": (loss_zero - loss_sae) / (loss_zero - loss_original),
    }
    return {name: value.cpu() for name, value in report.items()}


# ----------------------------------------------------------------------------------------- the notebook's runs

# Two SAEs of 5 latents on the pentagon, 4 instances each, that differ only in their sparsity coefficient: without
# the L1 penalty the SAE reconstructs perfectly and finds fewer features; with it, the other way round.
COMPARISON_COEFFICIENTS = (0.0, 0.2)
COMPARISON_INSTANCES = 4
COMPARISON_STEPS = 4_000


def train_comparison(device: t.device | str | None = None) -> dict[float, nn.Module]:
    """One trained SAE per sparsity coefficient, each with `COMPARISON_INSTANCES` instances, on the pentagon."""
    saes = {}
    for coefficient in COMPARISON_COEFFICIENTS:
        t.manual_seed(0)
        model = pentagon_model(COMPARISON_INSTANCES, device=device)
        sae = ToySAE(ToySAEConfig(COMPARISON_INSTANCES, d_in=2, d_sae=5, sparsity_coeff=coefficient), model)
        sae.optimize(steps=COMPARISON_STEPS)
        saes[coefficient] = sae
    return saes
