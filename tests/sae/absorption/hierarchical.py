"""Checks for `sae.hierarchical_features` (row 31), with its catalogue of mistakes and its alternatives.

`generate_hierarchical_batch` is random, so its check tests a distribution, on one large call with magnitudes on
[0.25, 1] and one small call with the default magnitude 1: exactly (a child never appears without its parent; values
are 0 or in the magnitude range; the default gives exactly 1), and statistically, each test at level
FALSE_FAILURE_RATE / (number of tests): how often the parent, the child among parent inputs and every other feature
are present (Chernoff bounds), independence of the parent from the other features, of the other features from each
other, across instances and across the batch, uniform magnitudes (Kolmogorov–Smirnov) and independent magnitudes of
parent and child (Hoeffding). When a test fails, the verdict works out which known mistake explains the data.

Kit properties: 1 (every probability at a value of its own, `magnitude_min` at its default and at 0.25, `n_other` at
3, 1, 2 and 0), 3 (every frequency is tested per instance, and instances against each other) and 6 (a batch of 7;
`n_other=0`, no other feature: shape [batch, inst, 2]) apply; 2, 4 and 5 do not (no SAE, nothing differentiable, no
parameters).
"""

import einops
import torch as t
from torch import Tensor

from tests.harness import CheckFailed, Context, Exercise, Mistake, attempt, raised
from tests.stats import Budget, explained_by

MODULE = "solutions.sae.absorption"

# ------------------------------------------------------------------------------------ generate_hierarchical_batch

# The large call: every probability different from the others and from 1 minus itself, so that using the wrong one
# shows; the child's conditional probability far from its marginal (0.3 · 0.45 = 0.135).
BIG = dict(batch_size=20_000, n_inst=3, p_parent=0.3, p_child_given_parent=0.45, p_other=0.2, n_other=3)
MAGNITUDE_MIN = 0.25
SMALL = dict(batch_size=2_000, n_inst=2, p_parent=0.5, p_child_given_parent=0.7, p_other=0.15, n_other=1)
TINY = dict(batch_size=7, n_inst=2, p_parent=0.5, p_child_given_parent=0.5, p_other=0.5, n_other=2)
NO_OTHERS = dict(batch_size=50, n_inst=2, p_parent=0.5, p_child_given_parent=0.5, p_other=0.3, n_other=0)
ZERO_MAGNITUDE_SLACK = 0  # magnitudes are ≥ 0.25 in the large call, so a present feature is never 0

HINT_SHAPE = (
    "Return [batch_size, n_inst, 2 + n_other]: feature 0 the parent, feature 1 the child, then the n_other others"
)
HINT_FRESH = "Two calls returned the same batch: don't reseed the random generator inside your function"
HINT_RANGE = (
    "A present feature's magnitude is uniform on [magnitude_min, 1] (`magnitude_min + (1 - magnitude_min) * "
    "t.rand(...)`), an absent one exactly 0"
)
HINT_DEFAULT = "With the default `magnitude_min=1.0` every present feature has magnitude exactly 1"
HINT_CHILD_INDEPENDENT = (
    "The child appears without its parent: it is drawn independently of it. A child only occurs with its parent: "
    "child = parent & (t.rand(...) < p_child_given_parent)"
)
HINT_CHILD_MARGINAL = (
    "Your child has the right overall frequency p_parent · p_child_given_parent, but it appears without its parent: "
    "draw it only where the parent is present, with the conditional probability p_child_given_parent"
)
HINT_EXCLUSIVE = (
    "The parent must stay present when its child is (child ⇒ parent, not child instead of parent): don't switch the "
    "parent off where the child is on"
)
HINT_ORDER = "Feature 0 is the parent and feature 1 the child; yours has them the other way round"
HINT_CHILD_GIVEN_PARENT = (
    "Among inputs with the parent, the child must be present with probability p_child_given_parent. It is already "
    "conditional: child = parent & (t.rand(...) < p_child_given_parent), without multiplying by p_parent"
)
HINT_CHILD_FREQUENCY = "Among inputs with the parent, the child must be present with probability p_child_given_parent"
HINT_PARENT_FREQUENCY = "The parent must be present with probability p_parent (keep it where t.rand(...) < p_parent)"
HINT_OTHER_FREQUENCY = "Each other feature must be present with probability p_other"
HINT_OTHER_WITH_PARENT = (
    "The other features must be independent of the parent: draw their presence with their own t.rand, not with the "
    "parent's draw"
)
HINT_OTHERS_INDEPENDENT = (
    "The other features must be independent of each other: one presence draw per (batch, inst, feature), not one "
    "shared by all of them"
)
HINT_INSTANCES = (
    "Instances must get independent data: draw random numbers for the `inst` axis too, not one broadcast over it"
)
HINT_BATCH = "Rows of the batch must be independent samples; yours repeat each other"
HINT_MAGNITUDE = "Present magnitudes must be uniform on [magnitude_min, 1]"
HINT_SHARED_MAGNITUDE = (
    "The parent and the child are present together, but each has its own magnitude: draw one t.rand per feature, "
    "not one shared by the parent and its child"
)
HINT_NO_OTHERS = (
    "With `n_other=0` there is no other feature: return [batch_size, n_inst, 2]. Draw the other features as one "
    "tensor of shape [batch_size, n_inst, n_other] (`t.stack` or `t.cat` of an empty list raises)"
)
HINT_MAGNITUDES_ACROSS = "Every feature needs its own magnitude: the other features share theirs in yours"

