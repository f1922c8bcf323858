"""Check scaffolding shared by the chapter 1 sections whose models look like section 1's ToyModel.

Building the learner's class, probing and judging `forward`, `generate_batch` and `calculate_loss`, the statistical
tests on sampled batches, and the mistakes that every such model shares, written once for all sections. Probes never
import `solutions`: the judge helpers take the reference model (or the expected values) from their caller.
"""

import itertools
from collections.abc import Callable
from types import SimpleNamespace

import einops
import torch as t
from torch import Tensor

from tests.harness import CheckFailed, Context, Mistake, attempt, expect_close, expect_tensor, mistake_outputs, raised
from tests.stats import binomial_range, dkw_radius, hoeffding_radius

# ---------------------------------------------------------------------------------------------- models


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


def sparse(g: t.Generator, shape: tuple[int, ...], low: float) -> Tensor:
    """Uniform values on [low, 1], each present with probability 0.6 (else 0)."""
    return (low + (1 - low) * t.rand(shape, generator=g)) * (t.rand(shape, generator=g) < 0.6)


# --------------------------------------------------------------------------------------------- forward

HINT_ONLY_3D = (
    "forward must accept any number of leading axes (`features: [... inst feats]`); yours fails on a 4-D input. "
    "Use `...` in your einsum patterns."
)


def gradient_weights(out: Tensor) -> Tensor:
    """Fixed, unequal weights for a scalar of the output, so that the gradient sees every output entry."""
    return t.linspace(0.5, 1.5, out.numel(), device=out.device).view(out.shape)


def output_gradients(model: t.nn.Module, out: Tensor, names: tuple[str, ...]) -> dict[str, Tensor | None]:
    """`grad_<name>` for each named parameter: the gradient of a weighted sum of `out`, or None if none reaches it."""
    if isinstance(out, Tensor) and out.requires_grad:
        model.zero_grad()
        (out * gradient_weights(out)).sum().backward()
    return {f"grad_{name}": getattr(model, name).grad for name in names}


def tied_case(context: Context, cfg: dict, salt: int, batch: int, batch_4d: tuple[int, int]) -> dict[str, Tensor]:
    """Inputs for a model with tied weights W and a bias b_final: weights of both signs, non-zero biases, sparse
    features in [0, 1], and a 4-D input for the `...` axes."""
    g = context.generator(salt)
    n_inst, n_features, d_hidden = cfg["n_inst"], cfg["n_features"], cfg["d_hidden"]
    return {
        "W": t.randn((n_inst, d_hidden, n_features), generator=g),
        "b_final": t.randn((n_inst, n_features), generator=g) * 0.5,
        "features": sparse(g, (batch, n_inst, n_features), 0.0),
        "features_4d": sparse(g, (*batch_4d, n_inst, n_features), 0.0),
    }


def probe_tied_forward(cls: type, cfg: dict, case: dict[str, Tensor], context: Context) -> dict:
    """Run the learner's forward on a `tied_case`: the output, a 4-D input, and the gradients of W and b_final."""
    model = build(cls, cfg, context.device)
    set_parameter(model, "W", case["W"])
    set_parameter(model, "b_final", case["b_final"])
    features = case["features"].to(context.device)
    out = model(features)
    results = {
        "out": out,
        "features_after": features,
        "out_4d": attempt(lambda: model(case["features_4d"].to(context.device))),
    }
    return results | output_gradients(model, out, ("W", "b_final"))


def judge_forward_output(results: dict, model: t.nn.Module, features: Tensor, mistakes: list[Mistake]) -> None:
    """The shape of `forward(features)`, its input untouched, and its values, naming a catalogued mistake."""
    got = expect_tensor(results["out"], "forward(features)", tuple(features.shape), "batch inst feats")
    if not t.equal(results["features_after"], features):
        raise CheckFailed("forward changed its input `features` in place; compute new tensors instead.")
    with t.no_grad():
        outputs, hints = mistake_outputs(mistakes, lambda impl: impl(model, features))
        expect_close(got, model(features), "forward(features)", outputs, hints)


