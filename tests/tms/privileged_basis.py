"""Checks for chapter 1, section 4 (superposition in a privileged basis), with their catalogues of mistakes.

Each mistake is a small wrong implementation written the way a learner would write it, next to the hint the
checker gives when it recognises it. The test suite runs every one of them through its check.
"""

import itertools

import einops
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
from tests.stats import FALSE_FAILURE_RATE, binomial_range, dkw_radius, hoeffding_radius
from tests.tms.superposition import HINT_PER_INSTANCE, HINT_SCALAR, build, judge_loss, set_parameter

MODULE = "solutions.tms.privileged_basis"

HINT_NO_GRAD = (
    "No gradient reaches the weights through your output, so the model could never learn. Don't use `.detach()`, "
    "`.data`, `.item()` or `torch.no_grad()` inside forward."
)
HINT_ONLY_3D = (
    "forward must accept any number of leading axes (`features: [... inst feats]`); yours fails on a 4-D input. "
    "Use `...` in your einsum patterns."
)


def reference(name: str, cfg_kwargs: dict, **kwargs) -> t.nn.Module:
    import solutions.tms.privileged_basis as module
    from solutions.tms.superposition import ToyModelConfig

    return getattr(module, name)(ToyModelConfig(**cfg_kwargs), **kwargs)


def sparse(g: t.Generator, shape: tuple[int, ...], low: float) -> Tensor:
    """Uniform values on [low, 1], each present with probability 0.6 (else 0)."""
    return (low + (1 - low) * t.rand(shape, generator=g)) * (t.rand(shape, generator=g) < 0.6)


def gradient_weights(out: Tensor) -> Tensor:
    """Fixed, unequal weights for a scalar of the output, so that the gradient sees every output entry."""
    return t.linspace(0.5, 1.5, out.numel(), device=out.device).view(out.shape)


# -------------------------------------------------------------------------------------- NeuronModel.forward

NEURON_CFG = dict(n_inst=3, n_features=6, d_hidden=4)


def neuron_case(context: Context) -> dict[str, Tensor]:
    """Weights of both signs (so that the hidden ReLU cuts), non-zero biases, sparse features in [0, 1]."""
    g = context.generator(10)
    n_inst, n_features, d_hidden = NEURON_CFG["n_inst"], NEURON_CFG["n_features"], NEURON_CFG["d_hidden"]
    return {
        "W": t.randn((n_inst, d_hidden, n_features), generator=g),
        "b_final": t.randn((n_inst, n_features), generator=g) * 0.5,
        "features": sparse(g, (8, n_inst, n_features), 0.0),
        "features_4d": sparse(g, (2, 3, n_inst, n_features), 0.0),
    }


def probe_neuron_model(NeuronModel: type, context: Context) -> dict:
    case = neuron_case(context)
    model = build(NeuronModel, NEURON_CFG, context.device)
    set_parameter(model, "W", case["W"])
    set_parameter(model, "b_final", case["b_final"])
    features = case["features"].to(context.device)
    out = model(features)
    results = {
        "out": out,
        "features_after": features,
        "out_4d": attempt(lambda: model(case["features_4d"].to(context.device))),
    }
    if isinstance(out, Tensor) and out.requires_grad:
        model.zero_grad()
        (out * gradient_weights(out)).sum().backward()
    results["grad_W"] = model.W.grad
    results["grad_b_final"] = model.b_final.grad
    return results


def neuron_forward_without_bias(self, features):
    hidden = F.relu(einops.einsum(features, self.W, "... inst feats, inst d_hidden feats -> ... inst d_hidden"))
    return F.relu(einops.einsum(hidden, self.W, "... inst d_hidden, inst d_hidden feats -> ... inst feats"))


def neuron_forward_without_hidden_relu(self, features):
    hidden = einops.einsum(features, self.W, "... inst feats, inst d_hidden feats -> ... inst d_hidden")
    out = einops.einsum(hidden, self.W, "... inst d_hidden, inst d_hidden feats -> ... inst feats")
    return F.relu(out + self.b_final)


def neuron_forward_without_output_relu(self, features):
    hidden = F.relu(einops.einsum(features, self.W, "... inst feats, inst d_hidden feats -> ... inst d_hidden"))
    return einops.einsum(hidden, self.W, "... inst d_hidden, inst d_hidden feats -> ... inst feats") + self.b_final


def neuron_forward_relu_before_bias(self, features):
    hidden = F.relu(einops.einsum(features, self.W, "... inst feats, inst d_hidden feats -> ... inst d_hidden"))
    out = einops.einsum(hidden, self.W, "... inst d_hidden, inst d_hidden feats -> ... inst feats")
    return F.relu(out) + self.b_final


def neuron_forward_bias_on_input(self, features):
    hidden = F.relu(
        einops.einsum(features + self.b_final, self.W, "... inst feats, inst d_hidden feats -> ... inst d_hidden")
    )
    return F.relu(einops.einsum(hidden, self.W, "... inst d_hidden, inst d_hidden feats -> ... inst feats"))


def neuron_forward_relu_on_weights(self, features):
    W = F.relu(self.W)
    hidden = einops.einsum(features, W, "... inst feats, inst d_hidden feats -> ... inst d_hidden")
    out = einops.einsum(hidden, self.W, "... inst d_hidden, inst d_hidden feats -> ... inst feats")
    return F.relu(out + self.b_final)