# parent 3, child 3, others 9, parent–other 9, other pairs 6, instances 8, batch 12, KS 3, magnitude pairs 2
HIERARCHY_BUDGET = 55


def probe_generate_hierarchical_batch(generate_hierarchical_batch, context: Context) -> dict:
    with t.no_grad():
        return {
            "big": attempt(lambda: generate_hierarchical_batch(**BIG, magnitude_min=MAGNITUDE_MIN)),
            "default": attempt(lambda: generate_hierarchical_batch(*SMALL.values())),
            "tiny": attempt(lambda: generate_hierarchical_batch(**TINY)),
            "tiny_again": attempt(lambda: generate_hierarchical_batch(**TINY)),
            "no_others": attempt(lambda: generate_hierarchical_batch(**NO_OTHERS)),
        }


def read_batch(got, call: dict, what: str) -> Tensor:
    if (message := raised(got)) is not None:
        raise CheckFailed(f"{what} raised {message}")
    shape = (call["batch_size"], call["n_inst"], 2 + call["n_other"])
    if not isinstance(got, Tensor):
        raise CheckFailed(f"{what} should return a tensor, got {type(got).__name__}.")
    if tuple(got.shape) != shape:
        raise CheckFailed(f"{what} returned shape {tuple(got.shape)}, not {shape}. {HINT_SHAPE}.")
    if got.dtype != t.float32:
        raise CheckFailed(f"{what} should return float32, got {got.dtype}.")
    return got


def check_child_with_parent(batch: Tensor, call: dict, what: str) -> None:
    """Exactly: the child is never present without its parent; if it is, name the mistake from the frequencies."""
    parent, child = batch[..., 0] > 0, batch[..., 1] > 0
    orphans = int((child & ~parent).sum())
    if orphans == 0:
        return
    n = batch.shape[0]
    p, q = call["p_parent"], call["p_child_given_parent"]
    if not (child & parent).any():
        hint = HINT_EXCLUSIVE
    elif explained_by(child.sum(0), n, t.tensor(p)) and explained_by(parent.sum(0), n, t.tensor(p * q)):
        hint = HINT_ORDER
    elif explained_by(child.sum(0), n, t.tensor(p * q)):
        hint = HINT_CHILD_MARGINAL
    else:
        hint = HINT_CHILD_INDEPENDENT
    raise CheckFailed(f"{hint}. In {what}, {orphans} inputs have the child without the parent.")


