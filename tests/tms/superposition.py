"""Checks for chapter 1, section 1 (superposition in a non-privileged basis), with their catalogues of mistakes.

Each mistake is a small wrong implementation written the way a learner would write it, next to the hint the
checker gives when it recognises it. The test suite runs every one of them through its check.
"""

import itertools
from types import SimpleNamespace

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

MODULE = "solutions.tms.superposition"


def reference_model(cfg_kwargs: dict, **kwargs) -> t.nn.Module:
    from solutions.tms.superposition import ToyModel, ToyModelConfig

    return ToyModel(ToyModelConfig(**cfg_kwargs), **kwargs)


def toy_model_config(**fields) -> SimpleNamespace:
    """The fields of the notebook's ToyModelConfig, without importing `solutions` (probes never do)."""
    return SimpleNamespace(**{"n_correlated_pairs": 0, "n_anticorrelated_pairs": 0, **fields})


def build(cls: type, cfg_kwargs: dict, device: str, **kwargs) -> t.nn.Module:
    """Instantiate the learner's class the way the notebook does, with a plain message if that fails."""
    try:
        return cls(toy_model_config(**cfg_kwargs), device=device, **kwargs)
    except NotImplementedError:
        raise
    except Exception as error:
        raise CheckFailed(
            f"could not build {cls.__name__}(cfg, ...): {type(error).__name__}: {error}. "
            "Keep the __init__ the notebook gives you."
        ) from None


def set_parameter(model: t.nn.Module, name: str, value: Tensor) -> None:
    param = getattr(model, name, None)
    if not isinstance(param, Tensor):
        raise CheckFailed(f"{type(model).__name__} has no tensor attribute `{name}`.")
    if param.shape != value.shape:
        raise CheckFailed(f"`{name}` should have shape {tuple(value.shape)}, got {tuple(param.shape)}.")
    with t.no_grad():
        param.copy_(value.to(param.device))


# ------------------------------------------------------------------------------------------- forward

FORWARD_CFG = dict(n_inst=3, n_features=5, d_hidden=2)


def forward_case(context: Context) -> dict[str, Tensor]:
    """Weights with both signs, non-zero biases, sparse features, and a 4-D input for the `...` axes."""
    g = context.generator()
    n_inst, n_features, d_hidden = FORWARD_CFG["n_inst"], FORWARD_CFG["n_features"], FORWARD_CFG["d_hidden"]
    sparse = lambda *shape: t.rand(shape, generator=g) * (t.rand(shape, generator=g) < 0.6)  # noqa: E731
    return {
        "W": t.randn((n_inst, d_hidden, n_features), generator=g),
        "b_final": t.randn((n_inst, n_features), generator=g) * 0.5,
        "features": sparse(6, n_inst, n_features),
        "features_4d": sparse(2, 4, n_inst, n_features),
    }


def probe_forward(ToyModel: type, context: Context) -> dict:
    case = forward_case(context)
    model = build(ToyModel, FORWARD_CFG, context.device)
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
        (out * t.linspace(0.5, 1.5, out.numel(), device=out.device).view(out.shape)).sum().backward()
    results["grad_W"] = model.W.grad
    results["grad_b_final"] = model.b_final.grad
    return results


def forward_without_bias(self, features):
    hidden = einops.einsum(features, self.W, "... inst feats, inst d_hidden feats -> ... inst d_hidden")
    return F.relu(einops.einsum(hidden, self.W, "... inst d_hidden, inst d_hidden feats -> ... inst feats"))


def forward_without_relu(self, features):
    hidden = einops.einsum(features, self.W, "... inst feats, inst d_hidden feats -> ... inst d_hidden")
    return einops.einsum(hidden, self.W, "... inst d_hidden, inst d_hidden feats -> ... inst feats") + self.b_final


def forward_relu_before_bias(self, features):
    hidden = einops.einsum(features, self.W, "... inst feats, inst d_hidden feats -> ... inst d_hidden")
    return (
        F.relu(einops.einsum(hidden, self.W, "... inst d_hidden, inst d_hidden feats -> ... inst feats")) + self.b_final
    )


def forward_relu_on_hidden(self, features):
    hidden = F.relu(einops.einsum(features, self.W, "... inst feats, inst d_hidden feats -> ... inst d_hidden"))
    return F.relu(
        einops.einsum(hidden, self.W, "... inst d_hidden, inst d_hidden feats -> ... inst feats") + self.b_final
    )