def neuron_forward_first_instance_weights(self, features):
    W = self.W[0]
    hidden = F.relu(einops.einsum(features, W, "... inst feats, d_hidden feats -> ... inst d_hidden"))
    return F.relu(einops.einsum(hidden, W, "... inst d_hidden, d_hidden feats -> ... inst feats") + self.b_final)


def neuron_forward_sums_over_instances(self, features):
    hidden = F.relu(einops.einsum(features, self.W, "... inst feats, inst d_hidden feats -> ... d_hidden"))
    return F.relu(einops.einsum(hidden, self.W, "... d_hidden, inst d_hidden feats -> ... inst feats") + self.b_final)


def neuron_forward_detached_weights(self, features):
    W = self.W.detach()
    hidden = F.relu(einops.einsum(features, W, "... inst feats, inst d_hidden feats -> ... inst d_hidden"))
    return F.relu(einops.einsum(hidden, W, "... inst d_hidden, inst d_hidden feats -> ... inst feats") + self.b_final)


def neuron_forward_only_3d_input(self, features):
    hidden = F.relu(einops.einsum(features, self.W, "batch inst feats, inst d_hidden feats -> batch inst d_hidden"))
    out = einops.einsum(hidden, self.W, "batch inst d_hidden, inst d_hidden feats -> batch inst feats")
    return F.relu(out + self.b_final)


NEURON_MISTAKES = [
    Mistake(
        neuron_forward_without_bias,
        "Did you forget to add `b_final` before the output ReLU? The model is ReLU(Wᵀ ReLU(W x) + b_final).",
    ),
    Mistake(
        neuron_forward_without_hidden_relu,
        "This is section 1's ToyModel: NeuronModel also applies a ReLU to the hidden layer, h = ReLU(W x).",
    ),
    Mistake(
        neuron_forward_without_output_relu,
        "Your output is right before the final ReLU: apply ReLU to Wᵀ h + b_final too.",
    ),
    Mistake(
        neuron_forward_relu_before_bias,
        "You add `b_final` after the output ReLU; it belongs inside: ReLU(Wᵀ h + b_final).",
    ),
    Mistake(
        neuron_forward_bias_on_input,
        "You add `b_final` to the input; it is added to the output: ReLU(Wᵀ ReLU(W x) + b_final).",
    ),
    Mistake(
        neuron_forward_relu_on_weights,
        "The hidden ReLU acts on the hidden activations W x, not on the weights: h = ReLU(W x).",
    ),
    Mistake(
        neuron_forward_first_instance_weights,
        "Every instance must use its own weights `W[i]`; yours uses one instance's W for all of them.",
    ),
    Mistake(
        neuron_forward_sums_over_instances,
        "Your einsum sums over the `inst` axis, mixing instances. Keep `inst` in the output pattern of both einsums.",
    ),
    Mistake(neuron_forward_detached_weights, HINT_NO_GRAD),
    Mistake(neuron_forward_only_3d_input, HINT_ONLY_3D),
]


def verdict_neuron_model(results: dict, context: Context) -> None:
    case = neuron_case(context)
    model = reference("NeuronModel", NEURON_CFG)
    set_parameter(model, "W", case["W"])
    set_parameter(model, "b_final", case["b_final"])
    features = case["features"]
    got = expect_tensor(results["out"], "forward(features)", tuple(features.shape), "batch inst feats")
    if not t.equal(results["features_after"], features):
        raise CheckFailed("forward changed its input `features` in place; compute new tensors instead.")
    with t.no_grad():
        outputs, hints = mistake_outputs(NEURON_MISTAKES, lambda impl: impl(model, features))
        expect_close(got, model(features), "forward(features)", outputs, hints)
    if raised(results["out_4d"]) is not None:
        raise CheckFailed(f"{HINT_ONLY_3D} ({raised(results['out_4d'])})")
    features_4d = case["features_4d"]
    got_4d = expect_tensor(
        results["out_4d"], "forward on a [2, 3, inst, feats] input", tuple(features_4d.shape), "a b inst feats"
    )
    with t.no_grad():
        expect_close(got_4d, model(features_4d), "forward on a [2, 3, inst, feats] input")
    if results["grad_W"] is None or results["grad_b_final"] is None:
        raise CheckFailed(HINT_NO_GRAD)
    out = model(features)
    (out * gradient_weights(out)).sum().backward()
    expect_close(results["grad_W"], model.W.grad, "the gradient of your output with respect to W")
    expect_close(results["grad_b_final"], model.b_final.grad, "the gradient of your output with respect to b_final")


# ---------------------------------------------------------------------------- NeuronComputationModel.forward

# d_hidden = n_features, so that a transposed W1 or W2 gives a wrong answer (with its hint) instead of a shape error;
# a second, non-square model catches anything that only works when the two sizes agree.
COMPUTATION_CFG = dict(n_inst=3, n_features=5, d_hidden=5)
COMPUTATION_CFG_WIDE = dict(n_inst=2, n_features=7, d_hidden=3)


