"""Checks for chapter 1, section 1 (superposition in a non-privileged basis), with their catalogues of mistakes.

Each mistake is a small wrong implementation written the way a learner would write it, next to the hint the
checker gives when it recognises it. The test suite runs every one of them through its check.
"""

import einops
import torch as t
import torch.nn.functional as F
from torch import Tensor

from tests.harness import CheckFailed, Context, Exercise, Mistake, attempt, raised, reference_of
from tests.stats import Budget
from tests.tms.common import (
    HINT_EVERY_INSTANCE,
    HINT_FRESH_CALLS,
    HINT_MAGNITUDE_INDEPENDENCE,
    HINT_SQUEEZE,
    ForwardCheck,
    ForwardFamily,
    expect_batches,
    expect_close_to_reference,
    expect_shaped,
    forward_mistakes,
    independent_pairings,
    judge_forward_check,
    judge_frequency,
    judge_independence,
    judge_loss,
    judge_magnitudes_independent,
    judge_size_one,
    judge_uniform,
    loss_mistakes,
    naming_shared_magnitudes,
    planted_instance,
    probe_batches,
    probe_forward_check,
    probe_loss,
    sampler_mistakes,
    shape_cases,
    size_one_weights,
    toy_model_config,
)

MODULE = "solutions.tms.superposition"


def reference_model(cfg_kwargs: dict, **kwargs) -> t.nn.Module:
    return reference_of("tms.forward")(toy_model_config(**cfg_kwargs), **kwargs)


# ------------------------------------------------------------------------------------------- forward

FORWARD_CFG = dict(n_inst=3, n_features=5, d_hidden=2)
TOY_MODEL = ForwardFamily("forward", weights=("W", "W"), hidden_relu=False, readout="Wᵀ W x")
# Weights of both signs, non-zero biases, sparse features, then every other shape the contract allows.
FORWARD = ForwardCheck(TOY_MODEL, FORWARD_CFG, salt=0, batch=6, cases=shape_cases(FORWARD_CFG))


def probe_forward(ToyModel: type, context: Context) -> dict:
    return probe_forward_check(ToyModel, FORWARD, context)


def forward_relu_on_hidden(self, features):
    hidden = F.relu(einops.einsum(features, self.W, "... inst feats, inst d_hidden feats -> ... inst d_hidden"))
    return F.relu(
        einops.einsum(hidden, self.W, "... inst d_hidden, inst d_hidden feats -> ... inst feats") + self.b_final
    )


FORWARD_MISTAKES = [
    *forward_mistakes(TOY_MODEL),
    Mistake(
        forward_relu_on_hidden,
        "You apply a ReLU to the hidden layer W x. This model has no hidden ReLU (that is section 4's NeuronModel).",
    ),
]


def verdict_forward(results: dict, context: Context) -> None:
    judge_forward_check(results, FORWARD, reference_model, FORWARD_MISTAKES, context)


# ------------------------------------------------------------------------------------ generate_batch

BATCH_CFG = dict(n_inst=4, n_features=6, d_hidden=2)


def probe_generate_batch(ToyModel: type, context: Context) -> dict:
    return probe_batches(ToyModel, BATCH_CFG, context)


def generate_batch_reused_uniform(self, batch_size):
    u = t.rand((batch_size, *self.feature_probability.shape), device=self.feature_probability.device)
    return t.where(u <= self.feature_probability, u, 0.0)


def generate_batch_gaussian_magnitudes(self, batch_size):
    shape = (batch_size, *self.feature_probability.shape)
    return t.where(t.rand(shape) <= self.feature_probability, t.randn(shape).abs(), 0.0)


def generate_batch_constant_magnitude(self, batch_size):
    shape = (batch_size, *self.feature_probability.shape)
    return (t.rand(shape) <= self.feature_probability).float()


HINT_MAGNITUDE = "Present features need magnitudes uniform on [0, 1] (mean 1/2, variance 1/12), drawn independently of whether they are present"

GENERATE_BATCH_MISTAKES = [
    Mistake(generate_batch_reused_uniform, HINT_MAGNITUDE),
    Mistake(generate_batch_gaussian_magnitudes, HINT_MAGNITUDE),
    Mistake(generate_batch_constant_magnitude, HINT_MAGNITUDE),
    *sampler_mistakes(magnitudes=t.rand),
]