def forward_first_instance_weights(self, features):
    W = self.W[0]
    hidden = einops.einsum(features, W, "... inst feats, d_hidden feats -> ... inst d_hidden")
    return F.relu(einops.einsum(hidden, W, "... inst d_hidden, d_hidden feats -> ... inst feats") + self.b_final)


def forward_sums_over_instances(self, features):
    hidden = einops.einsum(features, self.W, "... inst feats, inst d_hidden feats -> ... d_hidden")
    return F.relu(einops.einsum(hidden, self.W, "... d_hidden, inst d_hidden feats -> ... inst feats") + self.b_final)


def forward_bias_on_hidden_side(self, features):
    # adds the bias to the input instead of the output: ReLU(Wᵀ W (x + b))
    hidden = einops.einsum(features + self.b_final, self.W, "... inst feats, inst d_hidden feats -> ... inst d_hidden")
    return F.relu(einops.einsum(hidden, self.W, "... inst d_hidden, inst d_hidden feats -> ... inst feats"))


def forward_detached_weights(self, features):
    W = self.W.detach()
    hidden = einops.einsum(features, W, "... inst feats, inst d_hidden feats -> ... inst d_hidden")
    return F.relu(einops.einsum(hidden, W, "... inst d_hidden, inst d_hidden feats -> ... inst feats") + self.b_final)


def forward_only_3d_input(self, features):
    hidden = einops.einsum(features, self.W, "batch inst feats, inst d_hidden feats -> batch inst d_hidden")
    return F.relu(
        einops.einsum(hidden, self.W, "batch inst d_hidden, inst d_hidden feats -> batch inst feats") + self.b_final
    )


HINT_NO_GRAD = (
    "No gradient reaches `W` through your output, so the model could never learn. Don't use `.detach()`, "
    "`.data`, `.item()` or `torch.no_grad()` inside forward."
)
HINT_ONLY_3D = (
    "forward must accept any number of leading axes (`features: [... inst feats]`); yours fails on a 4-D input. "
    "Use `...` in your einsum patterns."
)

FORWARD_MISTAKES = [
    Mistake(
        forward_without_bias, "Did you forget to add `b_final` before the ReLU? The model is ReLU(Wᵀ W x + b_final)."
    ),
    Mistake(forward_without_relu, "Your output is right before the ReLU: apply ReLU to Wᵀ W x + b_final."),
    Mistake(forward_relu_before_bias, "You add `b_final` after the ReLU; it belongs inside: ReLU(Wᵀ W x + b_final)."),
    Mistake(
        forward_relu_on_hidden,
        "You apply a ReLU to the hidden layer W x. This model has no hidden ReLU (that is section 4's NeuronModel).",
    ),
    Mistake(
        forward_first_instance_weights,
        "Every instance must use its own weights `W[i]`; yours uses one instance's W for all of them.",
    ),
    Mistake(
        forward_sums_over_instances,
        "Your einsum sums over the `inst` axis, mixing instances. Keep `inst` in the output pattern of both einsums.",
    ),
    Mistake(
        forward_bias_on_hidden_side,
        "You add `b_final` to the input; it is added to the output: ReLU(Wᵀ (W x) + b_final).",
    ),
    Mistake(forward_detached_weights, HINT_NO_GRAD),
    Mistake(forward_only_3d_input, HINT_ONLY_3D),
]


def verdict_forward(results: dict, context: Context) -> None:
    case = forward_case(context)
    model = reference_model(FORWARD_CFG)
    set_parameter(model, "W", case["W"])
    set_parameter(model, "b_final", case["b_final"])
    features = case["features"]
    shape = tuple(features.shape)
    got = expect_tensor(results["out"], "forward(features)", shape, "batch inst feats")
    if not t.equal(results["features_after"], features):
        raise CheckFailed("forward changed its input `features` in place; compute new tensors instead.")
    with t.no_grad():
        outputs, hints = mistake_outputs(FORWARD_MISTAKES, lambda impl: impl(model, features))
        expect_close(got, model(features), "forward(features)", outputs, hints)
    if raised(results["out_4d"]) is not None:
        raise CheckFailed(f"{HINT_ONLY_3D} ({raised(results['out_4d'])})")
    features_4d = case["features_4d"]
    got_4d = expect_tensor(
        results["out_4d"], "forward on a [2, 4, inst, feats] input", tuple(features_4d.shape), "a b inst feats"
    )
    with t.no_grad():
        expect_close(got_4d, model(features_4d), "forward on a [2, 4, inst, feats] input")
    if results["grad_W"] is None or results["grad_b_final"] is None:
        raise CheckFailed(HINT_NO_GRAD)
    out = model(features)
    (out * t.linspace(0.5, 1.5, out.numel()).view(out.shape)).sum().backward()
    expect_close(results["grad_W"], model.W.grad, "the gradient of your output with respect to W")
    expect_close(results["grad_b_final"], model.b_final.grad, "the gradient of your output with respect to b_final")