def computation_case(context: Context, cfg: dict, salt: int, batch_shape: tuple[int, ...]) -> dict[str, Tensor]:
    """Random signed weights, non-zero biases, and sparse signed features in [-1, 1]."""
    g = context.generator(salt)
    n_inst, n_features, d_hidden = cfg["n_inst"], cfg["n_features"], cfg["d_hidden"]
    return {
        "W1": t.randn((n_inst, d_hidden, n_features), generator=g),
        "W2": t.randn((n_inst, n_features, d_hidden), generator=g),
        "b_final": t.randn((n_inst, n_features), generator=g) * 0.5,
        "features": sparse(g, (*batch_shape, n_inst, n_features), -1.0),
    }


def set_computation_parameters(model: t.nn.Module, case: dict[str, Tensor]) -> None:
    for name in ("W1", "W2", "b_final"):
        set_parameter(model, name, case[name])


def probe_computation_forward(NeuronComputationModel: type, context: Context) -> dict:
    case = computation_case(context, COMPUTATION_CFG, 20, (8,))
    model = build(NeuronComputationModel, COMPUTATION_CFG, context.device)
    set_computation_parameters(model, case)
    features = case["features"].to(context.device)
    out = model(features)
    results = {"out": out, "features_after": features}
    if isinstance(out, Tensor) and out.requires_grad:
        model.zero_grad()
        (out * gradient_weights(out)).sum().backward()
    for name in ("W1", "W2", "b_final"):
        results[f"grad_{name}"] = getattr(model, name).grad

    def wide() -> Tensor:
        wide_case = computation_case(context, COMPUTATION_CFG_WIDE, 21, (2, 3))
        wide_model = build(NeuronComputationModel, COMPUTATION_CFG_WIDE, context.device)
        set_computation_parameters(wide_model, wide_case)
        return wide_model(wide_case["features"].to(context.device))

    results["out_wide"] = attempt(wide)
    return results


def computation_forward_without_bias(self, features):
    hidden = F.relu(einops.einsum(features, self.W1, "... inst feats, inst d_hidden feats -> ... inst d_hidden"))
    return F.relu(einops.einsum(hidden, self.W2, "... inst d_hidden, inst feats d_hidden -> ... inst feats"))


def computation_forward_without_hidden_relu(self, features):
    hidden = einops.einsum(features, self.W1, "... inst feats, inst d_hidden feats -> ... inst d_hidden")
    out = einops.einsum(hidden, self.W2, "... inst d_hidden, inst feats d_hidden -> ... inst feats")
    return F.relu(out + self.b_final)


def computation_forward_without_output_relu(self, features):
    hidden = F.relu(einops.einsum(features, self.W1, "... inst feats, inst d_hidden feats -> ... inst d_hidden"))
    return einops.einsum(hidden, self.W2, "... inst d_hidden, inst feats d_hidden -> ... inst feats") + self.b_final


def computation_forward_relu_before_bias(self, features):
    hidden = F.relu(einops.einsum(features, self.W1, "... inst feats, inst d_hidden feats -> ... inst d_hidden"))
    return F.relu(einops.einsum(hidden, self.W2, "... inst d_hidden, inst feats d_hidden -> ... inst feats")) + (
        self.b_final
    )


def computation_forward_W2_transposed(self, features):
    hidden = F.relu(einops.einsum(features, self.W1, "... inst feats, inst d_hidden feats -> ... inst d_hidden"))
    out = einops.einsum(hidden, self.W2, "... inst d_hidden, inst d_hidden feats -> ... inst feats")
    return F.relu(out + self.b_final)


def computation_forward_W1_transposed(self, features):
    hidden = F.relu(einops.einsum(features, self.W1, "... inst feats, inst feats d_hidden -> ... inst d_hidden"))
    out = einops.einsum(hidden, self.W2, "... inst d_hidden, inst feats d_hidden -> ... inst feats")
    return F.relu(out + self.b_final)


def computation_forward_tied_weights(self, features):
    hidden = F.relu(einops.einsum(features, self.W1, "... inst feats, inst d_hidden feats -> ... inst d_hidden"))
    out = einops.einsum(hidden, self.W1, "... inst d_hidden, inst d_hidden feats -> ... inst feats")
    return F.relu(out + self.b_final)


def computation_forward_abs_of_input(self, features):
    hidden = F.relu(einops.einsum(features.abs(), self.W1, "... inst feats, inst d_hidden feats -> ... inst d_hidden"))
    out = einops.einsum(hidden, self.W2, "... inst d_hidden, inst feats d_hidden -> ... inst feats")
    return F.relu(out + self.b_final)


def computation_forward_first_instance_weights(self, features):
    W1, W2 = self.W1[0], self.W2[0]
    hidden = F.relu(einops.einsum(features, W1, "... inst feats, d_hidden feats -> ... inst d_hidden"))
    return F.relu(einops.einsum(hidden, W2, "... inst d_hidden, feats d_hidden -> ... inst feats") + self.b_final)


def computation_forward_detached_weights(self, features):
    W1, W2 = self.W1.detach(), self.W2.detach()
    hidden = F.relu(einops.einsum(features, W1, "... inst feats, inst d_hidden feats -> ... inst d_hidden"))
    return F.relu(einops.einsum(hidden, W2, "... inst d_hidden, inst feats d_hidden -> ... inst feats") + self.b_final)


HINT_WIDE = (
    "forward must work for any n_features, d_hidden and number of leading axes: "
    "W1 is [inst d_hidden feats], W2 is [inst feats d_hidden], and features are [... inst feats]"
)

