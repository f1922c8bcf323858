"""Check scaffolding shared by the sections of chapter 2: a toy model to feed the learner's SAE, the SAE's config,
building the learner's class and setting its parameters. Probes never import `solutions`.
"""

from types import SimpleNamespace

import torch as t
from torch import Tensor, nn

from tests.harness import CheckFailed, Context

# Sizes chosen so that every axis has its own length: a transposed or swapped tensor shows up in its shape.
N_INST, N_FEATURES, D_IN, D_SAE = 3, 5, 4, 6


class ProbeToyModel(nn.Module):
    """A toy model for the SAE checks, built without `solutions`: the fields and methods an SAE may use.

    Its data come from a generator of its own, so that a copy of the model (an SAE keeps a frozen copy) draws exactly
    the batches the verdict draws from a fresh model built with the same seed. Every feature of every instance has its
    own probability, and the weights have both signs and varied norms.
    """

    def __init__(self, context: Context, salt: int, n_inst: int = N_INST, n_features: int = N_FEATURES, d_hidden=D_IN):
        super().__init__()
        g = context.generator(salt)
        self.cfg = SimpleNamespace(n_inst=n_inst, n_features=n_features, d_hidden=d_hidden)
        self.W = nn.Parameter(
            t.randn((n_inst, d_hidden, n_features), generator=g) * (0.5 + t.rand(n_features, generator=g))
        )
        self.b_final = nn.Parameter(t.randn((n_inst, n_features), generator=g) * 0.1)
        probabilities = 0.15 + 0.7 * t.rand((n_inst, n_features), generator=g)
        self.register_buffer("feature_probability", probabilities, persistent=False)
        self.register_buffer(
            "importance", 0.9 ** t.arange(n_features, dtype=t.float32).expand(n_inst, -1), persistent=False
        )
        self.generator = t.Generator().manual_seed(context.seed * 7919 + salt)

    def generate_batch(self, batch_size: int) -> Tensor:
        shape = (batch_size, *self.feature_probability.shape)
        present = t.rand(shape, generator=self.generator) < self.feature_probability.cpu()
        return (t.rand(shape, generator=self.generator) * present).to(self.W.device)

    def forward(self, features: Tensor) -> Tensor:
        hidden = t.einsum("...if,ihf->...ih", features, self.W)
        return t.relu(t.einsum("...ih,ihf->...if", hidden, self.W) + self.b_final)


def sae_config(**fields) -> SimpleNamespace:
    """The fields of the notebook's ToySAEConfig, without importing `solutions`."""
    defaults = dict(n_inst=N_INST, d_in=D_IN, d_sae=D_SAE, sparsity_coeff=0.2, tied_weights=False)
    return SimpleNamespace(**(defaults | {"weight_normalize_eps": 1e-8} | fields))


def build_sae(cls: type, cfg: SimpleNamespace, model: nn.Module) -> nn.Module:
    """Instantiate the learner's SAE class the way the notebook does, with a plain message if that fails."""
    try:
        return cls(cfg, model)
    except NotImplementedError:
        raise
    except Exception as error:
        raise CheckFailed(
            f"could not build {cls.__name__}(cfg, model): {type(error).__name__}: {error}. "
            "Keep the lines of __init__ that the notebook gives you."
        ) from None


def parameter_case(context: Context, salt: int, tied: bool, unit_decoder: bool) -> dict[str, Tensor]:
    """SAE parameters of both signs with non-zero biases; decoder rows of unit norm or of varied norms."""
    g = context.generator(salt)
    W_enc = t.randn((N_INST, D_IN, D_SAE), generator=g)
    case = {"W_enc": W_enc, "b_enc": t.randn((N_INST, D_SAE), generator=g) * 0.3,
            "b_dec": t.randn((N_INST, D_IN), generator=g) * 0.5}  # fmt: skip
    decoder = W_enc.transpose(-1, -2) if tied else t.randn((N_INST, D_SAE, D_IN), generator=g)
    if unit_decoder:
        decoder = decoder / decoder.norm(dim=-1, keepdim=True)
        if tied:
            case["W_enc"] = decoder.transpose(-1, -2).contiguous()
    elif not tied:
        decoder = decoder * (0.3 + 2 * t.rand((N_INST, D_SAE, 1), generator=g))
    if not tied:
        case["_W_dec"] = decoder.contiguous()
    return case