def verdict_generate_hierarchical_batch(results: dict, context: Context) -> None:
    big_call = f"generate_hierarchical_batch(**{BIG}, magnitude_min={MAGNITUDE_MIN})"
    batch = read_batch(results["big"], BIG, big_call)
    default = read_batch(results["default"], SMALL, f"generate_hierarchical_batch{tuple(SMALL.values())}")
    tiny = read_batch(results["tiny"], TINY, f"generate_hierarchical_batch(**{TINY})")
    if not t.isfinite(batch).all() or not ((batch == 0) | ((batch >= MAGNITUDE_MIN) & (batch <= 1))).all():
        low = batch[batch != 0].min() if (batch != 0).any() else 0.0
        raise CheckFailed(
            f"{HINT_RANGE}; with magnitude_min={MAGNITUDE_MIN} yours has non-zero values from {float(low):.3g} to "
            f"{float(batch.max()):.3g}."
        )
    if not ((default == 0) | (default == 1)).all():
        raise CheckFailed(f"{HINT_DEFAULT}; yours has values other than 0 and 1 without a magnitude_min argument.")
    if isinstance(results["tiny_again"], Tensor) and t.equal(tiny, results["tiny_again"]):
        raise CheckFailed(HINT_FRESH + ".")
    check_child_with_parent(batch, BIG, big_call)
    check_child_with_parent(default, SMALL, "the call with the default magnitudes")
    if (message := raised(results["no_others"])) is not None:
        raise CheckFailed(f"{HINT_NO_OTHERS}; generate_hierarchical_batch(**{NO_OTHERS}) raised {message}.")
    no_others = read_batch(results["no_others"], NO_OTHERS, f"generate_hierarchical_batch(**{NO_OTHERS})")
    check_child_with_parent(no_others, NO_OTHERS, "the call with n_other=0")

    tests = Budget(HIERARCHY_BUDGET)
    n, n_inst = batch.shape[:2]
    present = batch > 0
    parent, child, others = present[..., 0], present[..., 1], present[..., 2:]
    p, q, r = (t.tensor(BIG[key]) for key in ("p_parent", "p_child_given_parent", "p_other"))

    counts = parent.sum(0)
    if bad := tests.binomial_outliers(counts, n, p.expand(n_inst)):
        hint = HINT_PARENT_FREQUENCY
        raise CheckFailed(f"{hint}. In instance {bad[0][0]} (p_parent = {float(p):.2f}) the parent was present in "
                          f"{float(counts[bad[0]]) / n:.3f} of {n} inputs.")  # fmt: skip
    with_child, with_parent = (child & parent).sum(0), parent.sum(0)
    if bad := tests.binomial_outliers(with_child, with_parent, q.expand(n_inst)):
        i = bad[0][0]
        conditional = float(with_child[i]) / float(with_parent[i])
        hint = HINT_CHILD_GIVEN_PARENT if abs(conditional - float(p * q)) < 0.03 else HINT_CHILD_FREQUENCY
        raise CheckFailed(f"{hint}. In instance {i} (p_child_given_parent = {float(q):.2f}) the child was present in "
                          f"{conditional:.3f} of the inputs with the parent.")  # fmt: skip
    counts = others.sum(0)
    if bad := tests.binomial_outliers(counts, n, r.expand(counts.shape)):
        i, f = bad[0]
        raise CheckFailed(f"{HINT_OTHER_FREQUENCY}. In instance {i}, other feature {f} (p_other = {float(r):.2f}) "
                          f"was present in {float(counts[i, f]) / n:.3f} of {n} inputs.")  # fmt: skip
    together = (parent[..., None] & others).sum(0)
    if bad := tests.binomial_outliers(together, n, (p * r).expand(together.shape)):
        i, f = bad[0]
        raise CheckFailed(f"{HINT_OTHER_WITH_PARENT}. In instance {i}, the parent and other feature {f} were present "
                          f"together in {float(together[i, f]) / n:.3f} of inputs, not {float(p * r):.3f}.")  # fmt: skip
    pairs = (others[..., :-1] & others[..., 1:]).sum(0)
    if bad := tests.binomial_outliers(pairs, n, (r * r).expand(pairs.shape)):
        raise CheckFailed(f"{HINT_OTHERS_INDEPENDENT} (instance {bad[0][0]}: two other features present together in "
                          f"{float(pairs[bad[0]]) / n:.3f} of inputs, not {float(r * r):.3f}).")  # fmt: skip
    units = t.cat([parent[..., None], others], dim=-1)  # [batch inst 1 + n_other]
    rates = t.cat([p[None], r.expand(BIG["n_other"])])  # [1 + n_other]
    neighbours = (units[:, :-1] & units[:, 1:]).sum(0)
    if tests.binomial_outliers(neighbours, n, (rates * rates).expand(neighbours.shape)):
        raise CheckFailed(HINT_INSTANCES + ".")
    half = n // 2
    halves = (units[:half] & units[half : 2 * half]).sum(0)
    if tests.binomial_outliers(halves, half, (rates * rates).expand(halves.shape)):
        raise CheckFailed(HINT_BATCH + ".")

    low, width = MAGNITUDE_MIN, 1 - MAGNITUDE_MIN
    for i in range(n_inst):
        values = batch[:, i][present[:, i]]
        if (distance := tests.not_uniform(values, low, 1.0)) is not None:
            raise CheckFailed(f"{HINT_MAGNITUDE}. In instance {i} they are not (KS distance {distance:.3f}).")
    centre, spread = low + width / 2, (width / 2) ** 2
    both = parent & child
    products = ((batch[..., 0] - centre) * (batch[..., 1] - centre))[both]
    if products.numel() and tests.mean_is_off(products, 0.0, 2 * spread):
        raise CheckFailed(f"{HINT_SHARED_MAGNITUDE} (the mean of (m_parent − c)(m_child − c) is "
                          f"{float(products.mean()):.4f}, not 0).")  # fmt: skip
    both = others[..., :-1] & others[..., 1:]
    products = ((batch[..., 2:-1] - centre) * (batch[..., 3:] - centre))[both]
    if products.numel() and tests.mean_is_off(products, 0.0, 2 * spread):
        raise CheckFailed(f"{HINT_MAGNITUDES_ACROSS} (mean of (m₁ − c)(m₂ − c) {float(products.mean()):.4f}).")


