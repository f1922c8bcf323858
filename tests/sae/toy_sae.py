"""Checks for chapter 2, section 1 (a toy SAE), with their catalogues of mistakes.

Every check builds the learner's `ToySAE` on a probe toy model (`ProbeToyModel`) whose axes all differ in length, so
that a transposed tensor shows up in its shape, and sets parameters with non-zero biases and, where it matters,
decoder rows that are not of unit norm. Each mistake is a small wrong implementation written the way a learner
would write it, next to the hint the checker gives when it recognises it.
"""

import copy

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
    mistake_outputs,
    raised,
)
from tests.sae.common import (
    D_IN,
    D_SAE,
    N_FEATURES,
    N_INST,
    ProbeToyModel,
    build_sae,
    parameter_case,
    sae_config,
    set_parameters,
)

MODULE = "solutions.sae.toy_sae"
DECODER_SHAPE = (N_INST, D_SAE, D_IN)


def reference_sae(context: Context, salt: int, **cfg_fields) -> nn.Module:
    from solutions.sae.toy_sae import ToySAE, ToySAEConfig

    return ToySAE(ToySAEConfig(**vars(sae_config(**cfg_fields))), ProbeToyModel(context, salt))


def gradients(sae: nn.Module, out: Tensor, names: tuple[str, ...]) -> dict[str, Tensor | None]:
    """The gradients of a fixed weighted sum of `out` with respect to the named parameters (None if none arrives)."""
    if isinstance(out, Tensor) and out.requires_grad:
        sae.zero_grad()
        weights = t.linspace(0.5, 1.5, out.numel(), device=out.device).view(out.shape)
        (out * weights).sum().backward()
    return {f"grad_{name}": getattr(getattr(sae, name, None), "grad", None) for name in names}


# ---------------------------------------------------------------------------------------------- __init__

SAE_PARAMETERS = ("W_enc", "_W_dec", "b_enc", "b_dec")


def expected_shapes(tied: bool) -> dict[str, tuple[int, ...]]:
    shapes = {"W_enc": (N_INST, D_IN, D_SAE), "b_enc": (N_INST, D_SAE), "b_dec": (N_INST, D_IN)}
    return shapes if tied else shapes | {"_W_dec": DECODER_SHAPE}


def probe_init(ToySAE: type, context: Context) -> dict:
    results = {}
    for tied in (False, True):
        model = ProbeToyModel(context, salt=40).to(context.device)
        before = {name: (p.detach().clone(), p.requires_grad) for name, p in model.named_parameters()}
        sae = build_sae(ToySAE, sae_config(tied_weights=tied), model)
        again = build_sae(ToySAE, sae_config(tied_weights=tied), ProbeToyModel(context, salt=40).to(context.device))
        params = dict(sae.named_parameters())
        copy_of_model = getattr(sae, "model", None)
        results["tied" if tied else "untied"] = {
            "trainable": sorted(name for name, p in params.items() if p.requires_grad),
            "shapes": {name: list(p.shape) for name, p in params.items()},
            "values": {name: params[name].detach() for name in SAE_PARAMETERS if name in params},
            "again": {name: p.detach() for name, p in again.named_parameters() if name in SAE_PARAMETERS},
            "decoder_attribute": type(getattr(sae, "_W_dec", "missing")).__name__,
            "plain_tensors": sorted(
                name for name in SAE_PARAMETERS if isinstance(getattr(sae, name, None), Tensor) and name not in params
            ),
            "model_values_changed": any(not t.equal(p.detach(), before[n][0]) for n, p in model.named_parameters()),
            "model_flags_changed": any(p.requires_grad != before[n][1] for n, p in model.named_parameters()),
            "copy_W": copy_of_model.W.detach() if isinstance(getattr(copy_of_model, "W", None), Tensor) else None,
            "model_W": model.W.detach(),
        }
    return results