def verdict_generate_batch(results: dict, context: Context) -> None:
    """Distribution tests, each at level FALSE_FAILURE_RATE / (number of tests)."""
    p, batch, small = expect_batches(results, BATCH_CFG["n_inst"])
    n_inst, n_features = p.shape
    if not t.isfinite(batch).all() or batch.min() < 0 or batch.max() > 1:
        raise CheckFailed(
            f"{HINT_MAGNITUDE}: values must lie in [0, 1]; yours range from {batch.min():.3g} to {batch.max():.3g}."
        )
    if t.equal(small, results["small_again"]):
        raise CheckFailed(HINT_FRESH_CALLS + ".")

    present = batch > 0
    n_cells = n_inst * n_features
    n_pairs = n_inst * (n_features - 1) + (n_inst - 1) * n_features
    pairings = independent_pairings(batch, -1, HINT_MAGNITUDE_INDEPENDENCE)
    budget = Budget(3 * n_cells + n_pairs + 3 * n_inst + len(pairings))
    judge_frequency(present, p, budget)
    judge_independence(present, p, budget)
    with naming_shared_magnitudes(pairings):
        for i in range(n_inst):
            values = batch[:, i][present[:, i]]
            n = values.numel()
            mean, var = values.mean(), ((values - 0.5) ** 2).mean()
            off_mean = abs(mean - 0.5) > budget.hoeffding_radius(n, 1.0)
            if off_mean or abs(var - 1 / 12) > budget.hoeffding_radius(n, 0.25):
                raise CheckFailed(
                    f"{HINT_MAGNITUDE}. In instance {i} yours have mean {mean:.3f} and variance {var:.4f}."
                )
            judge_uniform(values, 0.0, 1.0, budget, HINT_MAGNITUDE, i)
    judge_magnitudes_independent(pairings, centre=0.5, width=0.5, budget=budget)  # (m₁ − ½)(m₂ − ½) ∈ [−¼, ¼]


# ------------------------------------------------------------------------------------ calculate_loss

LOSS_CFG = dict(n_inst=3, n_features=4, d_hidden=2)


def loss_case(context: Context) -> dict[str, Tensor]:
    g = context.generator(1)
    shape = (9, LOSS_CFG["n_inst"], LOSS_CFG["n_features"])
    return {
        "importance": 0.2 + 1.5 * t.rand(shape[1:], generator=g),
        "out": t.rand(shape, generator=g) * 1.2,
        "batch": t.rand(shape, generator=g) * (t.rand(shape, generator=g) < 0.5),
    }


def probe_calculate_loss(ToyModel: type, context: Context) -> dict:
    return probe_loss(ToyModel, LOSS_CFG, loss_case(context), context)


def loss_root_mean_square(self, out, batch):
    return einops.reduce(self.importance * (batch - out) ** 2, "batch inst feats -> inst", "mean").sqrt().sum()


LOSS_MISTAKES = [
    *loss_mistakes(target=lambda batch: batch, error="x − x'"),
    Mistake(loss_root_mean_square, "Don't take a square root: the loss is the mean squared error itself."),
]


def verdict_calculate_loss(results: dict, context: Context) -> None:
    case = loss_case(context)
    model = reference_model(LOSS_CFG, importance=case["importance"])
    judge_loss(results, model, case["out"], case["batch"], LOSS_MISTAKES)


# ------------------------------------------------------------------------------- superposition_stats

STATS_SHAPE = (4, 3, 7)  # inst, d_hidden, feats: all different, so a wrong axis shows up in the shape
# The last instance has a known geometry: a weak feature alone in its direction (interference 0, norm < 1), an
# antipodal pair of very unequal norms (interference 9 on the weak one, norm 3 on the strong one), a same-sign pair,
# and two dead features.
STATS_PLANTED = {0: (0, 0.2), 2: (1, 3.0), 5: (1, -0.5), 4: (2, 1.3), 6: (2, 0.9)}


def stats_case(context: Context) -> Tensor:
    """Random weights with varied norms, one feature of instance 1 dead (a zero column), and the planted instance."""
    g = context.generator(2)
    n_inst, d_hidden, n_features = STATS_SHAPE
    W = t.randn(STATS_SHAPE, generator=g) * (0.3 + 2 * t.rand(n_inst, 1, n_features, generator=g))
    W[1, :, 3] = 0.0
    W[-1] = planted_instance(g, d_hidden, n_features, STATS_PLANTED)
    return W