# ------------------------------------------------------------------------------------ generate_batch

BATCH_CFG = dict(n_inst=4, n_features=6, d_hidden=2)
BATCH_SIZE = 10_000


def batch_probabilities() -> Tensor:
    """Different per instance and per feature, all away from 0.5 (so p and 1 - p differ) and from 0 and 1."""
    rows = t.tensor([0.08, 0.2, 0.35, 0.65, 0.8, 0.92])
    return t.stack([rows.roll(i) for i in range(BATCH_CFG["n_inst"])])


def probe_generate_batch(ToyModel: type, context: Context) -> dict:
    model = build(ToyModel, BATCH_CFG, context.device, feature_probability=batch_probabilities().to(context.device))
    with t.no_grad():
        first = model.generate_batch(BATCH_SIZE)
        small = model.generate_batch(7)
        small_again = model.generate_batch(7)
    return {"batch": first, "small": small, "small_again": small_again}


def generate_batch_reused_uniform(self, batch_size):
    u = t.rand((batch_size, *self.feature_probability.shape), device=self.feature_probability.device)
    return t.where(u <= self.feature_probability, u, 0.0)


def generate_batch_sparsity_for_probability(self, batch_size):
    shape = (batch_size, *self.feature_probability.shape)
    return t.where(t.rand(shape) <= 1 - self.feature_probability, t.rand(shape), 0.0)


def generate_batch_shared_across_features(self, batch_size):
    n_inst, n_features = self.feature_probability.shape
    mask = t.rand((batch_size, n_inst, 1)) <= self.feature_probability
    return t.where(mask, t.rand((batch_size, n_inst, n_features)), 0.0)


def generate_batch_shared_across_instances(self, batch_size):
    n_inst, n_features = self.feature_probability.shape
    mask = t.rand((batch_size, 1, n_features)) <= self.feature_probability
    return t.where(mask, t.rand((batch_size, n_inst, n_features)), 0.0)


def generate_batch_same_magnitude_for_all_features(self, batch_size):
    n_inst, n_features = self.feature_probability.shape
    mask = t.rand((batch_size, n_inst, n_features)) <= self.feature_probability
    return t.where(mask, t.rand((batch_size, n_inst, 1)), 0.0)


def generate_batch_gaussian_magnitudes(self, batch_size):
    shape = (batch_size, *self.feature_probability.shape)
    return t.where(t.rand(shape) <= self.feature_probability, t.randn(shape).abs(), 0.0)


def generate_batch_constant_magnitude(self, batch_size):
    shape = (batch_size, *self.feature_probability.shape)
    return (t.rand(shape) <= self.feature_probability).float()


def generate_batch_first_feature_probability(self, batch_size):
    shape = (batch_size, *self.feature_probability.shape)
    return t.where(t.rand(shape) <= self.feature_probability[:, :1], t.rand(shape), 0.0)


def generate_batch_half_batch_repeated(self, batch_size):
    half = (batch_size + 1) // 2
    shape = (half, *self.feature_probability.shape)
    x = t.where(t.rand(shape) <= self.feature_probability, t.rand(shape), 0.0)
    return t.cat([x, x])[:batch_size]


def generate_batch_fixed_seed(self, batch_size):
    t.manual_seed(0)
    shape = (batch_size, *self.feature_probability.shape)
    return t.where(t.rand(shape) <= self.feature_probability, t.rand(shape), 0.0)


