"""`tms.phase_losses`: its probe, verdict, catalogue of mistakes with their hints, and alternatives."""

import torch as t
from torch import Tensor

from tests.harness import CheckFailed, Context, Mistake, attempt, raised
from tests.tms.common import HINT_SQUEEZE, dropped_size_one_axes, expect_close_to_reference, expect_shaped

MODULE = "solutions.tms.phase_diagrams"
LABELS = ("not represented", "dedicated", "superposition")


# -------------------------------------------------------------------------------------- phase_losses


def phase_losses_case(context: Context) -> dict[str, Tensor]:
    """Same-shape inputs [4, 6], then every other shape the contract allows: inputs that broadcast ([5, 1] against
    [7]), a pair of 0-d tensors, a pair of [1]-shaped tensors, and a [3] ratio with a 0-d density.

    Importance ratios span 0.03 to 30, so both r < 1 and r > 1 occur; densities include 0.001, 0.01, 0.999 and 1.
    """
    g = context.generator(11)
    log_r = lambda *shape: (t.rand(shape, generator=g) * 2 - 1) * 1.5 * 2.302585  # noqa: E731  (log 10)
    density = t.cat([t.tensor([0.001, 0.01, 0.999, 1.0]), 10 ** -(t.rand(20, generator=g) * 3)]).view(4, 6)
    ratio = log_r(4, 6).exp()
    ratio[0, :3] = t.tensor([0.2, 1.0, 5.0])  # a sure pair on each side of 1, and equal importance
    return {
        "importance_ratio": ratio,
        "density": density,
        "ratio_column": log_r(5, 1).exp(),
        "density_row": 10 ** -(t.rand(7, generator=g) * 2.5),
        "ratio_scalar": t.tensor(3.0),
        "density_scalar": t.tensor(0.05),
        "ratio_one": log_r(1).exp(),
        "density_one": 10 ** -(t.rand(1, generator=g) * 3),
        "ratio_three": log_r(3).exp(),
        "density_zero_d": 10 ** -(t.rand((), generator=g) * 3),
        # the edges of both inputs: an unimportant second feature (r = 0), features never present (p = 0), always
        # present (p = 1)
        "ratio_edges": t.tensor([0.0, 0.0, 2.0, 0.5, 0.0]),
        "density_edges": t.tensor([0.3, 0.0, 0.0, 1.0, 1.0]),
    }


# (result key, what the learner is told, ratio key, density key) of every call besides the main one
PHASE_LOSSES_CALLS = [
    ("broadcast", "phase_losses(r [5, 1], p [7])", "ratio_column", "density_row"),
    ("scalar", "phase_losses on 0-d tensors", "ratio_scalar", "density_scalar"),
    ("ones", "phase_losses(r [1], p [1])", "ratio_one", "density_one"),
    ("scalar_density", "phase_losses(r [3], p 0-d)", "ratio_three", "density_zero_d"),
    ("edges", "phase_losses at the edges r = 0, p = 0 and p = 1", "ratio_edges", "density_edges"),
]
HINT_EDGES = (
    "At the edges every loss is still a number: with r = 0 or p = 0 nothing (or only an unimportant feature) is "
    "lost, so the losses there are 0 or finite; don't divide by r or p"
)


def probe_phase_losses(phase_losses, context: Context) -> dict:
    case = phase_losses_case(context)
    inputs = {key: value.to(context.device) for key, value in case.items()}
    results = {
        "losses": phase_losses(inputs["importance_ratio"], inputs["density"]),
        "ratio_after": inputs["importance_ratio"],
        "density_after": inputs["density"],
    }
    for key, _, ratio, density in PHASE_LOSSES_CALLS:
        results[key] = attempt(lambda ratio=ratio, density=density: phase_losses(inputs[ratio], inputs[density]))
    return results


def variance(p):
    return p / 3 - p**2 / 4


def phase_losses_swapped_order(importance_ratio, density):
    r, p = importance_ratio, density
    return t.stack([variance(p), r * variance(p), (1 + r) * p**2 / 6], dim=-1)


def phase_losses_without_mean(importance_ratio, density):
    r, p = importance_ratio, density
    return t.stack([r * p / 3, p / 3 + 0 * r, (1 + r) * p**2 / 6], dim=-1)


def phase_losses_mean_squared_wrong(importance_ratio, density):
    r, p = importance_ratio, density
    wrong_variance = p / 3 - p / 4  # squares the magnitude's mean 1/2, but not the probability p
    return t.stack([r * wrong_variance, wrong_variance + 0 * r, (1 + r) * p**2 / 6], dim=-1)


def phase_losses_importance_on_both(importance_ratio, density):
    r, p = importance_ratio, density
    return t.stack([r * variance(p), variance(p) + 0 * r, 2 * r * p**2 / 6], dim=-1)


def phase_losses_sparsity_for_density(importance_ratio, density):
    r, S = importance_ratio, 1 - density
    return t.stack([r * variance(S), variance(S) + 0 * r, (1 + r) * S**2 / 6], dim=-1)