HINT_MUTATES_MODEL = (
    "Don't change the toy model you were given (ARENA's `model.requires_grad_(False)` and its copying of instance 0 "
    "into every instance do): the caller may still train or plot it. Keep the notebook's line "
    "`self.model = frozen_copy(model, ...)`, which freezes a copy instead"
)
HINT_INSTANCE_COPY = (
    "SAE instance i reads the toy model's instance i: keep every instance of the model as it is, don't copy "
    "instance 0 into the others"
)
HINT_MODEL_TRAINABLE = (
    "The toy model must be frozen inside the SAE: no parameter of `self.model` may require a gradient, or the SAE's "
    "optimiser would train the model too. Keep the notebook's `frozen_copy(...)` line"
)
HINT_UNTIED_DECODER = (
    "An untied SAE (`cfg.tied_weights=False`) has a decoder of its own: `self._W_dec = nn.Parameter(...)` of shape "
    "[inst d_sae d_in]"
)
HINT_TIED_DECODER = (
    "A tied SAE has no decoder parameter: set `self._W_dec = None` when `cfg.tied_weights` is True (its decoder is "
    "W_enc transposed)"
)
HINT_PARAMETERS = "Make every weight and bias an `nn.Parameter`, so that the optimiser trains it"
HINT_BIASES = "Both biases start at zero: `nn.Parameter(t.zeros(...))` for b_enc and b_dec"
HINT_RANDOM = (
    "The weights need a random start (e.g. `nn.init.kaiming_uniform_`, or random unit directions): all-zero or "
    "constant weights give every latent the same gradient, so the latents never differ"
)
HINT_INSTANCES = (
    "Every instance is an independent SAE and needs its own random weights: draw a [n_inst, ...] tensor, don't "
    "repeat one instance's weights"
)
HINT_FRESH = "Two SAEs built one after the other got identical weights: don't reseed the random generator in __init__"


def verdict_init(results: dict, context: Context) -> None:
    for key, tied in (("untied", False), ("tied", True)):
        r = results[key]
        if r["model_values_changed"]:
            raise CheckFailed(HINT_MUTATES_MODEL + " (the values of its weights changed).")
        if r["model_flags_changed"]:
            raise CheckFailed(HINT_MUTATES_MODEL + " (its parameters' requires_grad changed).")
        if (
            r["copy_W"] is not None
            and r["copy_W"].shape == r["model_W"].shape
            and not t.equal(r["copy_W"], r["model_W"])
        ):
            raise CheckFailed(HINT_INSTANCE_COPY + ".")
        trainable = set(r["trainable"])
        if any(name.startswith("model.") for name in trainable):
            raise CheckFailed(HINT_MODEL_TRAINABLE + ".")
        if r["plain_tensors"]:
            raise CheckFailed(f"{HINT_PARAMETERS}: {', '.join(r['plain_tensors'])} is a plain tensor.")
        if not tied and "_W_dec" not in r["shapes"]:
            raise CheckFailed(HINT_UNTIED_DECODER + ".")
        if tied and ("_W_dec" in r["shapes"] or r["decoder_attribute"] not in ("NoneType", "str")):
            raise CheckFailed(HINT_TIED_DECODER + ".")
        expected = expected_shapes(tied)
        if missing := sorted(set(expected) - trainable):
            raise CheckFailed(
                f"{HINT_PARAMETERS}: in the {key} SAE, {', '.join(missing)} is not a trainable parameter."
            )
        if extra := sorted(trainable - set(expected)):
            raise CheckFailed(f"unexpected trainable parameters {extra}: the SAE's parameters are {sorted(expected)}.")
        for name, shape in expected.items():
            got = tuple(r["shapes"][name])
            if got != shape:
                axes = {
                    "W_enc": "inst d_in d_sae",
                    "_W_dec": "inst d_sae d_in",
                    "b_enc": "inst d_sae",
                    "b_dec": "inst d_in",
                }
                raise CheckFailed(
                    f"`{name}` should have shape [{axes[name]}] = {shape} (d_in = {D_IN}, d_sae = {D_SAE}), got {got}."
                )
        values = r["values"]
        if not all((values[name] == 0).all() for name in ("b_enc", "b_dec")):
            raise CheckFailed(HINT_BIASES + ".")
        for name in ("W_enc", *(() if tied else ("_W_dec",))):
            weights = values[name]
            if not t.isfinite(weights).all() or weights.std() < 1e-3:
                raise CheckFailed(f"{HINT_RANDOM} (`{name}` has standard deviation {weights.std():.2g}).")
            if t.allclose(weights[0], weights[1]):
                raise CheckFailed(HINT_INSTANCES + f" (`{name}` is the same in instances 0 and 1).")
            if t.equal(weights, r["again"][name]):
                raise CheckFailed(HINT_FRESH + ".")


def make_parameters(self, cfg, W_enc_shape=None, decoder_shape=None, b_dec_size=None, tied=None):
    """The reference's parameters, with one detail changed (for the catalogue of mistakes)."""
    tied = cfg.tied_weights if tied is None else tied
    self.W_enc = nn.Parameter(t.randn(W_enc_shape or (cfg.n_inst, cfg.d_in, cfg.d_sae)))
    self._W_dec = None if tied else nn.Parameter(t.randn(decoder_shape or (cfg.n_inst, cfg.d_sae, cfg.d_in)))
    self.b_enc = nn.Parameter(t.zeros((cfg.n_inst, cfg.d_sae)))
    self.b_dec = nn.Parameter(t.zeros((cfg.n_inst, b_dec_size or cfg.d_in)))