COMPUTATION_FORWARD_MISTAKES = [
    Mistake(
        computation_forward_without_bias,
        "Did you forget to add `b_final` before the output ReLU? The model is ReLU(W2 ReLU(W1 x) + b_final).",
    ),
    Mistake(
        computation_forward_without_hidden_relu,
        "Apply a ReLU to the hidden layer: h = ReLU(W1 x). Without it the model is linear before the output ReLU "
        "and cannot compute abs(x).",
    ),
    Mistake(
        computation_forward_without_output_relu,
        "Your output is right before the final ReLU: apply ReLU to W2 h + b_final too.",
    ),
    Mistake(
        computation_forward_relu_before_bias,
        "You add `b_final` after the output ReLU; it belongs inside: ReLU(W2 h + b_final).",
    ),
    Mistake(
        computation_forward_W2_transposed,
        "W2 has shape [inst feats d_hidden]: your read-out uses it transposed. Contract W2's `d_hidden` axis "
        "with the hidden layer: `inst d_hidden, inst feats d_hidden -> inst feats`.",
    ),
    Mistake(
        computation_forward_W1_transposed,
        "W1 has shape [inst d_hidden feats]: your first layer uses it transposed. Contract W1's `feats` axis "
        "with the input: `inst feats, inst d_hidden feats -> inst d_hidden`.",
    ),
    Mistake(
        computation_forward_tied_weights,
        "You read out with W1ᵀ (tied weights, as in NeuronModel); this model has its own read-out W2.",
    ),
    Mistake(
        computation_forward_abs_of_input,
        "Don't take abs of the input: computing abs(x) is the model's job, and the loss compares its output with "
        "abs(x). forward is just ReLU(W2 ReLU(W1 x) + b_final).",
    ),
    Mistake(
        computation_forward_first_instance_weights,
        "Every instance must use its own weights `W1[i]`, `W2[i]`; yours uses one instance's weights for all of them.",
    ),
    Mistake(computation_forward_detached_weights, HINT_NO_GRAD),
]


def verdict_computation_forward(results: dict, context: Context) -> None:
    case = computation_case(context, COMPUTATION_CFG, 20, (8,))
    model = reference("NeuronComputationModel", COMPUTATION_CFG)
    set_computation_parameters(model, case)
    features = case["features"]
    got = expect_tensor(results["out"], "forward(features)", tuple(features.shape), "batch inst feats")
    if not t.equal(results["features_after"], features):
        raise CheckFailed("forward changed its input `features` in place; compute new tensors instead.")
    with t.no_grad():
        outputs, hints = mistake_outputs(COMPUTATION_FORWARD_MISTAKES, lambda impl: impl(model, features))
        expect_close(got, model(features), "forward(features)", outputs, hints)
    if any(results[f"grad_{name}"] is None for name in ("W1", "W2", "b_final")):
        raise CheckFailed(HINT_NO_GRAD)
    out = model(features)
    (out * gradient_weights(out)).sum().backward()
    for name in ("W1", "W2", "b_final"):
        expect_close(results[f"grad_{name}"], getattr(model, name).grad, f"the gradient of your output w.r.t. {name}")

    if (message := raised(results["out_wide"])) is not None:
        raise CheckFailed(f"{HINT_WIDE}; with n_features=7, d_hidden=3 and a 4-D input yours raised {message}")
    wide_case = computation_case(context, COMPUTATION_CFG_WIDE, 21, (2, 3))
    wide_model = reference("NeuronComputationModel", COMPUTATION_CFG_WIDE)
    set_computation_parameters(wide_model, wide_case)
    wide_features = wide_case["features"]
    what = "forward with n_features=7, d_hidden=3 on a [2, 3, inst, feats] input"
    got_wide = expect_tensor(results["out_wide"], what, tuple(wide_features.shape), "a b inst feats")
    with t.no_grad():
        expect_close(got_wide, wide_model(wide_features), what)


# ------------------------------------------------------------------------ NeuronComputationModel.generate_batch

BATCH_CFG = dict(n_inst=4, n_features=6, d_hidden=3)
BATCH_SIZE = 10_000


def batch_probabilities() -> Tensor:
    """Different per instance and per feature, all away from 0.5 (so p and 1 - p differ) and from 0 and 1."""
    rows = t.tensor([0.08, 0.2, 0.35, 0.65, 0.8, 0.92])
    return t.stack([rows.roll(i) for i in range(BATCH_CFG["n_inst"])])


def probe_generate_batch(NeuronComputationModel: type, context: Context) -> dict:
    p = batch_probabilities().to(context.device)
    model = build(NeuronComputationModel, BATCH_CFG, context.device, feature_probability=p)
    with t.no_grad():
        first = model.generate_batch(BATCH_SIZE)
        small = model.generate_batch(7)
        small_again = model.generate_batch(7)
    return {"batch": first, "small": small, "small_again": small_again}


def shape_of(self, batch_size):
    return (batch_size, *self.feature_probability.shape)


def generate_batch_unsigned(self, batch_size):
    shape = shape_of(self, batch_size)
    return t.where(t.rand(shape) <= self.feature_probability, t.rand(shape), 0.0)


def generate_batch_absent_minus_one(self, batch_size):
    shape = shape_of(self, batch_size)
    return 2 * t.where(t.rand(shape) <= self.feature_probability, t.rand(shape), 0.0) - 1


