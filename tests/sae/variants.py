"""Checks for chapter 2, section 5 (SAE variants), with their catalogues of mistakes.

The three SAE checks (`sae.topk`, `sae.gated`, `sae.jumprelu`) call the learner's class the way the training loop
does, `sae(h)`, so that a variant written as a few overridden steps and one written as a single `forward` (ARENA's
way) are judged alike. Each records every output and the gradient of a weighted loss with respect to every
parameter, and the verdict compares them with the reference's on the same parameters: a mistake that only shows in a
gradient (a residual or decoder that should be detached and is not, a step function without its straight-through
estimator) is caught there. Decoder rows are of unit norm in every probe, so that decoding with `W_dec` or with
`W_dec_normalized` agree, as they do during training.

`sae.jumprelu_autograd` calls the learner's `Heaviside` and `JumpReLU` on inputs placed away from the edges of the
rectangle kernel and from the jump itself, with a non-uniform upstream gradient and with batch axes to sum over.
"""

from collections.abc import Callable
from typing import Any

import einops
import torch as t
import torch.nn.functional as F
from torch import Tensor, nn

from tests.harness import CheckFailed, Context, Exercise, Mistake, expect_close, expect_tensor
from tests.sae.common import D_IN, D_SAE, N_INST, ProbeToyModel, build_sae, sae_config, set_parameters

MODULE = "solutions.sae.variants"
BATCH = 11
SPARSITY_COEFF = 0.3  # not the default, so that a hard-coded coefficient shows
HINT_LOSS_SHAPE = "each loss term is one value per input, [batch inst]: the training loop averages over the batch"


# ---------------------------------------------------------------------------------- shared by the three SAEs


def unit_rows(x: Tensor) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def bounded_inputs(context: Context, salt: int, radius: float = 1.0) -> Tensor:
    """[batch inst d_in] inputs of norm at most `radius` (so that a bias can bound a pre-activation's sign)."""
    h = t.randn((BATCH, N_INST, D_IN), generator=context.generator(salt))
    return h * (
        radius * t.rand((BATCH, N_INST, 1), generator=context.generator(salt + 1)) / h.norm(dim=-1, keepdim=True)
    )


def weighted_backward(loss: Any) -> None:
    """Backpropagate a fixed weighted sum of the [batch inst] loss, so that every input's gradient counts differently."""
    if isinstance(loss, Tensor) and loss.requires_grad:
        weights = t.linspace(0.5, 1.5, loss.numel(), device=loss.device).view(loss.shape)
        (loss * weights).sum().backward()


def run_forward(sae: nn.Module, forward: Callable[[Tensor], Any], h: Tensor, parameters: tuple[str, ...]) -> dict:
    """Everything one forward pass gives: the loss terms, loss, latents, reconstruction, and the gradient of the
    weighted loss with respect to each named parameter (None when no gradient reaches it)."""
    sae.zero_grad(set_to_none=True)
    returned = forward(h)
    if not isinstance(returned, tuple | list) or len(returned) != 4:
        raise CheckFailed(
            f"forward should return a tuple (loss_dict, loss, acts, h_reconstructed), got {type(returned).__name__}."
        )
    loss_dict, loss, acts, h_reconstructed = returned
    if not isinstance(loss_dict, dict):
        raise CheckFailed(f"the first thing forward returns is the dict of loss terms, got {type(loss_dict).__name__}.")
    weighted_backward(loss)
    grads = {f"grad_{name}": getattr(getattr(sae, name, None), "grad", None) for name in parameters}
    outputs = {"acts": acts, "h_reconstructed": h_reconstructed, "loss": loss}
    return {"terms": dict(loss_dict), **outputs, "h_after": h} | grads


AXES = {"acts": "batch inst d_sae", "h_reconstructed": "batch inst d_in"}


VALUE_TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}
# Gradients are sums of terms of either sign, some of them tens of times the result: float32 rounding then shows at
# 1e-5, while every catalogued mistake moves a gradient by 1e-2 or more.
GRADIENT_TOLERANCE = {"rtol": 1e-3, "atol": 1e-4}


def tolerance(name: str) -> dict[str, float]:
    return GRADIENT_TOLERANCE if name.startswith("grad_") else VALUE_TOLERANCE


def close(a: Any, b: Tensor, name: str = "") -> bool:
    return (
        isinstance(a, Tensor)
        and a.shape == b.shape
        and a.dtype == b.dtype
        and t.allclose(a, b, equal_nan=True, **tolerance(name))
    )


def tangent(grad: Any, rows: Tensor) -> Any:
    """A decoder's gradient without its component along each (unit) row: decoding with `W_dec` or with
    `W_dec_normalized` gives the same gradient but for that component, which the renormalisation after every step
    undoes anyway."""
    if not isinstance(grad, Tensor) or grad.shape != rows.shape:
        return grad
    return grad - (grad * rows).sum(-1, keepdim=True) * rows


def decoder_rows(sae: nn.Module, tied: bool, encoder: str = "W_enc") -> dict[str, Tensor]:
    """The parameter whose rows (or columns, for a tied encoder) are the decoder's, as unit rows, keyed by its
    gradient's name; `judge_runs` compares that gradient on the rows' tangent space."""
    if tied:
        return {f"grad_{encoder}": getattr(sae, encoder).detach().transpose(-1, -2).cpu()}
    return {"grad__W_dec": sae._W_dec.detach().cpu()}


def flatten(run: dict, terms: tuple[str, ...], rows: dict[str, Tensor]) -> dict[str, Any]:
    """One dict of everything judged: the named loss terms, the outputs and the gradients (a decoder's on the
    tangent space of its unit rows, a tied encoder's transposed to match)."""
    flat = {name: run["terms"].get(name) for name in terms}
    flat |= {k: v for k, v in run.items() if k not in ("terms", "h_after")}
    for name, unit in rows.items():
        grad = flat.get(name)
        tied = isinstance(grad, Tensor) and grad.shape == unit.transpose(-1, -2).shape and name != "grad__W_dec"
        flat[name] = tangent(grad.transpose(-1, -2), unit).transpose(-1, -2) if tied else tangent(grad, unit)
    return flat


