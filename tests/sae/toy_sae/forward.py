"""Checks for sae.forward: encode, decode and the two losses.

Kit properties: `sparsity_coeff`, `tied_weights` and `weight_normalize_eps` each at its default and at 0.3 / True / 0.1,
with unit decoder rows and with rows of varied norms, one of norm 0.02 in every instance (1, 2); the output that
differs is named upstream first (latents, reconstruction, then losses), and the instance that differs (3, 7); the
gradient of the loss with respect to every parameter compared with the reference's (4); a batch of one input (6).
forward writes no parameters (5 does not apply). The reference decodes with the learner's own W_dec_normalized when
that is one of the accepted normalisations (`shared.NORMALISATIONS`), so that eps = 0.1 judges forward, not it.
"""

import einops
import torch as t
import torch.nn.functional as F
from torch import Tensor, nn

from tests.harness import (
    CheckFailed,
    Context,
    Exercise,
    Mistake,
    attempt,
    expect_close,
    expect_tensor,
)
from tests.kit import (
    config_family,
    expect_close_per_instance,
    expect_gradients,
    read_attribute,
    weighted_gradients,
)
from tests.sae.common import (
    D_IN,
    N_INST,
    ProbeToyModel,
    build_sae,
    parameter_case,
    sae_config,
    set_parameters,
)
from tests.sae.toy_sae.shared import MODULE, NORMALISATIONS, normalisation_of, reference_sae

FORWARD_BATCH = 11
DEFAULTS = {"sparsity_coeff": 0.2, "tied_weights": False, "weight_normalize_eps": 1e-8}
FAMILY = config_family(DEFAULTS, sparsity_coeff=(0.3,), tied_weights=(True,), weight_normalize_eps=(0.1,))
# each member of the family with decoder rows of varied norms and with unit rows, then one input alone (batch of 1)
CASES = [
    (f"{label}, {rows} rows", fields, rows == "unit", FORWARD_BATCH)
    for label, fields in FAMILY
    for rows in ("scaled", "unit")
]
CASES.append(("default, a batch of one input", DEFAULTS, False, 1))
SMALL_NORM = 0.02  # a decoder row far shorter than eps = 0.1, where the config's eps shows


def forward_inputs(context: Context, batch: int = FORWARD_BATCH) -> Tensor:
    return t.randn((FORWARD_BATCH, N_INST, D_IN), generator=context.generator(46))[:batch] * 1.5


def forward_case(context: Context, tied: bool, unit: bool) -> dict[str, Tensor]:
    """The parameters; with scaled rows, latent i + 3 of every instance i has a row of norm 0.02 and always fires."""
    case = parameter_case(context, 48, tied, unit_decoder=unit)
    if not unit:
        decoder = case["W_enc"].transpose(-1, -2) if tied else case["_W_dec"]
        for i in range(N_INST):
            decoder[i, i + 3] *= SMALL_NORM / decoder[i, i + 3].norm()
            case["b_enc"][i, i + 3] = 1.0
    return case


def probe_forward(ToySAE: type, context: Context) -> dict:
    results = {}
    for key, fields, unit, batch in CASES:
        sae = build_sae(ToySAE, sae_config(**fields), ProbeToyModel(context, 47)).to(context.device)
        set_parameters(sae, forward_case(context, fields["tied_weights"], unit))
        h = forward_inputs(context, batch).to(context.device)
        returned = sae(h)
        if not isinstance(returned, tuple | list) or len(returned) != 4:
            raise CheckFailed(
                f"forward should return a tuple (loss_dict, loss, acts, h_reconstructed), got {type(returned).__name__}."
            )
        loss_dict, loss, acts, h_rec = returned
        if not isinstance(loss_dict, dict):
            raise CheckFailed(
                f"the first thing forward returns is the dict of loss terms, got {type(loss_dict).__name__}."
            )
        results[key] = {
            "loss_dict": dict(loss_dict), "loss": loss, "acts": acts, "h_reconstructed": h_rec, "h_after": h,
            "normalized": attempt(lambda sae=sae: read_attribute(sae, "W_dec_normalized").detach()),
        } | weighted_gradients(sae, loss, PARAMETERS)  # fmt: skip
    return results


