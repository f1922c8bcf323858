"""Checks for chapter 1, section 7 (singular learning theory on the toy model), with their catalogues of mistakes.

`generate_one_hot_batch` and `sgld_step` are random: their checks test distributions (each test at a level from the
verdict's `Budget`) and use the generator to compare the learner's function with itself, never with the reference's
draws, so any order of drawing is accepted. `slt_loss`, `kgon`, `estimate_llc` and `critical_n` are deterministic and
are compared with the reference on seeded inputs. The last three checks live in `tests/tms/slt_llc.py`.
"""

import math

import einops
import torch as t
from torch import Tensor

from tests.harness import CheckFailed, Context, Exercise, Mistake, attempt, expect_tensor, raised, reference_of
from tests.stats import Budget
from tests.tms.common import expect_close_to_reference, expect_shaped
from tests.tms.slt_llc import CRITICAL_N, ESTIMATE_LLC, SGLD_STEP

MODULE = "solutions.tms.learning_coefficient"

# ------------------------------------------------------------------------------------- generate_one_hot_batch

BATCH, N_INST, N_FEATURES = 12_000, 3, 5

HINT_ONE_ON = (
    "Exactly one feature is on in every input (the paper's data, not section 1's): choose one feature per "
    "(batch, inst) row, e.g. `t.randint(n_features, (batch_size, n_inst))`, and leave the others at 0"
)
HINT_CHOICE = (
    "The feature that is on must be chosen uniformly among all n_features: `t.randint(n_features, ...)` draws "
    "0, …, n_features − 1 (its upper bound is excluded)"
)
HINT_MAGNITUDE = "The feature that is on has magnitude U[0, 1] (`t.rand`), not a fixed value or another distribution"
HINT_MAGNITUDE_SIGN = "Magnitudes are U[0, 1], never negative: use `t.rand(...)` as it is, not `2 * t.rand(...) - 1`"
HINT_FEATURE_ACROSS_INSTANCES = (
    "Every instance gets its own inputs: choose the feature for every (batch, inst) row, not once per row of the "
    "batch broadcast over the `inst` axis"
)
HINT_MAGNITUDE_ACROSS_INSTANCES = (
    "Every instance gets its own magnitudes: draw one per (batch, inst) row, not one per row of the batch broadcast "
    "over the `inst` axis"
)
HINT_BATCH = "Rows of the batch must be independent samples; yours repeat each other"
HINT_GENERATOR = (
    "Draw every random number from `generator` (pass `generator=generator` to `t.randint` and `t.rand`): two calls "
    "with generators seeded alike must give the same batch"
)


def probe_generate_batch(generate_one_hot_batch, context: Context) -> dict:
    batch = generate_one_hot_batch(BATCH, N_INST, N_FEATURES, generator=context.generator(1))
    again = [
        attempt(lambda: generate_one_hot_batch(9, N_INST, N_FEATURES, generator=context.generator(2))) for _ in "ab"
    ]
    other = attempt(lambda: generate_one_hot_batch(9, N_INST, N_FEATURES, generator=context.generator(3)))
    return {"batch": batch, "again": again, "other": other}


def one_hot_from(which: Tensor, magnitude: Tensor, n_features: int) -> Tensor:
    return t.nn.functional.one_hot(which, n_features).float() * magnitude.unsqueeze(-1)


def batch_each_feature_independently(batch_size, n_inst, n_features, generator=None):
    present = t.rand((batch_size, n_inst, n_features), generator=generator) < 1 / n_features
    return present * t.rand((batch_size, n_inst, n_features), generator=generator)


def batch_never_the_last_feature(batch_size, n_inst, n_features, generator=None):
    which = t.randint(n_features - 1, (batch_size, n_inst), generator=generator)
    return one_hot_from(which, t.rand((batch_size, n_inst), generator=generator), n_features)


def batch_without_magnitudes(batch_size, n_inst, n_features, generator=None):
    which = t.randint(n_features, (batch_size, n_inst), generator=generator)
    return one_hot_from(which, t.ones(batch_size, n_inst), n_features)


def batch_gaussian_magnitudes(batch_size, n_inst, n_features, generator=None):
    which = t.randint(n_features, (batch_size, n_inst), generator=generator)
    return one_hot_from(which, t.randn((batch_size, n_inst), generator=generator), n_features)


