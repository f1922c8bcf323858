"""Chapter 2, section 1: a sparse autoencoder (SAE) on the hidden activations of a toy model.

The toy models of chapter 1 store more features than they have dimensions. An SAE tries to take them out of
superposition again: it encodes each hidden vector h into many non-negative latents, most of them zero, and decodes
them back to h. If the latents are sparse and the reconstruction good, each latent should stand for one feature.

`ToySAE` trains `n_inst` SAEs side by side, SAE instance i on the hidden activations of the toy model's instance i,
tied (decoder = encoder transposed) or untied. Its forward pass is split into the steps that the variants of section
2.5 change one at a time: the encoder's pre-activations, the activation, the decoder, the loss terms, and the
constraint applied after each update.
"""

import copy
from collections.abc import Callable
from dataclasses import dataclass

import einops
import torch as t
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from utils.schedules import constant_lr
from utils.training import train_sae


@dataclass
class ToySAEConfig:
    """`n_inst` SAEs reading `d_in`-dimensional activations into `d_sae` latents.

    The loss of every input is L_reconstruction + sparsity_coeff · L_sparsity. With `tied_weights` the decoder is
    the encoder transposed (`W_enc` only); otherwise the decoder `_W_dec` is a parameter of its own. A tensor
    `sparsity_coeff` of shape [inst] gives every instance a coefficient of its own (a sweep in one training run).
    Section 2.5's variants extend this config with their own settings (`TopKToySAEConfig`, `JumpReLUToySAEConfig`).
    """

    n_inst: int
    d_in: int
    d_sae: int
    sparsity_coeff: float | Tensor = 0.2
    tied_weights: bool = False
    weight_normalize_eps: float = 1e-8


