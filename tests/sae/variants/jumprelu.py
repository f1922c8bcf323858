"""The check of `sae.jumprelu`: learned thresholds and an L0 penalty, through the learner's autograd functions."""

import einops
import torch as t
import torch.nn.functional as F
from torch import Tensor, nn

from tests.harness import CheckFailed, Context, Mistake, reference_of
from tests.kit import HINT_REPLACED, config_family, setting
from tests.sae.common import D_IN, D_SAE, N_INST, ProbeToyModel, build_sae, sae_config, set_parameters
from tests.sae.variants.autograd import make_functions, probe_autograd, verdict_autograd
from tests.sae.variants.forward import (
    BATCH,
    HINT_EPS_HARD_CODED,
    HINT_NORM_DETACHED,
    HINT_RAW_W_DEC,
    SPARSITY_COEFF,
    centred_encode,
    check_input_untouched,
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

JUMP_EPS = 0.2
JUMP_PARAMETERS = ("W_enc", "_W_dec", "b_enc", "b_dec", "log_theta")
JUMP_TERMS = ("L_reconstruction", "L_sparsity")
JUMP_BASE = dict(tied_weights=False, sparsity_coeff=SPARSITY_COEFF, ste_epsilon=JUMP_EPS, threshold_init=0.1)
# The base, each field the forward pass reads at another value (the default bandwidth and coefficient; tied weights,
# whose decoder rows have norms of their own), and tied with a large weight_normalize_eps. `threshold_init` is read
# only by the given line of __init__, and every probe sets θ itself.
JUMP_FAMILY = config_family(JUMP_BASE, ste_epsilon=(0.01,), sparsity_coeff=(0.2,), tied_weights=(True,)) + [
    ("tied_weights=True, weight_normalize_eps=0.1", JUMP_BASE | {"tied_weights": True, "weight_normalize_eps": 0.1})
]
AT_THRESHOLD = 0.5  # θ of the latent whose pre-activation on the first input is exactly θ


def jumprelu_case(context: Context, fields: dict, h: Tensor) -> tuple[dict[str, Tensor], Tensor]:
    """Decoder rows of unit norm untied and of varied norms tied, and thresholds θ > ε/2 + margin (so that a latent
    below 0 is far outside the kernel, and a ReLU before JumpReLU changes nothing), each placed so that no
    pre-activation of the probe's inputs lies near the jump or near an edge of the kernel: every one of them has a
    definite side, whoever computes it. The exception is planted in every instance: the first input is h = b_dec, so
    its pre-activations are the biases exactly, and one latent has b_enc = θ: exactly at its threshold, it does not
    fire (z > θ strictly)."""
    tied, eps = fields["tied_weights"], fields["ste_epsilon"]
    g = context.generator(110 + tied)
    directions = t.randn((N_INST, D_SAE, D_IN), generator=g)
    decoder = varied_rows(directions, g) if tied else unit_rows(directions)
    W_enc = decoder.transpose(-1, -2) if tied else t.randn((N_INST, D_IN, D_SAE), generator=g) * 0.8
    b_enc = t.randn((N_INST, D_SAE), generator=g) * 0.3
    b_dec = t.randn((N_INST, D_IN), generator=g) * 0.3
    h = h.clone()
    h[0] = b_dec
    pre = centred_encode(h, b_dec, W_enc, b_enc)  # [batch inst d_sae]
    candidates = t.linspace(0.15, 1.2, 106)  # [c]
    u = (pre[..., None] - candidates) / eps  # [batch inst d_sae c]
    margin = t.minimum(u.abs(), (u.abs() - 0.5).abs()).amin(0)  # [inst d_sae c]: the nearest input to a border
    inside = ((u.abs() < 0.5) & (pre[..., None] > 0)).any(0)  # an input in the kernel: θ gets a gradient
    score = margin + 2.0 * (inside & (margin > 0.05)) + 0.01 * t.rand(margin.shape, generator=g)
    log_theta = candidates[score.argmax(-1)].log()
    # the latent at its threshold: the one whose other inputs, moved by whatever its bias is, stay furthest from θ
    # and from the kernel's edges
    moved = (pre - b_enc)[1:] / eps  # [batch-1 inst d_sae]
    latent = t.minimum(moved.abs(), (moved.abs() - 0.5).abs()).amin(0).argmax(-1)  # [inst]
    at = (t.arange(N_INST), latent)
    log_theta[at] = t.tensor(AT_THRESHOLD).log()
    b_enc[at] = log_theta[at].exp()  # the very float θ = exp(log θ) that forward computes
    case = {"W_enc": W_enc, "b_enc": b_enc, "b_dec": b_dec, "log_theta": log_theta}
    if not tied:
        case["_W_dec"] = decoder
    return case, h


def jumprelu_inputs(context: Context) -> Tensor:
    return t.randn((BATCH, N_INST, D_IN), generator=context.generator(112))


def build_jumprelu(cls: type, context: Context, fields: dict) -> tuple[nn.Module, Tensor]:
    sae = build_sae(cls, sae_config(**fields), ProbeToyModel(context, 113)).to(context.device)
    case, h = jumprelu_case(context, fields, jumprelu_inputs(context))
    set_parameters(sae, {k: v.contiguous() for k, v in case.items()})
    return sae, h.to(context.device)


def jumprelu_parameters(fields: dict) -> tuple[str, ...]:
    return tuple(p for p in JUMP_PARAMETERS if not (fields["tied_weights"] and p == "_W_dec"))


def learner_autograd(cls: type) -> tuple[type, type] | None:
    """The `Heaviside` and `JumpReLU` that the learner's methods call: the globals of the module their code runs in
    (the notebook's `__main__`, in a notebook and in the grader), when both are autograd functions there."""
    for klass in cls.__mro__:
        for member in vars(klass).values():
            namespace = getattr(getattr(member, "fget", member), "__globals__", None)
            if not isinstance(namespace, dict) or str(namespace.get("__name__")).startswith(("solutions.", "tests.")):
                continue
            found = tuple(namespace.get(name) for name in ("Heaviside", "JumpReLU"))
            if all(isinstance(f, type) and issubclass(f, t.autograd.Function) for f in found):
                return found
    return None


def probe_jumprelu(JumpReLUToySAE: type, context: Context) -> dict:
    results = {}
    for label, fields in JUMP_FAMILY:
        sae, h = build_jumprelu(JumpReLUToySAE, context, fields)
        results[label] = run_learner(sae, h, jumprelu_parameters(fields))
    if (functions := learner_autograd(JumpReLUToySAE)) is not None:
        try:  # judged only if this check fails: were the learner's Heaviside and JumpReLU the cause?
            results["autograd"] = {"status": "ok"} | probe_autograd(functions, context)
        except NotImplementedError:
            results["autograd"] = {"status": "not_implemented"}
        except Exception as error:
            results["autograd"] = {"status": "error", "message": f"{type(error).__name__}: {error}"}
    return results


def blame_autograd(results: dict, context: Context) -> None:
    """After this check failed: if the learner's `Heaviside` or `JumpReLU` is wrong too, say to fix that first."""
    autograd = results.get("autograd")
    if not isinstance(autograd, dict):
        return
    first = "fix them first (exercise sae.jumprelu_autograd), then re-run this check"
    if autograd.get("status") == "not_implemented":
        raise CheckFailed(f"your forward uses `Heaviside` and `JumpReLU`, which are not implemented yet: {first}.")
    if autograd.get("status") == "error":
        raise CheckFailed(
            f"your forward uses `Heaviside` and `JumpReLU`, which raise {autograd.get('message')}: {first}."
        )
    try:
        verdict_autograd({k: v for k, v in autograd.items() if k != "status"}, context)
    except CheckFailed as failure:
        raise CheckFailed(
            "forward fails because your `Heaviside` and `JumpReLU`, which it uses, are not right yet: "
            f"{first}. check('sae.jumprelu_autograd', Heaviside, JumpReLU) says:\n  {failure}"
        ) from None
    except Exception:  # results that cannot be judged blame nothing
        return


def verdict_jumprelu(results: dict, context: Context) -> None:
    try:
        judge_jumprelu(results, context, reference_of("sae.jumprelu"))
    except CheckFailed:
        blame_autograd(results, context)
        raise


def judge_jumprelu(results: dict, context: Context, JumpReLUToySAE: type) -> None:
    hints = {mistake.name: mistake.hint for mistake in JUMPRELU_MISTAKES}
    for label, fields in JUMP_FAMILY:
        tied, parameters = fields["tied_weights"], jumprelu_parameters(fields)
        r, what = results[label], f"forward ({'tied' if tied else 'untied'} weights){setting(label)}"
        sae, h = build_jumprelu(JumpReLUToySAE, context, fields)
        check_input_untouched(r, h)
        judge_parameters(r)
        expected = run_forward(sae, sae, h, parameters)
        mistaken = mistaken_runs(JUMPRELU_MISTAKES, lambda: build_jumprelu(JumpReLUToySAE, context, fields), parameters)
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
    decoder: str = "normalized",
    at_threshold: bool = False,
):
    """The reference JumpReLU forward pass with one step changed, for the mistakes below."""
    if at_threshold:  # `>=` where the contract says `>`
        H, J = make_functions({"forward": lambda z, th: (z >= th).float()}, {"forward": lambda z, th: z * (z >= th)})
    else:
        H, J = make_functions()
    eps = self.cfg.ste_epsilon if eps is None else eps
    pre = einops.einsum(h - self.b_dec if centre else h, self.W_enc, "b i d, i d s -> b i s") + self.b_enc
    theta = {
        "theta": lambda: self.log_theta.exp(),
        "log_theta": lambda: self.log_theta,
        "instance_0": lambda: self.log_theta.exp()[0],
        "detached_in_l0": lambda: self.log_theta.exp(),
    }[threshold]()
    acts = {
        "jumprelu": lambda: J.apply(F.relu(pre), theta, eps),
        "relu": lambda: F.relu(pre),
        "step_times_z": lambda: H.apply(F.relu(pre), theta, eps) * F.relu(pre),
    }[activation]()
    h_rec = einops.einsum(acts, decoder_as(self, decoder), "b i s, i s d -> b i d") + self.b_dec
    l0_theta = theta.detach() if threshold == "detached_in_l0" else theta
    L_sparsity = {
        "l0": lambda: H.apply(F.relu(pre), l0_theta, eps).sum(-1),
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


def jumprelu_sae_tied_decodes_with_raw_W_dec(self, h):
    return jumprelu_forward(self, h, decoder="raw")


def jumprelu_sae_decoder_eps_hard_coded(self, h):
    return jumprelu_forward(self, h, decoder="eps")


def jumprelu_sae_decoder_norm_detached(self, h):
    return jumprelu_forward(self, h, decoder="detached_norm")


def jumprelu_sae_threshold_of_instance_0(self, h):
    return jumprelu_forward(self, h, threshold="instance_0")


def jumprelu_sae_fires_at_threshold(self, h):
    return jumprelu_forward(self, h, at_threshold=True)


def jumprelu_sae_l0_threshold_detached(self, h):
    return jumprelu_forward(self, h, threshold="detached_in_l0")


def jumprelu_sae_renormalises_decoder_with_a_new_parameter(self, h):
    if not self.cfg.tied_weights:  # "keep the rows at unit norm": a new parameter the optimiser does not hold
        self._W_dec = nn.Parameter(self.W_dec_normalized.detach())
    return jumprelu_forward(self, h)


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


JUMPRELU_MISTAKES += [
    Mistake(jumprelu_sae_tied_decodes_with_raw_W_dec, HINT_RAW_W_DEC.format(encoder="W_enc")),
    Mistake(jumprelu_sae_decoder_eps_hard_coded, HINT_EPS_HARD_CODED),
    Mistake(jumprelu_sae_decoder_norm_detached, HINT_NORM_DETACHED),
    Mistake(
        jumprelu_sae_threshold_of_instance_0,
        "θ is [inst d_sae]: every instance has thresholds of its own, so use `self.theta` whole (it broadcasts over "
        "the batch), not one instance's row",
    ),
    Mistake(
        jumprelu_sae_fires_at_threshold,
        "A latent fires only when its pre-activation is strictly above its threshold, z > θ, not z >= θ: a "
        "pre-activation exactly at θ stays 0 and is not counted (check `Heaviside` and `JumpReLU` too)",
    ),
    Mistake(
        jumprelu_sae_l0_threshold_detached,
        "L_sparsity counts with `Heaviside.apply`, but gives θ no gradient: pass the threshold itself (`self.theta`), "
        "not `self.theta.detach()` or `.data`, so that the L0 penalty's straight-through estimate reaches log_theta",
    ),
    Mistake(
        jumprelu_sae_renormalises_decoder_with_a_new_parameter, HINT_REPLACED.format(name="_W_dec", what="`forward`")
    ),
]


def jumprelu_sae_arena_style(self, h):
    """ARENA's JumpReLUToySAE.forward (one pass, the module's own Heaviside and JumpReLU), decoding with
    `W_dec_normalized` as the contract says: ARENA's raw `W_dec` is that, untied, where its rows are kept at unit
    norm (`tests/suite/test_arena_compatibility.py` runs ARENA's own code, raw W_dec and all)."""
    H, J = make_functions()
    h_cent = h - self.b_dec
    acts_pre = einops.einsum(h_cent, self.W_enc, "batch inst d_in, inst d_in d_sae -> batch inst d_sae") + self.b_enc
    acts_relu = F.relu(acts_pre)
    acts_post = J.apply(acts_relu, self.theta, self.cfg.ste_epsilon)
    h_reconstructed = einops.einsum(acts_post, self.W_dec_normalized, "b i s, i s d -> b i d") + self.b_dec
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
