"""Chapter 2, section 5: four SAE variants, each section 2.1's `ToySAE` with one or two of its steps changed.

The L1 penalty of a standard SAE does two jobs at once: it decides *which* latents fire and it shrinks *how much*
they fire, so that reconstructions come out too small. Each variant separates the two jobs in its own way:

* `TopKToySAE` (Gao et al., OpenAI 2024): no penalty at all; every input keeps its k largest pre-activations
  (ReLU'd) and the rest are zero, so L0 is at most k, and exactly k on every input with k positive pre-activations.
  Latents that never make the top k get a gradient from an auxiliary loss (AuxK): the dead latents' own top
  pre-activations reconstruct what the live ones missed.
* `GatedToySAE` (Rajamanoharan et al., GDM 2024): a gate decides which latents fire and a magnitude path, sharing
  the gate's directions (W_mag = exp(r_mag) ⊙ W_gate), decides how much. The L1 penalty lands on the gate only; an
  auxiliary reconstruction through a frozen copy of the decoder keeps the gate's pre-activations meaningful.
* `JumpReLUToySAE` (Rajamanoharan et al., GDM 2024; Gemma Scope): a latent fires only above a learned threshold θ,
  and the penalty is L0 itself, the number of latents that fire. Neither has a useful gradient with respect to θ,
  so `Heaviside` and `JumpReLU` are autograd functions with straight-through estimators for it.
* `BatchTopKToySAE` (Bussmann et al. 2024, given): the k·batch largest latents over the whole batch, so that L0 is
  k on average but varies from input to input; at inference a single threshold learned during training replaces it.

Each variant overrides only the steps it changes (`pre_activations`, `activation`, `loss_terms`) and what it
exports to SAELens.
"""

from dataclasses import dataclass
from typing import Any, NamedTuple

import einops
import torch as t
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor, nn

from solutions.sae.toy_sae import ToySAE, ToySAEConfig


@dataclass
class TopKToySAEConfig(ToySAEConfig):
    """Section 2.1's config and TopK's own settings: `k`, the latents every input keeps (an int, or an [inst] tensor
    for a sweep in one run), and `aux_coeff`, the weight of the auxiliary loss on dead latents (α = 1/32, Gao et
    al.). `sparsity_coeff` is unused: TopK has no penalty."""

    k: int | Tensor = 1
    aux_coeff: float = 1 / 32


@dataclass
class JumpReLUToySAEConfig(ToySAEConfig):
    """Section 2.1's config and JumpReLU's own settings: `ste_epsilon`, the bandwidth ε of the straight-through
    estimators, and `threshold_init`, where every threshold θ starts (ARENA's values). `sparsity_coeff` weights L0."""

    ste_epsilon: float = 0.01
    threshold_init: float = 0.1