def generate_batch_reused_uniform(self, batch_size):
    u = t.rand(shape_of(self, batch_size))
    return t.where(u <= self.feature_probability, 2 * u - 1, 0.0)


def generate_batch_half_range(self, batch_size):
    shape = shape_of(self, batch_size)
    return t.where(t.rand(shape) <= self.feature_probability, t.rand(shape) - 0.5, 0.0)


def generate_batch_gaussian_magnitudes(self, batch_size):
    shape = shape_of(self, batch_size)
    return t.where(t.rand(shape) <= self.feature_probability, t.randn(shape), 0.0)


def generate_batch_random_sign_only(self, batch_size):
    shape = shape_of(self, batch_size)
    signs = t.randint(0, 2, shape) * 2.0 - 1
    return t.where(t.rand(shape) <= self.feature_probability, signs, 0.0)


def generate_batch_sparsity_for_probability(self, batch_size):
    shape = shape_of(self, batch_size)
    return t.where(t.rand(shape) <= 1 - self.feature_probability, 2 * t.rand(shape) - 1, 0.0)


def generate_batch_shared_across_features(self, batch_size):
    n_inst, n_features = self.feature_probability.shape
    mask = t.rand((batch_size, n_inst, 1)) <= self.feature_probability
    return t.where(mask, 2 * t.rand((batch_size, n_inst, n_features)) - 1, 0.0)


def generate_batch_shared_across_instances(self, batch_size):
    n_inst, n_features = self.feature_probability.shape
    mask = t.rand((batch_size, 1, n_features)) <= self.feature_probability
    return t.where(mask, 2 * t.rand((batch_size, n_inst, n_features)) - 1, 0.0)


def generate_batch_same_magnitude_for_all_features(self, batch_size):
    n_inst, n_features = self.feature_probability.shape
    mask = t.rand((batch_size, n_inst, n_features)) <= self.feature_probability
    return t.where(mask, 2 * t.rand((batch_size, n_inst, 1)) - 1, 0.0)


def generate_batch_half_batch_repeated(self, batch_size):
    half = (batch_size + 1) // 2
    shape = shape_of(self, half)
    x = t.where(t.rand(shape) <= self.feature_probability, 2 * t.rand(shape) - 1, 0.0)
    return t.cat([x, x])[:batch_size]


def generate_batch_fixed_seed(self, batch_size):
    t.manual_seed(0)
    shape = shape_of(self, batch_size)
    return t.where(t.rand(shape) <= self.feature_probability, 2 * t.rand(shape) - 1, 0.0)


HINT_SIGNED = "Magnitudes must be uniform on [-1, 1], so half of them negative (e.g. `2 * t.rand(...) - 1`); yours are never negative"
HINT_ABSENT = "Absent features must be exactly 0: apply the mask after mapping the magnitudes to [-1, 1], not before"
HINT_REUSED = "Draw the magnitudes independently of whether the feature is present: reusing the uniform that decided presence limits magnitudes to [-1, 2p - 1]"
HINT_MAGNITUDE = "Present features need magnitudes uniform on [-1, 1] (mean 0, variance 1/3), drawn independently of whether they are present"
HINT_FREQUENCY = "Each feature must be present with its own probability `self.feature_probability[inst, feat]`"
HINT_FEATURE_INDEPENDENCE = (
    "Features must be present independently of each other: draw one random number per (batch, inst, feat) entry"
)
HINT_INSTANCE_INDEPENDENCE = (
    "Instances must get independent data: draw random numbers for the `inst` axis too, not one draw broadcast over it"
)
HINT_MAGNITUDE_INDEPENDENCE = "Magnitudes must be drawn independently for every feature, not shared across features"
HINT_BATCH_INDEPENDENCE = "Rows of the batch must be independent samples; yours repeat each other"
HINT_FRESH_CALLS = "Two calls returned the same batch: don't reseed the random generator inside generate_batch"

GENERATE_BATCH_MISTAKES = [
    Mistake(generate_batch_unsigned, HINT_SIGNED),
    Mistake(generate_batch_absent_minus_one, HINT_ABSENT),
    Mistake(generate_batch_reused_uniform, HINT_REUSED),
    Mistake(generate_batch_half_range, HINT_MAGNITUDE),
    Mistake(generate_batch_gaussian_magnitudes, HINT_MAGNITUDE),
    Mistake(generate_batch_random_sign_only, HINT_MAGNITUDE),
    Mistake(generate_batch_sparsity_for_probability, HINT_FREQUENCY),
    Mistake(generate_batch_shared_across_features, HINT_FEATURE_INDEPENDENCE),
    Mistake(generate_batch_shared_across_instances, HINT_INSTANCE_INDEPENDENCE),
    Mistake(generate_batch_same_magnitude_for_all_features, HINT_MAGNITUDE_INDEPENDENCE),
    Mistake(generate_batch_half_batch_repeated, HINT_BATCH_INDEPENDENCE),
    Mistake(generate_batch_fixed_seed, HINT_FRESH_CALLS),
]