def frozen(model):
    return copy.deepcopy(model).requires_grad_(False)


def init_freezes_the_callers_model(self, cfg, model):
    nn.Module.__init__(self)
    self.cfg = cfg
    self.model = model.requires_grad_(False)  # ARENA's line: freezes the caller's model
    make_parameters(self, cfg)


def init_copies_instance_zero(self, cfg, model):
    nn.Module.__init__(self)
    self.cfg = cfg
    self.model = frozen(model)
    self.model.W.data[1:] = self.model.W.data[0]  # ARENA's line, on the SAE's copy
    make_parameters(self, cfg)


def init_model_not_frozen(self, cfg, model):
    nn.Module.__init__(self)
    self.cfg = cfg
    self.model = copy.deepcopy(model)
    make_parameters(self, cfg)


def init_always_untied(self, cfg, model):
    nn.Module.__init__(self)
    self.cfg, self.model = cfg, frozen(model)
    make_parameters(self, cfg, tied=False)


def init_never_untied(self, cfg, model):
    nn.Module.__init__(self)
    self.cfg, self.model = cfg, frozen(model)
    make_parameters(self, cfg, tied=True)


def init_encoder_transposed(self, cfg, model):
    nn.Module.__init__(self)
    self.cfg, self.model = cfg, frozen(model)
    make_parameters(self, cfg, W_enc_shape=(cfg.n_inst, cfg.d_sae, cfg.d_in))


def init_decoder_transposed(self, cfg, model):
    nn.Module.__init__(self)
    self.cfg, self.model = cfg, frozen(model)
    make_parameters(self, cfg, decoder_shape=(cfg.n_inst, cfg.d_in, cfg.d_sae))


def init_b_dec_per_latent(self, cfg, model):
    nn.Module.__init__(self)
    self.cfg, self.model = cfg, frozen(model)
    make_parameters(self, cfg, b_dec_size=cfg.d_sae)


def init_random_biases(self, cfg, model):
    nn.Module.__init__(self)
    self.cfg, self.model = cfg, frozen(model)
    make_parameters(self, cfg)
    self.b_enc = nn.Parameter(t.randn((cfg.n_inst, cfg.d_sae)) * 0.1)
    self.b_dec = nn.Parameter(t.randn((cfg.n_inst, cfg.d_in)) * 0.1)


def init_zero_weights(self, cfg, model):
    nn.Module.__init__(self)
    self.cfg, self.model = cfg, frozen(model)
    make_parameters(self, cfg)
    self.W_enc = nn.Parameter(t.zeros((cfg.n_inst, cfg.d_in, cfg.d_sae)))


def init_plain_tensors(self, cfg, model):
    nn.Module.__init__(self)
    self.cfg, self.model = cfg, frozen(model)
    self.W_enc = t.randn((cfg.n_inst, cfg.d_in, cfg.d_sae))
    self._W_dec = None if cfg.tied_weights else t.randn((cfg.n_inst, cfg.d_sae, cfg.d_in))
    self.b_enc = t.zeros((cfg.n_inst, cfg.d_sae))
    self.b_dec = t.zeros((cfg.n_inst, cfg.d_in))


def init_one_instance_repeated(self, cfg, model):
    nn.Module.__init__(self)
    self.cfg, self.model = cfg, frozen(model)
    make_parameters(self, cfg)
    self.W_enc = nn.Parameter(t.randn((1, cfg.d_in, cfg.d_sae)).repeat(cfg.n_inst, 1, 1))
    if not cfg.tied_weights:
        self._W_dec = nn.Parameter(self.W_enc.detach().transpose(-1, -2).clone())


INIT_MISTAKES = [
    Mistake(init_freezes_the_callers_model, HINT_MUTATES_MODEL),
    Mistake(init_copies_instance_zero, HINT_INSTANCE_COPY),
    Mistake(init_model_not_frozen, HINT_MODEL_TRAINABLE),
    Mistake(init_always_untied, HINT_TIED_DECODER),
    Mistake(init_never_untied, HINT_UNTIED_DECODER),
    Mistake(init_encoder_transposed, "`W_enc` should have shape [inst d_in d_sae]"),
    Mistake(init_decoder_transposed, "`_W_dec` should have shape [inst d_sae d_in]"),
    Mistake(init_b_dec_per_latent, "`b_dec` should have shape [inst d_in]"),
    Mistake(init_random_biases, HINT_BIASES),
    Mistake(init_zero_weights, HINT_RANDOM),
    Mistake(init_plain_tensors, HINT_PARAMETERS),
    Mistake(init_one_instance_repeated, HINT_INSTANCES),
]