def judge_tied_forward(
    results: dict, model: t.nn.Module, case: dict[str, Tensor], mistakes: list[Mistake], no_grad_hint: str
) -> None:
    """The verdict on `probe_tied_forward`, given the reference model (section 1's ToyModel, section 4's
    NeuronModel): the output, any number of leading axes, and gradients that reach W and b_final."""
    set_parameter(model, "W", case["W"])
    set_parameter(model, "b_final", case["b_final"])
    features = case["features"]
    judge_forward_output(results, model, features, mistakes)
    if raised(results["out_4d"]) is not None:
        raise CheckFailed(f"{HINT_ONLY_3D} ({raised(results['out_4d'])})")
    features_4d = case["features_4d"]
    what = "forward on a [{}, {}, inst, feats] input".format(*features_4d.shape[:2])
    got_4d = expect_tensor(results["out_4d"], what, tuple(features_4d.shape), "a b inst feats")
    with t.no_grad():
        expect_close(got_4d, model(features_4d), what)
    if results["grad_W"] is None or results["grad_b_final"] is None:
        raise CheckFailed(no_grad_hint)
    out = model(features)
    (out * gradient_weights(out)).sum().backward()
    expect_close(results["grad_W"], model.W.grad, "the gradient of your output with respect to W")
    expect_close(results["grad_b_final"], model.b_final.grad, "the gradient of your output with respect to b_final")


# -------------------------------------------------------------------------------------- generate_batch

BATCH_SIZE = 10_000

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


def batch_probabilities(n_inst: int) -> Tensor:
    """Different per instance and per feature, all away from 0.5 (so p and 1 - p differ) and from 0 and 1."""
    rows = t.tensor([0.08, 0.2, 0.35, 0.65, 0.8, 0.92])
    return t.stack([rows.roll(i) for i in range(n_inst)])


def expect_batches(results: dict, n_inst: int) -> tuple[Tensor, Tensor, Tensor]:
    """The probabilities `probe_batches` used, and its large and first small batch, checked for type and shape."""
    p = batch_probabilities(n_inst)
    n_features = p.shape[1]
    batch = expect_tensor(
        results["batch"], f"generate_batch({BATCH_SIZE})", (BATCH_SIZE, n_inst, n_features), "batch inst feats"
    )
    small = expect_tensor(results["small"], "generate_batch(7)", (7, n_inst, n_features), "batch inst feats")
    return p, batch, small


def probe_batches(cls: type, cfg: dict, context: Context) -> dict:
    """A large batch from a model with `batch_probabilities`, and two small ones to see that calls differ."""
    p = batch_probabilities(cfg["n_inst"]).to(context.device)
    model = build(cls, cfg, context.device, feature_probability=p)
    with t.no_grad():
        first = model.generate_batch(BATCH_SIZE)
        small = model.generate_batch(7)
        small_again = model.generate_batch(7)
    return {"batch": first, "small": small, "small_again": small_again}


def shape_of(self, batch_size):
    """The shape of a batch of `batch_size` samples from the model `self`, as a learner would write it."""
    return (batch_size, *self.feature_probability.shape)