HINT_LOSS_KEYS = 'loss_dict has exactly two entries, "L_reconstruction" and "L_sparsity", each of shape [batch inst]'
HINT_WRONG_NORMALIZED = (
    "your forward uses your W_dec_normalized, which is not right yet: make its check pass first (sae.W_dec_normalized)"
)
HINT_BATCH_OF_ONE = (
    "With a batch of one input, {name} lost its batch axis: squeeze only the axis you added (e.g. `.squeeze(-2)`), "
    "never every axis of length 1"
)

PARAMETERS = ("W_enc", "b_enc", "b_dec", "_W_dec")
# upstream first: when the latents differ, the message names them, not the losses computed from them
OUTPUTS = ("acts", "h_reconstructed", "L_reconstruction", "L_sparsity", "loss")
AXES = {"acts": "batch inst d_sae", "h_reconstructed": "batch inst d_in"}
DESCRIPTIONS = {
    "acts": "acts (the latents, ReLU((h − b_dec) W_enc + b_enc))",
    "h_reconstructed": "h_reconstructed (acts Ŵ_dec + b_dec)",
}


def named_outputs(returned: tuple) -> dict[str, Tensor]:
    loss_dict, loss, acts, h_reconstructed = returned
    return {**loss_dict, "acts": acts, "h_reconstructed": h_reconstructed, "loss": loss}


def reference_with(context: Context, normalisation: str, fields: dict) -> nn.Module:
    """The reference SAE, decoding with the learner's own (accepted) way of normalising the rows."""
    sae = reference_sae(context, 47, **fields)
    if normalisation != "norm + eps":
        normalise = NORMALISATIONS[normalisation]
        sae.__class__ = type("ToySAE", (type(sae),), {
            "W_dec_normalized": property(lambda self: normalise(self.W_dec, self.cfg.weight_normalize_eps))
        })  # fmt: skip
    return sae


def verdict_forward(results: dict, context: Context) -> None:
    hints = {mistake.name: mistake.hint for mistake in FORWARD_MISTAKES}
    gradients = []
    for key, fields, unit, batch in CASES:
        r, tied = results[key], fields["tied_weights"]
        what = f"forward ({'tied' if tied else 'untied'} weights{'' if key.startswith('default') else ', ' + key})"
        h = forward_inputs(context, batch)
        if not t.equal(r["h_after"], h):
            raise CheckFailed("forward changed its input `h` in place; compute new tensors instead.")
        if set(r["loss_dict"]) != {"L_reconstruction", "L_sparsity"}:
            raise CheckFailed(f"{HINT_LOSS_KEYS}; yours has {sorted(r['loss_dict'])}.")
        case = forward_case(context, tied, unit)
        decoder = case["W_enc"].transpose(-1, -2) if tied else case["_W_dec"]
        own = r["normalized"] if isinstance(r["normalized"], Tensor) else None
        normalisation = normalisation_of(own, decoder, fields["weight_normalize_eps"]) if own is not None else None
        sae = reference_with(context, normalisation or "norm + eps", fields)
        set_parameters(sae, case)
        returned = sae(h)
        grads = weighted_gradients(sae, returned[1], PARAMETERS)
        expected = {name: value.detach() for name, value in named_outputs(returned).items()}
        got_all = {**r["loss_dict"], **{name: r[name] for name in ("acts", "h_reconstructed", "loss")}}
        close = lambda a, b: isinstance(a, Tensor) and a.shape == b.shape and t.allclose(a, b, rtol=1e-4, atol=1e-5)  # noqa: E731
        gradients.append((r, tied, what, grads))
        if all(close(got_all[name], expected[name]) for name in OUTPUTS):
            continue
        mistaken = {}
        with t.no_grad():
            for mistake in FORWARD_MISTAKES:
                try:
                    mistaken[mistake.name] = named_outputs(mistake.impl(sae, h))
                except Exception:  # a mistake that cannot run on these inputs cannot be the learner's
                    continue
        if own is not None and normalisation is None:
            raise CheckFailed(HINT_WRONG_NORMALIZED + ".")
        for name, outputs in mistaken.items():  # a mistake that explains every output at once names the cause
            if all(name_ in outputs and close(got_all[name_], outputs[name_]) for name_ in OUTPUTS):
                raise CheckFailed(f"{what} is wrong. {hints[name]}.")
        for name in OUTPUTS:
            got, shape = got_all[name], tuple(expected[name].shape)
            axes = AXES.get(name, "batch inst")
            if batch == 1 and isinstance(got, Tensor) and tuple(got.shape) == shape[1:]:
                raise CheckFailed(f"{what}: {HINT_BATCH_OF_ONE.format(name=name)}.")
            if isinstance(got, Tensor) and got.dim() == 1 and axes == "batch inst":
                raise CheckFailed(
                    f"{what}: {name} has shape {tuple(got.shape)}. Keep one value per input, [batch inst]: the "
                    "training loop averages over the batch itself."
                )
            got = expect_tensor(got, f"{what}: {name}", shape, axes)
            if close(got, expected[name]):
                continue
            label = f"{what}: {DESCRIPTIONS.get(name, name)}"
            for mistake_name, outputs in mistaken.items():
                if name in outputs and close(got, outputs[name]):
                    raise CheckFailed(f"{label} is wrong. {hints[mistake_name]}")
            expect_close_per_instance(got, expected[name], label, inst_axis=1)
            expect_close(got, expected[name], label)
    # gradients last: a mistake in the values is named by its own hint, even where only the gradient shows it
    for r, tied, what, grads in gradients:
        for name in PARAMETERS[: 3 if tied else 4]:
            if r[f"grad_{name}"] is None:
                raise CheckFailed(f"no gradient reaches `{name}` through your loss: don't detach anything in forward.")
        expect_gradients(r, {name: grads[f"grad_{name}"] for name in PARAMETERS[: 3 if tied else 4]}, f"{what}'s loss")


