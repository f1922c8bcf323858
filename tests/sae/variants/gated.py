"""The check of `sae.gated`: a gate that decides which latents fire, a magnitude path that decides how much."""

import einops
import torch as t
import torch.nn.functional as F
from torch import Tensor, nn

from tests.harness import Context, Mistake, reference_of
from tests.kit import HINT_REPLACED, config_family, setting
from tests.sae.common import D_IN, D_SAE, N_INST, ProbeToyModel, build_sae, sae_config, set_parameters
from tests.sae.variants.forward import (
    BATCH,
    HINT_EPS_HARD_CODED,
    HINT_NORM_DETACHED,
    HINT_RAW_W_DEC,
    SPARSITY_COEFF,
    check_input_untouched,
    choose_reference,
    decoder_as,
    decoder_rows,
    judge_parameters,
    judge_runs,
    mistaken_runs,
    mse,
    run_forward,
    run_learner,
    unit_rows,
    varied_rows,
)

GATED_PARAMETERS = ("W_gate", "b_gate", "r_mag", "b_mag", "_W_dec", "b_dec")
GATED_TERMS = ("L_reconstruction", "L_sparsity", "L_aux")
GATED_BASE = dict(tied_weights=False, sparsity_coeff=SPARSITY_COEFF)
# The base, each field the gated SAE reads at another value (sparsity_coeff at its default; tied weights, whose
# decoder rows have norms of their own), and tied with a large weight_normalize_eps.
GATED_FAMILY = config_family(GATED_BASE, sparsity_coeff=(0.2,), tied_weights=(True,)) + [
    ("tied_weights=True, weight_normalize_eps=0.1", GATED_BASE | {"tied_weights": True, "weight_normalize_eps": 0.1})
]


def gated_case(context: Context, tied: bool) -> dict[str, Tensor]:
    """Gate weights of unit columns untied (the decoder has its own unit rows) and of varied norms tied (they are the
    decoder's rows), magnitudes scaled by exp(r_mag) of both signs, and biases that open some gates whose magnitude is
    negative and close some whose magnitude is positive. In every instance i, latent i has b_gate = 0 and a positive
    magnitude bias: on the input h = b_dec (the probe's first), its gate is exactly 0, so it stays shut."""
    g = context.generator(90 + tied)
    directions = t.randn((N_INST, D_SAE, D_IN), generator=g)
    W_gate = (varied_rows(directions, g) if tied else unit_rows(directions)).transpose(-1, -2)
    case = {
        "W_gate": W_gate,
        "b_gate": t.randn((N_INST, D_SAE), generator=g) * 0.5,
        "r_mag": t.randn((N_INST, D_SAE), generator=g) * 0.5,
        "b_mag": t.randn((N_INST, D_SAE), generator=g) * 0.5,
        "b_dec": t.randn((N_INST, D_IN), generator=g) * 0.5,
    }
    at_zero = (t.arange(N_INST), t.arange(N_INST))
    case["b_gate"][at_zero] = 0.0
    case["b_mag"][at_zero] = case["b_mag"][at_zero].abs() + 0.3
    if not tied:
        case["_W_dec"] = unit_rows(t.randn((N_INST, D_SAE, D_IN), generator=g))
    return case


def build_gated(cls: type, context: Context, fields: dict) -> tuple[nn.Module, Tensor]:
    sae = build_sae(cls, sae_config(**fields), ProbeToyModel(context, 92)).to(context.device)
    case = gated_case(context, fields["tied_weights"])
    set_parameters(sae, {k: v.contiguous() for k, v in case.items()})
    h = t.randn((BATCH, N_INST, D_IN), generator=context.generator(93)) * 1.5
    h[0] = case["b_dec"]  # every gate reads exactly its bias
    return sae, h.to(context.device)


def gated_parameters(fields: dict) -> tuple[str, ...]:
    return tuple(p for p in GATED_PARAMETERS if not (fields["tied_weights"] and p == "_W_dec"))


def probe_gated(GatedToySAE: type, context: Context) -> dict:
    results = {}
    for label, fields in GATED_FAMILY:
        sae, h = build_gated(GatedToySAE, context, fields)
        results[label] = run_learner(sae, h, gated_parameters(fields))
    return results