def magnitudes(shape, magnitude_min):
    return magnitude_min + (1 - magnitude_min) * t.rand(shape)


def assemble(parent, child, others, magnitude_min):
    present = t.cat([parent[..., None], child[..., None], others], dim=-1)
    return t.where(present, magnitudes(present.shape, magnitude_min), 0.0)


def hier_child_independent_of_parent(
    batch_size, n_inst, p_parent, p_child_given_parent, p_other, n_other, magnitude_min=1.0
):
    parent = t.rand((batch_size, n_inst)) < p_parent
    child = t.rand((batch_size, n_inst)) < p_child_given_parent
    return assemble(parent, child, t.rand((batch_size, n_inst, n_other)) < p_other, magnitude_min)


def hier_child_with_marginal_probability(
    batch_size, n_inst, p_parent, p_child_given_parent, p_other, n_other, magnitude_min=1.0
):
    parent = t.rand((batch_size, n_inst)) < p_parent
    child = t.rand((batch_size, n_inst)) < p_parent * p_child_given_parent  # right marginal, but not nested
    return assemble(parent, child, t.rand((batch_size, n_inst, n_other)) < p_other, magnitude_min)


def hier_child_probability_multiplied_again(
    batch_size, n_inst, p_parent, p_child_given_parent, p_other, n_other, magnitude_min=1.0
):
    parent = t.rand((batch_size, n_inst)) < p_parent
    child = parent & (t.rand((batch_size, n_inst)) < p_parent * p_child_given_parent)
    return assemble(parent, child, t.rand((batch_size, n_inst, n_other)) < p_other, magnitude_min)


def hier_child_replaces_parent(batch_size, n_inst, p_parent, p_child_given_parent, p_other, n_other, magnitude_min=1.0):
    drawn = t.rand((batch_size, n_inst)) < p_parent
    child = drawn & (t.rand((batch_size, n_inst)) < p_child_given_parent)
    return assemble(drawn & ~child, child, t.rand((batch_size, n_inst, n_other)) < p_other, magnitude_min)


def hier_child_first(batch_size, n_inst, p_parent, p_child_given_parent, p_other, n_other, magnitude_min=1.0):
    parent = t.rand((batch_size, n_inst)) < p_parent
    child = parent & (t.rand((batch_size, n_inst)) < p_child_given_parent)
    return assemble(child, parent, t.rand((batch_size, n_inst, n_other)) < p_other, magnitude_min)