def encode_decode(self, h, centre=True, add_b_dec=True, normalise=True, relu=True, decoder=None):
    """The reference's forward pass with one step changed, for the mistakes below."""
    pre = einops.einsum(h - self.b_dec if centre else h, self.W_enc, "b i d, i d s -> b i s") + self.b_enc
    acts = F.relu(pre) if relu else pre
    W = decoder if decoder is not None else (self.W_dec_normalized if normalise else self.W_dec)
    h_rec = einops.einsum(acts, W, "b i s, i s d -> b i d") + (self.b_dec if add_b_dec else 0)
    return pre, acts, h_rec


def losses(self, h, acts, h_rec, reconstruction=None, sparsity=None, coeff=None):
    L_rec = (h_rec - h).pow(2).mean(-1) if reconstruction is None else reconstruction
    L_sparsity = acts.abs().sum(-1) if sparsity is None else sparsity
    coeff = self.cfg.sparsity_coeff if coeff is None else coeff
    return {"L_reconstruction": L_rec, "L_sparsity": L_sparsity}, L_rec + coeff * L_sparsity, acts, h_rec


def forward_without_centring(self, h):
    _, acts, h_rec = encode_decode(self, h, centre=False)
    return losses(self, h, acts, h_rec)


def forward_without_b_dec_in_reconstruction(self, h):
    _, acts, h_rec = encode_decode(self, h, add_b_dec=False)
    return losses(self, h, acts, h_rec)


def forward_unnormalised_decoder(self, h):
    _, acts, h_rec = encode_decode(self, h, normalise=False)
    return losses(self, h, acts, h_rec)


def forward_without_relu(self, h):
    _, acts, h_rec = encode_decode(self, h, relu=False)
    return losses(self, h, acts, h_rec)


def forward_always_tied_decoder(self, h):
    W = self.W_enc.transpose(-1, -2)
    _, acts, h_rec = encode_decode(self, h, decoder=W / (W.norm(dim=-1, keepdim=True) + 1e-8))
    return losses(self, h, acts, h_rec)


def forward_reconstruction_summed(self, h):
    _, acts, h_rec = encode_decode(self, h)
    return losses(self, h, acts, h_rec, reconstruction=(h_rec - h).pow(2).sum(-1))