HINT_FREQUENCY = "Each feature must be present with its own probability `self.feature_probability[inst, feat]`"
HINT_MAGNITUDE = "Present features need magnitudes uniform on [0, 1] (mean 1/2, variance 1/12), drawn independently of whether they are present"
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
    Mistake(generate_batch_reused_uniform, HINT_MAGNITUDE),
    Mistake(generate_batch_sparsity_for_probability, HINT_FREQUENCY),
    Mistake(generate_batch_shared_across_features, HINT_FEATURE_INDEPENDENCE),
    Mistake(generate_batch_shared_across_instances, HINT_INSTANCE_INDEPENDENCE),
    Mistake(generate_batch_same_magnitude_for_all_features, HINT_MAGNITUDE_INDEPENDENCE),
    Mistake(generate_batch_gaussian_magnitudes, HINT_MAGNITUDE),
    Mistake(generate_batch_constant_magnitude, HINT_MAGNITUDE),
    Mistake(generate_batch_first_feature_probability, HINT_FREQUENCY),
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
    small = expect_tensor(results["small"], "generate_batch(7)", (7, n_inst, n_features), "batch inst feats")
    if not t.isfinite(batch).all() or batch.min() < 0 or batch.max() > 1:
        raise CheckFailed(
            f"{HINT_MAGNITUDE}: values must lie in [0, 1]; yours range from {batch.min():.3g} to {batch.max():.3g}."
        )
    if t.equal(small, results["small_again"]):
        raise CheckFailed(HINT_FRESH_CALLS + ".")

    present = batch > 0
    half = BATCH_SIZE // 2
    n_cells = n_inst * n_features
    n_pairs = n_inst * (n_features - 1) + (n_inst - 1) * n_features
    alpha = FALSE_FAILURE_RATE / (3 * n_cells + n_pairs + 3 * n_inst + 1)

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
        mean, var = values.mean(), ((values - 0.5) ** 2).mean()
        if abs(mean - 0.5) > hoeffding_radius(n, 1.0, alpha) or abs(var - 1 / 12) > hoeffding_radius(n, 0.25, alpha):
            raise CheckFailed(f"{HINT_MAGNITUDE}. In instance {i} yours have mean {mean:.3f} and variance {var:.4f}.")
        # Kolmogorov–Smirnov distance to U[0, 1] at 10,000 grid points: never more than the exact statistic, so
        # the DKW bound still caps the false-failure rate, and far cheaper than sorting.
        cdf = t.histc(values, bins=10_000, min=0, max=1).cumsum(0) / n
        ks_distance = (cdf - t.linspace(1e-4, 1, 10_000)).abs().max()
        if ks_distance > dkw_radius(n, alpha):
            raise CheckFailed(
                f"{HINT_MAGNITUDE}. In instance {i} they are not uniform (KS distance {ks_distance:.3f})."
            )

    # Magnitudes of two features present together must be uncorrelated: E[(m₁ − ½)(m₂ − ½)] = 0, each term in [−¼, ¼].
    both = present[:, :, :-1] & present[:, :, 1:]
    products = ((batch[:, :, :-1] - 0.5) * (batch[:, :, 1:] - 0.5))[both]
    if products.numel() and abs(products.mean()) > hoeffding_radius(products.numel(), 0.5, alpha):
        raise CheckFailed(f"{HINT_MAGNITUDE_INDEPENDENCE}: magnitudes of features present together are correlated.")


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
    case = loss_case(context)
    model = build(ToyModel, LOSS_CFG, context.device, importance=case["importance"].to(context.device))
    out = case["out"].to(context.device).requires_grad_(True)
    batch = case["batch"].to(context.device)
    loss = model.calculate_loss(out, batch)
    results = {"loss": loss, "out_after": out.detach(), "batch_after": batch}
    if isinstance(loss, Tensor) and loss.requires_grad and loss.numel() == 1:
        loss.backward()
        results["grad_out"] = out.grad
    results["per_instance"] = attempt(lambda: model.calculate_loss(out.detach(), batch, per_instance=True))
    return results


def loss_mean_over_instances(self, out, batch, per_instance=False):
    loss = einops.reduce(self.importance * (batch - out) ** 2, "batch inst feats -> inst", "mean")
    return loss if per_instance else loss.mean()


def loss_summed_over_batch(self, out, batch, per_instance=False):
    loss = (self.importance * (batch - out) ** 2).sum(0).mean(-1)
    return loss if per_instance else loss.sum()


def loss_summed_over_features(self, out, batch, per_instance=False):
    loss = (self.importance * (batch - out) ** 2).mean(0).sum(-1)
    return loss if per_instance else loss.sum()


def loss_without_importance(self, out, batch, per_instance=False):
    loss = einops.reduce((batch - out) ** 2, "batch inst feats -> inst", "mean")
    return loss if per_instance else loss.sum()


def loss_importance_inside_square(self, out, batch, per_instance=False):
    loss = einops.reduce((self.importance * (batch - out)) ** 2, "batch inst feats -> inst", "mean")
    return loss if per_instance else loss.sum()