def init_arena_style(self, cfg, model):
    # ARENA's initialisation (Kaiming-uniform on the 3-D tensors), with the course's frozen copy of the model
    nn.Module.__init__(self)
    self.cfg, self.model = cfg, frozen(model)
    self.W_enc = nn.Parameter(nn.init.kaiming_uniform_(t.empty((cfg.n_inst, cfg.d_in, cfg.d_sae))))
    self._W_dec = (
        None if cfg.tied_weights else nn.Parameter(nn.init.kaiming_uniform_(t.empty((cfg.n_inst, cfg.d_sae, cfg.d_in))))
    )
    self.b_enc = nn.Parameter(t.zeros(cfg.n_inst, cfg.d_sae))
    self.b_dec = nn.Parameter(t.zeros(cfg.n_inst, cfg.d_in))


def init_saelens_style(self, cfg, model):
    # SAELens' heuristic: decoder rows of norm 0.1, encoder its transpose, registered with register_parameter
    nn.Module.__init__(self)
    self.cfg, self.model = cfg, frozen(model)
    decoder = F.normalize(t.rand((cfg.n_inst, cfg.d_sae, cfg.d_in)) - 0.5, dim=-1) * 0.1
    self.register_parameter("W_enc", nn.Parameter(decoder.transpose(-1, -2).clone()))
    self.register_parameter("_W_dec", None if cfg.tied_weights else nn.Parameter(decoder))
    self.register_parameter("b_enc", nn.Parameter(t.zeros(cfg.n_inst, cfg.d_sae)))
    self.register_parameter("b_dec", nn.Parameter(t.zeros(cfg.n_inst, cfg.d_in)))


# ------------------------------------------------------------------------------------------------- W_dec


def probe_W_dec(ToySAE: type, context: Context) -> dict:
    results = {}
    for tied in (False, True):
        sae = build_sae(ToySAE, sae_config(tied_weights=tied), ProbeToyModel(context, salt=41).to(context.device))
        set_parameters(sae, parameter_case(context, 42, tied, unit_decoder=False))
        W_dec = sae.W_dec
        key = "tied" if tied else "untied"
        results[key] = {"W_dec": W_dec} | gradients(sae, W_dec, ("W_enc",) if tied else ("_W_dec", "W_enc"))
    return results


HINT_TRANSPOSE = (
    "With tied weights the decoder is W_enc with its last two axes swapped, [inst d_in d_sae] -> [inst d_sae d_in]: "
    "`self.W_enc.transpose(-1, -2)` (`.T` on a 3-D tensor reverses every axis, instances included)"
)
HINT_TIED_DECODER_IS_ENCODER = (
    "When `cfg.tied_weights` is True there is no `_W_dec`: the decoder is the encoder transposed"
)
HINT_UNTIED_OWN_DECODER = (
    "When the weights are untied, W_dec is the SAE's own decoder `self._W_dec`, not W_enc transposed"
)
HINT_KEEP_GRADIENT = (
    "W_dec must stay connected to the parameters (no `.detach()`, `.data` or `.clone().detach()`): the loss trains the "
    "decoder through it"
)
HINT_RAW_DECODER = "W_dec is the decoder as it is; normalising its rows is the job of `W_dec_normalized`"


def verdict_W_dec(results: dict, context: Context) -> None:
    for key, tied in (("untied", False), ("tied", True)):
        r = results[key]
        case = parameter_case(context, 42, tied, unit_decoder=False)
        expected = case["W_enc"].transpose(-1, -2) if tied else case["_W_dec"]
        got = r["W_dec"]
        if (message := raised(got)) is not None:
            raise CheckFailed(f"W_dec ({key} weights) raised {message}")
        if got is None:
            raise CheckFailed(HINT_TIED_DECODER_IS_ENCODER + ".")
        if isinstance(got, Tensor) and tuple(got.shape) != DECODER_SHAPE and got.numel() == expected.numel():
            raise CheckFailed(
                f"W_dec has shape {tuple(got.shape)}, not [inst d_sae d_in] = {DECODER_SHAPE}. {HINT_TRANSPOSE}."
            )
        got = expect_tensor(got, f"W_dec ({key} weights)", DECODER_SHAPE, "inst d_sae d_in")
        if not tied and t.allclose(got, case["W_enc"].transpose(-1, -2)):
            raise CheckFailed(HINT_UNTIED_OWN_DECODER + ".")
        if t.allclose(got, expected / expected.norm(dim=-1, keepdim=True), atol=1e-5) and not t.allclose(got, expected):
            raise CheckFailed(HINT_RAW_DECODER + ".")
        expect_close(got, expected, f"W_dec ({key} weights)")
        source = "W_enc" if tied else "_W_dec"
        if r[f"grad_{source}"] is None:
            raise CheckFailed(HINT_KEEP_GRADIENT + ".")