def verdict_generate_batch(results: dict, context: Context) -> None:
    """Distribution tests, each at level FALSE_FAILURE_RATE / (number of tests)."""
    p = batch_probabilities()
    n_inst, n_features = p.shape
    batch = expect_tensor(
        results["batch"], f"generate_batch({BATCH_SIZE})", (BATCH_SIZE, n_inst, n_features), "batch inst feats"
    )
    expect_tensor(results["small"], "generate_batch(7)", (7, n_inst, n_features), "batch inst feats")
    if not t.isfinite(batch).all():
        raise CheckFailed("generate_batch returned NaN or inf values.")
    # Exact -1 has probability ~2⁻²⁴ per entry for a correct sampler; many -1s and no zeros mean absent = -1.
    if (batch == -1).float().mean() > 0.01 and (batch == 0).float().mean() < 0.01:
        raise CheckFailed(f"{HINT_ABSENT}: {(batch == -1).float().mean():.1%} of your entries are exactly -1.")
    if batch.min() < -1 or batch.max() > 1:
        raise CheckFailed(
            f"{HINT_MAGNITUDE}: values must lie in [-1, 1]; yours range from {batch.min():.3g} to {batch.max():.3g}."
        )
    if t.equal(results["small"], results["small_again"]):
        raise CheckFailed(HINT_FRESH_CALLS + ".")
    present = batch != 0
    if not (batch[present] < 0).any():
        raise CheckFailed(HINT_SIGNED + ".")

    half = BATCH_SIZE // 2
    n_cells = n_inst * n_features
    n_pairs = n_inst * (n_features - 1) + (n_inst - 1) * n_features
    alpha = FALSE_FAILURE_RATE / (3 * n_cells + n_pairs + 4 * n_inst + 1)

    def outside(counts: Tensor, n: int, probs: Tensor) -> list[tuple[int, ...]]:
        """Indices whose count is outside its Chernoff range (rounded probabilities make the ranges cacheable)."""
        bad = []
        for index in itertools.product(*map(range, probs.shape)):
            lo, hi = binomial_range(n, round(float(probs[index]), 12), alpha)
            if not lo <= float(counts[index]) / n <= hi:
                bad.append(index)
        return bad

    counts = present.sum(0)
    if bad := outside(counts, BATCH_SIZE, p):
        i, f = bad[0]
        raise CheckFailed(
            f"{HINT_FREQUENCY}: instance {i}, feature {f} has probability {float(p[i, f]):.2f} but was present "
            f"in {float(counts[i, f]) / BATCH_SIZE:.3f} of {BATCH_SIZE} samples."
        )
    # Reusing the presence draw u < p as the magnitude 2u - 1 leaves (2p - 1, 1] empty in every cell. A correct
    # sampler puts a fraction 1 - p of the present values there: with ≥ 500 present values per cell and 1 - p ≥ 0.2,
    # an empty interval in all of them has probability below 0.8^500.
    above = ((batch > 2 * p - 1) & present).sum(0)
    if bool((above[p <= 0.8] == 0).all()):
        raise CheckFailed(HINT_REUSED + ".")

    halves = (present[:half] & present[half : 2 * half]).sum(0)
    neighbours = (present[0::2][:half] & present[1::2][:half]).sum(0)
    for name, together in [("the two halves of the batch", halves), ("neighbouring rows", neighbours)]:
        if bad := outside(together, half, p * p):
            raise CheckFailed(
                f"{HINT_BATCH_INDEPENDENCE} (instance {bad[0][0]}, feature {bad[0][1]}, comparing {name})."
            )
    for hint, together, expected in [
        (HINT_FEATURE_INDEPENDENCE, (present[:, :, :-1] & present[:, :, 1:]).sum(0), p[:, :-1] * p[:, 1:]),
        (HINT_INSTANCE_INDEPENDENCE, (present[:, :-1] & present[:, 1:]).sum(0), p[:-1] * p[1:]),
    ]:
        if bad := outside(together, BATCH_SIZE, expected):
            index = bad[0]
            raise CheckFailed(
                f"{hint}. Two entries (pair {index}) were present together in {float(together[index]) / BATCH_SIZE:.4f} "
                f"of samples; independent draws would give {float(expected[index]):.4f}."
            )

    for i in range(n_inst):
        values = batch[:, i][present[:, i]]
        n = values.numel()
        mean, second_moment = values.mean(), (values**2).mean()
        positive = float((values > 0).float().mean())
        lo, hi = binomial_range(n, 0.5, alpha)
        if (
            abs(mean) > hoeffding_radius(n, 2.0, alpha)
            or abs(second_moment - 1 / 3) > hoeffding_radius(n, 1.0, alpha)
            or not lo <= positive <= hi
        ):
            raise CheckFailed(
                f"{HINT_MAGNITUDE}. In instance {i} yours have mean {mean:.3f}, mean square {second_moment:.4f} "
                f"(expected 1/3) and {positive:.1%} positive."
            )
        # Kolmogorov–Smirnov distance to U[-1, 1] on a 10,000-point grid: never more than the exact statistic, so
        # the DKW bound still caps the false-failure rate.
        cdf = t.histc(values, bins=10_000, min=-1, max=1).cumsum(0) / n
        ks_distance = (cdf - t.linspace(1e-4, 1, 10_000)).abs().max()
        if ks_distance > dkw_radius(n, alpha):
            raise CheckFailed(
                f"{HINT_MAGNITUDE}. In instance {i} they are not uniform (KS distance {ks_distance:.3f})."
            )

    # Magnitudes of two features present together must be uncorrelated: E[m₁ m₂] = 0, each product in [−1, 1].
    both = present[:, :, :-1] & present[:, :, 1:]
    products = (batch[:, :, :-1] * batch[:, :, 1:])[both]
    if products.numel() and abs(products.mean()) > hoeffding_radius(products.numel(), 2.0, alpha):
        raise CheckFailed(f"{HINT_MAGNITUDE_INDEPENDENCE}: magnitudes of features present together are correlated.")