def stats_size_one_cases(context: Context) -> dict[str, Tensor]:
    return size_one_weights(context.generator(3), STATS_SHAPE[1], STATS_SHAPE[2])


def probe_superposition_stats(superposition_stats, context: Context) -> dict:
    W = stats_case(context).to(context.device)
    returned = superposition_stats(W)
    if not isinstance(returned, tuple | list) or len(returned) != 2:
        raise CheckFailed(
            f"superposition_stats should return a tuple (norms, interference), got {type(returned).__name__}."
        )
    size_one = {
        name: attempt(lambda W=W: superposition_stats(W.to(context.device)))
        for name, W in stats_size_one_cases(context).items()
    }
    return {"norms": returned[0], "interference": returned[1], "W_after": W, "size_one": size_one}


def stats_norm_squared(W):
    norms = W.norm(dim=1)
    W_normed = W / norms.clamp_min(1e-8).unsqueeze(1)
    overlaps = einops.einsum(W_normed, W, "inst h i, inst h j -> inst i j")
    return norms**2, (overlaps**2).sum(-1) - overlaps.diagonal(dim1=1, dim2=2) ** 2


def stats_including_self(W):
    norms = W.norm(dim=1)
    W_normed = W / norms.clamp_min(1e-8).unsqueeze(1)
    overlaps = einops.einsum(W_normed, W, "inst h i, inst h j -> inst i j")
    return norms, (overlaps**2).sum(-1)


def stats_without_normalising(W):
    overlaps = einops.einsum(W, W, "inst h i, inst h j -> inst i j")
    return W.norm(dim=1), (overlaps**2).sum(-1) - overlaps.diagonal(dim1=1, dim2=2) ** 2


def stats_cosine_squared(W):
    norms = W.norm(dim=1)
    W_normed = W / norms.clamp_min(1e-8).unsqueeze(1)
    overlaps = einops.einsum(W_normed, W_normed, "inst h i, inst h j -> inst i j")
    return norms, (overlaps**2).sum(-1) - overlaps.diagonal(dim1=1, dim2=2) ** 2


def stats_absolute_overlaps(W):
    norms = W.norm(dim=1)
    W_normed = W / norms.clamp_min(1e-8).unsqueeze(1)
    overlaps = einops.einsum(W_normed, W, "inst h i, inst h j -> inst i j")
    return norms, overlaps.abs().sum(-1) - overlaps.diagonal(dim1=1, dim2=2).abs()


def stats_normalises_the_other_feature(W):
    norms = W.norm(dim=1)
    W_normed = W / norms.clamp_min(1e-8).unsqueeze(1)
    overlaps = einops.einsum(W, W_normed, "inst h i, inst h j -> inst i j")
    return norms, (overlaps**2).sum(-1) - overlaps.diagonal(dim1=1, dim2=2) ** 2


def stats_norm_over_features(W):
    norms = W.norm(dim=2)
    W_normed = W / W.norm(dim=1, keepdim=True).clamp_min(1e-8)
    overlaps = einops.einsum(W_normed, W, "inst h i, inst h j -> inst i j")
    return norms, (overlaps**2).sum(-1) - overlaps.diagonal(dim1=1, dim2=2) ** 2


def stats_nan_for_dead_features(W):
    norms = W.norm(dim=1)
    W_normed = W / norms.unsqueeze(1)
    overlaps = einops.einsum(W_normed, W, "inst h i, inst h j -> inst i j")
    return norms, (overlaps**2).sum(-1) - overlaps.diagonal(dim1=1, dim2=2) ** 2


def stats_loop_over_wrong_axis(W):
    # the loop runs over W.shape[1] (d_hidden) where n_inst = W.shape[0] was meant: the last instances stay 0
    norms, interference = t.zeros(W.shape[0], W.shape[2]), t.zeros(W.shape[0], W.shape[2])
    for i in range(W.shape[1]):
        norms[i] = W[i].norm(dim=0)
        overlaps = (W[i] / norms[i].clamp_min(1e-8)).T @ W[i]
        interference[i] = (overlaps**2).sum(-1) - overlaps.diagonal() ** 2
    return norms, interference