def W_dec_not_transposed(self):
    return self._W_dec if self._W_dec is not None else self.W_enc


def W_dec_reverses_every_axis(self):
    return self._W_dec if self._W_dec is not None else self.W_enc.permute(2, 1, 0)


def W_dec_transposes_the_instance_axis(self):
    return self._W_dec if self._W_dec is not None else self.W_enc.transpose(0, 1)


def W_dec_always_tied(self):
    return self.W_enc.transpose(-1, -2)


def W_dec_always_untied(self):
    return self._W_dec


def W_dec_detached(self):
    return self._W_dec.detach() if self._W_dec is not None else self.W_enc.detach().transpose(-1, -2)


def W_dec_normalised(self):
    W = self._W_dec if self._W_dec is not None else self.W_enc.transpose(-1, -2)
    return W / W.norm(dim=-1, keepdim=True)


W_DEC_MISTAKES = [
    Mistake(W_dec_not_transposed, HINT_TRANSPOSE),
    Mistake(W_dec_reverses_every_axis, HINT_TRANSPOSE),
    Mistake(W_dec_transposes_the_instance_axis, HINT_TRANSPOSE),
    Mistake(W_dec_always_tied, HINT_UNTIED_OWN_DECODER),
    Mistake(W_dec_always_untied, HINT_TIED_DECODER_IS_ENCODER),
    Mistake(W_dec_detached, HINT_KEEP_GRADIENT),
    Mistake(W_dec_normalised, HINT_RAW_DECODER),
]


def W_dec_with_rearrange(self):
    if self.cfg.tied_weights:
        return einops.rearrange(self.W_enc, "inst d_in d_sae -> inst d_sae d_in")
    return self._W_dec


def W_dec_with_mT(self):
    return self.W_enc.mT if self._W_dec is None else self._W_dec


# ------------------------------------------------------------------------------------------- W_dec_normalized


def normalized_case(context: Context, tied: bool) -> dict[str, Tensor]:
    """Decoder rows of varied norms, and one all-zero row (latent 2 of instance 1): a dead latent."""
    case = parameter_case(context, 43, tied, unit_decoder=False)
    if tied:
        case["W_enc"][1, :, 2] = 0.0
    else:
        case["_W_dec"][1, 2, :] = 0.0
    return case


def probe_W_dec_normalized(ToySAE: type, context: Context) -> dict:
    results = {}
    for tied in (False, True):
        sae = build_sae(ToySAE, sae_config(tied_weights=tied), ProbeToyModel(context, salt=44).to(context.device))
        set_parameters(sae, normalized_case(context, tied))
        normalized = sae.W_dec_normalized
        key = "tied" if tied else "untied"
        after = {name: getattr(sae, name).detach().clone() for name in ("W_enc", *(() if tied else ("_W_dec",)))}
        results[key] = {"normalized": normalized, "after": after} | gradients(sae, normalized, ("W_enc", "_W_dec"))
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


def verdict_W_dec_normalized(results: dict, context: Context) -> None:
    for key, tied in (("untied", False), ("tied", True)):
        r = results[key]
        case = normalized_case(context, tied)
        for name, value in r["after"].items():
            if not t.equal(value, case[name]):
                raise CheckFailed(HINT_IN_PLACE + ".")
        got = r["normalized"]
        if (message := raised(got)) is not None:
            raise CheckFailed(f"W_dec_normalized ({key} weights) raised {message}")
        got = expect_tensor(got, f"W_dec_normalized ({key} weights)", DECODER_SHAPE, "inst d_sae d_in")
        if not t.isfinite(got).all():
            raise CheckFailed(HINT_ZERO_ROW + ".")
        reference = reference_sae(context, 44, tied_weights=tied)
        set_parameters(reference, case)
        outputs, hints = mistake_outputs(W_DEC_NORMALIZED_MISTAKES, lambda impl: impl(reference).detach())
        expect_close(got, reference.W_dec_normalized.detach(), f"W_dec_normalized ({key})", outputs, hints)
        if r["grad_W_enc" if tied else "grad__W_dec"] is None:
            raise CheckFailed(HINT_KEEP_GRADIENT.replace("W_dec must", "W_dec_normalized must") + ".")


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
]


def normalized_with_F_normalize(self):
    return F.normalize(self.W_dec, dim=-1, eps=self.cfg.weight_normalize_eps)


