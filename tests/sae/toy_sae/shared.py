"""What the checks of chapter 2, section 1 share: the reference SAE on a probe toy model."""

import torch as t
from torch import Tensor, nn

from tests.harness import Context
from tests.sae.common import D_IN, D_SAE, N_INST, ProbeToyModel, sae_config

MODULE = "solutions.sae.toy_sae"
DECODER_SHAPE = (N_INST, D_SAE, D_IN)


def reference_sae(context: Context, salt: int, **cfg_fields) -> nn.Module:
    from solutions.sae.toy_sae import ToySAE, ToySAEConfig

    return ToySAE(ToySAEConfig(**vars(sae_config(**cfg_fields))), ProbeToyModel(context, salt))


HINT_TIED_NONE = (
    "With tied weights `self._W_dec` is None: don't read it (nor its `.shape`, `.device`, ...) when "
    "`cfg.tied_weights` is True; the decoder is then `self.W_enc.transpose(-1, -2)`"
)


def raised_with_hint(message: str, tied: bool) -> str:
    """The error a property raised, with the likely cause when it comes from reading `_W_dec` (None) when tied."""
    if tied and "'NoneType' object" in message:
        return f"{message}. {HINT_TIED_NONE}."
    return message


# Ways of making the decoder's rows unit norm that stay finite on an all-zero row, each with `weight_normalize_eps`:
# the course's W / (‖W‖ + eps), and the equally valid forms learners write (a clamp, as `F.normalize` does, and eps
# inside the square root). At the default eps they agree to float precision; at eps = 0.1 they differ, so a check at
# that value accepts whichever one the learner wrote, and rejects an eps that is not the config's.
NORMALISATIONS = {
    "norm + eps": lambda W, eps: W / (W.norm(dim=-1, keepdim=True) + eps),
    "max(norm, eps)": lambda W, eps: W / W.norm(dim=-1, keepdim=True).clamp_min(eps),
    "sqrt(norm² + eps²)": lambda W, eps: W * t.rsqrt(W.pow(2).sum(-1, keepdim=True) + eps**2),
    "sqrt(norm² + eps)": lambda W, eps: W * t.rsqrt(W.pow(2).sum(-1, keepdim=True) + eps),
}


def normalisation_of(got: Tensor, decoder: Tensor, eps: float) -> str | None:
    """Which accepted normalisation `got` is of `decoder` (the course's first), or None."""
    for name, normalise in NORMALISATIONS.items():
        expected = normalise(decoder, eps)
        if got.shape == expected.shape and t.allclose(got, expected, rtol=1e-4, atol=1e-5):
            return name
    return None