def sampler_mistakes(magnitudes: Callable[[tuple[int, ...]], Tensor]) -> list[Mistake]:
    """The mistakes of any `generate_batch` whose present features get `magnitudes(shape)`, with their hints."""

    def generate_batch_sparsity_for_probability(self, batch_size):
        shape = shape_of(self, batch_size)
        return t.where(t.rand(shape) <= 1 - self.feature_probability, magnitudes(shape), 0.0)

    def generate_batch_shared_across_features(self, batch_size):
        n_inst, n_features = self.feature_probability.shape
        mask = t.rand((batch_size, n_inst, 1)) <= self.feature_probability
        return t.where(mask, magnitudes((batch_size, n_inst, n_features)), 0.0)

    def generate_batch_shared_across_instances(self, batch_size):
        n_inst, n_features = self.feature_probability.shape
        mask = t.rand((batch_size, 1, n_features)) <= self.feature_probability
        return t.where(mask, magnitudes((batch_size, n_inst, n_features)), 0.0)

    def generate_batch_same_magnitude_for_all_features(self, batch_size):
        n_inst, n_features = self.feature_probability.shape
        mask = t.rand((batch_size, n_inst, n_features)) <= self.feature_probability
        return t.where(mask, magnitudes((batch_size, n_inst, 1)), 0.0)

    def generate_batch_half_batch_repeated(self, batch_size):
        shape = shape_of(self, (batch_size + 1) // 2)
        x = t.where(t.rand(shape) <= self.feature_probability, magnitudes(shape), 0.0)
        return t.cat([x, x])[:batch_size]

    def generate_batch_fixed_seed(self, batch_size):
        t.manual_seed(0)
        shape = shape_of(self, batch_size)
        return t.where(t.rand(shape) <= self.feature_probability, magnitudes(shape), 0.0)

    return [
        Mistake(generate_batch_sparsity_for_probability, HINT_FREQUENCY),
        Mistake(generate_batch_shared_across_features, HINT_FEATURE_INDEPENDENCE),
        Mistake(generate_batch_shared_across_instances, HINT_INSTANCE_INDEPENDENCE),
        Mistake(generate_batch_same_magnitude_for_all_features, HINT_MAGNITUDE_INDEPENDENCE),
        Mistake(generate_batch_half_batch_repeated, HINT_BATCH_INDEPENDENCE),
        Mistake(generate_batch_fixed_seed, HINT_FRESH_CALLS),
    ]


def outside(counts: Tensor, n: int, probs: Tensor, alpha: float) -> list[tuple[int, ...]]:
    """Indices whose count is outside its Chernoff range (rounded probabilities make the ranges cacheable)."""
    bad = []
    for index in itertools.product(*map(range, probs.shape)):
        lo, hi = binomial_range(n, round(float(probs[index]), 12), alpha)
        if not lo <= float(counts[index]) / n <= hi:
            bad.append(index)
    return bad


def judge_frequency(present: Tensor, p: Tensor, alpha: float) -> None:
    """Each feature of each instance present with its own probability: one test per (inst, feat)."""
    n = present.shape[0]
    counts = present.sum(0)
    if bad := outside(counts, n, p, alpha):
        i, f = bad[0]
        raise CheckFailed(
            f"{HINT_FREQUENCY}: instance {i}, feature {f} has probability {float(p[i, f]):.2f} but was present "
            f"in {float(counts[i, f]) / n:.3f} of {n} samples."
        )


def judge_independence(present: Tensor, p: Tensor, alpha: float) -> None:
    """Presence independent across rows of the batch (2 tests per cell), neighbouring features and instances."""
    n = present.shape[0]
    half = n // 2
    halves = (present[:half] & present[half : 2 * half]).sum(0)
    neighbours = (present[0::2][:half] & present[1::2][:half]).sum(0)
    for name, together in [("the two halves of the batch", halves), ("neighbouring rows", neighbours)]:
        if bad := outside(together, half, p * p, alpha):
            raise CheckFailed(
                f"{HINT_BATCH_INDEPENDENCE} (instance {bad[0][0]}, feature {bad[0][1]}, comparing {name})."
            )
    for hint, together, expected in [
        (HINT_FEATURE_INDEPENDENCE, (present[:, :, :-1] & present[:, :, 1:]).sum(0), p[:, :-1] * p[:, 1:]),
        (HINT_INSTANCE_INDEPENDENCE, (present[:, :-1] & present[:, 1:]).sum(0), p[:-1] * p[1:]),
    ]:
        if bad := outside(together, n, expected, alpha):
            index = bad[0]
            raise CheckFailed(
                f"{hint}. Two entries (pair {index}) were present together in {float(together[index]) / n:.4f} "
                f"of samples; independent draws would give {float(expected[index]):.4f}."
            )


def uniform_ks_distance(values: Tensor, low: float, high: float) -> Tensor:
    """Kolmogorov–Smirnov distance of `values` to U[low, high] at 10,000 grid points: never more than the exact
    statistic, so the DKW bound still caps the false-failure rate, and far cheaper than sorting."""
    cdf = t.histc(values, bins=10_000, min=low, max=high).cumsum(0) / values.numel()
    return (cdf - t.linspace(1e-4, 1, 10_000)).abs().max()


def judge_uniform(values: Tensor, low: float, high: float, alpha: float, hint: str, instance: int) -> None:
    """One instance's present magnitudes uniform on [low, high] (a Kolmogorov–Smirnov test)."""
    ks_distance = uniform_ks_distance(values, low, high)
    if ks_distance > dkw_radius(values.numel(), alpha):
        raise CheckFailed(f"{hint}. In instance {instance} they are not uniform (KS distance {ks_distance:.3f}).")


def judge_magnitude_independence(batch: Tensor, present: Tensor, centre: float, width: float, alpha: float) -> None:
    """Magnitudes of neighbouring features present together uncorrelated: E[(m₁ − c)(m₂ − c)] = 0, where each
    product lies in an interval of the given width."""
    both = present[:, :, :-1] & present[:, :, 1:]
    products = ((batch[:, :, :-1] - centre) * (batch[:, :, 1:] - centre))[both]
    if products.numel() and abs(products.mean()) > hoeffding_radius(products.numel(), width, alpha):
        raise CheckFailed(f"{HINT_MAGNITUDE_INDEPENDENCE}: magnitudes of features present together are correlated.")


# -------------------------------------------------------------------------------------- calculate_loss

HINT_SCALAR = "calculate_loss must return a 0-dimensional tensor that still has its gradient: don't call `.item()` or `float()` on it"
HINT_SUM_INSTANCES = (
    "calculate_loss returns one number: sum the per-instance losses (shape ()), don't return one loss per instance"
)


def probe_loss(cls: type, cfg: dict, case: dict[str, Tensor], context: Context) -> dict:
    """The learner's loss on the case's `out` and `batch`, and its gradient."""
    model = build(cls, cfg, context.device, importance=case["importance"].to(context.device))
    out = case["out"].to(context.device).requires_grad_(True)
    batch = case["batch"].to(context.device)
    loss = model.calculate_loss(out, batch)
    results = {"loss": loss, "out_after": out.detach(), "batch_after": batch}
    if isinstance(loss, Tensor) and loss.requires_grad and loss.numel() == 1:
        loss.backward()
        results["grad_out"] = out.grad
    return results


def loss_mistakes(target: Callable[[Tensor], Tensor], error: str) -> list[Mistake]:
    """The mistakes of any `calculate_loss` that weights the squared error of `out` against `target(batch)` (written
    `error` in the hints) by importance, with their hints."""

    def loss_mean_over_instances(self, out, batch):
        return einops.reduce(self.importance * (target(batch) - out) ** 2, "batch inst feats -> inst", "mean").mean()

    def loss_summed_over_batch(self, out, batch):
        return (self.importance * (target(batch) - out) ** 2).sum(0).mean(-1).sum()

    def loss_summed_over_features(self, out, batch):
        return (self.importance * (target(batch) - out) ** 2).mean(0).sum(-1).sum()

    def loss_without_importance(self, out, batch):
        return einops.reduce((target(batch) - out) ** 2, "batch inst feats -> inst", "mean").sum()

    def loss_importance_inside_square(self, out, batch):
        return einops.reduce((self.importance * (target(batch) - out)) ** 2, "batch inst feats -> inst", "mean").sum()

    def loss_absolute_error(self, out, batch):
        return einops.reduce(self.importance * (target(batch) - out).abs(), "batch inst feats -> inst", "mean").sum()

    def loss_one_per_instance(self, out, batch):
        return einops.reduce(self.importance * (target(batch) - out) ** 2, "batch inst feats -> inst", "mean")

    def loss_returns_float(self, out, batch):
        return (
            einops.reduce(self.importance * (target(batch) - out) ** 2, "batch inst feats -> inst", "mean").sum().item()
        )

    return [
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
            loss_importance_inside_square,
            f"Multiply the squared error by importance: I·({error})², not (I·({error}))².",
        ),
        Mistake(loss_absolute_error, f"Use the squared error ({error})², not the absolute error."),
        Mistake(loss_one_per_instance, HINT_SUM_INSTANCES),
        Mistake(loss_returns_float, HINT_SCALAR),
    ]