def stats_squeezed(W):
    norms = W.norm(dim=1)
    W_normed = W / norms.clamp_min(1e-8).unsqueeze(1)
    overlaps = einops.einsum(W_normed, W, "inst h i, inst h j -> inst i j")
    interference = (overlaps**2).sum(-1) - overlaps.diagonal(dim1=1, dim2=2) ** 2
    return norms.squeeze(), interference.squeeze()


HINT_DEAD = "A feature whose column of W is all zeros must get norm 0 and interference 0, not NaN: clamp the norm (e.g. `.clamp_min(1e-8)`) before dividing by it"
HINT_NORM_AXIS = "Take the norm of each feature's column W[inst, :, i], over the d_hidden axis (dim=1), so you get one value per feature"

STATS_MISTAKES = [
    Mistake(stats_norm_squared, "`norms` should be ‖W_i‖, not ‖W_i‖²."),
    Mistake(
        stats_including_self, "Leave out j = i: interference is the sum over the *other* features, Σ_{j≠i} (Ŵ_i·W_j)²."
    ),
    Mistake(stats_without_normalising, "Normalise feature i's direction first: (Ŵ_i·W_j)² with Ŵ_i = W_i / ‖W_i‖."),
    Mistake(
        stats_cosine_squared,
        "Normalise only W_i, not W_j: the paper's quantity is (Ŵ_i·W_j)², which grows with the other feature's norm.",
    ),
    Mistake(stats_absolute_overlaps, "Square the overlaps (Ŵ_i·W_j)² instead of taking their absolute value."),
    Mistake(
        stats_normalises_the_other_feature,
        "You normalised W_j instead of W_i: interference on feature i is Σ_{j≠i} (Ŵ_i·W_j)².",
    ),
    Mistake(stats_norm_over_features, HINT_NORM_AXIS),
    Mistake(stats_nan_for_dead_features, HINT_DEAD),
    Mistake(stats_squeezed, HINT_SQUEEZE),
    Mistake(stats_loop_over_wrong_axis, HINT_EVERY_INSTANCE),
]


def verdict_superposition_stats(results: dict, context: Context) -> None:
    superposition_stats = reference_of("tms.superposition_stats")
    W = stats_case(context)
    n_inst, d_hidden, n_features = W.shape
    if not t.equal(results["W_after"], W):
        raise CheckFailed("superposition_stats changed W in place; compute new tensors instead.")
    norms = results["norms"]
    if isinstance(norms, Tensor) and tuple(norms.shape) == (n_inst, d_hidden):
        raise CheckFailed(HINT_NORM_AXIS + ".")
    norms = expect_shaped(norms, "norms", (n_inst, n_features), "inst feats")
    interference = expect_shaped(results["interference"], "interference", (n_inst, n_features), "inst feats")
    if not (t.isfinite(norms).all() and t.isfinite(interference).all()):
        raise CheckFailed(HINT_DEAD + ".")
    expected_norms, expected_interference = superposition_stats(W)
    run_norms, run_interference = (lambda impl: impl(W)[0]), (lambda impl: impl(W)[1])
    expect_close_to_reference(norms, expected_norms, "norms", STATS_MISTAKES, run_norms, inst_axis=0)
    expect_close_to_reference(
        interference, expected_interference, "interference", STATS_MISTAKES, run_interference, inst_axis=0
    )
    for name, W in stats_size_one_cases(context).items():
        what = f"superposition_stats on W of shape {list(W.shape)} ({name})"
        got = results["size_one"][name]
        if raised(got) is None and (not isinstance(got, list) or len(got) != 2):
            raise CheckFailed(f"{what} should return a tuple (norms, interference), got {type(got).__name__}.")
        expected = superposition_stats(W)
        for k, quantity in enumerate(("norms", "interference")):
            judge_size_one(got if raised(got) else got[k], expected[k], f"{quantity} from {what}", "inst feats")


# -------------------------------------------- correct implementations written differently: all must pass


def forward_with_matmul(self, features):
    # [..., inst, feats] @ [inst, feats, d_hidden] broadcasts the instance axis as a batch of matrices
    hidden = (features.unsqueeze(-2) @ self.W.transpose(-1, -2)).squeeze(-2)
    return F.relu((hidden.unsqueeze(-2) @ self.W).squeeze(-2) + self.b_final)