def verdict_gated(results: dict, context: Context) -> None:
    GatedToySAE = reference_of("sae.gated")
    hints = {mistake.name: mistake.hint for mistake in GATED_MISTAKES}
    for label, fields in GATED_FAMILY:
        tied = fields["tied_weights"]
        r, what = results[label], f"forward ({'tied' if tied else 'untied'} weights){setting(label)}"
        parameters = gated_parameters(fields)
        sae, h = build_gated(GatedToySAE, context, fields)
        check_input_untouched(r, h)
        judge_parameters(r)
        expected = run_forward(sae, sae, h, parameters)
        sae, h = build_gated(GatedToySAE, context, fields)
        # accepted too: AuxK's squared error summed over d_in; and ReLU(π_gate) written as a clamp, whose gradient at
        # a gate exactly at 0 is 1 where ReLU's is 0 (the contract leaves that subgradient open)
        accepted = [expected]
        for options in ({"aux_reduction": "sum"}, {"relu": "clamp"}, {"aux_reduction": "sum", "relu": "clamp"}):
            sae, h = build_gated(GatedToySAE, context, fields)
            accepted.append(run_forward(sae, lambda h, sae=sae, o=options: gated_forward(sae, h, **o), h, parameters))
        chosen = choose_reference(r, accepted, GATED_TERMS, decoder_rows(sae, tied))
        mistaken = mistaken_runs(GATED_MISTAKES, lambda: build_gated(GatedToySAE, context, fields), parameters)
        judge_runs(r, chosen, mistaken, hints, what, GATED_TERMS, decoder_rows(sae, tied))


def gated_forward(
    self,
    h,
    exp: bool = True,
    centre: bool = True,
    shared_bias: bool = False,
    gate_value: bool = False,
    swapped: bool = False,
    sparsity: str = "gate",
    aux: str = "gate",
    detach_decoder: bool = True,
    detach_b_dec: bool = True,
    aux_b_dec: bool = True,
    aux_coeff: float = 1.0,
    aux_reduction: str = "mean",
    decoder: str = "normalized",
    gate_open_at_zero: bool = False,
    relu: str = "relu",
    r_mag_of_instance_0: bool = False,
):
    """The reference gated forward pass with one step changed, for the mistakes below."""
    h_in = h - self.b_dec if centre else h
    scales = self.r_mag.exp() if exp else self.r_mag
    W_mag = self.W_gate * (scales[0] if r_mag_of_instance_0 else scales[:, None, :])
    pi_gate = einops.einsum(h_in, self.W_gate, "b i d, i d s -> b i s") + self.b_gate
    pi_mag = einops.einsum(h_in, W_mag, "b i d, i d s -> b i s") + (self.b_gate if shared_bias else self.b_mag)
    if swapped:
        pi_gate, pi_mag = pi_mag, pi_gate
    step = (pi_gate >= 0) if gate_open_at_zero else (pi_gate > 0)
    acts = (F.relu(pi_gate) if gate_value else step.float()) * F.relu(pi_mag)
    W_dec = decoder_as(self, decoder)
    h_rec = einops.einsum(acts, W_dec, "b i s, i s d -> b i d") + self.b_dec
    gate = F.relu(pi_gate) if relu == "relu" else pi_gate.clamp(min=0)
    L_sparsity = {"gate": gate, "acts": acts, "pre": pi_gate.abs()}[sparsity].sum(-1)
    via = {"gate": gate, "acts": acts}[aux]
    W_aux = W_dec.detach() if detach_decoder else W_dec
    b_aux = (self.b_dec.detach() if detach_b_dec else self.b_dec) if aux_b_dec else 0.0
    error = (einops.einsum(via, W_aux, "b i s, i s d -> b i d") + b_aux - h).pow(2)
    L_aux = aux_coeff * (error.mean(-1) if aux_reduction == "mean" else error.sum(-1))
    L_rec = mse(h, h_rec)
    terms = {"L_reconstruction": L_rec, "L_sparsity": L_sparsity, "L_aux": L_aux}
    return terms, L_rec + self.cfg.sparsity_coeff * L_sparsity + L_aux, acts, h_rec