def judge_loss(results: dict, model: t.nn.Module, out: Tensor, batch: Tensor, mistakes: list[Mistake]) -> None:
    """The verdict on a `calculate_loss(out, batch)` exercise, given the reference model it is compared with
    (section 4's NeuronComputationModel uses it too): a scalar with a gradient, inputs untouched, the right value."""
    loss = results["loss"]
    if not isinstance(loss, Tensor) or loss.numel() != 1 or loss.dim() != 0:
        if isinstance(loss, float | int) or (isinstance(loss, Tensor) and loss.numel() == 1):
            raise CheckFailed(HINT_SCALAR + ".")
        if isinstance(loss, Tensor) and tuple(loss.shape) == (out.shape[1],):
            raise CheckFailed(HINT_SUM_INSTANCES + ".")
        shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise CheckFailed(f"calculate_loss(out, batch) should return a scalar (shape ()), got {shape}.")
    if not (t.equal(results["out_after"], out) and t.equal(results["batch_after"], batch)):
        raise CheckFailed("calculate_loss changed `out` or `batch` in place; compute new tensors instead.")
    outputs, hints = mistake_outputs(mistakes, lambda impl: t.as_tensor(impl(model, out, batch)))
    expect_close(loss, model.calculate_loss(out, batch), "calculate_loss(out, batch)", outputs, hints)
    if results.get("grad_out") is None:
        raise CheckFailed(HINT_SCALAR + ".")