def hier_parent_magnitude_shared_with_child(
    batch_size, n_inst, p_parent, p_child_given_parent, p_other, n_other, magnitude_min=1.0
):
    parent = t.rand((batch_size, n_inst)) < p_parent
    child = parent & (t.rand((batch_size, n_inst)) < p_child_given_parent)
    shared = magnitudes((batch_size, n_inst, 1), magnitude_min)
    values = t.cat([shared, shared, magnitudes((batch_size, n_inst, n_other), magnitude_min)], dim=-1)
    present = t.cat([parent[..., None], child[..., None], t.rand((batch_size, n_inst, n_other)) < p_other], dim=-1)
    return t.where(present, values, 0.0)


def hier_others_with_parent_probability(
    batch_size, n_inst, p_parent, p_child_given_parent, p_other, n_other, magnitude_min=1.0
):
    parent = t.rand((batch_size, n_inst)) < p_parent
    child = parent & (t.rand((batch_size, n_inst)) < p_child_given_parent)
    return assemble(parent, child, t.rand((batch_size, n_inst, n_other)) < p_parent, magnitude_min)


def hier_others_reuse_parent_draw(
    batch_size, n_inst, p_parent, p_child_given_parent, p_other, n_other, magnitude_min=1.0
):
    u = t.rand((batch_size, n_inst))
    parent = u < p_parent
    child = parent & (t.rand((batch_size, n_inst)) < p_child_given_parent)
    others = (u < p_other)[..., None].expand(-1, -1, n_other)  # one draw for the parent and every other feature
    return assemble(parent, child, others, magnitude_min)


def hier_one_draw_for_all_others(
    batch_size, n_inst, p_parent, p_child_given_parent, p_other, n_other, magnitude_min=1.0
):
    parent = t.rand((batch_size, n_inst)) < p_parent
    child = parent & (t.rand((batch_size, n_inst)) < p_child_given_parent)
    others = (t.rand((batch_size, n_inst, 1)) < p_other).expand(-1, -1, n_other)
    return assemble(parent, child, others, magnitude_min)


def hier_shared_across_instances(
    batch_size, n_inst, p_parent, p_child_given_parent, p_other, n_other, magnitude_min=1.0
):
    parent = (t.rand((batch_size, 1)) < p_parent).expand(-1, n_inst)
    child = parent & (t.rand((batch_size, n_inst)) < p_child_given_parent)
    others = (t.rand((batch_size, 1, n_other)) < p_other).expand(-1, n_inst, -1)
    return assemble(parent, child, others, magnitude_min)


def hier_magnitudes_ignore_minimum(
    batch_size, n_inst, p_parent, p_child_given_parent, p_other, n_other, magnitude_min=1.0
):
    parent = t.rand((batch_size, n_inst)) < p_parent
    child = parent & (t.rand((batch_size, n_inst)) < p_child_given_parent)
    present = t.cat([parent[..., None], child[..., None], t.rand((batch_size, n_inst, n_other)) < p_other], dim=-1)
    return t.where(present, t.rand(present.shape).clamp_max(1.0), 0.0)


def hier_default_uniform_magnitudes(
    batch_size, n_inst, p_parent, p_child_given_parent, p_other, n_other, magnitude_min=0.0
):
    parent = t.rand((batch_size, n_inst)) < p_parent
    child = parent & (t.rand((batch_size, n_inst)) < p_child_given_parent)
    return assemble(parent, child, t.rand((batch_size, n_inst, n_other)) < p_other, magnitude_min)


def hier_two_others_always(batch_size, n_inst, p_parent, p_child_given_parent, p_other, n_other, magnitude_min=1.0):
    parent = t.rand((batch_size, n_inst)) < p_parent
    child = parent & (t.rand((batch_size, n_inst)) < p_child_given_parent)
    return assemble(parent, child, t.rand((batch_size, n_inst, 2)) < p_other, magnitude_min)


def hier_fixed_seed(batch_size, n_inst, p_parent, p_child_given_parent, p_other, n_other, magnitude_min=1.0):
    t.manual_seed(0)
    parent = t.rand((batch_size, n_inst)) < p_parent
    child = parent & (t.rand((batch_size, n_inst)) < p_child_given_parent)
    return assemble(parent, child, t.rand((batch_size, n_inst, n_other)) < p_other, magnitude_min)


