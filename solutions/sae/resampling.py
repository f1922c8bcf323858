"""Chapter 2, section 4: dead latents, and two ways of bringing them back.

A latent that stops firing gets no gradient and never fires again: a wasted dictionary entry. Resampling gives it a new
start. `resample_simple` points it in a random direction; `resample_advanced` (Anthropic's recipe, Towards
Monosemanticity) points it at an input the SAE reconstructs badly, chosen with probability ∝ its squared loss, so that
the new latent starts where it is needed. The training loop calls them every `resample_freq` steps with the window of
recent activity, and then resets the optimiser's moment estimates of the resampled entries (Adam's state describes
the old latent, not the new one).
"""

import torch as t
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from solutions.sae import toy_sae


class ToySAE(toy_sae.ToySAE):
    """Section 2.1's SAE, with two methods that resample its dead latents in place."""

    @t.no_grad()
    def resample_simple(self, frac_active_in_window: Float[Tensor, "window inst d_sae"], resample_scale: float) -> None:
        """Give every dead latent (active in none of the window's steps) a random unit decoder direction v, the
        encoder direction resample_scale · v and a zero encoder bias; leave every other latent exactly as it is."""
        dead = (frac_active_in_window == 0).all(dim=0)  # [inst d_sae]
        v = F.normalize(t.randn((int(dead.sum()), self.cfg.d_in), device=self.W_enc.device), dim=-1)
        self.W_enc.transpose(-1, -2)[dead] = resample_scale * v
        if not self.cfg.tied_weights:
            self._W_dec[dead] = v
        self.b_enc[dead] = 0.0

    @t.no_grad()
    def resample_advanced(
        self, frac_active_in_window: Float[Tensor, "window inst d_sae"], resample_scale: float, batch_size: int
    ) -> None:
        """Anthropic's resampling: for each instance with dead latents, draw a batch, give every input a probability
        ∝ its squared reconstruction loss, and send each dead latent to one sampled input: decoder = the normalised
        centred input (h − b_dec), encoder = that × the mean encoder norm of the alive latents × resample_scale,
        encoder bias = 0. Instances whose latents are all alive are left as they are; where every input is
        reconstructed exactly (all losses 0), there is nothing to prefer and the inputs are sampled uniformly."""
        dead = (frac_active_in_window == 0).all(dim=0)  # [inst d_sae]
        h = self.generate_batch(batch_size)
        squared_loss = self.forward(h)[0]["L_reconstruction"].pow(2)  # [batch inst]
        for inst in range(self.cfg.n_inst):
            latents = dead[inst].nonzero().squeeze(-1)
            if len(latents) == 0:
                continue
            weights = squared_loss[:, inst] if squared_loss[:, inst].max() > 0 else t.ones_like(squared_loss[:, inst])
            chosen = t.multinomial(weights, len(latents), replacement=True)
            directions = F.normalize(h[chosen, inst] - self.b_dec[inst], dim=-1)  # [n_dead d_in]
            alive = ~dead[inst]
            encoder_norm = self.W_enc[inst][:, alive].norm(dim=0).mean() if alive.any() else t.tensor(1.0)
            self.W_enc[inst][:, latents] = (directions * encoder_norm * resample_scale).T
            if not self.cfg.tied_weights:
                self._W_dec[inst][latents] = directions
            self.b_enc[inst][latents] = 0.0
