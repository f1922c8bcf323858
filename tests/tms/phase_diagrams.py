"""Checks for chapter 1, section 2 (phase diagrams), with their catalogues of mistakes.

Both exercises are deterministic functions, so their checks compare with the reference on seeded inputs chosen
to separate every catalogued mistake: importance ratios on both sides of 1, densities from 0.001 to 1, inputs of
every shape the contract allows (0-d, [1], broadcasting), and trained-looking weights of all three phases with both
signs and realistic biases, the edges of every phase (neither feature represented among them), and a single instance.
"""

import torch as t
from torch import Tensor

from tests.harness import CheckFailed, Context, Exercise, Mistake, attempt, raised
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
    }


# (result key, what the learner is told, ratio key, density key) of every call besides the main one
PHASE_LOSSES_CALLS = [
    ("broadcast", "phase_losses(r [5, 1], p [7])", "ratio_column", "density_row"),
    ("scalar", "phase_losses on 0-d tensors", "ratio_scalar", "density_scalar"),
    ("ones", "phase_losses(r [1], p [1])", "ratio_one", "density_one"),
    ("scalar_density", "phase_losses(r [3], p 0-d)", "ratio_three", "density_zero_d"),
]


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
        run = lambda impl, r=r, p=p: impl(r, p)  # noqa: E731
        expect_close_to_reference(got, expected, what, PHASE_LOSSES_MISTAKES, run, rtol=1e-4, atol=1e-8)


# ------------------------------------------------------------------------------------- classify_phase

N_PER_KIND = 3  # instances per (phase, sign pattern)

# Instances at and beyond the edges of every phase, always present (with random signs and biases): an exactly zero
# weight, the largest dropped weight (0.15), the weakest represented one (0.7), a represented weight far above 1,
# both features represented with the same sign, and neither feature represented. Any threshold on |w_i| strictly
# between 0.15 and 0.7 gives the reference's labels.
EDGE_CASES = [
    ((1.0, 0.0), 0),
    ((0.9, 0.15), 0),
    ((2.5, 0.05), 0),
    ((0.0, 1.0), 1),
    ((0.15, 1.1), 1),
    ((0.05, 2.5), 1),
    ((0.7, -0.7), 2),
    ((2.0, -0.75), 2),
    ((0.9, 0.8), 2),
    ((0.0, 0.0), 0),
    ((0.1, 0.12), 0),
    ((0.15, 0.15), 0),
]


def classify_case(context: Context) -> dict[str, Tensor]:
    """Trained-looking weights and biases of all three phases, shuffled, with every sign pattern, and the edge cases.

    Represented features have |w| between 0.7 and 1.3 (in superposition the two norms differ, as they do when
    r ≠ 1); dropped features have |w| below 0.15 with either sign. A dropped feature's bias is its mean p/2 for
    p between 0.001 and 1 (tiny when p is); superposed features have small biases of either sign.
    """
    g = context.generator(12)
    uniform = lambda shape, low, high: low + (high - low) * t.rand(shape, generator=g)  # noqa: E731
    dropped_bias = lambda shape: 10 ** uniform(shape, -3, 0) / 2 + uniform(shape, -0.003, 0.003)  # noqa: E731
    flip = lambda shape: t.where(t.rand(shape, generator=g) < 0.5, -1.0, 1.0)  # noqa: E731
    m = 4 * N_PER_KIND  # instances per phase: N_PER_KIND per sign pattern
    signs = t.tensor([(1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0)]).repeat_interleave(N_PER_KIND, 0)
    small = uniform((m, 2), -0.02, 0.02)
    # not represented: feature 1 owns the dimension, feature 2 is dropped (bias ≈ its mean p/2)
    not_represented = t.stack([uniform(m, 0.85, 1.15), uniform(m, 0.0, 0.15)], -1) * signs
    not_represented_bias = t.stack([small[:, 0], dropped_bias(m)], -1)
    # dedicated: feature 2 owns the dimension, feature 1 is dropped
    dedicated = t.stack([uniform(m, 0.0, 0.15), uniform(m, 0.85, 1.15)], -1) * signs
    dedicated_bias = t.stack([dropped_bias(m), small[:, 1]], -1)
    # superposition: opposite signs (antipodal), unequal norms, small biases of either sign
    superposition = uniform((m, 2), 0.7, 1.3) * t.tensor([1.0, -1.0]) * flip((m, 1))
    superposition_bias = uniform((m, 2), -0.05, 0.15)
    # the edge cases, with a random sign per instance and another per dropped weight (which may have either sign)
    edge = t.tensor([w for w, _ in EDGE_CASES]) * flip((len(EDGE_CASES), 1))
    dropped = edge.abs() < 0.5
    edge = t.where(dropped, edge * flip(edge.shape), edge)
    edge_bias = t.where(dropped, dropped_bias(edge.shape), uniform(edge.shape, -0.02, 0.02))

    W = t.cat([not_represented, dedicated, superposition, edge])
    b = t.cat([not_represented_bias, dedicated_bias, superposition_bias, edge_bias])
    phase = t.tensor([0] * m + [1] * m + [2] * m + [phase for _, phase in EDGE_CASES])
    order = t.randperm(len(phase), generator=g)
    # Instance 0 is a dedicated one, so that giving every instance instance 0's label is told apart from
    # calling everything superposition.
    first_dedicated = int((phase[order] == 1).nonzero()[0])
    order[[0, first_dedicated]] = order[[first_dedicated, 0]]
    return {"W": W[order].unsqueeze(1), "b_final": b[order], "phase": phase[order]}


