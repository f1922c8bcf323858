"""Checks for sae.W_dec_normalized: the decoder with unit rows.

Kit properties: `tied_weights` and `weight_normalize_eps` at their defaults and at True / 0.1, and both at once (1, 2);
an all-zero row and a row of norm 0.02 in every instance, and the instance that differs named (3, 6); the gradient
compared with the reference's (4: a detached norm gives the same values); an error inside the property surfaces as
itself (7). Reading the decoder writes no parameters (5): instead, the parameters must be left as they were.
At eps = 0.1 the valid ways to keep a zero row finite differ (`shared.NORMALISATIONS`); each is accepted, and its own
gradient is the one compared.
"""

import torch as t
import torch.nn.functional as F
from torch import Tensor

from tests.harness import (
    CheckFailed,
    Context,
    Exercise,
    Mistake,
    attempt,
    expect_close,
    expect_tensor,
    mistake_outputs,
    raised,
)
from tests.kit import (
    config_family,
    expect_close_per_instance,
    expect_gradients,
    gradient_weights,
    read_attribute,
    setting,
    weighted_gradients,
)
from tests.sae.common import (
    N_INST,
    ProbeToyModel,
    build_sae,
    parameter_case,
    sae_config,
    set_parameters,
)
from tests.sae.toy_sae.shared import (
    DECODER_SHAPE,
    HINT_TIED_NONE,
    MODULE,
    NORMALISATIONS,
    normalisation_of,
    raised_with_hint,
    reference_sae,
)

FAMILY = config_family(
    {"tied_weights": False, "weight_normalize_eps": 1e-8}, tied_weights=(True,), weight_normalize_eps=(0.1,)
) + [("tied_weights=True, weight_normalize_eps=0.1", {"tied_weights": True, "weight_normalize_eps": 0.1})]
SMALL_NORM = 0.02  # a row far shorter than eps = 0.1, where a fixed eps and the config's differ most


def normalized_case(context: Context, tied: bool) -> dict[str, Tensor]:
    """Decoder rows of varied norms; in every instance i one all-zero row (latent i, a dead latent) and one row of norm
    0.02 (latent i + 3). For a tied SAE the rows are the encoder's columns."""
    case = parameter_case(context, 43, tied, unit_decoder=False)
    decoder = case["W_enc"].transpose(-1, -2) if tied else case["_W_dec"]  # a view: writing it writes the case
    for i in range(N_INST):
        decoder[i, i] = 0.0
        decoder[i, i + 3] *= SMALL_NORM / decoder[i, i + 3].norm()
    return case


def probe_W_dec_normalized(ToySAE: type, context: Context) -> dict:
    results = {}
    for label, fields in FAMILY:
        tied = fields["tied_weights"]
        sae = build_sae(ToySAE, sae_config(**fields), ProbeToyModel(context, salt=44).to(context.device))
        set_parameters(sae, normalized_case(context, tied))
        normalized = attempt(lambda sae=sae: read_attribute(sae, "W_dec_normalized"))
        after = {name: getattr(sae, name).detach().clone() for name in ("W_enc", *(() if tied else ("_W_dec",)))}
        results[label] = {"normalized": normalized, "after": after} | weighted_gradients(
            sae, normalized, ("W_enc", "_W_dec")
        )
    return results


HINT_ZERO_ROW = (
    "A latent whose decoder row is all zeros must stay all zeros, not become NaN: add `cfg.weight_normalize_eps` to "
    "the norm (or clamp it) before dividing"
)
HINT_NORM_AXIS = "Normalise every row of W_dec, i.e. over its last axis d_in (`dim=-1`, `keepdim=True`)"
HINT_IN_PLACE = (
    "W_dec_normalized must return a new tensor and leave the parameters alone: normalising in place (`/=`, `.data`, "
    "`copy_`) changes the decoder every time it is read"
)
HINT_EPS = (
    "Use the config's epsilon, `self.cfg.weight_normalize_eps`, not a number of your own: with "
    "weight_normalize_eps=0.1 your rows of small norm come out differently"
)
HINT_KEEP_GRADIENT = (
    "W_dec_normalized must stay connected to the parameters (no `.detach()`, `.data` or `.clone().detach()`): the loss "
    "trains the decoder through it"
)