def forward_with_gram_matrix(self, features):
    gram = einops.einsum(self.W, self.W, "inst d_hidden f_in, inst d_hidden f_out -> inst f_in f_out")
    return t.clamp(
        einops.einsum(features, gram, "... inst f_in, inst f_in f_out -> ... inst f_out") + self.b_final, min=0
    )


def generate_batch_two_draws(self, batch_size):
    # the paper's notebook: one uniform for the mask, another for the magnitude
    shape = (batch_size, *self.feature_probability.shape)
    feat = t.rand(shape, device=self.W.device)
    return t.where(t.rand(shape, device=self.W.device) <= self.feature_probability, feat, 0.0)


def generate_batch_one_draw(self, batch_size):
    # section 1.1's "going further" block: one uniform v per entry, present when v < p, magnitude 1 - v/p
    p = self.feature_probability
    v = 1 - t.rand((p.shape[0], batch_size, p.shape[1]), device=p.device).transpose(0, 1)  # [batch inst feats]
    return F.relu(1 - v / p)


def generate_batch_bernoulli(self, batch_size):
    p = self.feature_probability.expand(batch_size, *self.feature_probability.shape)
    return t.bernoulli(p) * t.rand_like(p)


def generate_batch_magnitudes_first_float64(self, batch_size):
    shape = (batch_size, *self.feature_probability.shape)
    magnitudes = t.rand(shape, dtype=t.float64)
    mask = t.rand(shape, dtype=t.float64) < self.feature_probability.double()
    return (magnitudes * mask).float()


def loss_with_mean_and_sum(self, out, batch):
    return (self.importance * (out - batch).pow(2)).mean(dim=(0, 2)).sum()


def loss_with_mse_weights(self, out, batch):
    weighted = F.mse_loss(out * self.importance.sqrt(), batch * self.importance.sqrt(), reduction="none")
    return (weighted.sum(dim=(0, 2)) / (batch.shape[0] * batch.shape[2])).sum()


def stats_with_loops(W):
    n_inst, _, n_features = W.shape
    norms = t.zeros(n_inst, n_features)
    interference = t.zeros(n_inst, n_features)
    for i in range(n_inst):
        for f in range(n_features):
            norms[i, f] = W[i, :, f].norm()
            direction = W[i, :, f] / (norms[i, f] + 1e-10)
            overlaps = direction @ W[i]
            interference[i, f] = (overlaps**2).sum() - overlaps[f] ** 2
    return norms, interference


def stats_with_gram(W, eps=1e-6):
    gram = W.transpose(1, 2) @ W
    norms = gram.diagonal(dim1=1, dim2=2).sqrt()
    overlaps = gram / norms.clamp(min=eps).unsqueeze(-1)
    mask = 1 - t.eye(W.shape[-1])
    return norms, (overlaps**2 * mask).sum(-1)


EXERCISES = [
    Exercise(
        id="tms.forward",
        name="ToyModel",
        method="forward",
        reference_path=f"{MODULE}:ToyModel",
        probe=probe_forward,
        verdict=verdict_forward,
        mistakes=FORWARD_MISTAKES,
        alternatives=[forward_with_matmul, forward_with_gram_matrix],
    ),
    Exercise(
        id="tms.generate_batch",
        name="ToyModel",
        method="generate_batch",
        reference_path=f"{MODULE}:ToyModel",
        probe=probe_generate_batch,
        verdict=verdict_generate_batch,
        mistakes=GENERATE_BATCH_MISTAKES,
        alternatives=[
            generate_batch_two_draws,
            generate_batch_one_draw,
            generate_batch_bernoulli,
            generate_batch_magnitudes_first_float64,
        ],
    ),
    Exercise(
        id="tms.calculate_loss",
        name="ToyModel",
        method="calculate_loss",
        reference_path=f"{MODULE}:ToyModel",
        probe=probe_calculate_loss,
        verdict=verdict_calculate_loss,
        mistakes=LOSS_MISTAKES,
        alternatives=[loss_with_mean_and_sum, loss_with_mse_weights],
    ),
    Exercise(
        id="tms.superposition_stats",
        name="superposition_stats",
        signature=("W",),
        reference_path=f"{MODULE}:superposition_stats",
        probe=probe_superposition_stats,
        verdict=verdict_superposition_stats,
        mistakes=STATS_MISTAKES,
        alternatives=[stats_with_loops, stats_with_gram],
    ),
]