def single_instance_of(case: dict[str, Tensor]) -> dict[str, Tensor]:
    """A single instance ([1, 1, 2] weights): the case's first superposition instance."""
    k = int((case["phase"] == 2).nonzero()[0])
    return {"W": case["W"][k : k + 1].clone(), "b_final": case["b_final"][k : k + 1].clone()}


def labels_of(returned) -> list[str] | dict:
    """What a learner's classify_phase returned, as plain data: a list of strings (anything else as its repr)."""
    if isinstance(returned, Tensor):
        return {"tensor": returned}
    if isinstance(returned, list | tuple):
        return [label if isinstance(label, str) else repr(label) for label in returned]
    return {"type": type(returned).__name__}


def probe_classify_phase(classify_phase, context: Context) -> dict:
    case = classify_case(context)
    single = single_instance_of(case)  # a copy, taken before the learner's code sees the case
    W, b_final = case["W"].to(context.device), case["b_final"].to(context.device)
    labels = labels_of(classify_phase(W, b_final))
    single_labels = attempt(
        lambda: labels_of(classify_phase(single["W"].to(context.device), single["b_final"].to(context.device)))
    )
    return {"labels": labels, "W_after": W, "b_after": b_final, "single": single_labels}


def classify_with(rule):
    """A learner's classify_phase from a rule (w1, w2, b1, b2) -> label, applied instance by instance."""

    def classify(W, b_final):
        return [rule(*weights, *biases) for weights, biases in zip(W[:, 0].tolist(), b_final.tolist(), strict=True)]

    return classify


def classify_labels_swapped(W, b_final):
    represented = W[:, 0].abs() > 0.5
    return [
        "superposition" if first and second else "not represented" if not first else "dedicated"
        for first, second in represented.tolist()
    ]


def classify_signed_threshold(W, b_final):
    represented = W[:, 0] > 0.5
    return [
        "superposition" if first and second else "dedicated" if second else "not represented"
        for first, second in represented.tolist()
    ]


def classify_one_sign_arrangement(W, b_final):
    def rule(w1, w2, b1, b2):
        if w1 > 0.5 and w2 < -0.5:
            return "superposition"
        return "dedicated" if abs(w2) > 0.5 else "not represented"

    return classify_with(rule)(W, b_final)


def classify_by_bias_sign(W, b_final):
    def rule(w1, w2, b1, b2):
        if b2 > 0 and b1 <= 0:
            return "not represented"
        if b1 > 0 and b2 <= 0:
            return "dedicated"
        return "superposition"

    return classify_with(rule)(W, b_final)


def classify_by_product_sign(W, b_final):
    def rule(w1, w2, b1, b2):
        if w1 * w2 < 0:
            return "superposition"
        return "dedicated" if abs(w2) > abs(w1) else "not represented"

    return classify_with(rule)(W, b_final)


def classify_exact_zero(W, b_final):
    def rule(w1, w2, b1, b2):
        if w2 == 0:
            return "not represented"
        return "dedicated" if w1 == 0 else "superposition"

    return classify_with(rule)(W, b_final)


def classify_equal_norms(W, b_final):
    def rule(w1, w2, b1, b2):
        if abs(abs(w1) - abs(w2)) < 0.1:
            return "superposition"
        return "dedicated" if abs(w2) > abs(w1) else "not represented"

    return classify_with(rule)(W, b_final)


def classify_first_instance(W, b_final):
    w1, w2 = W[0, 0].abs().tolist()
    label = "superposition" if w1 > 0.5 and w2 > 0.5 else "dedicated" if w2 > 0.5 else "not represented"
    return [label] * W.shape[0]


def classify_feature_one_first(W, b_final):
    def rule(w1, w2, b1, b2):
        if abs(w1) > 0.5 and abs(w2) > 0.5:
            return "superposition"
        return "not represented" if abs(w1) > 0.5 else "dedicated"

    return classify_with(rule)(W, b_final)