def normalized_with_clamp(self):
    return self.W_dec / self.W_dec.norm(dim=-1, keepdim=True).clamp_min(self.cfg.weight_normalize_eps)


def normalized_with_rsqrt(self):
    return self.W_dec * t.rsqrt(self.W_dec.pow(2).sum(-1, keepdim=True) + self.cfg.weight_normalize_eps**2)


# ------------------------------------------------------------------------------------------- generate_batch

BATCH = 1000


def probe_generate_batch(ToySAE: type, context: Context) -> dict:
    sae = build_sae(ToySAE, sae_config(), ProbeToyModel(context, salt=45).to(context.device))
    with t.no_grad():
        first = sae.generate_batch(BATCH)
        second = attempt(lambda: sae.generate_batch(7))
    return {"first": first, "second": second}


HINT_MODEL_DATA = (
    "The SAE's data are the toy model's hidden activations: draw a batch with `self.model.generate_batch(batch_size)` "
    "and map it through the model's weights, h = W x (`self.model.W`: [inst d_in feats])"
)
HINT_RETURN_HIDDEN = "Return the hidden activations h = W x (shape [batch inst d_in]), not the features x themselves"
HINT_OWN_INSTANCE = "Every SAE instance reads its own model instance: h[:, i] = W[i] x[:, i], with the model's W[i]"
HINT_NO_BIAS_OR_RELU = (
    "The hidden activation is h = W x, before anything else the model does (no b_final, no ReLU: those belong to the "
    "model's output)"
)
HINT_FRESH_BATCHES = "Every call must draw a new batch: don't store one batch and return it again, and don't reseed"


def verdict_generate_batch(results: dict, context: Context) -> None:
    model = ProbeToyModel(context, salt=45)
    x_first, x_second = model.generate_batch(BATCH), model.generate_batch(7)
    W = model.W.detach()
    expected = einops.einsum(x_first, W, "batch inst feats, inst d_in feats -> batch inst d_in")
    first = results["first"]
    if isinstance(first, Tensor) and tuple(first.shape) == (BATCH, N_INST, N_FEATURES):
        raise CheckFailed(HINT_RETURN_HIDDEN + ".")
    first = expect_tensor(first, f"generate_batch({BATCH})", (BATCH, N_INST, D_IN), "batch inst d_in")
    second = results["second"]
    if (message := raised(second)) is not None:
        raise CheckFailed(f"a second call, generate_batch(7), raised {message}")
    second = expect_tensor(second, "generate_batch(7)", (7, N_INST, D_IN), "batch inst d_in")
    if t.equal(second, first[:7]):
        raise CheckFailed(HINT_FRESH_BATCHES + ".")
    candidates = {
        "W of instance 0": einops.einsum(x_first, W[0], "batch inst feats, d_in feats -> batch inst d_in"),
        "b_final": expected + einops.einsum(model.b_final.detach(), W, "inst feats, inst d_in feats -> inst d_in"),
        "ReLU": F.relu(expected),
    }
    hints = {"W of instance 0": HINT_OWN_INSTANCE, "b_final": HINT_NO_BIAS_OR_RELU, "ReLU": HINT_NO_BIAS_OR_RELU}
    if t.allclose(first, expected, rtol=1e-4, atol=1e-5):
        expected_second = einops.einsum(x_second, W, "batch inst feats, inst d_in feats -> batch inst d_in")
        expect_close(second, expected_second, "a second call, generate_batch(7)")
        return
    for name, candidate in candidates.items():
        if t.allclose(first, candidate, rtol=1e-4, atol=1e-5):
            raise CheckFailed(f"generate_batch is wrong. {hints[name]}.")
    raise CheckFailed(
        f"{HINT_MODEL_DATA}; yours returns other values (largest difference {(first - expected).abs().max():.3g})."
    )


def batch_random_hidden(self, batch_size):
    return t.randn((batch_size, self.cfg.n_inst, self.cfg.d_in))


def batch_returns_features(self, batch_size):
    return self.model.generate_batch(batch_size)


def batch_first_instance_weights(self, batch_size):
    return einops.einsum(self.model.generate_batch(batch_size), self.model.W[0], "b i f, d f -> b i d")


def batch_with_output_bias(self, batch_size):
    x = self.model.generate_batch(batch_size)
    return einops.einsum(x, self.model.W, "b i f, i d f -> b i d") + einops.einsum(
        self.model.b_final, self.model.W, "i f, i d f -> i d"
    )


def batch_with_relu(self, batch_size):
    return F.relu(einops.einsum(self.model.generate_batch(batch_size), self.model.W, "b i f, i d f -> b i d"))


