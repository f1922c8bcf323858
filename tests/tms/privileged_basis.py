"""Checks for chapter 1, section 4 (superposition in a privileged basis), with their catalogues of mistakes.

Each mistake is a small wrong implementation written the way a learner would write it, next to the hint the
checker gives when it recognises it. The test suite runs every one of them through its check.
"""

import einops
import torch as t
import torch.nn.functional as F
from torch import Tensor

from tests.harness import CheckFailed, Context, Exercise, Mistake, reference_of
from tests.stats import Budget
from tests.tms.common import (
    HINT_FRESH_CALLS,
    HINT_MAGNITUDE_INDEPENDENCE,
    ForwardCheck,
    ForwardFamily,
    ShapeCase,
    expect_batches,
    forward_mistakes,
    independent_pairings,
    judge_forward_check,
    judge_frequency,
    judge_independence,
    judge_loss,
    judge_magnitudes_independent,
    judge_uniform,
    loss_mistakes,
    naming_shared_magnitudes,
    probe_batches,
    probe_forward_check,
    probe_loss,
    sampler_mistakes,
    shape_cases,
    shape_of,
    sparse,
    toy_model_config,
)

MODULE = "solutions.tms.privileged_basis"


def reference(exercise_id: str, cfg_kwargs: dict, **kwargs) -> t.nn.Module:
    return reference_of(exercise_id)(toy_model_config(**cfg_kwargs), **kwargs)


# -------------------------------------------------------------------------------------- NeuronModel.forward

NEURON_CFG = dict(n_inst=3, n_features=6, d_hidden=4)
NEURON_MODEL = ForwardFamily("neuron_forward", weights=("W", "W"), hidden_relu=True, readout="Wᵀ ReLU(W x)")
# Weights of both signs (so that the hidden ReLU cuts), non-zero biases, sparse features in [0, 1], then every
# other shape the contract allows.
NEURON = ForwardCheck(NEURON_MODEL, NEURON_CFG, salt=10, batch=8, cases=shape_cases(NEURON_CFG))


def probe_neuron_model(NeuronModel: type, context: Context) -> dict:
    return probe_forward_check(NeuronModel, NEURON, context)


def neuron_forward_without_hidden_relu(self, features):
    hidden = einops.einsum(features, self.W, "... inst feats, inst d_hidden feats -> ... inst d_hidden")
    out = einops.einsum(hidden, self.W, "... inst d_hidden, inst d_hidden feats -> ... inst feats")
    return F.relu(out + self.b_final)


def neuron_forward_relu_on_weights(self, features):
    W = F.relu(self.W)
    hidden = einops.einsum(features, W, "... inst feats, inst d_hidden feats -> ... inst d_hidden")
    out = einops.einsum(hidden, self.W, "... inst d_hidden, inst d_hidden feats -> ... inst feats")
    return F.relu(out + self.b_final)


NEURON_MISTAKES = [
    *forward_mistakes(NEURON_MODEL),
    Mistake(
        neuron_forward_without_hidden_relu,
        "This is section 1's ToyModel: NeuronModel also applies a ReLU to the hidden layer, h = ReLU(W x).",
    ),
    Mistake(
        neuron_forward_relu_on_weights,
        "The hidden ReLU acts on the hidden activations W x, not on the weights: h = ReLU(W x).",
    ),
]


def verdict_neuron_model(results: dict, context: Context) -> None:
    judge_forward_check(results, NEURON, lambda cfg: reference("tms.neuron_model", cfg), NEURON_MISTAKES, context)


# ---------------------------------------------------------------------------- NeuronComputationModel.forward

# d_hidden = n_features, so that a transposed W1 or W2 gives a wrong answer (with its hint) instead of a shape error;
# a second, non-square model catches anything that only works when the two sizes agree.
COMPUTATION_CFG = dict(n_inst=3, n_features=5, d_hidden=5)
COMPUTATION_CFG_WIDE = dict(n_inst=2, n_features=7, d_hidden=3)
COMPUTATION_MODEL = ForwardFamily(
    "computation_forward", weights=("W1", "W2"), hidden_relu=True, readout="W2 ReLU(W1 x)", feature_low=-1.0
)