def classify_requires_opposite_signs(W, b_final):
    def rule(w1, w2, b1, b2):
        if abs(w1) > 0.5 and abs(w2) > 0.5 and w1 * w2 < 0:
            return "superposition"
        return "dedicated" if abs(w2) > 0.5 else "not represented"

    return classify_with(rule)(W, b_final)


def classify_threshold_too_low(W, b_final):
    def rule(w1, w2, b1, b2):
        if abs(w2) <= 0.1:
            return "not represented"
        return "dedicated" if abs(w1) <= 0.1 else "superposition"

    return classify_with(rule)(W, b_final)


def classify_near_one(W, b_final):
    represented = (W[:, 0].abs() - 1).abs() < 0.35  # "represented features have |w| ≈ 1"
    return [
        "superposition" if first and second else "dedicated" if second else "not represented"
        for first, second in represented.tolist()
    ]


def classify_squeezes_W(W, b_final):
    represented = W.squeeze().abs() > 0.5
    return [
        "superposition" if first and second else "dedicated" if second else "not represented"
        for first, second in represented.tolist()
    ]


def classify_returns_indices(W, b_final):
    represented = W[:, 0].abs() > 0.5
    return t.where(~represented[:, 1], 0, t.where(~represented[:, 0], 1, 2))


HINT_SQUEEZE_W = (
    "W has shape [inst 1 2]: drop only its d_hidden axis (`W[:, 0, :]` or `W.squeeze(1)`). `W.squeeze()` also drops "
    "the inst axis when there is a single instance"
)
HINT_INDICES = (
    'Return the labels themselves, a list of strings such as "superposition", one per instance, not phase indices'
)

CLASSIFY_MISTAKES = [
    Mistake(
        classify_labels_swapped,
        "'not represented' and 'dedicated' are swapped. They describe feature 2, the one with importance r: "
        "'not represented' means w₂ ≈ 0 (feature 1 keeps the dimension), 'dedicated' means feature 2 has the "
        "dimension to itself and w₁ ≈ 0.",
    ),
    Mistake(
        classify_signed_threshold,
        "A feature stored with a negative weight is represented too: compare |w_i| (or w_i²) with a threshold, "
        "not w_i itself. The direction's sign is arbitrary.",
    ),
    Mistake(
        classify_one_sign_arrangement,
        "Antipodal means opposite signs either way round: w = (−1, +1) is superposition as much as (+1, −1).",
    ),
    Mistake(
        classify_by_bias_sign,
        "The biases don't tell the phase: a dropped feature's bias is its mean p/2, which is tiny when p is "
        "small, and superposed features can have small positive biases too. Read the phase from the weights.",
    ),
    Mistake(
        classify_by_product_sign,
        "Opposite signs alone don't make superposition: a dropped feature's weight is only near 0 and may have "
        "either sign. Superposition needs *both* features represented (|w_i| above a threshold).",
    ),
    Mistake(
        classify_exact_zero,
        "Trained weights are never exactly 0: decide with a threshold, e.g. feature i is represented when |w_i| > 0.5.",
    ),
    Mistake(
        classify_equal_norms,
        "Superposed features need not have equal norms (they differ when r ≠ 1): call it superposition when "
        "both |w_i| are above a threshold, not when they are equal.",
    ),
    Mistake(
        classify_first_instance,
        "Classify every instance from its own weights W[i]; you gave all instances the label of instance 0.",
    ),
    Mistake(classify_returns_indices, HINT_INDICES),
    Mistake(
        classify_feature_one_first,
        "When neither feature is represented the label is 'not represented': the labels describe feature 2, which "
        "then has no direction. 'dedicated' means feature 2 *has* the dimension (|w₂| above the threshold) and "
        "feature 1 has none. Decide on feature 2 first.",
    ),
    Mistake(
        classify_requires_opposite_signs,
        "Both features represented is superposition whatever their signs: the label depends only on which features "
        "have a direction (|w_i| above the threshold). Trained models put them on opposite sides of the line, but "
        "two features with the same sign share it too.",
    ),
    Mistake(
        classify_threshold_too_low,
        "Your threshold is too low: a dropped feature keeps a small weight of either sign (up to 0.15 here), which "
        "does not make it represented. Call feature i represented when |w_i| > 0.5.",
    ),
    Mistake(
        classify_near_one,
        "Represented doesn't mean |w_i| ≈ 1: a represented feature's weight can be as low as 0.7 or far above 1. "
        "Compare |w_i| with a threshold: feature i is represented when |w_i| > 0.5.",
    ),
    Mistake(classify_squeezes_W, HINT_SQUEEZE_W),
]