def gated_without_exp(self, h):
    return gated_forward(self, h, exp=False)


def gated_without_centring(self, h):
    return gated_forward(self, h, centre=False)


def gated_shared_bias(self, h):
    return gated_forward(self, h, shared_bias=True)


def gated_gate_value(self, h):
    return gated_forward(self, h, gate_value=True)


def gated_paths_swapped(self, h):
    return gated_forward(self, h, swapped=True)


def gated_sparsity_of_latents(self, h):
    return gated_forward(self, h, sparsity="acts")


def gated_sparsity_of_pre_activations(self, h):
    return gated_forward(self, h, sparsity="pre")


def gated_aux_through_latents(self, h):
    return gated_forward(self, h, aux="acts")


def gated_aux_decoder_not_detached(self, h):
    return gated_forward(self, h, detach_decoder=False)


def gated_aux_b_dec_not_detached(self, h):
    return gated_forward(self, h, detach_b_dec=False)


def gated_aux_without_b_dec(self, h):
    return gated_forward(self, h, aux_b_dec=False)


def gated_aux_weighted(self, h):
    return gated_forward(self, h, aux_coeff=self.cfg.sparsity_coeff)


def gated_tied_decodes_with_raw_W_dec(self, h):
    """ARENA's way: both reconstructions through the raw W_dec."""
    return gated_forward(self, h, decoder="raw")


def gated_arena_tied_raw_W_dec(self, h):
    """ARENA's GatedToySAE.forward exactly: the raw W_dec, L_aux summed over d_in."""
    return gated_forward(self, h, decoder="raw", aux_reduction="sum")


def gated_decoder_eps_hard_coded(self, h):
    return gated_forward(self, h, decoder="eps")


def gated_decoder_norm_detached(self, h):
    return gated_forward(self, h, decoder="detached_norm")


def gated_gate_open_at_zero(self, h):
    return gated_forward(self, h, gate_open_at_zero=True)


def gated_r_mag_of_instance_0(self, h):
    return gated_forward(self, h, r_mag_of_instance_0=True)


def gated_renormalises_decoder_with_a_new_parameter(self, h):
    if not self.cfg.tied_weights:  # "keep the rows at unit norm": a new parameter the optimiser does not hold
        self._W_dec = nn.Parameter(self.W_dec_normalized.detach())
    return gated_forward(self, h)


GATED_MISTAKES = [
    Mistake(gated_without_exp, "W_mag = exp(r_mag) ⊙ W_gate: scale each latent's gate column by exp(r_mag), not r_mag"),
    Mistake(gated_without_centring, "Both paths read the centred input h − b_dec"),
    Mistake(gated_shared_bias, "The magnitude path has its own bias: π_mag = (h − b_dec) W_mag + b_mag"),
    Mistake(
        gated_gate_value,
        "The gate only decides *whether* a latent fires: multiply by the step 1[π_gate > 0], not by ReLU(π_gate)",
    ),
    Mistake(
        gated_paths_swapped,
        "The gate uses W_gate and b_gate and decides which latents fire (a step); the magnitude uses W_mag, b_mag "
        "and gives the value (a ReLU): your two paths are swapped",
    ),
    Mistake(
        gated_sparsity_of_latents,
        "L_sparsity is the L1 norm of ReLU(π_gate), the gate's pre-activations, not of the latents: the penalty must "
        "reach the gate, whose step has no gradient",
    ),
    Mistake(gated_sparsity_of_pre_activations, "L_sparsity is Σ ReLU(π_gate), not Σ |π_gate|"),
    Mistake(
        gated_aux_through_latents,
        "L_aux reconstructs h from ReLU(π_gate), the gate's own activations, not from the latents",
    ),
    Mistake(
        gated_aux_decoder_not_detached,
        "Decode L_aux with a detached copy of the decoder (`W_dec.detach()`): the auxiliary loss trains the gate, "
        "never the decoder",
    ),
    Mistake(gated_aux_b_dec_not_detached, "Detach b_dec in L_aux too: the auxiliary loss trains the gate only"),
    Mistake(gated_aux_without_b_dec, "L_aux's reconstruction adds b_dec (detached), as the main reconstruction does"),
    Mistake(
        gated_aux_weighted, "L_aux counts as it is in the loss: loss = L_rec + sparsity_coeff · L_sparsity + L_aux"
    ),
]