def batch_cached(self, batch_size):
    if not hasattr(self, "_cached"):
        self._cached = einops.einsum(self.model.generate_batch(1000), self.model.W, "b i f, i d f -> b i d")
    return self._cached[:batch_size]


def batch_dense_features(self, batch_size):
    x = t.rand((batch_size, self.cfg.n_inst, self.model.cfg.n_features))
    return einops.einsum(x, self.model.W, "b i f, i d f -> b i d")


GENERATE_BATCH_MISTAKES = [
    Mistake(batch_random_hidden, HINT_MODEL_DATA),
    Mistake(batch_returns_features, HINT_RETURN_HIDDEN),
    Mistake(batch_first_instance_weights, HINT_OWN_INSTANCE),
    Mistake(batch_with_output_bias, HINT_NO_BIAS_OR_RELU),
    Mistake(batch_with_relu, HINT_NO_BIAS_OR_RELU),
    Mistake(batch_cached, HINT_FRESH_BATCHES),
    Mistake(batch_dense_features, HINT_MODEL_DATA),
]


def batch_with_matmul(self, batch_size):
    x = self.model.generate_batch(batch_size)
    return (self.model.W @ x.unsqueeze(-1)).squeeze(-1)


def batch_under_no_grad(self, batch_size):
    with t.no_grad():
        return t.einsum("bif,idf->bid", self.model.generate_batch(batch_size), self.model.W)


# ------------------------------------------------------------------------------------------------ forward

FORWARD_BATCH = 11
SPARSITY_COEFF = 0.3  # not the default, so that a hard-coded coefficient shows


def forward_inputs(context: Context) -> Tensor:
    return t.randn((FORWARD_BATCH, N_INST, D_IN), generator=context.generator(46)) * 1.5


def probe_forward(ToySAE: type, context: Context) -> dict:
    results = {}
    for tied in (False, True):
        for unit in (True, False):
            sae = build_sae(
                ToySAE, sae_config(tied_weights=tied, sparsity_coeff=SPARSITY_COEFF), ProbeToyModel(context, 47)
            ).to(context.device)
            set_parameters(sae, parameter_case(context, 48, tied, unit_decoder=unit))
            h = forward_inputs(context).to(context.device)
            returned = sae(h)
            key = f"{'tied' if tied else 'untied'}_{'unit' if unit else 'scaled'}"
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
                "normalized": attempt(lambda sae=sae: sae.W_dec_normalized.detach()),
            } | gradients(sae, loss, ("W_enc", "_W_dec", "b_enc", "b_dec"))  # fmt: skip
    return results


HINT_LOSS_KEYS = 'loss_dict has exactly two entries, "L_reconstruction" and "L_sparsity", each of shape [batch inst]'
HINT_WRONG_NORMALIZED = (
    "your forward uses your W_dec_normalized, which is not right yet: make its check pass first (sae.W_dec_normalized)"
)


FORWARD_CASES = ("untied_unit", "untied_scaled", "tied_unit", "tied_scaled")
OUTPUTS = ("L_reconstruction", "L_sparsity", "acts", "h_reconstructed", "loss")
AXES = {"acts": "batch inst d_sae", "h_reconstructed": "batch inst d_in"}


def named_outputs(returned: tuple) -> dict[str, Tensor]:
    loss_dict, loss, acts, h_reconstructed = returned
    return {**loss_dict, "acts": acts, "h_reconstructed": h_reconstructed, "loss": loss}