def batch_signed_magnitudes(batch_size, n_inst, n_features, generator=None):
    which = t.randint(n_features, (batch_size, n_inst), generator=generator)
    return one_hot_from(which, 2 * t.rand((batch_size, n_inst), generator=generator) - 1, n_features)


def batch_feature_shared_across_instances(batch_size, n_inst, n_features, generator=None):
    which = t.randint(n_features, (batch_size, 1), generator=generator).expand(batch_size, n_inst)
    return one_hot_from(which, t.rand((batch_size, n_inst), generator=generator), n_features)


def batch_magnitude_shared_across_instances(batch_size, n_inst, n_features, generator=None):
    which = t.randint(n_features, (batch_size, n_inst), generator=generator)
    return one_hot_from(which, t.rand((batch_size, 1), generator=generator).expand(-1, n_inst), n_features)


def batch_half_repeated(batch_size, n_inst, n_features, generator=None):
    half = (batch_size + 1) // 2
    which = t.randint(n_features, (half, n_inst), generator=generator)
    x = one_hot_from(which, t.rand((half, n_inst), generator=generator), n_features)
    return t.cat([x, x])[:batch_size]


def batch_with_the_global_generator(batch_size, n_inst, n_features, generator=None):
    which = t.randint(n_features, (batch_size, n_inst))
    return one_hot_from(which, t.rand((batch_size, n_inst)), n_features)


GENERATE_BATCH_MISTAKES = [
    Mistake(batch_each_feature_independently, HINT_ONE_ON),
    Mistake(batch_never_the_last_feature, HINT_CHOICE),
    Mistake(batch_without_magnitudes, HINT_MAGNITUDE),
    Mistake(batch_gaussian_magnitudes, HINT_MAGNITUDE),
    Mistake(batch_signed_magnitudes, HINT_MAGNITUDE_SIGN),
    Mistake(batch_feature_shared_across_instances, HINT_FEATURE_ACROSS_INSTANCES),
    Mistake(batch_magnitude_shared_across_instances, HINT_MAGNITUDE_ACROSS_INSTANCES),
    Mistake(batch_half_repeated, HINT_BATCH),
    Mistake(batch_with_the_global_generator, HINT_GENERATOR),
]


