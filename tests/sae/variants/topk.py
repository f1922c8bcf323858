"""The check of `sae.topk`: TopK latents, and AuxK for the dead ones."""

import einops
import torch as t
import torch.nn.functional as F
from torch import Tensor, nn

from tests.harness import Context, Mistake, reference_of
from tests.kit import HINT_REPLACED, config_family, setting
from tests.sae.common import D_IN, D_SAE, N_INST, ProbeToyModel, build_sae, sae_config, set_parameters
from tests.sae.variants.forward import (
    HINT_EPS_HARD_CODED,
    HINT_NORM_DETACHED,
    HINT_RAW_W_DEC,
    SPARSITY_COEFF,
    bounded_inputs,
    centred_encode,
    check_input_untouched,
    choose_reference,
    decode_with,
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

TOPK_K = 3  # neither the default k (1) nor aux_k (d_in // 2 = 2 here), so that a k confused with either shows
AUX_COEFF = 0.7  # not the default 1/32, so that a missing or hard-coded coefficient shows
# Dead latents: three in instance 0 (more than aux_k, so AuxK chooses), one in instance 1 (fewer: its loss is scaled
# by n_dead / aux_k), none in instance 2 (no auxiliary loss).
TOPK_DEAD = {0: (0, 3, 5), 1: (4,)}
TOPK_PARAMETERS = ("W_enc", "_W_dec", "b_enc", "b_dec")
TOPK_TERMS = ("L_reconstruction", "L_aux")
TOPK_BASE = dict(tied_weights=False, k=TOPK_K, aux_coeff=AUX_COEFF, sparsity_coeff=SPARSITY_COEFF)
# The probe's settings, each with the parameter layout it runs on: the base (with and without dead latents), then each
# field TopK reads at another value (k and aux_coeff at their defaults, on the dead latents that AuxK reads), tied
# weights (whose decoder rows have norms of their own), and tied with a large weight_normalize_eps.
TOPK_FAMILY = [
    (label, layout, fields)
    for label, fields in config_family(TOPK_BASE, k=(1,), aux_coeff=(1 / 32,), tied_weights=(True,))
    for layout in {"default": ("aux", "plain"), "tied_weights=True": ("plain",)}.get(label, ("aux",))
] + [("tied_weights=True, weight_normalize_eps=0.1", "plain", TOPK_BASE | {"tied_weights": True,
                                                                          "weight_normalize_eps": 0.1})]  # fmt: skip


def topk_dead_mask(device: str = "cpu") -> Tensor:
    mask = t.zeros((N_INST, D_SAE), dtype=t.bool)
    for instance, latents in TOPK_DEAD.items():
        mask[instance, list(latents)] = True
    return mask.to(device)


def topk_case(context: Context, layout: str, tied: bool) -> dict[str, Tensor]:
    """Parameters of two layouts. "aux": untied, the dead latents read the input weakly and with a positive bias, so
    that their pre-activations lie in [0.5, 1.5] (AuxK's choice among them does not depend on a ReLU), below the live
    ones' (in [1.5, 4.5] or so), which take the top k as long as there are k of them. "plain": weights of both signs,
    and an instance whose biases are so negative that fewer than k latents are positive on most inputs; tied, the
    encoder's columns (the decoder's rows) have norms between 0.3 and 2.3."""
    g = context.generator(80 if layout == "aux" else 81)
    W_enc = t.randn((N_INST, D_IN, D_SAE), generator=g)
    b_enc = t.randn((N_INST, D_SAE), generator=g) * 0.3
    decoder = unit_rows(t.randn((N_INST, D_SAE, D_IN), generator=g))
    b_dec = t.randn((N_INST, D_IN), generator=g)
    b_dec = b_dec * (0.5 / b_dec.norm(dim=-1, keepdim=True))  # |h − b_dec| ≤ 1.5 for inputs of norm ≤ 1
    if layout == "aux":
        mask = topk_dead_mask()
        unit_columns = unit_rows(W_enc.transpose(-1, -2)).transpose(-1, -2)
        W_enc = t.where(mask[:, None, :], unit_columns / 3, unit_columns)
        b_enc = t.where(mask, 1.0 + 0 * b_enc, 3.0 + b_enc)
    else:
        b_enc[2] -= 2.0
    if tied:
        return {"W_enc": varied_rows(decoder, g).transpose(-1, -2), "b_enc": b_enc, "b_dec": b_dec}
    return {"W_enc": W_enc, "b_enc": b_enc, "b_dec": b_dec, "_W_dec": decoder}


def build_topk(cls: type, context: Context, layout: str, fields: dict) -> tuple[nn.Module, Tensor]:
    tied = fields["tied_weights"]
    sae = build_sae(cls, sae_config(**fields), ProbeToyModel(context, 82)).to(context.device)
    set_parameters(sae, {k: v.contiguous() for k, v in topk_case(context, layout, tied).items()})
    dead = topk_dead_mask(context.device)
    sae.dead_latents = dead if layout == "aux" else t.zeros_like(dead)
    return sae, bounded_inputs(context, 83 if layout == "aux" else 84).to(context.device)


def topk_parameters(fields: dict) -> tuple[str, ...]:
    return tuple(p for p in TOPK_PARAMETERS if not (fields["tied_weights"] and p == "_W_dec"))


def probe_topk(TopKToySAE: type, context: Context) -> dict:
    results = {}
    for label, layout, fields in TOPK_FAMILY:
        sae, h = build_topk(TopKToySAE, context, layout, fields)
        results[f"{layout}|{label}"] = run_learner(sae, h, topk_parameters(fields))
    return results


def verdict_topk(results: dict, context: Context) -> None:
    TopKToySAE = reference_of("sae.topk")
    hints = {mistake.name: mistake.hint for mistake in TOPK_MISTAKES}
    for label, layout, fields in TOPK_FAMILY:
        r, parameters = results[f"{layout}|{label}"], topk_parameters(fields)
        tied = fields["tied_weights"]
        what = f"forward ({'tied' if tied else 'untied'} weights, {case_words(layout)}){setting(label)}"
        sae, h = build_topk(TopKToySAE, context, layout, fields)
        check_input_untouched(r, h)
        judge_parameters(r)
        expected = run_forward(sae, sae, h, parameters)
        alternatives = [expected]  # AuxK's squared error averaged over d_in, or summed: both are accepted
        sae, h = build_topk(TopKToySAE, context, layout, fields)
        alternatives.append(
            run_forward(sae, lambda h, sae=sae: topk_forward(sae, h, aux_reduction="sum"), h, parameters)
        )
        chosen = choose_reference(r, alternatives, TOPK_TERMS, decoder_rows(sae, tied))
        mistaken = mistaken_runs(TOPK_MISTAKES, lambda: build_topk(TopKToySAE, context, layout, fields), parameters)
        judge_runs(r, chosen, mistaken, hints, what, TOPK_TERMS, decoder_rows(sae, tied))


def case_words(case: str) -> str:
    return {"aux": "with dead latents", "plain": "no dead latents"}[case]


def topk_forward(
    self,
    h,
    relu: bool = True,
    k: int | None = None,
    dim: int = -1,
    largest: bool = True,
    aux: str = "reference",
    aux_reduction: str = "mean",
    aux_scale: bool = True,
    aux_detach: bool = True,
    aux_b_dec: bool = False,
    aux_coeff: float | None = None,
    with_l1: bool = False,
    decoder: str = "normalized",
):
    """The reference TopK forward pass with one step changed, for the mistakes below."""
    pre = centred_encode(h, self.b_dec, self.W_enc, self.b_enc)
    top = pre.topk(self.cfg.k if k is None else k, dim=dim, largest=largest)
    acts = t.zeros_like(pre).scatter(dim, top.indices, F.relu(top.values) if relu else top.values)
    W_dec_normalized = decoder_as(self, decoder)
    h_rec = decode_with(acts, W_dec_normalized, self.b_dec)
    dead = self.dead_latents
    aux_k = min(max(self.cfg.d_in // 2, 1), self.cfg.d_sae)
    chosen = {
        "all_latents": pre,
        "post_activations": acts.masked_fill(~dead, -t.inf),
        "instance_0": pre.masked_fill(~dead[0], -t.inf),
    }.get(aux, pre.masked_fill(~dead, -t.inf))
    top_aux = chosen.topk(aux_k, dim=-1)
    values = top_aux.values if aux == "keep_inf" else top_aux.values.masked_fill(top_aux.values == -t.inf, 0.0)
    aux_acts = t.zeros_like(pre).scatter(-1, top_aux.indices, values)
    aux_rec = decode_with(aux_acts, W_dec_normalized, self.b_dec if aux_b_dec else 0.0)
    residual = h - h_rec
    residual = residual.detach() if aux_detach else residual
    if aux == "whole_input":
        residual = h
    error = (aux_rec - residual).pow(2)
    auxk = error.mean(-1) if aux_reduction == "mean" else error.sum(-1)
    if aux_scale:
        auxk = (dead.sum(-1) / aux_k).clamp(max=1.0) * auxk
    L_rec = mse(h, h_rec)
    terms = {"L_reconstruction": L_rec, "L_aux": (self.cfg.aux_coeff if aux_coeff is None else aux_coeff) * auxk}
    loss = L_rec + terms["L_aux"]
    if with_l1:
        terms["L_sparsity"] = acts.abs().sum(-1)
        loss = loss + self.cfg.sparsity_coeff * terms["L_sparsity"]
    return terms, loss, acts, h_rec


def topk_without_relu(self, h):
    return topk_forward(self, h, relu=False)


def topk_hard_coded_k(self, h):
    return topk_forward(self, h, k=1)


def topk_over_instances(self, h):
    return topk_forward(self, h, dim=1)


def topk_smallest(self, h):
    return topk_forward(self, h, largest=False)


def topk_with_l1_penalty(self, h):
    return topk_forward(self, h, with_l1=True)


def topk_aux_over_all_latents(self, h):
    return topk_forward(self, h, aux="all_latents")


def topk_aux_of_post_activations(self, h):
    return topk_forward(self, h, aux="post_activations")


def topk_aux_keeps_minus_infinity(self, h):
    return topk_forward(self, h, aux="keep_inf")


def topk_aux_not_scaled(self, h):
    return topk_forward(self, h, aux_scale=False)


def topk_aux_residual_not_detached(self, h):
    return topk_forward(self, h, aux_detach=False)


def topk_aux_with_b_dec(self, h):
    return topk_forward(self, h, aux_b_dec=True)


def topk_aux_without_coefficient(self, h):
    return topk_forward(self, h, aux_coeff=1.0)


def topk_aux_reconstructs_the_input(self, h):
    return topk_forward(self, h, aux="whole_input")


def topk_tied_decodes_with_raw_W_dec(self, h):
    return topk_forward(self, h, decoder="raw")


def topk_decoder_eps_hard_coded(self, h):
    return topk_forward(self, h, decoder="eps")


def topk_decoder_norm_detached(self, h):
    return topk_forward(self, h, decoder="detached_norm")


def topk_dead_latents_of_instance_0(self, h):
    return topk_forward(self, h, aux="instance_0")


def topk_renormalises_decoder_with_a_new_parameter(self, h):
    if not self.cfg.tied_weights:  # "keep the rows at unit norm": a new parameter the optimiser does not hold
        self._W_dec = nn.Parameter(self.W_dec_normalized.detach())
    return topk_forward(self, h)


TOPK_MISTAKES = [
    Mistake(
        topk_without_relu,
        "The k largest pre-activations are ReLU'd before they are kept: a negative one among them becomes 0, "
        "so that a latent never fires negatively",
    ),
    Mistake(topk_hard_coded_k, "Keep `self.cfg.k` latents per input, not a fixed number"),
    Mistake(
        topk_over_instances,
        "Take the top k over the latents of each input and instance (`dim=-1`), not over the instance axis",
    ),
    Mistake(topk_smallest, "Keep the k *largest* pre-activations (`topk` with its default `largest=True`)"),
    Mistake(
        topk_with_l1_penalty,
        "A TopK SAE has no sparsity penalty (k sets the sparsity): loss_dict holds L_reconstruction and L_aux only, "
        "and the loss is their sum",
    ),
    Mistake(
        topk_aux_over_all_latents,
        "AuxK uses only the dead latents (`self.dead_latents`): mask the others' pre-activations with −inf before "
        "taking their top aux_k",
    ),
    Mistake(
        topk_aux_of_post_activations,
        "AuxK reads the dead latents' *pre-activations*: after the TopK they are 0, so they could never learn",
    ),
    Mistake(
        topk_aux_keeps_minus_infinity,
        "When an instance has fewer dead latents than aux_k, the top aux_k include −inf values: set those to 0 before "
        "decoding, or the loss is NaN",
    ),
    Mistake(
        topk_aux_not_scaled,
        "Scale each instance's AuxK loss by min(n_dead / aux_k, 1), so that a few dead latents do not get the weight "
        "of many",
    ),
    Mistake(
        topk_aux_residual_not_detached,
        "Detach the residual h − h_reconstructed in AuxK: the auxiliary loss should train the dead latents only, "
        "not push the live ones",
    ),
    Mistake(
        topk_aux_with_b_dec,
        "Decode the dead latents without b_dec: they reconstruct the residual h − h_reconstructed, which has no bias",
    ),
    Mistake(topk_aux_without_coefficient, "L_aux is AuxK weighted by `self.cfg.aux_coeff`"),
    Mistake(
        topk_aux_reconstructs_the_input,
        "The dead latents reconstruct the *residual* h − h_reconstructed (what the live latents missed), not h",
    ),
]


TOPK_MISTAKES += [
    Mistake(topk_tied_decodes_with_raw_W_dec, HINT_RAW_W_DEC.format(encoder="W_enc")),
    Mistake(topk_decoder_eps_hard_coded, HINT_EPS_HARD_CODED),
    Mistake(topk_decoder_norm_detached, HINT_NORM_DETACHED),
    Mistake(
        topk_dead_latents_of_instance_0,
        "`self.dead_latents` is [inst d_sae]: mask each instance's pre-activations with its own row (`~dead_latents` "
        "broadcast over the batch), not with instance 0's",
    ),
    Mistake(topk_renormalises_decoder_with_a_new_parameter, HINT_REPLACED.format(name="_W_dec", what="`forward`")),
]


def topk_relu_first(self, h):
    """ReLU, then TopK: the same latents and values (a negative pre-activation is 0 either way)."""
    pre = centred_encode(h, self.b_dec, self.W_enc, self.b_enc)
    relu = F.relu(pre)
    threshold = relu.topk(self.cfg.k, dim=-1).values[..., -1:]
    acts = relu * (relu >= threshold) * (relu > 0)
    return topk_forward_from(self, h, pre, acts)


def topk_forward_from(self, h, pre, acts, relu_aux: bool = False, aux_reduction: str = "mean"):
    """A monolithic TopK forward pass written from scratch, for the alternatives."""
    h_rec = einops.einsum(acts, self.W_dec_normalized, "b i s, i s d -> b i d") + self.b_dec
    n_dead = self.dead_latents.sum(-1)
    aux_k = min(max(self.cfg.d_in // 2, 1), self.cfg.d_sae)
    dead_pre = t.where(self.dead_latents, pre, t.full_like(pre, -t.inf))
    values, indices = dead_pre.topk(aux_k, dim=-1)
    values = t.where(t.isinf(values), t.zeros_like(values), F.relu(values) if relu_aux else values)
    aux_acts = t.zeros_like(pre).scatter(-1, indices, values)
    aux_rec = einops.einsum(aux_acts, self.W_dec_normalized, "b i s, i s d -> b i d")
    residual = (h - h_rec).detach()
    error = (aux_rec - residual) ** 2
    auxk = error.mean(-1) if aux_reduction == "mean" else error.sum(-1)
    L_aux = self.cfg.aux_coeff * t.clamp(n_dead / aux_k, max=1.0) * auxk
    L_reconstruction = ((h_rec - h) ** 2).mean(-1)
    return {"L_reconstruction": L_reconstruction, "L_aux": L_aux}, L_reconstruction + L_aux, acts, h_rec


def topk_monolithic(self, h):
    """ARENA's way: one forward pass, topk then ReLU, AuxK with its squared error summed over d_in."""
    pre = centred_encode(h, self.b_dec, self.W_enc, self.b_enc)
    top = t.topk(pre, self.cfg.k, dim=-1)
    acts = t.zeros_like(pre)
    acts.scatter_(-1, top.indices, F.relu(top.values))
    return topk_forward_from(self, h, pre, acts, aux_reduction="sum")


def topk_aux_relu(self, h):
    """AuxK of the ReLU'd dead pre-activations (OpenAI's post-activation), on probes where they are positive."""
    pre = centred_encode(h, self.b_dec, self.W_enc, self.b_enc)
    top = pre.topk(self.cfg.k, dim=-1)
    acts = t.zeros_like(pre).scatter(-1, top.indices, top.values.clamp(min=0))
    return topk_forward_from(self, h, pre, acts, relu_aux=True)