def judge_runs(
    got: dict,
    expected: dict,
    mistaken: dict[str, dict],
    hints: dict[str, str],
    what: str,
    terms: tuple[str, ...],
    rows: dict[str, Tensor],
    after_outputs: str = "",
) -> None:
    """Compare one probe case with the reference: the loss terms first, then the outputs, then the gradients. When
    something differs, a catalogued mistake that explains everything at once names the cause."""
    if set(terms) - set(got["terms"]):
        raise CheckFailed(
            f"{what}: loss_dict should have the entries {', '.join(terms)}; yours has {', '.join(sorted(got['terms']))}."
        )
    flat_got, flat_expected = flatten(got, terms, rows), flatten(expected, terms, rows)
    names = [name for name, value in flat_expected.items() if value is not None]
    if not all(close(flat_got[name], flat_expected[name], name) for name in names):
        for mistake, run in mistaken.items():
            flat = flatten(run, terms, rows)
            if all(flat[name] is not None and close(flat_got[name], flat[name], name) for name in names):
                raise CheckFailed(f"{what} is wrong. {hints[mistake]}.")
    for name in names:
        got_value, expected_value = flat_got[name], flat_expected[name]
        if name.startswith("grad_"):
            if got_value is None:
                raise CheckFailed(
                    f"{what}: no gradient reaches `{name.removeprefix('grad_')}` through your loss: "
                    "detach only what the exercise says to."
                )
            label = f"{what}: the gradient of the loss with respect to {name.removeprefix('grad_')}"
            if after_outputs:
                label += f" ({after_outputs})"
        else:
            label = f"{what}: {name}"
            if isinstance(got_value, Tensor) and got_value.dim() == 1 and AXES.get(name, "batch inst") == "batch inst":
                raise CheckFailed(f"{label} has shape {tuple(got_value.shape)}; {HINT_LOSS_SHAPE}.")
        got_value = expect_tensor(
            got_value, label, tuple(expected_value.shape), AXES.get(name, "batch inst"), expected_value.dtype
        )
        candidates = {m: flatten(run, terms, rows).get(name) for m, run in mistaken.items()}
        expect_close(got_value, expected_value, label, candidates, hints, **tolerance(name))


def mistaken_runs(mistakes: list[Mistake], build: Callable[[], tuple[nn.Module, Tensor]], parameters) -> dict:
    """The catalogued mistakes' runs on the case that `build` makes, keyed by name."""
    runs = {}
    for mistake in mistakes:
        try:
            sae, h = build()
            runs[mistake.name] = run_forward(sae, lambda h, sae=sae: mistake.impl(sae, h), h, parameters)
        except Exception:  # a mistake that cannot run on these inputs cannot be the learner's
            continue
    return runs


def check_input_untouched(r: dict, h: Tensor) -> None:
    if not t.equal(r["h_after"], h):
        raise CheckFailed("forward changed its input `h` in place; compute new tensors instead.")


def centred_encode(h: Tensor, b_dec: Tensor, W: Tensor, b: Tensor) -> Tensor:
    return einops.einsum(h - b_dec, W, "batch inst d_in, inst d_in d_sae -> batch inst d_sae") + b


def decode_with(acts: Tensor, W_dec: Tensor, b_dec: Tensor | float) -> Tensor:
    return einops.einsum(acts, W_dec, "batch inst d_sae, inst d_sae d_in -> batch inst d_in") + b_dec


def mse(h: Tensor, h_reconstructed: Tensor) -> Tensor:
    return (h_reconstructed - h).pow(2).mean(-1)


# ------------------------------------------------------------------------------------------------ TopK

TOPK_K = 3  # neither the default k (1) nor aux_k (d_in // 2 = 2 here), so that a k confused with either shows
AUX_COEFF = 0.7  # not the default 1/32, so that a missing or hard-coded coefficient shows
# Dead latents: three in instance 0 (more than aux_k, so AuxK chooses), one in instance 1 (fewer: its loss is scaled
# by n_dead / aux_k), none in instance 2 (no auxiliary loss).
TOPK_DEAD = {0: (0, 3, 5), 1: (4,)}
TOPK_PARAMETERS = ("W_enc", "_W_dec", "b_enc", "b_dec")
TOPK_TERMS = ("L_reconstruction", "L_aux")


def topk_dead_mask(device: str = "cpu") -> Tensor:
    mask = t.zeros((N_INST, D_SAE), dtype=t.bool)
    for instance, latents in TOPK_DEAD.items():
        mask[instance, list(latents)] = True
    return mask.to(device)


def topk_case(context: Context, case: str) -> dict[str, Tensor]:
    """Parameters of two kinds. "aux": untied, the dead latents read the input weakly and with a positive bias, so
    that their pre-activations lie in [0.5, 1.5] (AuxK's choice among them does not depend on a ReLU), below the live
    ones' (in [1.5, 4.5] or so), which take the top k as long as there are k of them. "plain": weights of both signs, tied or untied, and an instance whose biases are so
    negative that fewer than k latents are positive on most inputs."""
    g = context.generator(80 if case == "aux" else 81)
    W_enc = t.randn((N_INST, D_IN, D_SAE), generator=g)
    b_enc = t.randn((N_INST, D_SAE), generator=g) * 0.3
    decoder = unit_rows(t.randn((N_INST, D_SAE, D_IN), generator=g))
    b_dec = t.randn((N_INST, D_IN), generator=g)
    b_dec = b_dec * (0.5 / b_dec.norm(dim=-1, keepdim=True))  # |h − b_dec| ≤ 1.5 for inputs of norm ≤ 1
    if case == "aux":
        mask = topk_dead_mask()
        unit_columns = unit_rows(W_enc.transpose(-1, -2)).transpose(-1, -2)
        W_enc = t.where(mask[:, None, :], unit_columns / 3, unit_columns)
        b_enc = t.where(mask, 1.0 + 0 * b_enc, 3.0 + b_enc)
    else:
        b_enc[2] -= 2.0
    return {"W_enc": W_enc, "b_enc": b_enc, "b_dec": b_dec, "_W_dec": decoder}