def hier_others_stacked_one_by_one(
    batch_size, n_inst, p_parent, p_child_given_parent, p_other, n_other, magnitude_min=1.0
):
    # kind 6: one draw per other feature, stacked: fine for n_other ≥ 1, raises for n_other = 0
    parent = t.rand((batch_size, n_inst)) < p_parent
    child = parent & (t.rand((batch_size, n_inst)) < p_child_given_parent)
    others = t.stack([t.rand((batch_size, n_inst)) < p_other for _ in range(n_other)], dim=-1)
    return assemble(parent, child, others, magnitude_min)


HIERARCHY_MISTAKES = [
    Mistake(hier_child_independent_of_parent, HINT_CHILD_INDEPENDENT),
    Mistake(hier_child_with_marginal_probability, HINT_CHILD_MARGINAL),
    Mistake(hier_child_probability_multiplied_again, HINT_CHILD_GIVEN_PARENT),
    Mistake(hier_child_replaces_parent, HINT_EXCLUSIVE),
    Mistake(hier_child_first, HINT_ORDER),
    Mistake(hier_parent_magnitude_shared_with_child, HINT_SHARED_MAGNITUDE),
    Mistake(hier_others_with_parent_probability, HINT_OTHER_FREQUENCY),
    Mistake(hier_others_reuse_parent_draw, HINT_OTHER_WITH_PARENT),
    Mistake(hier_one_draw_for_all_others, HINT_OTHERS_INDEPENDENT),
    Mistake(hier_shared_across_instances, HINT_INSTANCES),
    Mistake(hier_magnitudes_ignore_minimum, HINT_RANGE),
    Mistake(hier_default_uniform_magnitudes, HINT_DEFAULT),
    Mistake(hier_two_others_always, HINT_SHAPE),
    Mistake(hier_fixed_seed, HINT_FRESH),
    Mistake(hier_others_stacked_one_by_one, HINT_NO_OTHERS),
]


def hier_child_drawn_everywhere_then_masked(
    batch_size, n_inst, p_parent, p_child_given_parent, p_other, n_other, magnitude_min=1.0
):
    # every feature drawn at once with its own probability, then the child masked by its parent
    probabilities = t.tensor([p_parent, p_child_given_parent] + [p_other] * n_other)
    x = t.where(
        t.rand((batch_size, n_inst, 2 + n_other)) < probabilities,
        t.empty((batch_size, n_inst, 2 + n_other)).uniform_(magnitude_min, 1.0) if magnitude_min < 1 else 1.0,
        0.0,
    )
    x[..., 1] = x[..., 1] * (x[..., 0] > 0)
    return x


def hier_child_from_parent_uniform(
    batch_size, n_inst, p_parent, p_child_given_parent, p_other, n_other, magnitude_min=1.0
):
    # one uniform for the pair: parent where u < p, child where u < p · q (so P(child | parent) = q, never without it)
    u = t.rand((batch_size, n_inst))
    parent, child = u < p_parent, u < p_parent * p_child_given_parent
    return assemble(parent, child, t.rand((batch_size, n_inst, n_other)) < p_other, magnitude_min)


def hier_with_bernoulli_and_einops(
    batch_size, n_inst, p_parent, p_child_given_parent, p_other, n_other, magnitude_min=1.0
):
    parent = t.bernoulli(t.full((batch_size, n_inst), p_parent))
    child = parent * t.bernoulli(t.full((batch_size, n_inst), p_child_given_parent))
    others = t.bernoulli(t.full((batch_size, n_inst, n_other), p_other))
    present = t.cat([einops.rearrange(t.stack([parent, child]), "f b i -> b i f"), others], dim=-1)
    return present * (magnitude_min + (1 - magnitude_min) * t.rand_like(present))


EXERCISE = Exercise(
    id="sae.hierarchical_features",
    name="generate_hierarchical_batch",
    signature=("batch_size", "n_inst", "p_parent", "p_child_given_parent", "p_other", "n_other"),
    reference_path=f"{MODULE}:generate_hierarchical_batch",
    probe=probe_generate_hierarchical_batch,
    verdict=verdict_generate_hierarchical_batch,
    mistakes=HIERARCHY_MISTAKES,
    alternatives=[
        hier_child_drawn_everywhere_then_masked,
        hier_with_bernoulli_and_einops,
        hier_child_from_parent_uniform,
    ],
)