# ------------------------------------------------------------------------ NeuronComputationModel.calculate_loss

LOSS_CFG = dict(n_inst=3, n_features=4, d_hidden=2)


def loss_case(context: Context) -> dict[str, Tensor]:
    """Signed outputs (the loss must not assume out ≥ 0) and sparse signed features."""
    g = context.generator(30)
    shape = (9, LOSS_CFG["n_inst"], LOSS_CFG["n_features"])
    return {
        "importance": 0.2 + 1.5 * t.rand(shape[1:], generator=g),
        "out": t.randn(shape, generator=g) * 0.8,
        "batch": sparse(g, shape, -1.0),
    }


def probe_calculate_loss(NeuronComputationModel: type, context: Context) -> dict:
    case = loss_case(context)
    model = build(NeuronComputationModel, LOSS_CFG, context.device, importance=case["importance"].to(context.device))
    out = case["out"].to(context.device).requires_grad_(True)
    batch = case["batch"].to(context.device)
    loss = model.calculate_loss(out, batch)
    results = {"loss": loss, "out_after": out.detach(), "batch_after": batch}
    if isinstance(loss, Tensor) and loss.requires_grad and loss.numel() == 1:
        loss.backward()
        results["grad_out"] = out.grad
    results["per_instance"] = attempt(lambda: model.calculate_loss(out.detach(), batch, per_instance=True))
    return results


def loss_against_x(self, out, batch, per_instance=False):
    loss = einops.reduce(self.importance * (batch - out) ** 2, "batch inst feats -> inst", "mean")
    return loss if per_instance else loss.sum()


def loss_abs_of_output_too(self, out, batch, per_instance=False):
    loss = einops.reduce(self.importance * (batch.abs() - out.abs()) ** 2, "batch inst feats -> inst", "mean")
    return loss if per_instance else loss.sum()


def loss_against_relu_of_x(self, out, batch, per_instance=False):
    loss = einops.reduce(self.importance * (F.relu(batch) - out) ** 2, "batch inst feats -> inst", "mean")
    return loss if per_instance else loss.sum()


def loss_mean_over_instances(self, out, batch, per_instance=False):
    loss = einops.reduce(self.importance * (batch.abs() - out) ** 2, "batch inst feats -> inst", "mean")
    return loss if per_instance else loss.mean()


def loss_summed_over_batch(self, out, batch, per_instance=False):
    loss = (self.importance * (batch.abs() - out) ** 2).sum(0).mean(-1)
    return loss if per_instance else loss.sum()


def loss_summed_over_features(self, out, batch, per_instance=False):
    loss = (self.importance * (batch.abs() - out) ** 2).mean(0).sum(-1)
    return loss if per_instance else loss.sum()


def loss_without_importance(self, out, batch, per_instance=False):
    loss = einops.reduce((batch.abs() - out) ** 2, "batch inst feats -> inst", "mean")
    return loss if per_instance else loss.sum()


def loss_importance_inside_square(self, out, batch, per_instance=False):
    loss = einops.reduce((self.importance * (batch.abs() - out)) ** 2, "batch inst feats -> inst", "mean")
    return loss if per_instance else loss.sum()


def loss_absolute_error(self, out, batch, per_instance=False):
    loss = einops.reduce(self.importance * (batch.abs() - out).abs(), "batch inst feats -> inst", "mean")
    return loss if per_instance else loss.sum()


def loss_ignores_per_instance(self, out, batch, per_instance=False):
    return einops.reduce(self.importance * (batch.abs() - out) ** 2, "batch inst feats -> inst", "mean").sum()


def loss_returns_float(self, out, batch, per_instance=False):
    loss = einops.reduce(self.importance * (batch.abs() - out) ** 2, "batch inst feats -> inst", "mean")
    return loss if per_instance else loss.sum().item()


LOSS_MISTAKES = [
    Mistake(
        loss_against_x,
        "The target is abs(x), not x: this model is trained to compute the absolute value of its input, "
        "so compare `out` with `batch.abs()`.",
    ),
    Mistake(
        loss_abs_of_output_too,
        "Take abs of the target only, not of the output: the error is abs(x) − out, so a negative output is "
        "penalised rather than forgiven.",
    ),
    Mistake(loss_against_relu_of_x, "The target is abs(x), not ReLU(x): negative inputs have targets −x > 0."),
    Mistake(
        loss_mean_over_instances,
        "Sum the per-instance losses, don't average them: each instance is its own model, and averaging would "
        "divide every instance's gradient by n_inst.",
    ),
    Mistake(
        loss_summed_over_batch,
        "Average over the batch axis, don't sum it (mean over batch and features, then sum over instances).",
    ),
    Mistake(
        loss_summed_over_features,
        "Average over the feature axis, don't sum it (mean over batch and features, then sum over instances).",
    ),
    Mistake(loss_without_importance, "Weight each feature's squared error by `self.importance`."),
    Mistake(
        loss_importance_inside_square, "Multiply the squared error by importance: I·(|x| − y)², not (I·(|x| − y))²."
    ),
    Mistake(loss_absolute_error, "Use the squared error (|x| − y)², not the absolute error."),
    Mistake(loss_ignores_per_instance, HINT_PER_INSTANCE),
    Mistake(loss_returns_float, HINT_SCALAR),
]