def verdict_forward(results: dict, context: Context) -> None:
    h = forward_inputs(context)
    hints = {mistake.name: mistake.hint for mistake in FORWARD_MISTAKES}
    for key in FORWARD_CASES:
        r, tied, unit = results[key], key.startswith("tied"), key.endswith("unit")
        what = f"forward ({'tied' if tied else 'untied'} weights)"
        if not t.equal(r["h_after"], h):
            raise CheckFailed("forward changed its input `h` in place; compute new tensors instead.")
        if set(r["loss_dict"]) != {"L_reconstruction", "L_sparsity"}:
            raise CheckFailed(f"{HINT_LOSS_KEYS}; yours has {sorted(r['loss_dict'])}.")
        sae = reference_sae(context, 47, tied_weights=tied, sparsity_coeff=SPARSITY_COEFF)
        set_parameters(sae, parameter_case(context, 48, tied, unit_decoder=unit))
        with t.no_grad():
            expected = named_outputs(sae(h))
            mistaken = {}
            for mistake in FORWARD_MISTAKES:
                try:
                    mistaken[mistake.name] = named_outputs(mistake.impl(sae, h))
                except Exception:  # a mistake that cannot run on these inputs cannot be the learner's
                    continue
            own_normalized_wrong = isinstance(r["normalized"], Tensor) and not t.allclose(
                r["normalized"], sae.W_dec_normalized, atol=1e-5
            )
        got_all = {**r["loss_dict"], **{name: r[name] for name in ("acts", "h_reconstructed", "loss")}}
        close = lambda a, b: isinstance(a, Tensor) and a.shape == b.shape and t.allclose(a, b, rtol=1e-4, atol=1e-5)  # noqa: E731
        if not all(close(got_all[name], expected[name]) for name in OUTPUTS):
            for name, outputs in mistaken.items():  # a mistake that explains every output at once names the cause
                if all(name_ in outputs and close(got_all[name_], outputs[name_]) for name_ in OUTPUTS):
                    raise CheckFailed(f"{what} is wrong. {hints[name]}.")
        for name in OUTPUTS:
            got = got_all[name]
            axes = AXES.get(name, "batch inst")
            if isinstance(got, Tensor) and got.dim() == 1 and axes == "batch inst":
                raise CheckFailed(
                    f"{what}: {name} has shape {tuple(got.shape)}. Keep one value per input, [batch inst]: the "
                    "training loop averages over the batch itself."
                )
            got = expect_tensor(got, f"{what}: {name}", tuple(expected[name].shape), axes)
            if t.allclose(got, expected[name], rtol=1e-4, atol=1e-5):
                continue
            if own_normalized_wrong:
                raise CheckFailed(HINT_WRONG_NORMALIZED + ".")
            candidates = {k: v[name] for k, v in mistaken.items() if name in v}
            expect_close(got, expected[name], f"{what}: {name}", candidates, hints)
        for name in ("W_enc", "b_enc", "b_dec", *(() if tied else ("_W_dec",))):
            if r[f"grad_{name}"] is None:
                raise CheckFailed(f"no gradient reaches `{name}` through your loss: don't detach anything in forward.")


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


EXERCISES = [
    Exercise(
        id="sae.init",
        name="ToySAE",
        method="__init__",
        title="the SAE's parameters",
        difficulty=1,
        importance=3,
        minutes="5-15",
        reference_path=f"{MODULE}:ToySAE",
        probe=probe_init,
        verdict=verdict_init,
        mistakes=INIT_MISTAKES,
        alternatives=[init_arena_style, init_saelens_style],
    ),
    Exercise(
        id="sae.W_dec",
        name="ToySAE",
        method="W_dec",
        title="the decoder, tied or untied",
        difficulty=1,
        importance=3,
        minutes="5",
        reference_path=f"{MODULE}:ToySAE",
        probe=probe_W_dec,
        verdict=verdict_W_dec,
        mistakes=W_DEC_MISTAKES,
        alternatives=[W_dec_with_rearrange, W_dec_with_mT],
        requires=("sae.init",),
    ),
    Exercise(
        id="sae.W_dec_normalized",
        name="ToySAE",
        method="W_dec_normalized",
        title="the decoder with unit rows",
        difficulty=1,
        importance=3,
        minutes="5-10",
        reference_path=f"{MODULE}:ToySAE",
        probe=probe_W_dec_normalized,
        verdict=verdict_W_dec_normalized,
        mistakes=W_DEC_NORMALIZED_MISTAKES,
        alternatives=[normalized_with_F_normalize, normalized_with_clamp, normalized_with_rsqrt],
        requires=("sae.W_dec",),
    ),
    Exercise(
        id="sae.generate_batch",
        name="ToySAE",
        method="generate_batch",
        title="the SAE's data: the toy model's hidden activations",
        difficulty=2,
        importance=3,
        minutes="5-15",
        reference_path=f"{MODULE}:ToySAE",
        probe=probe_generate_batch,
        verdict=verdict_generate_batch,
        mistakes=GENERATE_BATCH_MISTAKES,
        alternatives=[batch_with_matmul, batch_under_no_grad],
        requires=("sae.init",),
    ),
    Exercise(
        id="sae.forward",
        name="ToySAE",
        method="forward",
        title="encode, decode, and the two losses",
        difficulty=3,
        importance=5,
        minutes="25-40",
        reference_path=f"{MODULE}:ToySAE",
        probe=probe_forward,
        verdict=verdict_forward,
        mistakes=FORWARD_MISTAKES,
        alternatives=[forward_with_matmul, forward_arena_style],
        stubs=("pre_activations", "activation", "decode", "reconstruction_loss", "sparsity_loss"),
        requires=("sae.init", "sae.W_dec", "sae.W_dec_normalized"),
    ),
]
