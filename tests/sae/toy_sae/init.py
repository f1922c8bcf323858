"""Checks for sae.init: the SAE's parameters, the frozen copy of the toy model.

Kit properties (tests/kit.py): the config field `__init__` reads, `tied_weights`, at both values (1, 2); every instance
of every weight must be random and differ from every other instance (3); each parameter has memory of its own and one
SGD step of an optimiser built after `__init__` moves each by exactly that step (5: an untied decoder that is a view of
the encoder trains as a tied one); a tied SAE that stores a transposed view in `_W_dec` is told to set it to None (7).
`__init__` writes no differentiable code (4 does not apply) and takes no inputs besides the config (6: none).
"""

import copy
import itertools

import torch as t
import torch.nn.functional as F
from torch import Tensor, nn

from tests.harness import (
    CheckFailed,
    Context,
    Exercise,
    Mistake,
)
from tests.kit import expect_parameters_kept, optimiser_step, parameter_record, sgd_for
from tests.sae.common import (
    D_IN,
    D_SAE,
    N_INST,
    ProbeToyModel,
    build_sae,
    sae_config,
)
from tests.sae.toy_sae.shared import DECODER_SHAPE, MODULE

SAE_PARAMETERS = ("W_enc", "_W_dec", "b_enc", "b_dec")


def expected_shapes(tied: bool) -> dict[str, tuple[int, ...]]:
    shapes = {"W_enc": (N_INST, D_IN, D_SAE), "b_enc": (N_INST, D_SAE), "b_dec": (N_INST, D_IN)}
    return shapes if tied else shapes | {"_W_dec": DECODER_SHAPE}


LR = 0.25


def own_parameters(record: dict) -> dict:
    """A parameter record (or a stepped state) without the frozen toy model's parameters, which no step moves."""
    if "ids" in record:
        return {
            key: {name: v for name, v in value.items() if not name.startswith("model.")}
            for key, value in record.items()
        }
    return {name: value for name, value in record.items() if "model." not in name}


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
            "values": {name: params[name].detach().clone() for name in SAE_PARAMETERS if name in params},
            "again": {name: p.detach() for name, p in again.named_parameters() if name in SAE_PARAMETERS},
            "decoder_attribute": type(getattr(sae, "_W_dec", "missing")).__name__,
            "plain_tensors": sorted(
                name for name in SAE_PARAMETERS if isinstance(getattr(sae, name, None), Tensor) and name not in params
            ),
            "model_values_changed": any(not t.equal(p.detach(), before[n][0]) for n, p in model.named_parameters()),
            "model_flags_changed": any(p.requires_grad != before[n][1] for n, p in model.named_parameters()),
            "copy_W": copy_of_model.W.detach().clone()
            if isinstance(getattr(copy_of_model, "W", None), Tensor)
            else None,
            "model_W": model.W.detach(),
        }
        # last, since the step moves the parameters: who they are, and where one step of an optimiser built now takes them
        results["tied" if tied else "untied"] |= {
            "record": own_parameters(parameter_record(sae)),
            "stepped": own_parameters(optimiser_step(sae, sgd_for(sae, lr=LR), lr=LR)) if params else None,
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
HINT_NO_VIEW = (
    "The property `W_dec` gives the encoder transposed; a transposed view kept in `_W_dec` is not trained as a "
    "parameter, and wrapping it in `nn.Parameter` would give the SAE a second decoder sharing W_enc's memory"
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
        if tied and r["decoder_attribute"] not in ("NoneType", "str", "Parameter"):
            raise CheckFailed(
                f"{HINT_TIED_DECODER}; yours stores a {r['decoder_attribute']} in `_W_dec`. {HINT_NO_VIEW}."
            )
        if tied and ("_W_dec" in r["shapes"] or r["decoder_attribute"] not in ("NoneType", "str")):
            raise CheckFailed(HINT_TIED_DECODER + ".")
        if r["plain_tensors"]:
            raise CheckFailed(f"{HINT_PARAMETERS}: {', '.join(r['plain_tensors'])} is a plain tensor.")
        if not tied and "_W_dec" not in r["shapes"]:
            raise CheckFailed(HINT_UNTIED_DECODER + ".")
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
        expect_parameters_kept(r["record"], r["record"], r["stepped"], "__init__", lr=LR)
        for name in ("W_enc", *(() if tied else ("_W_dec",))):
            weights = values[name]
            for i in range(N_INST):  # every instance is checked: one left unset fails on its own
                if not t.isfinite(weights[i]).all() or weights[i].std() < 1e-3:
                    raise CheckFailed(
                        f"{HINT_RANDOM} (`{name}` has standard deviation {weights[i].std():.2g} in instance {i})."
                    )
            for i, j in itertools.combinations(range(N_INST), 2):
                if t.allclose(weights[i], weights[j]):
                    raise CheckFailed(HINT_INSTANCES + f" (`{name}` is the same in instances {i} and {j}).")
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


def init_decoder_view_of_encoder(self, cfg, model):
    nn.Module.__init__(self)
    self.cfg, self.model = cfg, frozen(model)
    directions = F.normalize(t.randn((cfg.n_inst, cfg.d_sae, cfg.d_in)), dim=-1)
    self.W_enc = nn.Parameter(directions.transpose(-1, -2))  # no .clone(): W_enc and _W_dec share memory
    self._W_dec = None if cfg.tied_weights else nn.Parameter(directions)
    self.b_enc = nn.Parameter(t.zeros((cfg.n_inst, cfg.d_sae)))
    self.b_dec = nn.Parameter(t.zeros((cfg.n_inst, cfg.d_in)))


def init_tied_stores_transposed_view(self, cfg, model):
    nn.Module.__init__(self)
    self.cfg, self.model = cfg, frozen(model)
    self.W_enc = nn.Parameter(t.randn((cfg.n_inst, cfg.d_in, cfg.d_sae)))
    if cfg.tied_weights:
        self._W_dec = self.W_enc.transpose(-1, -2)
    else:
        self._W_dec = nn.Parameter(t.randn((cfg.n_inst, cfg.d_sae, cfg.d_in)))
    self.b_enc = nn.Parameter(t.zeros((cfg.n_inst, cfg.d_sae)))
    self.b_dec = nn.Parameter(t.zeros((cfg.n_inst, cfg.d_in)))


def init_last_instance_left_empty(self, cfg, model):
    nn.Module.__init__(self)
    self.cfg, self.model = cfg, frozen(model)
    make_parameters(self, cfg)
    W_enc = t.zeros((cfg.n_inst, cfg.d_in, cfg.d_sae))
    for i in range(cfg.n_inst - 1):
        W_enc[i] = nn.init.kaiming_uniform_(t.empty((cfg.d_in, cfg.d_sae)))
    self.W_enc = nn.Parameter(W_enc)


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
    Mistake(init_decoder_view_of_encoder, "`W_enc` and `_W_dec` share memory"),  # kind 5
    Mistake(init_tied_stores_transposed_view, HINT_TIED_DECODER + "; yours stores a Tensor in `_W_dec`"),  # kind 7
    Mistake(init_last_instance_left_empty, HINT_RANDOM + " (`W_enc` has standard deviation 0 in instance 2)"),  # 3
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


EXERCISE = Exercise(
    id="sae.init",
    name="ToySAE",
    method="__init__",
    reference_path=f"{MODULE}:ToySAE",
    probe=probe_init,
    verdict=verdict_init,
    mistakes=INIT_MISTAKES,
    alternatives=[init_arena_style, init_saelens_style],
)