def loss_absolute_error(self, out, batch, per_instance=False):
    loss = einops.reduce(self.importance * (batch - out).abs(), "batch inst feats -> inst", "mean")
    return loss if per_instance else loss.sum()


def loss_root_mean_square(self, out, batch, per_instance=False):
    loss = einops.reduce(self.importance * (batch - out) ** 2, "batch inst feats -> inst", "mean").sqrt()
    return loss if per_instance else loss.sum()


def loss_ignores_per_instance(self, out, batch, per_instance=False):
    return einops.reduce(self.importance * (batch - out) ** 2, "batch inst feats -> inst", "mean").sum()


def loss_returns_float(self, out, batch, per_instance=False):
    loss = einops.reduce(self.importance * (batch - out) ** 2, "batch inst feats -> inst", "mean")
    return loss if per_instance else loss.sum().item()


HINT_SCALAR = "calculate_loss must return a 0-dimensional tensor that still has its gradient: don't call `.item()` or `float()` on it"
HINT_PER_INSTANCE = "With `per_instance=True`, return one loss per instance, shape (inst,), not their sum"

LOSS_MISTAKES = [
    Mistake(
        loss_mean_over_instances,
        "Sum the per-instance losses, don't average them: each instance is its own model, and averaging would divide every instance's gradient by n_inst.",
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
    Mistake(loss_importance_inside_square, "Multiply the squared error by importance: I·(x − x')², not (I·(x − x'))²."),
    Mistake(loss_absolute_error, "Use the squared error (x − x')², not the absolute error."),
    Mistake(loss_root_mean_square, "Don't take a square root: the loss is the mean squared error itself."),
    Mistake(loss_ignores_per_instance, HINT_PER_INSTANCE),
    Mistake(loss_returns_float, HINT_SCALAR),
]


def verdict_calculate_loss(results: dict, context: Context) -> None:
    case = loss_case(context)
    model = reference_model(LOSS_CFG, importance=case["importance"])
    judge_loss(results, model, case["out"], case["batch"], LOSS_MISTAKES)


def judge_loss(results: dict, model: t.nn.Module, out: Tensor, batch: Tensor, mistakes: list[Mistake]) -> None:
    """The verdict on a `calculate_loss(out, batch, per_instance=False)` exercise, given the reference model it is
    compared with (section 4's NeuronComputationModel uses it too): a scalar with a gradient, inputs untouched,
    the right value, and one loss per instance with `per_instance=True`."""
    loss = results["loss"]
    if not isinstance(loss, Tensor) or loss.numel() != 1 or loss.dim() != 0:
        if isinstance(loss, float | int) or (isinstance(loss, Tensor) and loss.numel() == 1):
            raise CheckFailed(HINT_SCALAR + ".")
        shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise CheckFailed(f"calculate_loss(out, batch) should return a scalar (shape ()), got {shape}.")
    if not (t.equal(results["out_after"], out) and t.equal(results["batch_after"], batch)):
        raise CheckFailed("calculate_loss changed `out` or `batch` in place; compute new tensors instead.")
    outputs, hints = mistake_outputs(mistakes, lambda impl: t.as_tensor(impl(model, out, batch)))
    expect_close(loss, model.calculate_loss(out, batch), "calculate_loss(out, batch)", outputs, hints)
    if results.get("grad_out") is None:
        raise CheckFailed(HINT_SCALAR + ".")
    per_instance = results["per_instance"]
    if (message := raised(per_instance)) is not None:
        raise CheckFailed(f"calculate_loss(out, batch, per_instance=True) raised {message}. {HINT_PER_INSTANCE}.")
    if isinstance(per_instance, Tensor) and per_instance.dim() == 0:
        raise CheckFailed(HINT_PER_INSTANCE + ".")
    n_inst = out.shape[1]
    got = expect_tensor(per_instance, "calculate_loss(out, batch, per_instance=True)", (n_inst,), "inst")
    outputs, hints = mistake_outputs(mistakes, lambda impl: t.as_tensor(impl(model, out, batch, per_instance=True)))
    expected = model.calculate_loss(out, batch, per_instance=True)
    expect_close(got, expected, "calculate_loss(..., per_instance=True)", outputs, hints)


# ------------------------------------------------------------------------------- superposition_stats

STATS_SHAPE = (3, 4, 7)  # inst, d_hidden, feats: d_hidden ≠ feats so a wrong axis shows up in the shape


def stats_case(context: Context) -> Tensor:
    """Random weights with varied norms, one feature of instance 1 dead (a zero column)."""
    g = context.generator(2)
    W = t.randn(STATS_SHAPE, generator=g) * (0.3 + 2 * t.rand(STATS_SHAPE[0], 1, STATS_SHAPE[2], generator=g))
    W[1, :, 3] = 0.0
    return W


def probe_superposition_stats(superposition_stats, context: Context) -> dict:
    W = stats_case(context).to(context.device)
    returned = superposition_stats(W)
    if not isinstance(returned, tuple | list) or len(returned) != 2:
        raise CheckFailed(
            f"superposition_stats should return a tuple (norms, interference), got {type(returned).__name__}."
        )
    return {"norms": returned[0], "interference": returned[1], "W_after": W}


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
]