def phase_losses_interference_linear_in_density(importance_ratio, density):
    r, p = importance_ratio, density
    return t.stack([r * variance(p), variance(p) + 0 * r, (1 + r) * p / 6], dim=-1)


def phase_losses_without_relu(importance_ratio, density):
    r, p = importance_ratio, density
    return t.stack([r * variance(p), variance(p) + 0 * r, (1 + r) * p**2 / 3], dim=-1)


def phase_losses_dedicated_from_ignore(importance_ratio, density):
    # "dedicated costs what ignoring costs, without the factor r": right wherever r ≠ 0, 0/0 where r = 0
    r, p = t.broadcast_tensors(importance_ratio, density)
    ignore = r * variance(p)
    return t.stack([ignore, ignore / r, (1 + r) * p**2 / 6], dim=-1)


def phase_losses_by_importance(importance_ratio, density):
    r, p = importance_ratio, density
    return t.stack([t.minimum(r, t.ones_like(r)) * variance(p), t.maximum(r, t.ones_like(r)) * variance(p),
                    (1 + r) * p**2 / 6], dim=-1)  # fmt: skip


def phase_losses_mean_over_features(importance_ratio, density):
    r, p = importance_ratio, density
    return t.stack([r * variance(p), variance(p) + 0 * r, (1 + r) * p**2 / 6], dim=-1) / 2


def phase_losses_stacked_first(importance_ratio, density):
    r, p = importance_ratio, density
    return t.stack([r * variance(p), variance(p) + 0 * r, (1 + r) * p**2 / 6], dim=0)


def phase_losses_no_broadcast(importance_ratio, density):
    r, p = importance_ratio, density
    return t.stack([r * variance(p), variance(p), (1 + r) * p**2 / 6], dim=-1)


def phase_losses_stacked_on_axis_1(importance_ratio, density):
    r, p = t.broadcast_tensors(importance_ratio, density)
    return t.stack([r * variance(p), variance(p), (1 + r) * p**2 / 6], dim=1)


def phase_losses_concatenated(importance_ratio, density):
    r, p = t.broadcast_tensors(importance_ratio, density)
    return t.cat([r * variance(p), variance(p), (1 + r) * p**2 / 6], dim=-1)


def phase_losses_squeezed(importance_ratio, density):
    r, p = t.broadcast_tensors(importance_ratio, density)
    return t.stack([r * variance(p), variance(p), (1 + r) * p**2 / 6], dim=-1).squeeze()


HINT_STACK_AXIS = (
    "The three losses go on the *last* axis: stack them with `dim=-1`, so the result has shape [..., 3] "
    "(ignore, dedicated, superposition)"
)
HINT_CONCATENATED = (
    "Put the three losses on a new last axis with `t.stack([...], dim=-1)`: `t.cat` (or `t.column_stack`) joins them "
    "along an axis they already have, giving [..., 3n] instead of [..., n, 3]"
)
HINT_BROADCAST = (
    "phase_losses must broadcast its two inputs, e.g. r of shape [5, 1] with p of shape [7] gives [5, 7, 3]. "
    "The dedicated loss does not depend on r, so it keeps p's shape and cannot be stacked with the others: "
    "broadcast first, e.g. `r, p = t.broadcast_tensors(importance_ratio, density)`"
)

PHASE_LOSSES_MISTAKES = [
    Mistake(
        phase_losses_swapped_order,
        "The ignore and dedicated losses are swapped. The order is (ignore, dedicated, superposition), where "
        "'ignore' drops feature 2 (importance r) and costs r·Var(x), and 'dedicated' gives the dimension to "
        "feature 2 and drops feature 1 (importance 1).",
    ),
    Mistake(
        phase_losses_without_mean,
        "An ignored feature costs its variance p/3 − p²/4, not E[x²] = p/3: its bias outputs the mean p/2, "
        "which removes E[x]² = p²/4 from the error.",
    ),
    Mistake(
        phase_losses_mean_squared_wrong,
        "Square the whole mean: E[x] = p·1/2, so E[x]² = p²/4, not p/4. The variance is p/3 − p²/4.",
    ),
    Mistake(
        phase_losses_importance_on_both,
        "Only feature 2 has importance r; feature 1 has importance 1. The superposition loss is "
        "(1 + r)·p²/6: p²/6 from feature 1 plus r·p²/6 from feature 2.",
    ),
    Mistake(
        phase_losses_sparsity_for_density,
        "`density` is the feature probability p = 1 − S, the chance that a feature is present; you used the "
        "sparsity S = 1 − p.",
    ),
    Mistake(
        phase_losses_interference_linear_in_density,
        "In superposition a feature is wrong only when *both* features are present, which happens with "
        "probability p², not p: the loss is (1 + r)·p²/6.",
    ),
    Mistake(
        phase_losses_without_relu,
        "Remember the ReLU: with w = (1, −1) the output for feature 1 is ReLU(x₁ − x₂), so the error is "
        "min(x₁, x₂), not x₂. E[min(x₁, x₂)²] = 1/6 for two uniforms (not E[x₂²] = 1/3).",
    ),
    Mistake(
        phase_losses_by_importance,
        "'ignore' always drops feature 2 and 'dedicated' always drops feature 1, whatever r is; don't sort them "
        "by importance. For r > 1 it is the ignore solution that costs more.",
    ),
    Mistake(
        phase_losses_mean_over_features,
        "Sum the loss over the two features, as the paper does, instead of averaging it: L = Σ_i I_i E[(x_i − x'_i)²]. "
        "(ToyModel.calculate_loss averages over features, so its loss is half of this.)",
    ),
    Mistake(phase_losses_stacked_first, HINT_STACK_AXIS),
    Mistake(phase_losses_no_broadcast, HINT_BROADCAST),
    Mistake(phase_losses_stacked_on_axis_1, HINT_STACK_AXIS),
    Mistake(phase_losses_concatenated, HINT_CONCATENATED),
    Mistake(phase_losses_squeezed, HINT_SQUEEZE),
    Mistake(phase_losses_dedicated_from_ignore, HINT_EDGES),
]