class ToySAE(nn.Module):
    """`n_inst` SAEs trained at once on the hidden activations h = W x of a frozen toy model.

    latents  acts = ReLU((h − b_dec) W_enc + b_enc)            [batch inst d_sae]
    output   h_reconstructed = acts Ŵ_dec + b_dec             [batch inst d_in], Ŵ_dec: W_dec with unit rows
    """

    W_enc: Float[Tensor, "inst d_in d_sae"]
    _W_dec: Float[Tensor, "inst d_sae d_in"] | None
    b_enc: Float[Tensor, "inst d_sae"]
    b_dec: Float[Tensor, "inst d_in"]
    # A variant whose loss reads which latents have stopped firing (TopK's auxiliary loss) sets this and registers a
    # buffer `dead_latents` [inst d_sae] in its `__init__`; the training loop then keeps that buffer up to date.
    uses_dead_latents = False

    def __init__(self, cfg: ToySAEConfig, model: nn.Module) -> None:
        """Parameters of `cfg.n_inst` SAEs: instance i reads the hidden activations of the model's instance i.

        The decoder's rows start as random unit directions and the encoder as their transpose (so that every latent
        starts reading the direction it writes); both biases start at 0. The toy model is kept as a frozen copy:
        the SAE never trains it, and never changes the model it was given.
        """
        super().__init__()  # given
        self.cfg = cfg  # given
        self.model = frozen_copy(model, n_inst=cfg.n_inst, d_hidden=cfg.d_in)  # given
        directions = F.normalize(t.randn((cfg.n_inst, cfg.d_sae, cfg.d_in)), dim=-1)
        self.W_enc = nn.Parameter(directions.transpose(-1, -2).clone())
        self._W_dec = None if cfg.tied_weights else nn.Parameter(directions.clone())
        self.b_enc = nn.Parameter(t.zeros((cfg.n_inst, cfg.d_sae)))
        self.b_dec = nn.Parameter(t.zeros((cfg.n_inst, cfg.d_in)))
        self.to(self.model.W.device)  # given

    @property
    def W_dec(self) -> Float[Tensor, "inst d_sae d_in"]:
        """The decoder: `_W_dec`, or the encoder transposed when the weights are tied."""
        return self.W_enc.transpose(-1, -2) if self.cfg.tied_weights else self._W_dec

    @property
    def W_dec_normalized(self) -> Float[Tensor, "inst d_sae d_in"]:
        """The decoder with every row scaled to unit norm; an all-zero row stays zero (no 0/0)."""
        return self.W_dec / (self.W_dec.norm(dim=-1, keepdim=True) + self.cfg.weight_normalize_eps)

    def generate_batch(self, batch_size: int) -> Float[Tensor, "batch inst d_in"]:
        """Hidden activations h = W x of the toy model on a fresh batch of its own data."""
        features = self.model.generate_batch(batch_size)
        return einops.einsum(features, self.model.W, "batch inst feats, inst d_in feats -> batch inst d_in")

    # ------------------------------------------------- the steps of a forward pass (variants override their own)

    def pre_activations(self, h: Float[Tensor, "batch inst d_in"]) -> Float[Tensor, "batch inst d_sae"]:
        """The encoder: (h − b_dec) W_enc + b_enc."""
        h_centred = h - self.b_dec
        return einops.einsum(h_centred, self.W_enc, "batch inst d_in, inst d_in d_sae -> batch inst d_sae") + self.b_enc

    def activation(self, pre_activations: Float[Tensor, "batch inst d_sae"]) -> Float[Tensor, "batch inst d_sae"]:
        """The latents: ReLU of the pre-activations."""
        return F.relu(pre_activations)

    def decode(self, acts: Float[Tensor, "batch inst d_sae"]) -> Float[Tensor, "batch inst d_in"]:
        """The reconstruction: acts Ŵ_dec + b_dec, with the decoder's rows at unit norm."""
        return einops.einsum(acts, self.W_dec_normalized, "batch inst d_sae, inst d_sae d_in -> batch inst d_in") + (
            self.b_dec
        )

    def reconstruction_loss(
        self, h: Float[Tensor, "batch inst d_in"], h_reconstructed: Float[Tensor, "batch inst d_in"]
    ) -> Float[Tensor, "batch inst"]:
        """Squared error of every input, averaged over the d_in dimensions."""
        return (h_reconstructed - h).pow(2).mean(-1)

    def sparsity_loss(self, acts: Float[Tensor, "batch inst d_sae"]) -> Float[Tensor, "batch inst"]:
        """L1 norm of every input's latents, summed over the d_sae latents."""
        return acts.abs().sum(-1)

    def loss_terms(
        self,
        h: Float[Tensor, "batch inst d_in"],
        pre_activations: Float[Tensor, "batch inst d_sae"],
        acts: Float[Tensor, "batch inst d_sae"],
        h_reconstructed: Float[Tensor, "batch inst d_in"],
    ) -> dict[str, Float[Tensor, "batch inst"]]:
        """The terms of the loss, each [batch inst]: L_reconstruction and L_sparsity. A variant with other terms (an
        auxiliary loss, a different penalty) overrides this and `loss_coefficients`, which give each term's weight."""
        return {
            "L_reconstruction": self.reconstruction_loss(h, h_reconstructed),
            "L_sparsity": self.sparsity_loss(acts),
        }

    def loss_coefficients(self) -> dict[str, float | Tensor]:
        """The weight of every term of `loss_terms` in the loss: 1 for L_reconstruction, `sparsity_coeff` (a number,
        or one per instance) for L_sparsity."""
        return {"L_reconstruction": 1.0, "L_sparsity": self.cfg.sparsity_coeff}

    def forward(
        self, h: Float[Tensor, "batch inst d_in"]
    ) -> tuple[
        dict[str, Float[Tensor, "batch inst"]],
        Float[Tensor, "batch inst"],
        Float[Tensor, "batch inst d_sae"],
        Float[Tensor, "batch inst d_in"],
    ]:
        """Encode, decode and score every input of every instance.

        Returns (loss_dict, loss, acts, h_reconstructed): the loss terms L_reconstruction and L_sparsity and the
        loss L_reconstruction + sparsity_coeff · L_sparsity, each [batch inst], the latents and the reconstruction.
        """
        pre_activations = self.pre_activations(h)
        acts = self.activation(pre_activations)
        h_reconstructed = self.decode(acts)
        loss_dict = self.loss_terms(h, pre_activations, acts, h_reconstructed)
        coefficients = self.loss_coefficients()
        loss = sum(coefficients[name] * term for name, term in loss_dict.items())
        return loss_dict, loss, acts, h_reconstructed

    def saelens_parameters(self, instance: int) -> tuple[str, dict[str, Tensor], dict]:
        """What `export_saelens` writes for one instance: SAELens' architecture, its state dict, extra config."""
        state = {"W_enc": self.W_enc[instance], "W_dec": self.W_dec_normalized[instance]}
        return "standard", state | {"b_enc": self.b_enc[instance], "b_dec": self.b_dec[instance]}, {}

    def latent_axes(self) -> dict[str, int]:
        """Which axis of each parameter indexes the latents (resampling a latent resets those entries' optimiser
        state)."""
        return {"W_enc": -1, "b_enc": -1, **({} if self.cfg.tied_weights else {"_W_dec": -2})}

    @t.no_grad()
    def after_update(self) -> None:
        """The constraint kept after every optimiser step: an untied decoder's rows go back to unit norm (a tied
        decoder is normalised in `decode`, and renormalising it would rescale the encoder)."""
        if not self.cfg.tied_weights:
            self._W_dec.copy_(self.W_dec_normalized)

    def track_latents(self, acts: Float[Tensor, "batch inst d_sae"]) -> None:
        """What the SAE keeps of a training step's latents (detached) besides its gradients, called by the training
        loop after the step's update: nothing here; BatchTopK tracks the threshold it uses out of training."""

    def optimize(
        self,
        batch_size: int = 1024,
        steps: int = 10_000,
        log_freq: int = 100,
        lr: float = 1e-3,
        lr_scale: Callable[[int, int], float] = constant_lr,
        resample_method: str | None = None,
        resample_freq: int = 2500,
        resample_window: int = 500,
        resample_scale: float = 0.5,
        shortcut: bool = True,
    ) -> dict[str, Tensor]:
        """Train every instance at once with Adam; return per-instance logs every `log_freq` steps.

        The log has "step" and, each [n_logs, inst]: "loss" and its terms (means over the batch), "l0" (latents
        active per input), "frac_alive" (latents active at least once in the last `resample_window` steps); and
        "frac_active" [n_logs, inst, d_sae], how often each latent fired on the logged step's batch. With
        `resample_method` "simple" or "advanced" (section 2.4's `resample_simple`, `resample_advanced`), latents
        that stayed dead for `resample_window` steps are resampled every `resample_freq` steps, and the log also has
        "resample_step" and "resampled" [n_resamples, inst], how many latents each of those steps resampled
        ("resampled_latents" [n_resamples, inst, d_sae]: which). Snapshots of the weights on the logged steps, for
        animations, come under the weights' names: "W_enc", "b_enc", "b_dec", "W_dec" [n_logs, inst, ...].

        With `shortcut` (the default), a standard SAE trains on hand-written gradients between logged steps, once its
        own `forward` is seen to give the same (`utils.sae_step`): `forward` then runs only on the first and the
        logged steps. `shortcut=False` runs `forward` and autograd on every step (slower, the same maths).
        """
        return train_sae(
            self,
            batch_size,
            steps,
            log_freq,
            lr,
            lr_scale,
            resample_method,
            resample_freq,
            resample_window,
            resample_scale,
            shortcut,
        )


def frozen_copy(model: nn.Module, n_inst: int, d_hidden: int) -> nn.Module:
    """A copy of the toy model that no optimiser can train, so that the caller's model is never changed."""
    if model.cfg.n_inst != n_inst or model.cfg.d_hidden != d_hidden:
        raise ValueError(
            f"the SAE reads {n_inst} instances of {d_hidden} dimensions; the model has {model.cfg.n_inst} instances of "
            f"{model.cfg.d_hidden}"
        )
    return copy.deepcopy(model).requires_grad_(False)