def set_parameters(sae: nn.Module, case: dict[str, Tensor]) -> None:
    """Copy the case's values into the learner's parameters of the same names (the names the notebook gives them)."""
    for name, value in case.items():
        param = getattr(sae, name, None)
        if not isinstance(param, Tensor):
            raise CheckFailed(
                f"{type(sae).__name__} has no tensor attribute `{name}`: name your parameters as the notebook says."
            )
        if param.shape != value.shape:
            raise CheckFailed(f"`{name}` should have shape {tuple(value.shape)}, got {tuple(param.shape)}.")
        with t.no_grad():
            param.copy_(value.to(param.device))


class ProbeSAE(nn.Module):
    """A standard SAE for the checks of functions that take an SAE, built without `solutions`.

    Its forward pass is the course's (acts = ReLU((h − b_dec) W_enc + b_enc), ĥ = acts Ŵ_dec + b_dec), and its
    parameters are set so that, on `probe_activations`, latent 0 never fires (dead) and latent 1 fires on one or two
    inputs only (alive, but rare).
    """

    def __init__(self, context: Context, salt: int, n_inst: int = N_INST, d_in: int = D_IN, d_sae: int = D_SAE):
        super().__init__()
        g = context.generator(salt)
        self.cfg = sae_config(n_inst=n_inst, d_in=d_in, d_sae=d_sae)
        W_enc = t.nn.functional.normalize(t.randn((n_inst, d_in, d_sae), generator=g), dim=1)
        b_enc = t.randn((n_inst, d_sae), generator=g) * 0.2
        b_enc[:, 0], b_enc[:, 1] = -100.0, -4.0
        self.W_enc = nn.Parameter(W_enc)
        self.b_enc = nn.Parameter(b_enc)
        self.b_dec = nn.Parameter(t.randn((n_inst, d_in), generator=g) * 0.3)
        self._W_dec = nn.Parameter(t.randn((n_inst, d_sae, d_in), generator=g))

    @property
    def W_dec(self) -> Tensor:
        return self._W_dec

    @property
    def W_dec_normalized(self) -> Tensor:
        return self._W_dec / (self._W_dec.norm(dim=-1, keepdim=True) + 1e-8)

    def forward(self, h: Tensor) -> tuple[dict[str, Tensor], Tensor, Tensor, Tensor]:
        acts = t.relu(t.einsum("bid,ids->bis", h - self.b_dec, self.W_enc) + self.b_enc)
        h_reconstructed = t.einsum("bis,isd->bid", acts, self.W_dec_normalized) + self.b_dec
        loss_dict = {"L_reconstruction": (h_reconstructed - h).pow(2).mean(-1), "L_sparsity": acts.abs().sum(-1)}
        return loss_dict, loss_dict["L_reconstruction"] + 0.2 * loss_dict["L_sparsity"], acts, h_reconstructed


def probe_activations(context: Context, salt: int, sae: "ProbeSAE", batch: int = 64) -> Tensor:
    """Hidden vectors with a non-zero mean (so that centring matters) and, as input 0, one that makes latent 1 fire."""
    g = context.generator(salt)
    n_inst, d_in = sae.b_dec.shape
    h = t.randn((batch, n_inst, d_in), generator=g) + t.linspace(-0.5, 1, d_in)
    with t.no_grad():
        h[0] = sae.b_dec + 6 * sae.W_enc[:, :, 1]
    return h