TOPK_CASES = (("aux", False), ("plain", False), ("plain", True))


def topk_config(tied: bool):
    return sae_config(tied_weights=tied, k=TOPK_K, aux_coeff=AUX_COEFF, sparsity_coeff=SPARSITY_COEFF)


def set_case(sae: nn.Module, case: dict[str, Tensor], tied: bool) -> None:
    if tied:
        case = {k: v for k, v in case.items() if k != "_W_dec"} | {"W_enc": case["_W_dec"].transpose(-1, -2)}
    set_parameters(sae, {k: v.contiguous() for k, v in case.items()})


def build_topk(cls: type, context: Context, case: str, tied: bool) -> tuple[nn.Module, Tensor]:
    sae = build_sae(cls, topk_config(tied), ProbeToyModel(context, 82)).to(context.device)
    set_case(sae, topk_case(context, case), tied)
    sae.dead_latents = topk_dead_mask(context.device) if case == "aux" else t.zeros_like(topk_dead_mask(context.device))
    return sae, bounded_inputs(context, 83 if case == "aux" else 84).to(context.device)


def probe_topk(TopKToySAE: type, context: Context) -> dict:
    results = {}
    for case, tied in TOPK_CASES:
        sae, h = build_topk(TopKToySAE, context, case, tied)
        parameters = tuple(p for p in TOPK_PARAMETERS if not (tied and p == "_W_dec"))
        results[f"{case}_{'tied' if tied else 'untied'}"] = run_forward(sae, sae, h, parameters)
    return results