def forward_reconstruction_norm(self, h):
    _, acts, h_rec = encode_decode(self, h)
    return losses(self, h, acts, h_rec, reconstruction=(h_rec - h).norm(dim=-1))


def forward_sparsity_averaged(self, h):
    _, acts, h_rec = encode_decode(self, h)
    return losses(self, h, acts, h_rec, sparsity=acts.abs().mean(-1))


def forward_sparsity_squared(self, h):
    _, acts, h_rec = encode_decode(self, h)
    return losses(self, h, acts, h_rec, sparsity=acts.pow(2).sum(-1))


def forward_sparsity_before_relu(self, h):
    pre, acts, h_rec = encode_decode(self, h)
    return losses(self, h, acts, h_rec, sparsity=pre.abs().sum(-1))


def forward_hard_coded_coefficient(self, h):
    _, acts, h_rec = encode_decode(self, h)
    return losses(self, h, acts, h_rec, coeff=0.2)


def forward_coefficient_on_reconstruction(self, h):
    _, acts, h_rec = encode_decode(self, h)
    loss_dict, _, acts, h_rec = losses(self, h, acts, h_rec)
    loss = self.cfg.sparsity_coeff * loss_dict["L_reconstruction"] + loss_dict["L_sparsity"]
    return loss_dict, loss, acts, h_rec


def forward_returns_pre_activations(self, h):
    pre, acts, h_rec = encode_decode(self, h)
    loss_dict, loss, _, h_rec = losses(self, h, acts, h_rec)
    return loss_dict, loss, pre, h_rec


def forward_without_b_enc(self, h):
    pre = einops.einsum(h - self.b_dec, self.W_enc, "b i d, i d s -> b i s")
    acts = F.relu(pre)
    h_rec = einops.einsum(acts, self.W_dec_normalized, "b i s, i s d -> b i d") + self.b_dec
    return losses(self, h, acts, h_rec)


def forward_normalises_with_its_own_eps(self, h):
    W = self.W_dec
    _, acts, h_rec = encode_decode(self, h, decoder=W / (W.norm(dim=-1, keepdim=True) + 1e-8))
    return losses(self, h, acts, h_rec)


def forward_sparsity_of_detached_latents(self, h):
    _, acts, h_rec = encode_decode(self, h)
    return losses(self, h, acts, h_rec, sparsity=acts.detach().abs().sum(-1))


def forward_decoder_of_instance_zero(self, h):
    _, acts, _ = encode_decode(self, h)
    h_rec = einops.einsum(acts, self.W_dec_normalized[0], "b i s, s d -> b i d") + self.b_dec
    return losses(self, h, acts, h_rec)


def forward_squeezes_every_axis(self, h):
    acts = t.relu(((h - self.b_dec).unsqueeze(-2) @ self.W_enc).squeeze() + self.b_enc)
    h_rec = (acts.unsqueeze(-2) @ self.W_dec_normalized).squeeze() + self.b_dec
    return losses(self, h, acts, h_rec)


HINT_CENTRE = "Subtract b_dec from h before encoding: the encoder reads (h − b_dec) W_enc + b_enc"
HINT_ADD_B_DEC = "Add b_dec back to the reconstruction: h_reconstructed = acts Ŵ_dec + b_dec"