def verdict_superposition_stats(results: dict, context: Context) -> None:
    from solutions.tms.superposition import superposition_stats

    W = stats_case(context)
    n_inst, d_hidden, n_features = W.shape
    if not t.equal(results["W_after"], W):
        raise CheckFailed("superposition_stats changed W in place; compute new tensors instead.")
    norms = results["norms"]
    if isinstance(norms, Tensor) and tuple(norms.shape) == (n_inst, d_hidden):
        raise CheckFailed(HINT_NORM_AXIS + ".")
    norms = expect_tensor(norms, "norms", (n_inst, n_features), "inst feats")
    interference = expect_tensor(results["interference"], "interference", (n_inst, n_features), "inst feats")
    if not (t.isfinite(norms).all() and t.isfinite(interference).all()):
        raise CheckFailed(HINT_DEAD + ".")
    expected_norms, expected_interference = superposition_stats(W)
    outputs = {}
    for mistake in STATS_MISTAKES:
        mistake_norms, mistake_interference = mistake.impl(W)
        outputs[mistake.name] = (mistake_norms, mistake_interference)
    hints = {mistake.name: mistake.hint for mistake in STATS_MISTAKES}
    expect_close(norms, expected_norms, "norms", {k: v[0] for k, v in outputs.items()}, hints)
    expect_close(interference, expected_interference, "interference", {k: v[1] for k, v in outputs.items()}, hints)


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


def generate_batch_bernoulli(self, batch_size):
    p = self.feature_probability.expand(batch_size, *self.feature_probability.shape)
    return t.bernoulli(p) * t.rand_like(p)


def generate_batch_magnitudes_first_float64(self, batch_size):
    shape = (batch_size, *self.feature_probability.shape)
    magnitudes = t.rand(shape, dtype=t.float64)
    mask = t.rand(shape, dtype=t.float64) < self.feature_probability.double()
    return (magnitudes * mask).float()


def loss_with_mean_and_sum(self, out, batch, per_instance=False):
    loss = (self.importance * (out - batch).pow(2)).mean(dim=(0, 2))
    return loss if per_instance else loss.sum()


def loss_with_mse_weights(self, out, batch, per_instance=False):
    weighted = F.mse_loss(out * self.importance.sqrt(), batch * self.importance.sqrt(), reduction="none")
    loss = weighted.sum(dim=(0, 2)) / (batch.shape[0] * batch.shape[2])
    return loss if per_instance else loss.sum()


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
        title="implement `forward`",
        difficulty=2,
        importance=3,
        minutes="10-20",
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
        title="implement `generate_batch`",
        difficulty=3,
        importance=3,
        minutes="10-15",
        reference_path=f"{MODULE}:ToyModel",
        probe=probe_generate_batch,
        verdict=verdict_generate_batch,
        mistakes=GENERATE_BATCH_MISTAKES,
        alternatives=[generate_batch_two_draws, generate_batch_bernoulli, generate_batch_magnitudes_first_float64],
    ),
    Exercise(
        id="tms.calculate_loss",
        name="ToyModel",
        method="calculate_loss",
        title="implement `calculate_loss`",
        difficulty=2,
        importance=3,
        minutes="5-10",
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
        title="implement `superposition_stats`",
        difficulty=2,
        importance=4,
        minutes="10-15",
        reference_path=f"{MODULE}:superposition_stats",
        probe=probe_superposition_stats,
        verdict=verdict_superposition_stats,
        mistakes=STATS_MISTAKES,
        alternatives=[stats_with_loops, stats_with_gram],
    ),
]