def verdict_topk(results: dict, context: Context) -> None:
    from solutions.sae.variants import TopKToySAE

    hints = {mistake.name: mistake.hint for mistake in TOPK_MISTAKES}
    for case, tied in TOPK_CASES:
        key = f"{case}_{'tied' if tied else 'untied'}"
        r, what = results[key], f"forward ({'tied' if tied else 'untied'} weights, {case_words(case)})"
        parameters = tuple(p for p in TOPK_PARAMETERS if not (tied and p == "_W_dec"))
        sae, h = build_topk(TopKToySAE, context, case, tied)
        check_input_untouched(r, h)
        expected = run_forward(sae, sae, h, parameters)
        alternatives = [expected]  # AuxK's squared error averaged over d_in, or summed: both are accepted
        sae, h = build_topk(TopKToySAE, context, case, tied)
        alternatives.append(
            run_forward(sae, lambda h, sae=sae: topk_forward(sae, h, aux_reduction="sum"), h, parameters)
        )
        got_aux = r["terms"].get("L_aux")
        chosen = next((e for e in alternatives if close(got_aux, e["terms"]["L_aux"])), expected)
        mistaken = mistaken_runs(TOPK_MISTAKES, lambda: build_topk(TopKToySAE, context, case, tied), parameters)
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
):
    """The reference TopK forward pass with one step changed, for the mistakes below."""
    pre = centred_encode(h, self.b_dec, self.W_enc, self.b_enc)
    top = pre.topk(self.cfg.k if k is None else k, dim=dim, largest=largest)
    acts = t.zeros_like(pre).scatter(dim, top.indices, F.relu(top.values) if relu else top.values)
    h_rec = decode_with(acts, self.W_dec_normalized, self.b_dec)
    dead = self.dead_latents
    aux_k = min(max(self.cfg.d_in // 2, 1), self.cfg.d_sae)
    chosen = {"all_latents": pre, "post_activations": acts.masked_fill(~dead, -t.inf)}.get(
        aux, pre.masked_fill(~dead, -t.inf)
    )
    top_aux = chosen.topk(aux_k, dim=-1)
    values = top_aux.values if aux == "keep_inf" else top_aux.values.masked_fill(top_aux.values == -t.inf, 0.0)
    aux_acts = t.zeros_like(pre).scatter(-1, top_aux.indices, values)
    aux_rec = decode_with(aux_acts, self.W_dec_normalized, self.b_dec if aux_b_dec else 0.0)
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


# ------------------------------------------------------------------------------------------------ Gated

GATED_PARAMETERS = ("W_gate", "b_gate", "r_mag", "b_mag", "_W_dec", "b_dec")
GATED_TERMS = ("L_reconstruction", "L_sparsity", "L_aux")


def gated_case(context: Context, tied: bool) -> dict[str, Tensor]:
    """Gate weights with unit columns (so that a tied decoder has unit rows too), magnitudes scaled by exp(r_mag) of
    both signs, and biases that open some gates whose magnitude is negative and close some whose magnitude is
    positive."""
    g = context.generator(90 + tied)
    W_gate = unit_rows(t.randn((N_INST, D_SAE, D_IN), generator=g)).transpose(-1, -2)
    case = {
        "W_gate": W_gate,
        "b_gate": t.randn((N_INST, D_SAE), generator=g) * 0.5,
        "r_mag": t.randn((N_INST, D_SAE), generator=g) * 0.5,
        "b_mag": t.randn((N_INST, D_SAE), generator=g) * 0.5,
        "b_dec": t.randn((N_INST, D_IN), generator=g) * 0.5,
    }
    if not tied:
        case["_W_dec"] = unit_rows(t.randn((N_INST, D_SAE, D_IN), generator=g))
    return case


def build_gated(cls: type, context: Context, tied: bool) -> tuple[nn.Module, Tensor]:
    cfg = sae_config(tied_weights=tied, sparsity_coeff=SPARSITY_COEFF)
    sae = build_sae(cls, cfg, ProbeToyModel(context, 92)).to(context.device)
    set_parameters(sae, {k: v.contiguous() for k, v in gated_case(context, tied).items()})
    h = t.randn((BATCH, N_INST, D_IN), generator=context.generator(93)) * 1.5
    return sae, h.to(context.device)


def gated_parameters(tied: bool) -> tuple[str, ...]:
    return tuple(p for p in GATED_PARAMETERS if not (tied and p == "_W_dec"))


def probe_gated(GatedToySAE: type, context: Context) -> dict:
    results = {}
    for tied in (False, True):
        sae, h = build_gated(GatedToySAE, context, tied)
        results["tied" if tied else "untied"] = run_forward(sae, sae, h, gated_parameters(tied))
    return results


def verdict_gated(results: dict, context: Context) -> None:
    from solutions.sae.variants import GatedToySAE

    hints = {mistake.name: mistake.hint for mistake in GATED_MISTAKES}
    for tied in (False, True):
        r, what = results["tied" if tied else "untied"], f"forward ({'tied' if tied else 'untied'} weights)"
        parameters = gated_parameters(tied)
        sae, h = build_gated(GatedToySAE, context, tied)
        check_input_untouched(r, h)
        expected = run_forward(sae, sae, h, parameters)
        sae, h = build_gated(GatedToySAE, context, tied)
        summed = run_forward(sae, lambda h, sae=sae: gated_forward(sae, h, aux_reduction="sum"), h, parameters)
        chosen = summed if close(r["terms"].get("L_aux"), summed["terms"]["L_aux"]) else expected
        mistaken = mistaken_runs(GATED_MISTAKES, lambda: build_gated(GatedToySAE, context, tied), parameters)
        judge_runs(r, chosen, mistaken, hints, what, GATED_TERMS, decoder_rows(sae, tied, "W_gate"))


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
):
    """The reference gated forward pass with one step changed, for the mistakes below."""
    h_in = h - self.b_dec if centre else h
    W_mag = self.W_gate * (self.r_mag.exp() if exp else self.r_mag)[:, None, :]
    pi_gate = einops.einsum(h_in, self.W_gate, "b i d, i d s -> b i s") + self.b_gate
    pi_mag = einops.einsum(h_in, W_mag, "b i d, i d s -> b i s") + (self.b_gate if shared_bias else self.b_mag)
    if swapped:
        pi_gate, pi_mag = pi_mag, pi_gate
    acts = (F.relu(pi_gate) if gate_value else (pi_gate > 0).float()) * F.relu(pi_mag)
    W_dec = self.W_dec_normalized
    h_rec = einops.einsum(acts, W_dec, "b i s, i s d -> b i d") + self.b_dec
    gate = F.relu(pi_gate)
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


def gated_arena_style(self, h):
    """ARENA's GatedToySAE.forward: one pass, the raw W_dec (unit rows in training), L_aux summed over d_in."""
    h_cent = h - self.b_dec
    gating_pre_activation = einops.einsum(h_cent, self.W_gate, "b i d, i d s -> b i s") + self.b_gate
    active_features = (gating_pre_activation > 0).float()
    magnitude_pre_activation = einops.einsum(h_cent, self.W_mag, "b i d, i d s -> b i s") + self.b_mag
    acts_post = active_features * F.relu(magnitude_pre_activation)
    h_reconstructed = einops.einsum(acts_post, self.W_dec, "b i s, i s d -> b i d") + self.b_dec
    gating_post_activation = F.relu(gating_pre_activation)
    via_gate = einops.einsum(gating_post_activation, self.W_dec.detach(), "b i s, i s d -> b i d") + self.b_dec.detach()
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


# ------------------------------------------------------------------------------------ Heaviside, JumpReLU

EPS = 0.3  # not the SAE's default bandwidth
# Where the probe's z lie, in bandwidths from θ: inside the kernel (|u| < 1/2) and outside, on both sides, never on
# an edge of the kernel nor on the jump itself.
OFFSETS = (-1.7, -0.62, -0.41, -0.13, 0.09, 0.27, 0.44, 0.71, 2.3)


def autograd_inputs(context: Context, batch: int, lead: tuple[int, ...]) -> tuple[Tensor, Tensor, Tensor]:
    """θ of shape `lead + (len(OFFSETS),)` in [0.5, 1.5]; z = θ + ε·u for every offset u, each batch row in its own
    order; and an upstream gradient of varied weights."""
    g = context.generator(100 + batch + len(lead))
    n = len(OFFSETS)
    theta = 0.5 + t.rand((*lead, n), generator=g)
    offsets = t.tensor(OFFSETS)[t.stack([t.randperm(n, generator=g) for _ in range(batch)])]  # [batch n]
    offsets = offsets.view(batch, *([1] * len(lead)), n)
    z = theta + EPS * offsets
    upstream = 0.5 + t.rand(z.shape, generator=g)
    return z, theta, upstream


AUTOGRAD_SHAPES = {"batch": (5, ()), "one input": (1, ()), "batch inst": (4, (N_INST,))}


def call_autograd(function: type, z: Tensor, theta: Tensor, upstream: Tensor) -> dict[str, Any]:
    z, theta = z.clone().requires_grad_(True), theta.clone().requires_grad_(True)
    out = function.apply(z, theta, EPS)
    if not isinstance(out, Tensor):
        raise CheckFailed(f"{function.__name__}.apply should return a tensor, got {type(out).__name__}.")
    if not out.requires_grad:
        raise CheckFailed(
            f"{function.__name__}.apply returned a tensor with no gradient: return a new tensor from `forward`, "
            "and let `backward` give the gradients."
        )
    out.backward(upstream)
    return {
        "out": out,
        "grad_z": z.grad if z.grad is not None else t.zeros_like(z),
        "grad_theta": theta.grad if theta.grad is not None else t.zeros_like(theta),
    }


def probe_autograd(functions: tuple[type, type], context: Context) -> dict:
    results = {}
    for name, function in zip(("Heaviside", "JumpReLU"), functions, strict=True):
        for label, (batch, lead) in AUTOGRAD_SHAPES.items():
            z, theta, upstream = autograd_inputs(context, batch, lead)
            results[f"{name}|{label}"] = call_autograd(function, z.to(context.device),
                                                                   theta.to(context.device), upstream.to(context.device))  # fmt: skip
    return results


def verdict_autograd(results: dict, context: Context) -> None:
    from solutions.sae.variants import Heaviside, JumpReLU

    hints = {mistake.name: mistake.hint for mistake in AUTOGRAD_MISTAKES}
    expected = probe_autograd((Heaviside, JumpReLU), context)
    mistaken = {}
    for mistake in AUTOGRAD_MISTAKES:
        try:
            mistaken[mistake.name] = probe_autograd(mistake.impl(), context)
        except Exception:
            continue
    names = [name for name in expected]
    outputs = ("out", "grad_z", "grad_theta")
    flat = lambda runs: {f"{n}|{o}": runs[n][o] for n in names for o in outputs}  # noqa: E731
    got_all, expected_all = flat(results), flat(expected)
    if not all(close(got_all[k], expected_all[k]) for k in expected_all):
        for mistake, runs in mistaken.items():
            try:
                candidate = flat(runs)
            except KeyError:
                continue
            if all(close(got_all[k], candidate[k]) for k in expected_all):
                raise CheckFailed(f"{mistake_subject(mistake)} is wrong. {hints[mistake]}.")
    for key in expected_all:
        function, label, output = key.split("|")
        what = {
            "out": f"{function}.apply(z, θ, ε) (z {label})",
            "grad_z": f"{function}'s gradient with respect to z (z {label})",
            "grad_theta": f"{function}'s gradient with respect to θ (z {label}, θ without the batch axis)",
        }[output]
        got = expect_tensor(got_all[key], what, tuple(expected_all[key].shape), "", expected_all[key].dtype)
        candidates = {m: flat(runs).get(key) for m, runs in mistaken.items() if all(n in runs for n in names)}
        expect_close(got, expected_all[key], what, candidates, hints)


def mistake_subject(name: str) -> str:
    return "JumpReLU" if name.startswith("jumprelu") else "Heaviside"


def rect(x: Tensor) -> Tensor:
    return (x.abs() < 0.5).float()


def make_functions(heaviside: dict | None = None, jumprelu: dict | None = None) -> tuple[type, type]:
    """Heaviside and JumpReLU autograd functions built from formulas (the reference's, with some replaced)."""
    h_formulas = {
        "forward": lambda z, th: (z > th).float(),
        "grad_z": lambda z, th, eps, g: t.zeros_like(z),
        "grad_theta": lambda z, th, eps, g: -(1.0 / eps) * rect((z - th) / eps) * g,
    } | (heaviside or {})
    j_formulas = {
        "forward": lambda z, th: z * (z > th).float(),
        "grad_z": lambda z, th, eps, g: (z > th).float() * g,
        "grad_theta": lambda z, th, eps, g: -(th / eps) * rect((z - th) / eps) * g,
    } | (jumprelu or {})

    def function(name: str, formulas: dict) -> type:
        def forward(ctx, z, theta, eps):
            ctx.save_for_backward(z, theta)
            ctx.eps = eps
            return formulas["forward"](z, theta)

        def backward(ctx, grad_output):
            z, theta = ctx.saved_tensors
            grad_theta = formulas["grad_theta"](z, theta, ctx.eps, grad_output)
            return formulas["grad_z"](z, theta, ctx.eps, grad_output), grad_theta.sum_to_size(theta.shape), None

        return type(
            name, (t.autograd.Function,), {"forward": staticmethod(forward), "backward": staticmethod(backward)}
        )

    return function("Heaviside", h_formulas), function("JumpReLU", j_formulas)


def heaviside_positive_gradient():
    return make_functions(heaviside={"grad_theta": lambda z, th, eps, g: (1.0 / eps) * rect((z - th) / eps) * g})


def heaviside_without_one_over_eps():
    return make_functions(heaviside={"grad_theta": lambda z, th, eps, g: -rect((z - th) / eps) * g})


def heaviside_kernel_not_scaled():
    return make_functions(heaviside={"grad_theta": lambda z, th, eps, g: -(1.0 / eps) * rect(z - th) * g})


def heaviside_kernel_at_z():
    return make_functions(heaviside={"grad_theta": lambda z, th, eps, g: -(1.0 / eps) * rect(z / eps) * g})


def heaviside_ignores_grad_output():
    return make_functions(heaviside={"grad_theta": lambda z, th, eps, g: -(1.0 / eps) * rect((z - th) / eps)})


def heaviside_straight_through_z():
    return make_functions(heaviside={"grad_z": lambda z, th, eps, g: g})


def heaviside_mean_over_batch():
    return make_functions(
        heaviside={"grad_theta": lambda z, th, eps, g: -(1.0 / eps) * rect((z - th) / eps) * g / z.shape[0]}
    )


def jumprelu_grad_z_everywhere():
    return make_functions(jumprelu={"grad_z": lambda z, th, eps, g: g})


def jumprelu_without_theta():
    return make_functions(jumprelu={"grad_theta": lambda z, th, eps, g: -(1.0 / eps) * rect((z - th) / eps) * g})


def jumprelu_z_instead_of_theta():
    return make_functions(jumprelu={"grad_theta": lambda z, th, eps, g: -(z / eps) * rect((z - th) / eps) * g})


def jumprelu_subtracts_theta():
    return make_functions(
        jumprelu={
            "forward": lambda z, th: (z - th) * (z > th).float(),
            "grad_theta": lambda z, th, eps, g: -(z > th).float() * g,
        }
    )


def jumprelu_positive_gradient():
    return make_functions(jumprelu={"grad_theta": lambda z, th, eps, g: (th / eps) * rect((z - th) / eps) * g})


def jumprelu_ignores_grad_output():
    return make_functions(jumprelu={"grad_theta": lambda z, th, eps, g: -(th / eps) * rect((z - th) / eps)})


AUTOGRAD_MISTAKES = [
    Mistake(
        heaviside_positive_gradient,
        "∂H/∂θ is negative: raising θ switches the step off, so dH/dθ = −(1/ε)·K((z − θ)/ε)",
    ),
    Mistake(heaviside_without_one_over_eps, "∂H/∂θ = −(1/ε)·K((z − θ)/ε): divide by the bandwidth ε"),
    Mistake(
        heaviside_kernel_not_scaled,
        "Evaluate the kernel at (z − θ)/ε, so that its window around θ has width ε: K((z − θ)/ε), not K(z − θ)",
    ),
    Mistake(
        heaviside_kernel_at_z,
        "The kernel is centred on the threshold: K((z − θ)/ε), not K(z/ε) (a misprint in some versions of ARENA's "
        "docstring)",
    ),
    Mistake(
        heaviside_ignores_grad_output,
        "Multiply by `grad_output` (the chain rule): backward returns ∂L/∂θ = ∂L/∂H · ∂H/∂θ",
    ),
    Mistake(
        heaviside_straight_through_z,
        "The step has no gradient with respect to z (∂H/∂z = 0): only θ gets a straight-through estimate",
    ),
    Mistake(
        heaviside_mean_over_batch,
        "Sum θ's gradient over the batch (each input adds its own), don't average it",
    ),
    Mistake(
        jumprelu_grad_z_everywhere,
        "∂J/∂z = 1[z > θ]: below the threshold the output is 0 whatever z is, so no gradient reaches z there",
    ),
    Mistake(
        jumprelu_without_theta,
        "JumpReLU jumps by θ at the threshold, so its θ-gradient is −(θ/ε)·K((z − θ)/ε): Heaviside's times θ",
    ),
    Mistake(jumprelu_z_instead_of_theta, "∂J/∂θ = −(θ/ε)·K((z − θ)/ε), with θ (the jump's height), not z"),
    Mistake(
        jumprelu_subtracts_theta,
        "JumpReLU keeps z itself above the threshold, J(z, θ) = z·1[z > θ]; subtracting θ gives a soft threshold",
    ),
    Mistake(jumprelu_positive_gradient, "∂J/∂θ is negative: raising θ switches outputs off"),
    Mistake(jumprelu_ignores_grad_output, "Multiply JumpReLU's θ-gradient by `grad_output` (the chain rule)"),
]


def autograd_arena_style():
    """ARENA's functions: 0·grad_output for z, θ's gradient summed over dim 0, .float() outputs."""

    class Heaviside(t.autograd.Function):
        @staticmethod
        def forward(ctx, z, theta, eps):
            ctx.save_for_backward(z, theta)
            ctx.eps = eps
            return (z > theta).float()

        @staticmethod
        def backward(ctx, grad_output):
            (z, theta) = ctx.saved_tensors
            grad_theta = -(1.0 / ctx.eps) * rect((z - theta) / ctx.eps) * grad_output
            return 0.0 * grad_output, grad_theta.sum(dim=0), None

    class JumpReLU(t.autograd.Function):
        @staticmethod
        def forward(ctx, z, theta, eps):
            ctx.save_for_backward(z, theta)
            ctx.eps = eps
            return z * (z > theta).float()

        @staticmethod
        def backward(ctx, grad_output):
            (z, theta) = ctx.saved_tensors
            grad_theta = -(theta / ctx.eps) * rect((z - theta) / ctx.eps) * grad_output
            return (z > theta).float() * grad_output, grad_theta.sum(dim=0), None

    return Heaviside, JumpReLU


def autograd_unsummed():
    """θ's gradient returned with the batch axes (autograd sums it to θ's shape), None for z, and ctx attributes."""

    class Heaviside(t.autograd.Function):
        @staticmethod
        def forward(ctx, z, theta, eps):
            ctx.z, ctx.theta, ctx.eps = z, theta, eps
            return t.where(z > theta, 1.0, 0.0)

        @staticmethod
        def backward(ctx, grad_output):
            window = ((ctx.z - ctx.theta).abs() < ctx.eps / 2).to(grad_output.dtype)
            return None, -window * grad_output / ctx.eps, None

    class JumpReLU(t.autograd.Function):
        @staticmethod
        def forward(ctx, z, theta, eps):
            ctx.save_for_backward(z, theta)
            ctx.eps = eps
            return t.where(z > theta, z, t.zeros_like(z))

        @staticmethod
        def backward(ctx, grad_output):
            z, theta = ctx.saved_tensors
            window = ((z - theta).abs() < ctx.eps / 2).to(grad_output.dtype)
            return (z > theta) * grad_output, -theta * window * grad_output / ctx.eps, None

    return Heaviside, JumpReLU


# ------------------------------------------------------------------------------------------------ JumpReLU SAE

JUMP_EPS = 0.2
JUMP_PARAMETERS = ("W_enc", "_W_dec", "b_enc", "b_dec", "log_theta")
JUMP_TERMS = ("L_reconstruction", "L_sparsity")


def jumprelu_case(context: Context, tied: bool, h: Tensor) -> dict[str, Tensor]:
    """Unit decoder rows and thresholds θ > ε/2 + margin (so that a latent below 0 is far outside the kernel, and a
    ReLU before JumpReLU changes nothing), each placed so that no pre-activation of the probe's inputs lies near the
    jump or near an edge of the kernel: every one of them has a definite side, whoever computes it."""
    g = context.generator(110 + tied)
    decoder = unit_rows(t.randn((N_INST, D_SAE, D_IN), generator=g))
    W_enc = decoder.transpose(-1, -2) if tied else t.randn((N_INST, D_IN, D_SAE), generator=g) * 0.8
    b_enc = t.randn((N_INST, D_SAE), generator=g) * 0.3
    b_dec = t.randn((N_INST, D_IN), generator=g) * 0.3
    pre = centred_encode(h, b_dec, W_enc, b_enc)  # [batch inst d_sae]
    candidates = t.linspace(0.15, 1.2, 106)  # [c]
    u = (pre[..., None] - candidates) / JUMP_EPS  # [batch inst d_sae c]
    margin = t.minimum(u.abs(), (u.abs() - 0.5).abs()).amin(0)  # [inst d_sae c]: the nearest input to a border
    inside = ((u.abs() < 0.5) & (pre[..., None] > 0)).any(0)  # an input in the kernel: θ gets a gradient
    score = margin + 2.0 * (inside & (margin > 0.05)) + 0.01 * t.rand(margin.shape, generator=g)
    theta = candidates[score.argmax(-1)]
    case = {"W_enc": W_enc, "b_enc": b_enc, "b_dec": b_dec, "log_theta": theta.log()}
    if not tied:
        case["_W_dec"] = decoder
    return case


def jumprelu_inputs(context: Context) -> Tensor:
    return t.randn((BATCH, N_INST, D_IN), generator=context.generator(112))


def build_jumprelu(cls: type, context: Context, tied: bool) -> tuple[nn.Module, Tensor]:
    cfg = sae_config(tied_weights=tied, sparsity_coeff=SPARSITY_COEFF, ste_epsilon=JUMP_EPS, threshold_init=0.1)
    sae = build_sae(cls, cfg, ProbeToyModel(context, 113)).to(context.device)
    h = jumprelu_inputs(context)
    set_parameters(sae, {k: v.contiguous() for k, v in jumprelu_case(context, tied, h).items()})
    return sae, h.to(context.device)


def jumprelu_parameters(tied: bool) -> tuple[str, ...]:
    return tuple(p for p in JUMP_PARAMETERS if not (tied and p == "_W_dec"))


def probe_jumprelu(JumpReLUToySAE: type, context: Context) -> dict:
    results = {}
    for tied in (False, True):
        sae, h = build_jumprelu(JumpReLUToySAE, context, tied)
        results["tied" if tied else "untied"] = run_forward(sae, sae, h, jumprelu_parameters(tied))
    return results


def verdict_jumprelu(results: dict, context: Context) -> None:
    from solutions.sae.variants import JumpReLUToySAE

    hints = {mistake.name: mistake.hint for mistake in JUMPRELU_MISTAKES}
    for tied in (False, True):
        r, what = results["tied" if tied else "untied"], f"forward ({'tied' if tied else 'untied'} weights)"
        sae, h = build_jumprelu(JumpReLUToySAE, context, tied)
        check_input_untouched(r, h)
        expected = run_forward(sae, sae, h, jumprelu_parameters(tied))
        mistaken = mistaken_runs(
            JUMPRELU_MISTAKES, lambda: build_jumprelu(JumpReLUToySAE, context, tied), jumprelu_parameters(tied)
        )
        judge_runs(
            r, expected, mistaken, hints, what, JUMP_TERMS, decoder_rows(sae, tied),
            after_outputs="if sae.jumprelu_autograd does not pass yet, make it pass first",
        )  # fmt: skip


def jumprelu_forward(
    self,
    h,
    threshold: str = "theta",
    activation: str = "jumprelu",
    sparsity: str = "l0",
    eps: float | None = None,
    coeff: float | None = None,
    centre: bool = True,
):
    """The reference JumpReLU forward pass with one step changed, for the mistakes below."""
    H, J = make_functions()
    eps = self.cfg.ste_epsilon if eps is None else eps
    pre = einops.einsum(h - self.b_dec if centre else h, self.W_enc, "b i d, i d s -> b i s") + self.b_enc
    theta = {"theta": self.log_theta.exp(), "log_theta": self.log_theta}[threshold]
    acts = {
        "jumprelu": lambda: J.apply(F.relu(pre), theta, eps),
        "relu": lambda: F.relu(pre),
        "step_times_z": lambda: H.apply(F.relu(pre), theta, eps) * F.relu(pre),
    }[activation]()
    h_rec = einops.einsum(acts, self.W_dec_normalized, "b i s, i s d -> b i d") + self.b_dec
    L_sparsity = {
        "l0": lambda: H.apply(F.relu(pre), theta, eps).sum(-1),
        "l1": lambda: acts.abs().sum(-1),
        "count": lambda: (acts > 0).float().sum(-1),
        "positive": lambda: (pre > 0).float().sum(-1),
    }[sparsity]()
    L_rec = mse(h, h_rec)
    coeff = self.cfg.sparsity_coeff if coeff is None else coeff
    return {"L_reconstruction": L_rec, "L_sparsity": L_sparsity}, L_rec + coeff * L_sparsity, acts, h_rec


def jumprelu_sae_plain_relu(self, h):
    return jumprelu_forward(self, h, activation="relu")


def jumprelu_sae_log_theta_as_threshold(self, h):
    return jumprelu_forward(self, h, threshold="log_theta")


def jumprelu_sae_step_times_z(self, h):
    return jumprelu_forward(self, h, activation="step_times_z")


def jumprelu_sae_l1(self, h):
    return jumprelu_forward(self, h, sparsity="l1")


def jumprelu_sae_l0_without_estimator(self, h):
    return jumprelu_forward(self, h, sparsity="count")


def jumprelu_sae_l0_of_positive(self, h):
    return jumprelu_forward(self, h, sparsity="positive")


def jumprelu_sae_hard_coded_eps(self, h):
    return jumprelu_forward(self, h, eps=0.01)


def jumprelu_sae_hard_coded_coefficient(self, h):
    return jumprelu_forward(self, h, coeff=0.1)


def jumprelu_sae_without_centring(self, h):
    return jumprelu_forward(self, h, centre=False)


JUMPRELU_MISTAKES = [
    Mistake(jumprelu_sae_plain_relu, "The latents are JumpReLU_θ(ReLU(pre)): a latent below its threshold θ is 0"),
    Mistake(
        jumprelu_sae_log_theta_as_threshold,
        "The threshold is θ = exp(log_theta) (`self.theta`); log_theta is only how it is stored",
    ),
    Mistake(
        jumprelu_sae_step_times_z,
        "Compute the latents with `JumpReLU.apply`, not Heaviside × z: the two agree forwards, but only JumpReLU's "
        "estimator gives θ the gradient of a jump of height θ",
    ),
    Mistake(jumprelu_sae_l1, "A JumpReLU SAE's penalty is L0, the number of latents that fire, not their L1 norm"),
    Mistake(
        jumprelu_sae_l0_without_estimator,
        "Count the active latents with `Heaviside.apply(ReLU(pre), θ, ε)`: `(acts > 0).sum()` has the right value but "
        "no gradient, so the penalty never moves θ",
    ),
    Mistake(
        jumprelu_sae_l0_of_positive,
        "L0 counts the latents above their threshold θ (Heaviside(ReLU(pre), θ)), not the positive pre-activations",
    ),
    Mistake(jumprelu_sae_hard_coded_eps, "Use the bandwidth `self.cfg.ste_epsilon`, not a fixed number"),
    Mistake(jumprelu_sae_hard_coded_coefficient, "Weight L_sparsity by `self.cfg.sparsity_coeff`"),
    Mistake(jumprelu_sae_without_centring, "Subtract b_dec from h before encoding, as the standard SAE does"),
]


def jumprelu_sae_arena_style(self, h):
    """ARENA's JumpReLUToySAE.forward: one pass, the raw W_dec, the module's own Heaviside and JumpReLU."""
    H, J = make_functions()
    h_cent = h - self.b_dec
    acts_pre = einops.einsum(h_cent, self.W_enc, "batch inst d_in, inst d_in d_sae -> batch inst d_sae") + self.b_enc
    acts_relu = F.relu(acts_pre)
    acts_post = J.apply(acts_relu, self.theta, self.cfg.ste_epsilon)
    h_reconstructed = einops.einsum(acts_post, self.W_dec, "b i s, i s d -> b i d") + self.b_dec
    loss_dict = {
        "L_reconstruction": (h_reconstructed - h).pow(2).mean(-1),
        "L_sparsity": H.apply(acts_relu, self.theta, self.cfg.ste_epsilon).sum(-1),
    }
    loss = loss_dict["L_reconstruction"] + self.cfg.sparsity_coeff * loss_dict["L_sparsity"]
    return loss_dict, loss, acts_post, h_reconstructed


def jumprelu_sae_without_inner_relu(self, h):
    """JumpReLU of the raw pre-activations: the same, since θ > 0 and a negative z is far outside the kernel."""
    H, J = make_functions()
    pre = t.einsum("bid,ids->bis", h - self.b_dec, self.W_enc) + self.b_enc
    theta = t.exp(self.log_theta)
    acts = J.apply(pre, theta, self.cfg.ste_epsilon)
    h_rec = t.einsum("bis,isd->bid", acts, self.W_dec_normalized) + self.b_dec
    L_rec = F.mse_loss(h_rec, h, reduction="none").mean(-1)
    L0 = H.apply(pre, theta, self.cfg.ste_epsilon).sum(-1)
    return {"L_reconstruction": L_rec, "L_sparsity": L0}, L_rec + self.cfg.sparsity_coeff * L0, acts, h_rec


# ------------------------------------------------------------------------------------------------ registry

EXERCISES = [
    Exercise(
        id="sae.topk",
        name="TopKToySAE",
        method="forward",
        title="TopK, and AuxK for the dead latents",
        difficulty=3,
        importance=4,
        minutes="25-40",
        reference_path=f"{MODULE}:TopKToySAE",
        probe=probe_topk,
        verdict=verdict_topk,
        mistakes=TOPK_MISTAKES,
        alternatives=[topk_relu_first, topk_monolithic, topk_aux_relu],
        stubs=("activation", "auxiliary_loss", "loss_terms"),
    ),
    Exercise(
        id="sae.gated",
        name="GatedToySAE",
        method="forward",
        title="a gated SAE: which latents fire, and how much",
        difficulty=3,
        importance=4,
        minutes="25-40",
        reference_path=f"{MODULE}:GatedToySAE",
        probe=probe_gated,
        verdict=verdict_gated,
        mistakes=GATED_MISTAKES,
        alternatives=[gated_arena_style, gated_with_where],
        stubs=("W_mag", "pre_activations", "activation", "loss_terms"),
    ),
    Exercise(
        id="sae.jumprelu_autograd",
        name="Heaviside",
        also=("JumpReLU",),
        title="straight-through estimators for a threshold",
        difficulty=4,
        importance=4,
        minutes="20-35",
        reference_path=f"{MODULE}:Heaviside,JumpReLU",
        probe=probe_autograd,
        verdict=verdict_autograd,
        mistakes=AUTOGRAD_MISTAKES,
        alternatives=[autograd_arena_style, autograd_unsummed],
        stubs=("forward", "backward"),
    ),
    Exercise(
        id="sae.jumprelu",
        name="JumpReLUToySAE",
        method="forward",
        title="a JumpReLU SAE with an L0 penalty",
        difficulty=3,
        importance=4,
        minutes="15-25",
        reference_path=f"{MODULE}:JumpReLUToySAE",
        probe=probe_jumprelu,
        verdict=verdict_jumprelu,
        mistakes=JUMPRELU_MISTAKES,
        alternatives=[jumprelu_sae_arena_style, jumprelu_sae_without_inner_relu],
        stubs=("activation", "loss_terms"),
    ),
]