def verdict_calculate_loss(results: dict, context: Context) -> None:
    case = loss_case(context)
    model = reference("NeuronComputationModel", LOSS_CFG, importance=case["importance"])
    judge_loss(results, model, case["out"], case["batch"], LOSS_MISTAKES)


# -------------------------------------------- correct implementations written differently: all must pass


def neuron_forward_with_matmul(self, features):
    # [..., inst, 1, feats] @ [inst, feats, d_hidden]: the instance axis broadcasts as a batch of matrices
    hidden = (features.unsqueeze(-2) @ self.W.transpose(-1, -2)).squeeze(-2).clamp(min=0)
    return ((hidden.unsqueeze(-2) @ self.W).squeeze(-2) + self.b_final).clamp(min=0)


def neuron_forward_with_maximum(self, features):
    hidden = t.maximum(t.einsum("...if,ihf->...ih", features, self.W), t.zeros(()))
    return t.maximum(t.einsum("...ih,ihf->...if", hidden, self.W) + self.b_final, t.zeros(()))


def computation_forward_with_matmul(self, features):
    hidden = (features.unsqueeze(-2) @ self.W1.transpose(-1, -2)).squeeze(-2).relu()
    return ((hidden.unsqueeze(-2) @ self.W2.transpose(-1, -2)).squeeze(-2) + self.b_final).relu()


def computation_forward_with_torch_einsum(self, features):
    hidden = F.relu(t.einsum("...if,ihf->...ih", features, self.W1))
    return F.relu(t.einsum("...ih,ifh->...if", hidden, self.W2) + self.b_final)


def generate_batch_two_draws(self, batch_size):
    shape = shape_of(self, batch_size)
    device = self.feature_probability.device
    magnitudes = 2 * t.rand(shape, device=device) - 1
    return t.where(t.rand(shape, device=device) < self.feature_probability, magnitudes, 0.0)


def generate_batch_sign_times_uniform(self, batch_size):
    shape = shape_of(self, batch_size)
    sign = t.randint(0, 2, shape).float() * 2 - 1
    present = t.bernoulli(self.feature_probability.expand(shape))
    return present * sign * t.rand(shape)


def generate_batch_float64(self, batch_size):
    shape = shape_of(self, batch_size)
    mask = t.rand(shape, dtype=t.float64) <= self.feature_probability.double()
    return (t.empty(shape, dtype=t.float64).uniform_(-1, 1) * mask).float()


def loss_with_mean_and_sum(self, out, batch, per_instance=False):
    loss = (self.importance * (out - batch.abs()).pow(2)).mean(dim=(0, 2))
    return loss if per_instance else loss.sum()


def loss_with_mse_weights(self, out, batch, per_instance=False):
    weighted = F.mse_loss(out * self.importance.sqrt(), t.abs(batch) * self.importance.sqrt(), reduction="none")
    loss = weighted.sum(dim=(0, 2)) / (batch.shape[0] * batch.shape[2])
    return loss if per_instance else loss.sum()


EXERCISES = [
    Exercise(
        id="tms.neuron_model",
        name="NeuronModel",
        method="forward",
        title="implement `NeuronModel.forward`",
        difficulty=2,
        importance=3,
        minutes="10",
        reference_path=f"{MODULE}:NeuronModel",
        probe=probe_neuron_model,
        verdict=verdict_neuron_model,
        mistakes=NEURON_MISTAKES,
        alternatives=[neuron_forward_with_matmul, neuron_forward_with_maximum],
    ),
    Exercise(
        id="tms.neuron_computation.forward",
        name="NeuronComputationModel",
        method="forward",
        title="implement `NeuronComputationModel.forward`",
        difficulty=2,
        importance=3,
        minutes="10",
        reference_path=f"{MODULE}:NeuronComputationModel",
        probe=probe_computation_forward,
        verdict=verdict_computation_forward,
        mistakes=COMPUTATION_FORWARD_MISTAKES,
        alternatives=[computation_forward_with_matmul, computation_forward_with_torch_einsum],
    ),
    Exercise(
        id="tms.neuron_computation.generate_batch",
        name="NeuronComputationModel",
        method="generate_batch",
        title="implement `NeuronComputationModel.generate_batch`",
        difficulty=2,
        importance=2,
        minutes="10",
        reference_path=f"{MODULE}:NeuronComputationModel",
        probe=probe_generate_batch,
        verdict=verdict_generate_batch,
        mistakes=GENERATE_BATCH_MISTAKES,
        alternatives=[generate_batch_two_draws, generate_batch_sign_times_uniform, generate_batch_float64],
    ),
    Exercise(
        id="tms.neuron_computation.calculate_loss",
        name="NeuronComputationModel",
        method="calculate_loss",
        title="implement `NeuronComputationModel.calculate_loss`",
        difficulty=1,
        importance=3,
        minutes="5",
        reference_path=f"{MODULE}:NeuronComputationModel",
        probe=probe_calculate_loss,
        verdict=verdict_calculate_loss,
        mistakes=LOSS_MISTAKES,
        alternatives=[loss_with_mean_and_sum, loss_with_mse_weights],
    ),
]