GATED_MISTAKES += [
    Mistake(gated_tied_decodes_with_raw_W_dec, HINT_RAW_W_DEC.format(encoder="W_gate")),
    Mistake(gated_arena_tied_raw_W_dec, HINT_RAW_W_DEC.format(encoder="W_gate")),
    Mistake(gated_decoder_eps_hard_coded, HINT_EPS_HARD_CODED),
    Mistake(gated_decoder_norm_detached, HINT_NORM_DETACHED),
    Mistake(
        gated_gate_open_at_zero,
        "A gate is open only when π_gate > 0, strictly: `(π_gate > 0)`, not `>= 0` (a gate exactly at 0 stays shut)",
    ),
    Mistake(
        gated_r_mag_of_instance_0,
        "r_mag is [inst d_sae]: every instance scales its own latents, so W_mag = W_gate * exp(r_mag)[:, None, :] "
        "(one row per instance, broadcast over d_in), not instance 0's scales for all",
    ),
    Mistake(gated_renormalises_decoder_with_a_new_parameter, HINT_REPLACED.format(name="_W_dec", what="`forward`")),
]


def gated_arena_style(self, h):
    """ARENA's GatedToySAE.forward (one pass, L_aux summed over d_in), decoding with `W_dec_normalized` as the
    contract says: ARENA's raw `W_dec` is that, untied, where its rows are kept at unit norm (`tests/suite/
    test_arena_compatibility.py` runs ARENA's own code, raw W_dec and all)."""
    h_cent = h - self.b_dec
    gating_pre_activation = einops.einsum(h_cent, self.W_gate, "b i d, i d s -> b i s") + self.b_gate
    active_features = (gating_pre_activation > 0).float()
    magnitude_pre_activation = einops.einsum(h_cent, self.W_mag, "b i d, i d s -> b i s") + self.b_mag
    acts_post = active_features * F.relu(magnitude_pre_activation)
    h_reconstructed = einops.einsum(acts_post, self.W_dec_normalized, "b i s, i s d -> b i d") + self.b_dec
    gating_post_activation = F.relu(gating_pre_activation)
    W_dec = self.W_dec_normalized.detach()
    via_gate = einops.einsum(gating_post_activation, W_dec, "b i s, i s d -> b i d") + self.b_dec.detach()
    loss_dict = {
        "L_reconstruction": (h_reconstructed - h).pow(2).mean(-1),
        "L_sparsity": gating_post_activation.sum(-1),
        "L_aux": (via_gate - h).pow(2).sum(-1),
    }
    loss = loss_dict["L_reconstruction"] + self.cfg.sparsity_coeff * loss_dict["L_sparsity"] + loss_dict["L_aux"]
    return loss_dict, loss, acts_post, h_reconstructed


def gated_with_where(self, h):
    """The steps written with torch.where and F.mse_loss."""
    h_cent = h - self.b_dec
    pi_gate = t.einsum("bid,ids->bis", h_cent, self.W_gate) + self.b_gate
    pi_mag = t.einsum("bid,ids->bis", h_cent, self.W_gate * t.exp(self.r_mag).unsqueeze(-2)) + self.b_mag
    acts = t.where(pi_gate > 0, F.relu(pi_mag), t.zeros_like(pi_mag))
    W = self.W_dec_normalized
    h_rec = t.einsum("bis,isd->bid", acts, W) + self.b_dec
    via_gate = t.einsum("bis,isd->bid", pi_gate.clamp(min=0), W.detach()) + self.b_dec.detach()
    L_rec = F.mse_loss(h_rec, h, reduction="none").mean(-1)
    L_sparsity = pi_gate.clamp(min=0).sum(-1)
    L_aux = F.mse_loss(via_gate, h, reduction="none").mean(-1)
    terms = {"L_reconstruction": L_rec, "L_sparsity": L_sparsity, "L_aux": L_aux}
    return terms, L_rec + self.cfg.sparsity_coeff * L_sparsity + L_aux, acts, h_rec