def expect_losses(got, what: str, shape: tuple[int, ...]) -> Tensor:
    """Shape [..., 3], naming the likely mistake when the three losses went on the wrong axis or an axis was lost."""
    if isinstance(got, Tensor) and tuple(got.shape) != shape:
        got_shape, inputs_shape = tuple(got.shape), shape[:-1]
        if len(got_shape) == len(shape) and any(
            got_shape[k] == 3 and got_shape[:k] + got_shape[k + 1 :] == inputs_shape for k in range(len(shape))
        ):
            raise CheckFailed(f"{HINT_STACK_AXIS}. {what} has shape {got_shape}, expected {shape}.")
        squeezed = dropped_size_one_axes(got_shape, shape)  # [1]-shaped inputs: (3,) is squeezed, not concatenated
        if inputs_shape and got_shape == (*inputs_shape[:-1], 3 * inputs_shape[-1]) and not squeezed:
            raise CheckFailed(f"{HINT_CONCATENATED}. {what} has shape {got_shape}, expected {shape}.")
    return expect_shaped(got, what, shape, " ".join(["r"] * (len(shape) - 1) + ["phase"]))


def verdict_phase_losses(results: dict, context: Context) -> None:
    from solutions.tms.phase_diagrams import phase_losses

    case = phase_losses_case(context)
    ratio, density = case["importance_ratio"], case["density"]
    if not (t.equal(results["ratio_after"], ratio) and t.equal(results["density_after"], density)):
        raise CheckFailed("phase_losses changed its inputs in place; compute new tensors instead.")
    got = expect_losses(results["losses"], "phase_losses(r, p)", (*ratio.shape, 3))
    run = lambda impl: impl(ratio, density)  # noqa: E731
    expected = phase_losses(ratio, density)
    expect_close_to_reference(got, expected, "phase_losses(r, p)", PHASE_LOSSES_MISTAKES, run, rtol=1e-4, atol=1e-8)

    for key, what, ratio_key, density_key in PHASE_LOSSES_CALLS:
        r, p = case[ratio_key], case[density_key]
        expected = phase_losses(r, p)
        if (message := raised(results[key])) is not None:
            if r.shape != p.shape:
                raise CheckFailed(f"{HINT_BROADCAST}. ({what} raised {message})")
            raise CheckFailed(f"{what} raised {message}")
        got = expect_losses(results[key], what, tuple(expected.shape))
        if not t.isfinite(got).all():
            raise CheckFailed(f"{HINT_EDGES if key == 'edges' else what + ' contains NaN or inf values'}.")
        run = lambda impl, r=r, p=p: impl(r, p)  # noqa: E731
        expect_close_to_reference(got, expected, what, PHASE_LOSSES_MISTAKES, run, rtol=1e-4, atol=1e-8)


# -------------------------------------------- correct implementations written differently: all must pass


def phase_losses_from_moments(importance_ratio, density):
    r, p = t.broadcast_tensors(importance_ratio, density)
    mean, mean_square, mean_min_square = p / 2, p / 3, p**2 / 6  # E[x], E[x²], E[min(x₁, x₂)²]
    variance = mean_square - mean**2
    return t.stack([r * variance, variance, mean_min_square + r * mean_min_square], dim=-1)


def phase_losses_factored_with_cat(importance_ratio, density):
    p = density.unsqueeze(-1)
    r = importance_ratio.unsqueeze(-1)
    variance = p * (4 - 3 * p) / 12
    return t.cat([r * variance, variance.expand_as(r * variance), (1 + r) * p * p / 6], dim=-1)


def phase_losses_in_float64(importance_ratio, density):
    r, p = importance_ratio.double(), density.double()
    variance = p / 3 - (p / 2) ** 2
    losses = t.stack(t.broadcast_tensors(r * variance, variance, (1 + r) * p**2 / 6), dim=-1)
    return losses.to(t.promote_types(importance_ratio.dtype, density.dtype))