FORWARD_MISTAKES = [
    Mistake(forward_without_centring, HINT_CENTRE),
    Mistake(forward_without_b_dec_in_reconstruction, HINT_ADD_B_DEC),
    Mistake(
        forward_unnormalised_decoder,
        "Decode with `self.W_dec_normalized`, the decoder with unit rows, not the raw W_dec: otherwise the L1 penalty "
        "can be dodged by shrinking the latents and growing the decoder",
    ),
    Mistake(forward_without_relu, "The latents are ReLU'd: acts = ReLU((h − b_dec) W_enc + b_enc), never negative"),
    Mistake(
        forward_always_tied_decoder,
        "Decode with `self.W_dec_normalized` (the SAE's own decoder when untied), not with W_enc transposed",
    ),
    Mistake(
        forward_reconstruction_summed,
        "L_reconstruction is the squared error averaged over the d_in dimensions (`.mean(-1)`), not summed",
    ),
    Mistake(forward_reconstruction_norm, "L_reconstruction is the *squared* error ‖h − h_rec‖² / d_in, not the norm"),
    Mistake(
        forward_sparsity_averaged, "L_sparsity is the L1 norm of the latents: sum |acts| over d_sae, don't average"
    ),
    Mistake(forward_sparsity_squared, "L_sparsity is the L1 norm (Σ |acts|), not the sum of squares"),
    Mistake(
        forward_sparsity_before_relu,
        "Take the L1 norm of the latents after the ReLU (acts), not of the pre-activations",
    ),
    Mistake(forward_hard_coded_coefficient, "Weight L_sparsity by `self.cfg.sparsity_coeff`, not by a fixed number"),
    Mistake(
        forward_coefficient_on_reconstruction,
        "The coefficient multiplies the sparsity term: loss = L_reconstruction + sparsity_coeff · L_sparsity",
    ),
    Mistake(forward_returns_pre_activations, "Return the latents after the ReLU as `acts`, not the pre-activations"),
    Mistake(forward_without_b_enc, "Add b_enc to the encoder's output: acts = ReLU((h − b_dec) W_enc + b_enc)"),  # 7
    Mistake(
        forward_normalises_with_its_own_eps,
        "Decode with `self.W_dec_normalized`, which uses `cfg.weight_normalize_eps`, instead of normalising W_dec again "
        "with an epsilon of your own",
    ),  # kind 1
    Mistake(
        forward_sparsity_of_detached_latents, "the right values but the wrong gradient with respect to `W_enc`"
    ),  # 4
    Mistake(
        forward_decoder_of_instance_zero,
        "Decode every instance with its own decoder: keep the instance axis of `W_dec_normalized` [inst d_sae d_in] in "
        "the einsum, don't index one instance",
    ),  # kind 3
    Mistake(forward_squeezes_every_axis, HINT_BATCH_OF_ONE.format(name="acts")),  # kind 6
]


def forward_with_matmul(self, h):
    acts = t.relu(((h - self.b_dec).unsqueeze(-2) @ self.W_enc).squeeze(-2) + self.b_enc)
    h_reconstructed = (acts.unsqueeze(-2) @ self.W_dec_normalized).squeeze(-2) + self.b_dec
    L_reconstruction = F.mse_loss(h_reconstructed, h, reduction="none").mean(-1)
    L_sparsity = acts.norm(p=1, dim=-1)
    loss_dict = {"L_reconstruction": L_reconstruction, "L_sparsity": L_sparsity}
    return loss_dict, L_reconstruction + self.cfg.sparsity_coeff * L_sparsity, acts, h_reconstructed


def forward_arena_style(self, h):
    h_cent = h - self.b_dec
    acts_pre = einops.einsum(h_cent, self.W_enc, "batch inst d_in, inst d_in d_sae -> batch inst d_sae") + self.b_enc
    acts_post = F.relu(acts_pre)
    h_reconstructed = (
        einops.einsum(acts_post, self.W_dec_normalized, "batch inst d_sae, inst d_sae d_in -> batch inst d_in")
        + self.b_dec
    )
    L_reconstruction = (h_reconstructed - h).pow(2).mean(-1)
    L_sparsity = acts_post.abs().sum(-1)
    loss_dict = {"L_reconstruction": L_reconstruction, "L_sparsity": L_sparsity}
    loss = L_reconstruction + self.cfg.sparsity_coeff * L_sparsity
    return loss_dict, loss, acts_post, h_reconstructed


EXERCISE = Exercise(
    id="sae.forward",
    name="ToySAE",
    method="forward",
    reference_path=f"{MODULE}:ToySAE",
    probe=probe_forward,
    verdict=verdict_forward,
    mistakes=FORWARD_MISTAKES,
    alternatives=[forward_with_matmul, forward_arena_style],
    stubs=("pre_activations", "activation", "decode", "reconstruction_loss", "sparsity_loss"),
    requires=("sae.init", "sae.W_dec", "sae.W_dec_normalized"),
)