def expect_gradient(got: dict, case: dict[str, Tensor], tied: bool, eps: float, got_values: Tensor, what: str) -> None:
    """The gradient of the probe's weighted sum of the normalised decoder, with respect to the parameter it reads, is
    that of a normalisation whose values the learner's match. An all-zero row is left out: its gradient is 1/eps or
    1/sqrt(eps) depending on the (valid) form, and no contract pins it."""
    source = "W_enc" if tied else "_W_dec"
    live = (case[source].transpose(-1, -2) if tied else case[source]).norm(dim=-1, keepdim=True) > 0
    live = live.transpose(-1, -2) if tied else live
    own = {source: t.where(live, got[f"grad_{source}"], 0.0)} if isinstance(got[f"grad_{source}"], Tensor) else {}
    failure = None
    for normalise in NORMALISATIONS.values():
        leaf = case[source].clone().requires_grad_(True)
        out = normalise(leaf.transpose(-1, -2) if tied else leaf, eps)
        if not t.allclose(out.detach(), got_values, rtol=1e-4, atol=1e-5):
            continue
        (grad,) = t.autograd.grad((out * gradient_weights(out)).sum(), [leaf])
        try:
            return expect_gradients({f"grad_{source}": own.get(source)}, {source: t.where(live, grad, 0.0)}, what)
        except CheckFailed as error:
            failure = failure or error
    if failure is not None:
        raise failure


def verdict_W_dec_normalized(results: dict, context: Context) -> None:
    for label, fields in FAMILY:
        r, tied, eps = results[label], fields["tied_weights"], fields["weight_normalize_eps"]
        what = f"W_dec_normalized{setting(label)}"
        case = normalized_case(context, tied)
        for name, value in r["after"].items():
            if not t.equal(value, case[name]):
                raise CheckFailed(HINT_IN_PLACE + ".")
        got = r["normalized"]
        if (message := raised(got)) is not None:
            raise CheckFailed(f"{what} raised {raised_with_hint(message, tied)}")
        got = expect_tensor(got, what, DECODER_SHAPE, "inst d_sae d_in")
        if not t.isfinite(got).all():
            raise CheckFailed(HINT_ZERO_ROW + ".")
        decoder = case["W_enc"].transpose(-1, -2) if tied else case["_W_dec"]
        normalisation = normalisation_of(got, decoder, eps)
        if normalisation is None:
            reference = reference_sae(context, 44, **fields)
            set_parameters(reference, case)
            expected = reference.W_dec_normalized.detach()

            def run(impl):  # from the case's parameters each time: one mistake normalises them in place
                set_parameters(reference, case)
                return impl(reference).detach()

            outputs, hints = mistake_outputs(W_DEC_NORMALIZED_MISTAKES, run)
            for name, output in outputs.items():
                if output.shape == got.shape and t.allclose(got, output, rtol=1e-4, atol=1e-5):
                    raise CheckFailed(f"{what} is wrong. {hints[name]}")
            expect_close_per_instance(got, expected, what)
            expect_close(got, expected, what)
        if r["grad_W_enc" if tied else "grad__W_dec"] is None:
            raise CheckFailed(HINT_KEEP_GRADIENT + ".")
        expect_gradient(r, case, tied, eps, got, what)


def decoder_of(self):
    return self.W_enc.transpose(-1, -2) if self.cfg.tied_weights else self._W_dec


def normalized_over_latents(self):
    W = decoder_of(self)
    return W / (W.norm(dim=-2, keepdim=True) + self.cfg.weight_normalize_eps)


def normalized_without_eps(self):
    W = decoder_of(self)
    return W / W.norm(dim=-1, keepdim=True)


def normalized_by_squared_norm(self):
    W = decoder_of(self)
    return W / (W.pow(2).sum(-1, keepdim=True) + self.cfg.weight_normalize_eps)