def aux_k(cfg: ToySAEConfig) -> int:
    """How many dead latents AuxK uses per input: d_in / 2 (SAELens' heuristic from Gao et al.'s appendix B.1),
    at least 1 and at most d_sae."""
    return min(max(cfg.d_in // 2, 1), cfg.d_sae)


# ------------------------------------------------------------------------------------------------ TopK + AuxK


class TopKToySAE(ToySAE):
    """An SAE whose every input keeps its `cfg.k` largest latents; no sparsity penalty, and an auxiliary loss that
    trains the latents which have not fired for a while (`dead_latents`, kept up to date by the training loop)."""

    dead_latents: Bool[Tensor, "inst d_sae"]
    uses_dead_latents = True

    def __init__(self, cfg: ToySAEConfig, model: nn.Module) -> None:
        super().__init__(cfg, model)  # given
        self.register_buffer(  # given
            "dead_latents", t.zeros((cfg.n_inst, cfg.d_sae), dtype=t.bool, device=self.b_enc.device), persistent=False
        )

    def activation(self, pre_activations: Float[Tensor, "batch inst d_sae"]) -> Float[Tensor, "batch inst d_sae"]:
        """The k largest pre-activations of every input, ReLU'd, at their places; every other latent 0."""
        top = pre_activations.topk(self.cfg.k, dim=-1)
        return t.zeros_like(pre_activations).scatter(-1, top.indices, F.relu(top.values))

    def auxiliary_loss(
        self,
        h: Float[Tensor, "batch inst d_in"],
        pre_activations: Float[Tensor, "batch inst d_sae"],
        h_reconstructed: Float[Tensor, "batch inst d_in"],
    ) -> Float[Tensor, "batch inst"]:
        """AuxK: the top `aux_k` pre-activations among the dead latents, decoded without b_dec, reconstruct the
        residual h − h_reconstructed (detached: this loss trains only the dead latents), with the squared error
        averaged over d_in as in L_reconstruction. An instance with fewer dead latents than `aux_k` uses all of them
        and scales its loss by n_dead / aux_k; with none, the loss is 0."""
        k = aux_k(self.cfg)
        dead = self.dead_latents
        top = pre_activations.masked_fill(~dead, -t.inf).topk(k, dim=-1)
        values = top.values.masked_fill(top.values == -t.inf, 0.0)  # fewer dead latents than k
        aux_acts = t.zeros_like(pre_activations).scatter(-1, top.indices, values)
        aux_reconstruction = einops.einsum(
            aux_acts, self.W_dec_normalized, "batch inst d_sae, inst d_sae d_in -> batch inst d_in"
        )
        scale = (dead.sum(-1) / k).clamp(max=1.0)  # [inst]
        return scale * self.reconstruction_loss((h - h_reconstructed).detach(), aux_reconstruction)

    def loss_terms(
        self,
        h: Float[Tensor, "batch inst d_in"],
        pre_activations: Float[Tensor, "batch inst d_sae"],
        acts: Float[Tensor, "batch inst d_sae"],
        h_reconstructed: Float[Tensor, "batch inst d_in"],
    ) -> dict[str, Float[Tensor, "batch inst"]]:
        """L_reconstruction, and L_aux = aux_coeff · AuxK (no sparsity penalty: k sets the sparsity)."""
        return {
            "L_reconstruction": self.reconstruction_loss(h, h_reconstructed),
            "L_aux": self.cfg.aux_coeff * self.auxiliary_loss(h, pre_activations, h_reconstructed),
        }

    def loss_coefficients(self) -> dict[str, float | Tensor]:
        """Both terms count as they are: L_aux comes weighted by `aux_coeff` already (the term the log shows)."""
        return {"L_reconstruction": 1.0, "L_aux": 1.0}

    def saelens_parameters(self, instance: int) -> tuple[str, dict[str, Tensor], dict]:
        architecture, state, config = super().saelens_parameters(instance)
        return "topk", state, config | {"k": self.cfg.k, "rescale_acts_by_decoder_norm": False}


class BatchTopKToySAE(TopKToySAE):
    """TopK over the whole batch (given, not an exercise): each instance keeps the k·batch largest latents of the
    batch, so that L0 is k on average. After every training step the training loop hands it the step's latents, and
    it tracks the smallest one it kept (an exponential moving average, as SAELens does); out of training mode
    (`sae.eval()`) a latent fires when its pre-activation is above that threshold, one input at a time, which is what
    SAELens loads it as (JumpReLU)."""

    threshold: Float[Tensor, " inst"]
    threshold_lr = 0.01

    def __init__(self, cfg: ToySAEConfig, model: nn.Module) -> None:
        super().__init__(cfg, model)
        self.register_buffer("threshold", t.zeros(cfg.n_inst, device=self.b_enc.device))
        self.register_buffer("threshold_started", t.zeros((), dtype=t.bool, device=self.b_enc.device))

    def activation(self, pre_activations: Float[Tensor, "batch inst d_sae"]) -> Float[Tensor, "batch inst d_sae"]:
        if not self.training:
            return F.relu(pre_activations) * (pre_activations > self.threshold[:, None])
        batch = pre_activations.shape[0]
        per_instance = einops.rearrange(F.relu(pre_activations), "batch inst d_sae -> inst (batch d_sae)")
        top = per_instance.topk(min(self.cfg.k * batch, per_instance.shape[-1]), dim=-1)
        kept = t.zeros_like(per_instance).scatter(-1, top.indices, top.values)
        return einops.rearrange(kept, "inst (batch d_sae) -> batch inst d_sae", batch=batch)

    @t.no_grad()
    def track_latents(self, acts: Float[Tensor, "batch inst d_sae"]) -> None:
        """Move the threshold towards the smallest latent the training step kept, per instance."""
        kept = einops.rearrange(acts, "batch inst d_sae -> inst (batch d_sae)")
        smallest = kept.masked_fill(kept <= 0, t.inf).min(-1).values
        smallest = t.where(t.isfinite(smallest), smallest, self.threshold)  # nothing positive kept: no news
        if not self.threshold_started:
            self.threshold.copy_(smallest)
            self.threshold_started.fill_(True)
        else:
            self.threshold.lerp_(smallest, self.threshold_lr)

    def saelens_parameters(self, instance: int) -> tuple[str, dict[str, Tensor], dict]:
        _, state, config = ToySAE.saelens_parameters(self, instance)
        return "jumprelu", state | {"threshold": self.threshold[instance].expand(self.cfg.d_sae)}, config


# ----------------------------------------------------------------------------------------------------- Gated


class GatedPreActivations(NamedTuple):
    """The two paths of a gated SAE, each [batch inst d_sae]: which latents fire, and by how much."""

    gate: Tensor
    magnitude: Tensor


class GatedToySAE(ToySAE):
    """A gated SAE: f = 1[π_gate > 0] ⊙ ReLU(π_mag), with π_gate = (h − b_dec) W_gate + b_gate and
    π_mag = (h − b_dec) W_mag + b_mag, where W_mag = exp(r_mag) ⊙ W_gate (one scale per latent).

    The gate is section 2.1's encoder: `W_gate` and `b_gate` are its `W_enc` and `b_enc` under the gate's names (as
    SAELens keeps `W_enc` as the gate's weights), so that a tied decoder is still `W_enc` transposed."""

    r_mag: Float[Tensor, "inst d_sae"]
    b_mag: Float[Tensor, "inst d_sae"]

    def __init__(self, cfg: ToySAEConfig, model: nn.Module) -> None:
        """Section 2.1's parameters, and the magnitude path's own: r_mag = 0, so W_mag starts equal to W_gate, and
        b_mag = 0, as b_gate."""
        super().__init__(cfg, model)  # given
        self.r_mag = nn.Parameter(t.zeros_like(self.b_enc))  # given
        self.b_mag = nn.Parameter(t.zeros_like(self.b_enc))  # given

    @property
    def W_gate(self) -> Float[Tensor, "inst d_in d_sae"]:
        """The gate's weights: the encoder's."""
        return self.W_enc

    @property
    def b_gate(self) -> Float[Tensor, "inst d_sae"]:
        """The gate's bias: the encoder's."""
        return self.b_enc

    @property
    def W_mag(self) -> Float[Tensor, "inst d_in d_sae"]:
        """The magnitude path's weights: every latent's gate direction scaled by exp(r_mag)."""
        return self.W_gate * self.r_mag.exp()[:, None, :]

    def pre_activations(self, h: Float[Tensor, "batch inst d_in"]) -> GatedPreActivations:
        """Both paths read the centred input h − b_dec: π_gate with W_gate, b_gate; π_mag with W_mag, b_mag."""
        h_centred = h - self.b_dec
        encode = lambda W, b: einops.einsum(h_centred, W, "batch inst d_in, inst d_in d_sae -> batch inst d_sae") + b  # noqa: E731
        return GatedPreActivations(encode(self.W_gate, self.b_gate), encode(self.W_mag, self.b_mag))

    def activation(self, pre_activations: GatedPreActivations) -> Float[Tensor, "batch inst d_sae"]:
        """The gate's step function times the magnitude's ReLU."""
        return (pre_activations.gate > 0).float() * F.relu(pre_activations.magnitude)

    def loss_terms(
        self,
        h: Float[Tensor, "batch inst d_in"],
        pre_activations: GatedPreActivations,
        acts: Float[Tensor, "batch inst d_sae"],
        h_reconstructed: Float[Tensor, "batch inst d_in"],
    ) -> dict[str, Float[Tensor, "batch inst"]]:
        """L_reconstruction; L_sparsity, the L1 norm of ReLU(π_gate) (the gate, not the latents, pays the penalty);
        L_aux, the squared error (mean over d_in) of reconstructing h from ReLU(π_gate) through a detached copy of
        the decoder and b_dec, so that this term trains the gate alone."""
        gate = F.relu(pre_activations.gate)
        via_gate = (
            einops.einsum(gate, self.W_dec_normalized.detach(), "batch inst d_sae, inst d_sae d_in -> batch inst d_in")
            + self.b_dec.detach()
        )
        return {
            "L_reconstruction": self.reconstruction_loss(h, h_reconstructed),
            "L_sparsity": gate.sum(-1),
            "L_aux": self.reconstruction_loss(h, via_gate),
        }

    def loss_coefficients(self) -> dict[str, float | Tensor]:
        """L_sparsity weighted by `sparsity_coeff`; L_reconstruction and L_aux as they are."""
        return super().loss_coefficients() | {"L_aux": 1.0}

    def latent_axes(self) -> dict[str, int]:
        return super().latent_axes() | {"r_mag": -1, "b_mag": -1}

    def saelens_parameters(self, instance: int) -> tuple[str, dict[str, Tensor], dict]:
        state = {
            "W_enc": self.W_gate[instance], "b_gate": self.b_gate[instance], "r_mag": self.r_mag[instance],
            "b_mag": self.b_mag[instance], "W_dec": self.W_dec_normalized[instance], "b_dec": self.b_dec[instance],
        }  # fmt: skip
        return "gated", state, {}


# ----------------------------------------------------------------------------------------------------- JumpReLU


def rectangle(x: Tensor) -> Tensor:
    """The rectangle kernel K(x) = 1[|x| < 1/2], as floats."""
    return (x.abs() < 0.5).to(x.dtype)


def sum_to_shape(gradient: Tensor, like: Tensor) -> Tensor:
    """A gradient of a broadcast operand, summed over the axes it was broadcast along (the batch)."""
    return gradient.sum_to_size(like.shape) if gradient.shape != like.shape else gradient


class Heaviside(t.autograd.Function):
    """H(z, θ) = 1[z > θ], with a straight-through estimator for θ.

    backward: ∂H/∂z = 0 (the step has no useful gradient in z), ∂H/∂θ = −(1/ε)·K((z − θ)/ε): the derivative with
    respect to θ of a step smoothed over a window of width ε around θ.
    """

    @staticmethod
    def forward(ctx: Any, z: Tensor, theta: Tensor, eps: float) -> Tensor:
        ctx.save_for_backward(z, theta)
        ctx.eps = eps
        return (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, Tensor, None]:
        z, theta = ctx.saved_tensors
        grad_theta = -(1.0 / ctx.eps) * rectangle((z - theta) / ctx.eps) * grad_output
        return t.zeros_like(z), sum_to_shape(grad_theta, theta), None


class JumpReLU(t.autograd.Function):
    """J(z, θ) = z·1[z > θ], with a straight-through estimator for θ.

    backward: ∂J/∂z = 1[z > θ] (exact, away from the jump), ∂J/∂θ = −(θ/ε)·K((z − θ)/ε): the jump has height θ, so
    the smoothed step's derivative is scaled by θ.
    """

    @staticmethod
    def forward(ctx: Any, z: Tensor, theta: Tensor, eps: float) -> Tensor:
        ctx.save_for_backward(z, theta)
        ctx.eps = eps
        return z * (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, Tensor, None]:
        z, theta = ctx.saved_tensors
        grad_z = (z > theta).to(z.dtype) * grad_output
        grad_theta = -(theta / ctx.eps) * rectangle((z - theta) / ctx.eps) * grad_output
        return grad_z, sum_to_shape(grad_theta, theta), None


class JumpReLUToySAE(ToySAE):
    """An SAE whose latent i fires only when its pre-activation exceeds a learned threshold θ_i > 0 (stored as
    log θ, so it stays positive), trained with an L0 penalty through the straight-through estimators above."""

    log_theta: Float[Tensor, "inst d_sae"]

    def __init__(self, cfg: ToySAEConfig, model: nn.Module) -> None:
        super().__init__(cfg, model)  # given
        self.log_theta = nn.Parameter(t.full_like(self.b_enc, cfg.threshold_init).log())  # given

    @property
    def theta(self) -> Float[Tensor, "inst d_sae"]:
        return self.log_theta.exp()

    def activation(self, pre_activations: Float[Tensor, "batch inst d_sae"]) -> Float[Tensor, "batch inst d_sae"]:
        """JumpReLU_θ of the ReLU'd pre-activations."""
        return JumpReLU.apply(F.relu(pre_activations), self.theta, self.cfg.ste_epsilon)

    def loss_terms(
        self,
        h: Float[Tensor, "batch inst d_in"],
        pre_activations: Float[Tensor, "batch inst d_sae"],
        acts: Float[Tensor, "batch inst d_sae"],
        h_reconstructed: Float[Tensor, "batch inst d_in"],
    ) -> dict[str, Float[Tensor, "batch inst"]]:
        """L_reconstruction, and L_sparsity = L0, the number of latents that fire, Σ_i H(ReLU(pre_i), θ_i), through
        `Heaviside` so that θ gets a gradient (`forward` weights it by sparsity_coeff)."""
        l0 = Heaviside.apply(F.relu(pre_activations), self.theta, self.cfg.ste_epsilon).sum(-1)
        return {"L_reconstruction": self.reconstruction_loss(h, h_reconstructed), "L_sparsity": l0}

    def latent_axes(self) -> dict[str, int]:
        return super().latent_axes() | {"log_theta": -1}

    def saelens_parameters(self, instance: int) -> tuple[str, dict[str, Tensor], dict]:
        _, state, config = super().saelens_parameters(instance)
        return "jumprelu", state | {"threshold": self.theta[instance]}, config