def disjoint_pairs(values: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """Entries 0, 2, 4, … and 1, 3, 5, … along `dim`: pairs that share no entry, so they are independent."""
    even = values.narrow(dim, 0, 2 * (values.shape[dim] // 2))
    return even.index_select(dim, t.arange(0, even.shape[dim], 2)), even.index_select(
        dim, t.arange(1, even.shape[dim], 2)
    )


def verdict_generate_batch(results: dict, context: Context) -> None:
    shape = (BATCH, N_INST, N_FEATURES)
    x = expect_shaped(
        results["batch"], f"generate_one_hot_batch({BATCH}, {N_INST}, {N_FEATURES})", shape, "batch inst feats"
    )
    first, second = (
        expect_tensor(a, "generate_one_hot_batch(9, ...)", (9, N_INST, N_FEATURES), "batch inst feats")
        for a in results["again"]
    )
    if not t.equal(first, second):
        raise CheckFailed(f"{HINT_GENERATOR}.")
    if raised(results["other"]) is None and t.equal(results["other"], first):
        raise CheckFailed("Generators seeded differently gave the same batch: don't reseed inside the function.")
    on = (x != 0).sum(-1)  # [batch inst]
    # U[0, 1] is exactly 0 with probability 2⁻²⁴ per draw: a handful of empty rows is possible, two features never
    if (on > 1).any() or (on == 0).sum() > 5:
        raise CheckFailed(
            f"{HINT_ONE_ON}. {int((on != 1).sum())} of {on.numel()} rows have {int(on.max())} or 0 features on."
        )
    magnitude = x.sum(-1)
    if magnitude.min() < -1:
        raise CheckFailed(f"{HINT_MAGNITUDE}. You have magnitudes down to {float(magnitude.min()):.3f}.")
    if magnitude.min() < 0:
        raise CheckFailed(f"{HINT_MAGNITUDE_SIGN}. You have magnitudes down to {float(magnitude.min()):.3f}.")
    which = x.abs().argmax(-1)
    budget = Budget(N_INST * N_FEATURES + 2 * N_INST + 3)
    counts = t.stack([(which == f).sum(0) for f in range(N_FEATURES)], -1)  # [inst feats]
    if bad := budget.binomial_outliers(counts, BATCH, t.full((N_INST, N_FEATURES), 1 / N_FEATURES)):
        i, f = bad[0]
        raise CheckFailed(
            f"{HINT_CHOICE}: in instance {i}, feature {f} was on in {float(counts[i, f]) / BATCH:.3f} of the rows, expected {1 / N_FEATURES:.3f}."
        )
    for i in range(N_INST):
        if magnitude[:, i].max() > 1 or budget.not_uniform(magnitude[:, i], 0.0, 1.0) is not None:
            raise CheckFailed(
                f"{HINT_MAGNITUDE}: in instance {i} the magnitudes are not uniform on [0, 1] (range {float(magnitude[:, i].min()):.3f} to {float(magnitude[:, i].max()):.3f})."
            )
        same = (which[:, i] == which[:, (i + 1) % N_INST]).sum()
        low, high = budget.binomial_range(BATCH, 1 / N_FEATURES)
        if not low <= float(same) / BATCH <= high:
            raise CheckFailed(
                f"{HINT_FEATURE_ACROSS_INSTANCES}: instances {i} and {(i + 1) % N_INST} chose the same feature in {float(same) / BATCH:.3f} of the rows, independent choices give {1 / N_FEATURES:.3f}."
            )
    centred = magnitude - 0.5
    for hint, (a, b) in [
        (HINT_MAGNITUDE_ACROSS_INSTANCES, disjoint_pairs(centred, 1)),
        (HINT_BATCH, disjoint_pairs(centred, 0)),
        (HINT_BATCH, (centred[: BATCH // 2], centred[BATCH // 2 :])),
    ]:
        products = (a * b).flatten()
        if abs(float(products.mean())) > budget.hoeffding_radius(products.numel(), 0.5):
            raise CheckFailed(
                f"{hint}: the magnitudes of paired rows are correlated (mean of (m₁ − ½)(m₂ − ½) = {float(products.mean()):.4f})."
            )


def batch_from_multinomial(batch_size, n_inst, n_features, generator=None):
    weights = t.ones(batch_size * n_inst, n_features)
    which = t.multinomial(weights, 1, generator=generator).view(batch_size, n_inst)
    return one_hot_from(which, t.rand((batch_size, n_inst), generator=generator), n_features)


def batch_by_argmax(batch_size, n_inst, n_features, generator=None):
    magnitude = t.rand((batch_size, n_inst, 1), generator=generator)
    scores = t.rand((batch_size, n_inst, n_features), generator=generator)
    return (scores == scores.max(-1, keepdim=True).values) * magnitude


# ---------------------------------------------------------------------------------------------------- slt_loss

LOSS_SHAPE = (4, 6, 256)  # inst, feats, batch


def loss_case(context: Context) -> tuple[Tensor, Tensor, Tensor]:
    """Weights of varied norms, biases of both signs (so the ReLU cuts some outputs) and dense U[0, 1] inputs."""
    g = context.generator(11)
    n_inst, n_features, batch = LOSS_SHAPE
    W = t.randn((n_inst, 2, n_features), generator=g) * (0.5 + t.rand((n_inst, 1, n_features), generator=g))
    b = t.randn((n_inst, n_features), generator=g) * 0.4
    x = t.rand((batch, n_inst, n_features), generator=g) * (t.rand((batch, n_inst, n_features), generator=g) < 0.4)
    return W, b, x


def probe_loss(slt_loss, context: Context) -> dict:
    W, b, x = (tensor.to(context.device) for tensor in loss_case(context))
    W.requires_grad_(True)
    b.requires_grad_(True)
    loss = slt_loss(W, b, x)
    grads = attempt(lambda: list(t.autograd.grad(loss.sum(), (W, b))))
    one = attempt(lambda: slt_loss(W[:1].detach(), b[:1].detach(), x[:1, :1]))
    return {"loss": loss, "grads": grads, "one": one, "x_after": x}


def outputs_of(W, b, x):
    hidden = einops.einsum(W, x, "inst d feats, batch inst feats -> batch inst d")
    return einops.einsum(W, hidden, "inst d feats, batch inst d -> batch inst feats") + b


def loss_mean_over_features(W, b, x):
    return (t.relu(outputs_of(W, b, x)) - x).pow(2).mean((0, 2))


def loss_summed_over_batch(W, b, x):
    return (t.relu(outputs_of(W, b, x)) - x).pow(2).sum((0, 2))


def loss_without_relu(W, b, x):
    return (outputs_of(W, b, x) - x).pow(2).sum(-1).mean(0)


def loss_without_bias(W, b, x):
    return (t.relu(outputs_of(W, b, x) - b) - x).pow(2).sum(-1).mean(0)


def loss_bias_after_relu(W, b, x):
    return (t.relu(outputs_of(W, b, x) - b) + b - x).pow(2).sum(-1).mean(0)


def loss_absolute_error(W, b, x):
    return (t.relu(outputs_of(W, b, x)) - x).abs().sum(-1).mean(0)


def loss_summed_over_instances(W, b, x):
    return (t.relu(outputs_of(W, b, x)) - x).pow(2).sum()


def loss_detached(W, b, x):
    return (t.relu(outputs_of(W, b, x)) - x).pow(2).sum(-1).mean(0).detach()


def loss_with_half(W, b, x):
    return 0.5 * (t.relu(outputs_of(W, b, x)) - x).pow(2).sum(-1).mean(0)


HINT_GRADIENT = "Keep the loss differentiable: no `.detach()`, `.item()` or `t.no_grad()` inside `slt_loss`"
HINT_PER_INSTANCE = "Return one loss per instance, shape [inst]: sum over the features, average over the batch only"

LOSS_MISTAKES = [
    Mistake(
        loss_mean_over_features,
        "Sum the squared error over the features (the paper's loss), don't average it: W = 0, b = 0 then costs 1/3.",
    ),
    Mistake(loss_summed_over_batch, "Average over the batch (axis 0), don't sum over it."),
    Mistake(loss_without_relu, "The model's output is ReLU(WᵀW x + b): apply the ReLU before comparing with x."),
    Mistake(loss_without_bias, "Add the bias b inside the ReLU: ReLU(WᵀW x + b)."),
    Mistake(loss_bias_after_relu, "The bias goes inside the ReLU, ReLU(WᵀW x + b), not after it."),
    Mistake(loss_absolute_error, "Square the error, don't take its absolute value."),
    Mistake(loss_summed_over_instances, HINT_PER_INSTANCE),
    Mistake(loss_detached, HINT_GRADIENT),
    Mistake(loss_with_half, "No factor ½: the paper's loss is the plain squared error summed over features."),
]


def verdict_loss(results: dict, context: Context) -> None:
    slt_loss = reference_of("tms.slt.loss")

    W, b, x = loss_case(context)
    if not t.equal(results["x_after"], x):
        raise CheckFailed("slt_loss changed x in place; compute new tensors instead.")
    got = results["loss"]
    if isinstance(got, Tensor) and got.dim() == 0:
        raise CheckFailed(f"{HINT_PER_INSTANCE}. You returned a single number.")
    got = expect_shaped(got, "slt_loss(W, b, x)", (W.shape[0],), "inst")
    run = lambda impl: impl(W, b, x)
    expect_close_to_reference(got, slt_loss(W, b, x), "slt_loss(W, b, x)", LOSS_MISTAKES, run)
    if (message := raised(results["grads"])) is not None:
        raise CheckFailed(f"{HINT_GRADIENT}. (Differentiating your loss raised {message})")
    W.requires_grad_(True)
    b.requires_grad_(True)
    expected = t.autograd.grad(slt_loss(W, b, x).sum(), (W, b))
    for name, grad, reference in zip(("W", "b"), results["grads"], expected, strict=True):
        if not isinstance(grad, Tensor) or not t.allclose(grad, reference, rtol=1e-4, atol=1e-5):
            raise CheckFailed(f"The gradient of your loss with respect to {name} differs from the reference's.")
    one = slt_loss(W[:1].detach(), b[:1].detach(), x[:1, :1])
    got_one = expect_shaped(results["one"], "slt_loss on one instance and one input", (1,), "inst")
    expect_close_to_reference(got_one, one, "slt_loss on one instance and one input", [], lambda impl: None)


def loss_with_matmul(W, b, x):
    gram = W.transpose(1, 2) @ W  # [inst feats feats], symmetric
    out = t.relu(t.einsum("ifg,big->bif", gram, x) + b)
    return ((out - x) ** 2).sum(dim=2).mean(dim=0)


def loss_with_mse(W, b, x):
    out = t.relu(outputs_of(W, b, x))
    return t.nn.functional.mse_loss(out, x, reduction="none").mean(0).sum(-1)


# ---------------------------------------------------------------------------------------------------- kgon

KGON_CASES = [  # k, n_features, length, bias, dead_bias
    (5, 6, 1.17046, -0.28230, 1 / 12),
    (6, 6, 1.32053, -0.61814, 0.0),
    (4, 7, 0.8, 0.1, (0.05, -0.2, 0.3)),
    (3, 5, 1.3, -0.15, -0.07),
]


def probe_kgon(kgon, context: Context) -> dict:
    found = []
    for k, n_features, length, bias, dead in KGON_CASES:
        dead_bias = t.tensor(dead) if isinstance(dead, tuple) else dead
        found.append(attempt(lambda: list(kgon(k, n_features, length, bias, dead_bias))))
    default = attempt(lambda: list(kgon(5, 7, 1.1, -0.2)))
    return {"cases": found, "default": default}


def kgon_from_angles(angles, k, n_features, length, bias, dead_bias):
    W = t.zeros(2, n_features)
    W[0, :k], W[1, :k] = length * t.cos(angles), length * t.sin(angles)
    b = t.empty(n_features)
    b[:k], b[k:] = bias, t.as_tensor(dead_bias, dtype=t.float32)
    return W, b


def kgon_linspace_to_two_pi(k, n_features, length, bias, dead_bias=0.0):
    return kgon_from_angles(t.linspace(0, 2 * math.pi, k), k, n_features, length, bias, dead_bias)


def kgon_angles_from_one(k, n_features, length, bias, dead_bias=0.0):
    return kgon_from_angles(2 * math.pi * t.arange(1, k + 1) / k, k, n_features, length, bias, dead_bias)


def kgon_in_degrees(k, n_features, length, bias, dead_bias=0.0):
    return kgon_from_angles(360 * t.arange(k) / k, k, n_features, length, bias, dead_bias)


def kgon_unit_columns(k, n_features, length, bias, dead_bias=0.0):
    return kgon_from_angles(2 * math.pi * t.arange(k) / k, k, n_features, 1.0, bias, dead_bias)


def kgon_sin_first(k, n_features, length, bias, dead_bias=0.0):
    W, b = kgon_from_angles(2 * math.pi * t.arange(k) / k, k, n_features, length, bias, dead_bias)
    return W.flip(0), b


def kgon_dead_bias_ignored(k, n_features, length, bias, dead_bias=0.0):
    return kgon_from_angles(2 * math.pi * t.arange(k) / k, k, n_features, length, bias, 0.0)


def kgon_bias_everywhere(k, n_features, length, bias, dead_bias=0.0):
    return kgon_from_angles(2 * math.pi * t.arange(k) / k, k, n_features, length, bias, bias)


def kgon_live_columns_last(k, n_features, length, bias, dead_bias=0.0):
    W, b = kgon_from_angles(2 * math.pi * t.arange(k) / k, k, n_features, length, bias, dead_bias)
    return W.roll(n_features - k, 1), b.roll(n_features - k)


def kgon_transposed(k, n_features, length, bias, dead_bias=0.0):
    W, b = kgon_from_angles(2 * math.pi * t.arange(k) / k, k, n_features, length, bias, dead_bias)
    return W.T, b


HINT_ANGLES = "Column j of the k-gon is at angle 2πj/k for j = 0, …, k − 1 (in radians)"
KGON_MISTAKES = [
    Mistake(
        kgon_linspace_to_two_pi,
        f"{HINT_ANGLES}: `t.linspace(0, 2π, k)` ends at 2π itself, so its last column repeats the first (use `t.arange(k) * 2π / k`).",
    ),
    Mistake(kgon_angles_from_one, f"{HINT_ANGLES}: start at j = 0, so the first live column points along (length, 0)."),
    Mistake(kgon_in_degrees, f"{HINT_ANGLES}: `t.cos` and `t.sin` take radians, not degrees."),
    Mistake(kgon_unit_columns, "Every live column has norm `length`, not 1: multiply the unit vectors by it."),
    Mistake(kgon_sin_first, "Row 0 of W is the first coordinate, length·cos(angle); row 1 is length·sin(angle)."),
    Mistake(
        kgon_dead_bias_ignored, "The dead columns get `dead_bias` (a float for all of them or one value each), not 0."
    ),
    Mistake(kgon_bias_everywhere, "Only the k live columns get `bias`; the dead ones get `dead_bias`."),
    Mistake(
        kgon_live_columns_last, "The live columns are the first k (columns 0, …, k − 1); the dead ones come after them."
    ),
    Mistake(kgon_transposed, "W has shape [2, feats]: one column per feature, one row per hidden dimension."),
]


def verdict_kgon(results: dict, context: Context) -> None:
    kgon = reference_of("tms.slt.kgon")

    calls = [(case, results["cases"][i]) for i, case in enumerate(KGON_CASES)] + [
        ((5, 7, 1.1, -0.2, 0.0), results["default"])
    ]
    for (k, n_features, length, bias, dead), got in calls:
        dead_bias = t.tensor(dead) if isinstance(dead, tuple) else dead
        what = f"kgon({k}, {n_features}, {length}, {bias}, dead_bias={dead})"
        if (message := raised(got)) is not None:
            raise CheckFailed(f"{what} raised {message}")
        if not isinstance(got, list) or len(got) != 2:
            raise CheckFailed(f"{what} should return a tuple (W, b).")
        W_expected, b_expected = kgon(k, n_features, length, bias, dead_bias)
        W_got, b_got = got
        if isinstance(W_got, Tensor) and tuple(W_got.shape) == (n_features, 2):
            raise CheckFailed(f"{KGON_MISTAKES[-1].hint} {what} returned W of shape {tuple(W_got.shape)}.")
        W_got = expect_shaped(W_got, f"W of {what}", (2, n_features), "2 feats")
        b_got = expect_shaped(b_got, f"b of {what}", (n_features,), "feats")
        run = lambda impl: t.cat([part.flatten() for part in impl(k, n_features, length, bias, dead_bias)])
        expected = t.cat([W_expected.flatten(), b_expected])
        expect_close_to_reference(t.cat([W_got.flatten(), b_got]), expected, f"(W, b) of {what}", KGON_MISTAKES, run)


def kgon_with_polar(k, n_features, length, bias, dead_bias=0.0):
    points = t.polar(t.full((k,), float(length)), t.arange(k) * (2 * t.pi / k))
    W = t.cat([t.stack([points.real, points.imag]), t.zeros(2, n_features - k)], dim=1)
    b = t.cat([t.full((k,), float(bias)), t.ones(n_features - k) * dead_bias])
    return W, b


def kgon_with_loops(k, n_features, length, bias, dead_bias=0.0):
    W, b = t.zeros(2, n_features), t.zeros(n_features)
    for j in range(n_features):
        if j < k:
            W[0, j], W[1, j], b[j] = (
                length * math.cos(2 * math.pi * j / k),
                length * math.sin(2 * math.pi * j / k),
                bias,
            )
        else:
            b[j] = dead_bias if isinstance(dead_bias, float | int) else dead_bias[j - k]
    return W, b


EXERCISES = [
    Exercise(
        id="tms.slt.generate_batch",
        name="generate_one_hot_batch",
        signature=("batch_size", "n_inst", "n_features"),
        reference_path=f"{MODULE}:generate_one_hot_batch",
        probe=probe_generate_batch,
        verdict=verdict_generate_batch,
        mistakes=GENERATE_BATCH_MISTAKES,
        alternatives=[batch_from_multinomial, batch_by_argmax],
    ),
    Exercise(
        id="tms.slt.loss",
        name="slt_loss",
        signature=("W", "b", "x"),
        reference_path=f"{MODULE}:slt_loss",
        probe=probe_loss,
        verdict=verdict_loss,
        mistakes=LOSS_MISTAKES,
        alternatives=[loss_with_matmul, loss_with_mse],
    ),
    Exercise(
        id="tms.slt.kgon",
        name="kgon",
        signature=("k", "n_features", "length", "bias"),
        reference_path=f"{MODULE}:kgon",
        probe=probe_kgon,
        verdict=verdict_kgon,
        mistakes=KGON_MISTAKES,
        alternatives=[kgon_with_polar, kgon_with_loops],
    ),
    SGLD_STEP,
    ESTIMATE_LLC,
    CRITICAL_N,
]