def normalized_by_l1_norm(self):
    W = decoder_of(self)
    return W / (W.abs().sum(-1, keepdim=True) + self.cfg.weight_normalize_eps)


def normalized_by_the_whole_instance(self):
    W = decoder_of(self)
    return W / (W.norm(dim=(-2, -1), keepdim=True) + self.cfg.weight_normalize_eps)


def normalized_in_place(self):
    W = decoder_of(self)
    W.data /= W.data.norm(dim=-1, keepdim=True) + self.cfg.weight_normalize_eps
    return W


def normalized_detached(self):
    W = decoder_of(self).detach()
    return W / (W.norm(dim=-1, keepdim=True) + self.cfg.weight_normalize_eps)


def normalized_with_fixed_eps(self):
    W = decoder_of(self)
    return W / (W.norm(dim=-1, keepdim=True) + 1e-8)


def normalized_detached_norm(self):
    W = decoder_of(self)
    return W / (W.norm(dim=-1, keepdim=True).detach() + self.cfg.weight_normalize_eps)


def normalized_private_decoder(self):
    W = self._W_dec
    return W / (W.norm(dim=-1, keepdim=True) + self.cfg.weight_normalize_eps)


def normalized_by_instance_zero_norms(self):
    W = decoder_of(self)
    return W / (W[0].norm(dim=-1, keepdim=True) + self.cfg.weight_normalize_eps)


W_DEC_NORMALIZED_MISTAKES = [
    Mistake(normalized_over_latents, HINT_NORM_AXIS),
    Mistake(normalized_without_eps, HINT_ZERO_ROW),
    Mistake(normalized_by_squared_norm, "Divide by the norm ‖W_dec_i‖, not by its square"),
    Mistake(
        normalized_by_l1_norm, "Use the L2 norm of every row (`.norm(dim=-1)`), not the sum of its absolute values"
    ),
    Mistake(normalized_by_the_whole_instance, HINT_NORM_AXIS),
    Mistake(normalized_in_place, HINT_IN_PLACE),
    Mistake(normalized_detached, "W_dec_normalized must stay connected to the parameters"),
    Mistake(normalized_with_fixed_eps, HINT_EPS),  # kind 1
    Mistake(normalized_detached_norm, "the right values but the wrong gradient with respect to `_W_dec`"),  # kind 4
    Mistake(normalized_private_decoder, HINT_TIED_NONE),  # kind 7
    Mistake(
        normalized_by_instance_zero_norms,
        "Divide every instance's rows by their own norms: keep the instance axis (`W.norm(dim=-1, keepdim=True)` on the "
        "whole [inst d_sae d_in] tensor)",
    ),  # kind 3
]


def normalized_with_F_normalize(self):
    return F.normalize(self.W_dec, dim=-1, eps=self.cfg.weight_normalize_eps)


def normalized_with_clamp(self):
    return self.W_dec / self.W_dec.norm(dim=-1, keepdim=True).clamp_min(self.cfg.weight_normalize_eps)


def normalized_eps_inside_the_root(self):
    return self.W_dec * t.rsqrt(self.W_dec.pow(2).sum(-1, keepdim=True) + self.cfg.weight_normalize_eps)


def normalized_with_rsqrt(self):
    return self.W_dec * t.rsqrt(self.W_dec.pow(2).sum(-1, keepdim=True) + self.cfg.weight_normalize_eps**2)


EXERCISE = Exercise(
    id="sae.W_dec_normalized",
    name="ToySAE",
    method="W_dec_normalized",
    reference_path=f"{MODULE}:ToySAE",
    probe=probe_W_dec_normalized,
    verdict=verdict_W_dec_normalized,
    mistakes=W_DEC_NORMALIZED_MISTAKES,
    alternatives=[
        normalized_with_F_normalize,
        normalized_with_clamp,
        normalized_with_rsqrt,
        normalized_eps_inside_the_root,
    ],
    requires=("sae.W_dec",),
)