HINT_WIDE = (
    "forward must work for any n_features, d_hidden and number of leading axes: "
    "W1 is [inst d_hidden feats], W2 is [inst feats d_hidden], and features are [... inst feats]"
)

# Random signed weights, non-zero biases and sparse signed features in [-1, 1], then every other shape the contract
# allows, and the non-square model.
COMPUTATION = ForwardCheck(
    COMPUTATION_MODEL,
    COMPUTATION_CFG,
    salt=20,
    batch=8,
    cases=(*shape_cases(COMPUTATION_CFG), ShapeCase((2, 3), HINT_WIDE, COMPUTATION_CFG_WIDE)),
)


def probe_computation_forward(NeuronComputationModel: type, context: Context) -> dict:
    return probe_forward_check(NeuronComputationModel, COMPUTATION, context)


def computation_forward_without_hidden_relu(self, features):
    hidden = einops.einsum(features, self.W1, "... inst feats, inst d_hidden feats -> ... inst d_hidden")
    out = einops.einsum(hidden, self.W2, "... inst d_hidden, inst feats d_hidden -> ... inst feats")
    return F.relu(out + self.b_final)


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


COMPUTATION_FORWARD_MISTAKES = [
    *forward_mistakes(COMPUTATION_MODEL),
    Mistake(
        computation_forward_without_hidden_relu,
        "Apply a ReLU to the hidden layer: h = ReLU(W1 x). Without it the model is linear before the output ReLU "
        "and cannot compute abs(x).",
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
]


def verdict_computation_forward(results: dict, context: Context) -> None:
    reference_model = lambda cfg: reference("tms.neuron_computation.forward", cfg)  # noqa: E731
    judge_forward_check(results, COMPUTATION, reference_model, COMPUTATION_FORWARD_MISTAKES, context)


# ------------------------------------------------------------------------ NeuronComputationModel.generate_batch

BATCH_CFG = dict(n_inst=4, n_features=6, d_hidden=3)


def probe_generate_batch(NeuronComputationModel: type, context: Context) -> dict:
    return probe_batches(NeuronComputationModel, BATCH_CFG, context)


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


HINT_SIGNED = "Magnitudes must be uniform on [-1, 1], so half of them negative (e.g. `2 * t.rand(...) - 1`); yours are never negative"
HINT_ABSENT = "Absent features must be exactly 0: apply the mask after mapping the magnitudes to [-1, 1], not before"
HINT_REUSED = "Draw the magnitudes independently of whether the feature is present: reusing the uniform that decided presence limits magnitudes to [-1, 2p - 1]"
HINT_MAGNITUDE = "Present features need magnitudes uniform on [-1, 1] (mean 0, variance 1/3), drawn independently of whether they are present"

GENERATE_BATCH_MISTAKES = [
    Mistake(generate_batch_unsigned, HINT_SIGNED),
    Mistake(generate_batch_absent_minus_one, HINT_ABSENT),
    Mistake(generate_batch_reused_uniform, HINT_REUSED),
    Mistake(generate_batch_half_range, HINT_MAGNITUDE),
    Mistake(generate_batch_gaussian_magnitudes, HINT_MAGNITUDE),
    Mistake(generate_batch_random_sign_only, HINT_MAGNITUDE),
    *sampler_mistakes(magnitudes=lambda shape: 2 * t.rand(shape) - 1),
]


def verdict_generate_batch(results: dict, context: Context) -> None:
    """Distribution tests, each at level FALSE_FAILURE_RATE / (number of tests)."""
    p, batch, small = expect_batches(results, BATCH_CFG["n_inst"])
    n_inst, n_features = p.shape
    if not t.isfinite(batch).all():
        raise CheckFailed("generate_batch returned NaN or inf values.")
    # Exact -1 has probability ~2⁻²⁴ per entry for a correct sampler; many -1s and no zeros mean absent = -1.
    if (batch == -1).float().mean() > 0.01 and (batch == 0).float().mean() < 0.01:
        raise CheckFailed(f"{HINT_ABSENT}: {(batch == -1).float().mean():.1%} of your entries are exactly -1.")
    if batch.min() < -1 or batch.max() > 1:
        raise CheckFailed(
            f"{HINT_MAGNITUDE}: values must lie in [-1, 1]; yours range from {batch.min():.3g} to {batch.max():.3g}."
        )
    if t.equal(small, results["small_again"]):
        raise CheckFailed(HINT_FRESH_CALLS + ".")
    present = batch != 0
    if not (batch[present] < 0).any():
        raise CheckFailed(HINT_SIGNED + ".")

    n_cells = n_inst * n_features
    n_pairs = n_inst * (n_features - 1) + (n_inst - 1) * n_features
    pairings = independent_pairings(batch, -1, HINT_MAGNITUDE_INDEPENDENCE)
    budget = Budget(3 * n_cells + n_pairs + 4 * n_inst + len(pairings))
    judge_frequency(present, p, budget)
    # Reusing the presence draw u < p as the magnitude 2u - 1 leaves (2p - 1, 1] empty in every cell. A correct
    # sampler puts a fraction 1 - p of the present values there: with ≥ 500 present values per cell and 1 - p ≥ 0.2,
    # an empty interval in all of them has probability below 0.8^500.
    above = ((batch > 2 * p - 1) & present).sum(0)
    if bool((above[p <= 0.8] == 0).all()):
        raise CheckFailed(HINT_REUSED + ".")

    judge_independence(present, p, budget)
    with naming_shared_magnitudes(pairings):
        for i in range(n_inst):
            values = batch[:, i][present[:, i]]
            n = values.numel()
            mean, second_moment = values.mean(), (values**2).mean()
            positive = float((values > 0).float().mean())
            lo, hi = budget.binomial_range(n, 0.5)
            if (
                abs(mean) > budget.hoeffding_radius(n, 2.0)
                or abs(second_moment - 1 / 3) > budget.hoeffding_radius(n, 1.0)
                or not lo <= positive <= hi
            ):
                raise CheckFailed(
                    f"{HINT_MAGNITUDE}. In instance {i} yours have mean {mean:.3f}, mean square {second_moment:.4f} "
                    f"(expected 1/3) and {positive:.1%} positive."
                )
            judge_uniform(values, -1.0, 1.0, budget, HINT_MAGNITUDE, i)
    judge_magnitudes_independent(pairings, centre=0.0, width=2.0, budget=budget)  # m₁ m₂ ∈ [−1, 1]


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
    return probe_loss(NeuronComputationModel, LOSS_CFG, loss_case(context), context)


def loss_against_x(self, out, batch):
    return einops.reduce(self.importance * (batch - out) ** 2, "batch inst feats -> inst", "mean").sum()


def loss_abs_of_output_too(self, out, batch):
    return einops.reduce(self.importance * (batch.abs() - out.abs()) ** 2, "batch inst feats -> inst", "mean").sum()


def loss_against_relu_of_x(self, out, batch):
    return einops.reduce(self.importance * (F.relu(batch) - out) ** 2, "batch inst feats -> inst", "mean").sum()


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
    *loss_mistakes(target=t.abs, error="|x| − y"),
]


def verdict_calculate_loss(results: dict, context: Context) -> None:
    case = loss_case(context)
    model = reference("tms.neuron_computation.calculate_loss", LOSS_CFG, importance=case["importance"])
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


def loss_with_mean_and_sum(self, out, batch):
    return (self.importance * (out - batch.abs()).pow(2)).mean(dim=(0, 2)).sum()


def loss_with_mse_weights(self, out, batch):
    weighted = F.mse_loss(out * self.importance.sqrt(), t.abs(batch) * self.importance.sqrt(), reduction="none")
    return (weighted.sum(dim=(0, 2)) / (batch.shape[0] * batch.shape[2])).sum()


EXERCISES = [
    Exercise(
        id="tms.neuron_model",
        name="NeuronModel",
        method="forward",
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
        reference_path=f"{MODULE}:NeuronComputationModel",
        probe=probe_calculate_loss,
        verdict=verdict_calculate_loss,
        mistakes=LOSS_MISTAKES,
        alternatives=[loss_with_mean_and_sum, loss_with_mse_weights],
    ),
]