def describe_instance(case: dict, i: int) -> str:
    w1, w2 = case["W"][i, 0].tolist()
    b1, b2 = case["b_final"][i].tolist()
    return f"instance {i} (w = ({w1:+.3f}, {w2:+.3f}), b_final = ({b1:+.4f}, {b2:+.4f}))"


def verdict_classify_phase(results: dict, context: Context) -> None:
    from solutions.tms.phase_diagrams import classify_phase

    case = classify_case(context)
    W, b_final = case["W"], case["b_final"]
    if not (t.equal(results["W_after"], W) and t.equal(results["b_after"], b_final)):
        raise CheckFailed("classify_phase changed W or b_final in place; compute new tensors instead.")
    labels = expect_labels(results["labels"], W.shape[0], "classify_phase(W, b_final)")
    expected = classify_phase(W, b_final)
    assert expected == [LABELS[i] for i in case["phase"].tolist()], "the check's own cases are mislabelled"
    if labels != expected:
        for mistake in CLASSIFY_MISTAKES:
            if mistake.impl is classify_returns_indices:
                continue
            try:
                if list(mistake.impl(W, b_final)) == labels:
                    raise CheckFailed(mistake.hint)
            except (TypeError, ValueError, IndexError):  # a mistake that cannot run on these inputs
                continue
        wrong = next(i for i in range(len(labels)) if labels[i] != expected[i])
        raise CheckFailed(
            f"{describe_instance(case, wrong)} should be {expected[wrong]!r}, got {labels[wrong]!r} "
            f"({sum(a != b for a, b in zip(labels, expected, strict=True))} of {len(labels)} instances are wrong)."
        )
    single = single_instance_of(case)
    what = "classify_phase on a single instance (W of shape [1, 1, 2])"
    if (message := raised(results["single"])) is not None:
        raise CheckFailed(f"{HINT_SQUEEZE_W}. ({what} raised {message})")
    single_labels = expect_labels(results["single"], 1, what)
    if single_labels != classify_phase(single["W"], single["b_final"]):
        raise CheckFailed(
            f"{what}: {describe_instance(single, 0)} should be {classify_phase(single['W'], single['b_final'])[0]!r}, "
            f"got {single_labels[0]!r}."
        )


def expect_labels(labels, n_inst: int, what: str) -> list[str]:
    """A list of one known label per instance."""
    if isinstance(labels, dict):
        if "tensor" in labels:
            raise CheckFailed(HINT_INDICES + ".")
        raise CheckFailed(f"{what} should return a list of {n_inst} strings, got {labels['type']}.")
    if len(labels) != n_inst:
        raise CheckFailed(f"{what} should return one label per instance ({n_inst}), got {len(labels)}.")
    unknown = sorted({label for label in labels if label not in LABELS})
    if unknown:
        raise CheckFailed(f"unknown labels {unknown}: use exactly {', '.join(repr(label) for label in LABELS)}.")
    return labels


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


def classify_with_squared_weights(W, b_final):
    strength = W.squeeze(1) ** 2  # [inst 2]
    names = {(False, False): "not represented", (True, False): "not represented",
             (False, True): "dedicated", (True, True): "superposition"}  # fmt: skip
    return [names[(bool(a > 0.1), bool(b > 0.1))] for a, b in strength]


def classify_from_column_norms(W, b_final):
    represented = W.norm(dim=1) > 0.5  # [inst 2]: with d_hidden = 1, a feature's column norm is |w_i|
    phase = represented[:, 1].long() * (1 + represented[:, 0].long())  # 0, 1 or 2
    return [("not represented", "dedicated", "superposition")[i] for i in phase.tolist()]


EXERCISES = [
    Exercise(
        id="tms.phase_losses",
        name="phase_losses",
        signature=("importance_ratio", "density"),
        title="the expected loss of each candidate solution",
        difficulty=3,
        importance=4,
        minutes="20-30",
        reference_path=f"{MODULE}:phase_losses",
        probe=probe_phase_losses,
        verdict=verdict_phase_losses,
        mistakes=PHASE_LOSSES_MISTAKES,
        alternatives=[phase_losses_from_moments, phase_losses_factored_with_cat, phase_losses_in_float64],
    ),
    Exercise(
        id="tms.classify_phase",
        name="classify_phase",
        signature=("W", "b_final"),
        title="read the phase off trained weights",
        difficulty=2,
        importance=3,
        minutes="10-15",
        reference_path=f"{MODULE}:classify_phase",
        probe=probe_classify_phase,
        verdict=verdict_classify_phase,
        mistakes=CLASSIFY_MISTAKES,
        alternatives=[classify_with_squared_weights, classify_from_column_norms],
    ),
]
