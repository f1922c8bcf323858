"""Checks for chapter 1, section 3 (correlated and anticorrelated features), with their catalogues of mistakes.

The three generators are random, so every check tests a distribution: which features are present together (exactly:
a correlated pair is never half present, an anticorrelated pair never fully present), how often (Chernoff bounds),
magnitudes (mean, variance and Kolmogorov–Smirnov distance to U[0, 1]) and independence across the batch, pairs,
features and instances. Each test runs at level FALSE_FAILURE_RATE / (number of tests), so a correct implementation
fails a check with probability below one in a million, however it is written. When a test fails, the verdict works
out which known mistake explains the data, and names it.
"""

from collections.abc import Callable

import einops
import torch as t
from torch import Tensor

from tests.harness import CheckFailed, Context, Exercise, Mistake, attempt, expect_tensor, raised
from tests.stats import FALSE_FAILURE_RATE, Budget, binomial_range
from tests.tms.common import (
    HINT_MAGNITUDES_ACROSS_INSTANCES,
    build,
    first_explaining,
    independent_pairings,
    judge_magnitudes_independent,
    shared_magnitudes_hint,
)

MODULE = "solutions.tms.correlated"

# The probe's model: 4 instances, each with its own probability in the first column of `feature_probability` (the
# contract), and other probabilities in the other columns. Its config names other pair counts and feature counts than
# the calls use, so that a generator which reads `self.cfg` instead of its argument returns the wrong shape.
CFG = dict(n_inst=4, n_features=8, d_hidden=2, n_correlated_pairs=1, n_anticorrelated_pairs=1)
BATCH_SIZE = 20_000
SMALL = 7
# `feature_probability` [inst, feats] of each probe. Column 0 is what the generators use. The other columns differ per
# feature and per instance, and from every rate a catalogued mistake gives on column 0 (p, 1 - p, p², 2p, p/2,
# p(1 - p), the first instance's p), so that a generator reading another column (one for all, or one per pair or per
# feature) gets frequencies no other mistake explains, and is named.
# Correlated pairs may have any p; two are above 1/2 so that p and 1 - p differ in both directions.
CORRELATED_ROWS = (
    (0.06, 0.3, 0.5, 0.7, 0.85, 0.4, 0.6, 0.25),
    (0.2, 0.65, 0.35, 0.9, 0.5, 0.7, 0.3, 0.45),
    (0.55, 0.15, 0.8, 0.25, 0.7, 0.92, 0.12, 0.65),
    (0.8, 0.45, 0.3, 0.92, 0.12, 0.35, 0.5, 0.95),
)
# Anticorrelated pairs need p ≤ 1/2; we stay at ≤ 1/4 so that a generator using 2p per member still never turns on
# both members (the check then sees, and names, its real mistake), and go up to 1/4 so that a member present with
# probability p(1 - p) instead of p stands out. The other columns stay below 1/2 too: a generator reading one of them
# must still never turn on both members, so that it is told about the column it reads.
ANTICORRELATED_ROWS = (
    (0.05, 0.2, 0.4, 0.25, 0.45, 0.15, 0.35, 0.3),
    (0.12, 0.3, 0.18, 0.4, 0.35, 0.42, 0.33, 0.45),
    (0.2, 0.45, 0.3, 0.26, 0.48, 0.34, 0.28, 0.32),
    (0.25, 0.35, 0.44, 0.32, 0.4, 0.45, 0.38, 0.42),
)
UNCORRELATED_ROWS = (
    (0.08, 0.3, 0.5, 0.7, 0.85, 0.4, 0.6, 0.25),
    (0.2, 0.65, 0.35, 0.9, 0.5, 0.7, 0.3, 0.45),
    (0.55, 0.15, 0.8, 0.25, 0.7, 0.92, 0.35, 0.65),
    (0.8, 0.45, 0.3, 0.92, 0.12, 0.35, 0.5, 0.95),
)
CORRELATED_P, ANTICORRELATED_P, UNCORRELATED_P = (
    tuple(row[0] for row in rows) for rows in (CORRELATED_ROWS, ANTICORRELATED_ROWS, UNCORRELATED_ROWS)
)
N_PAIRS, N_PAIRS_SMALL = 3, 2  # the pair generators' calls: 3 pairs (6 features), then 2 pairs (4 features)
N_UNCORRELATED, N_UNCORRELATED_SMALL = 5, 3
# A present feature whose magnitude is exactly 0.0 looks absent. A float32 uniform is exactly 0 with probability
# 2^-24; we allow 16 times that, for other ways of drawing magnitudes.
ZERO_MAGNITUDE_RATE = 2.0**-20


# ------------------------------------------------------------------------------------------ the hints

HINT_FRESH = "Two calls returned the same batch: don't reseed the random generator inside your generator"
HINT_RANGE = "Present features need magnitudes uniform on [0, 1] (use `t.rand`), so every value must lie in [0, 1]"
HINT_BROADCAST_P = (
    "Use the instance's probability `self.feature_probability[:, 0]`, reshaped to [inst, 1] (e.g. "
    "`self.feature_probability[:, :1]`) so that it broadcasts against [batch, inst, ...]; `feature_probability` "
    "itself has one column per feature of the model, not per feature you generate"
)
HINT_ARGUMENT = (
    "Use the number of pairs (or features) passed as the argument, not `self.cfg`: generate_batch calls these "
    "generators with its own counts"
)
HINT_N_FEATURES = "The number of features returned is set by the argument (2 per pair), not by `self.cfg.n_features`"
HINT_BOTH_MEMBERS = "Return both members of every pair: 2 * n_pairs features, pair k being features (2k, 2k+1)"
HINT_REUSED = (
    "Your magnitudes never leave the range the presence test allows (e.g. [0, p]): you reused the random number "
    "that decided presence as the magnitude. Draw the magnitudes with a second, independent `t.rand`"
)
HINT_CONSTANT = "Present features must have random magnitudes, uniform on [0, 1]; yours are all 1"
HINT_MAGNITUDE = "Present features need magnitudes uniform on [0, 1] (mean 1/2, variance 1/12)"
HINT_ONE_MINUS_P = (
    "Features are present with probability p = feature_probability, not 1 - p: keep a feature when `t.rand(...) < p`"
)
HINT_OTHER_COLUMN = (
    "The probability of every feature here is the instance's first column, `self.feature_probability[:, 0]` (use "
    "`self.feature_probability[:, :1]` to broadcast it); yours reads other columns of `feature_probability`"
)
HINT_FIRST_INSTANCE = (
    "Every instance must use its own probability `self.feature_probability[inst, 0]`; yours uses the first "
    "instance's for all of them"
)
HINT_BATCH = "Rows of the batch must be independent samples; yours repeat each other"
HINT_INSTANCES = (
    "Instances must get independent data: draw random numbers for the `inst` axis too, not one draw broadcast over it"
)
HINT_PAIRS_INDEPENDENT = (
    "Different pairs must be independent of each other: draw one presence number per (batch, inst, pair), not one "
    "per (batch, inst) shared by all pairs"
)
HINT_MAGNITUDES_ACROSS = (
    "Magnitudes must be drawn independently for every feature; features of different pairs share theirs in yours"
)

# correlated pairs
HINT_TOGETHER = (
    "The two members of a correlated pair must be present together or absent together: draw one presence number "
    "per pair and use it for both members"
)
HINT_LAYOUT = (
    "Pair k must be features (2k, 2k+1), next to each other. Yours pairs feature k with feature k + n_pairs: "
    "flatten the axes as `(pair member)`, not `(member pair)`"
)
HINT_SHARED_MAGNITUDE = (
    "Members of a correlated pair are present together, but their magnitudes must be drawn independently: one "
    "`t.rand` per feature, not one per pair"
)
HINT_P_SQUARED = (
    "A correlated pair must be present with probability p. Yours is present with probability p² (two draws "
    "combined with `&`): use one draw per pair"
)
HINT_CORRELATED_FREQUENCY = "Each correlated pair must be present with its instance's probability p"

# anticorrelated pairs
HINT_NEVER_BOTH = (
    "The two members of an anticorrelated pair must never be present together: decide both from one draw u per "
    "pair, e.g. the first when u < p and the second when u ≥ 1 - p"
)
HINT_SAME_CONDITION = (
    "Your anticorrelated members are present together, because both use the same condition on the same draw "
    "(e.g. `u < p` twice). Use disjoint conditions on it: the first when u < p, the second when u ≥ 1 - p"
)
HINT_ANTI_LAYOUT = (
    "Pair k must be features (2k, 2k+1), next to each other. Yours makes feature k exclusive with feature "
    "k + n_pairs: flatten the axes as `(pair member)`, not `(member pair)`"
)
HINT_2P = "Each member of an anticorrelated pair must be present with probability p, not 2p"
HINT_HALF = (
    "Each member of an anticorrelated pair must be present with probability p (so the pair has one member present "
    "with probability 2p); yours gives each member p/2"
)
HINT_ONE_ALWAYS = (
    "In yours one member of every anticorrelated pair is always present (the second is on whenever the first is "
    "off). Both may be absent: the second member is present with probability p, e.g. when u ≥ 1 - p"
)
HINT_ZEROING = (
    "Switching the second member off whenever both are drawn makes it rarer than the first (probability p(1 - p) "
    "instead of p). Decide both members from one draw instead: the first when u < p, the second when u ≥ 1 - p"
)
HINT_ANTICORRELATED_FREQUENCY = (
    "Each member of an anticorrelated pair must be present with its instance's probability p"
)

# uncorrelated features
HINT_FEATURES_INDEPENDENT = (
    "Features must be present independently of each other: draw one random number per (batch, inst, feat) entry"
)
HINT_UNCORRELATED_FREQUENCY = "Each feature must be present with its instance's probability p"


# ----------------------------------------------------------------------------------------- statistics


def max_zero_magnitude_mismatches(n: int, alpha: float) -> float:
    """How many half-present pairs a correct generator can show: a present member with magnitude exactly 0."""
    return n * binomial_range(n, 2 * ZERO_MAGNITUDE_RATE, alpha)[1]


# ------------------------------------------------------------------------------------------- probing


def probabilities(rows: tuple[tuple[float, ...], ...]) -> Tensor:
    """The probability the generators use, [inst, 1]: column 0 of the probe's `feature_probability`."""
    return t.tensor(rows)[:, :1]


def other_columns(rows: tuple[tuple[float, ...], ...], n_units: int) -> list[tuple[str, Tensor]]:
    """The rates [inst unit] of generators that read the wrong columns: one other column for every unit, or one column
    per unit (the first `n_units` columns, or the last)."""
    full = t.tensor(rows)
    rates = [full[:, c : c + 1].expand(-1, n_units) for c in range(1, full.shape[1])]
    return [(HINT_OTHER_COLUMN, rate) for rate in [*rates, full[:, :n_units], full[:, -n_units:]]]


def make_probe(
    method: str, rows: tuple[tuple[float, ...], ...], n_big: int, n_small: int
) -> Callable[[type, Context], dict]:
    def probe(ToyModel: type, context: Context) -> dict:
        model = build(ToyModel, CFG, context.device, feature_probability=t.tensor(rows).to(context.device))
        generate = getattr(model, method)
        with t.no_grad():
            return {
                "batch": attempt(lambda: generate(BATCH_SIZE, n_big)),
                "small": attempt(lambda: generate(SMALL, n_small)),
                "small_again": attempt(lambda: generate(SMALL, n_small)),
                "feature_probability_after": model.feature_probability,
            }

    probe.__name__ = f"probe_{method}"
    return probe


def read_shapes(results: dict, call: str, n_big: int, n_small: int, per_pair: int, cfg_width: int) -> Tensor:
    """The big batch, after checking type, shape and dtype of both calls, with a hint for the usual shape mistakes.

    `cfg_width` is the number of features a generator returns when it reads its count from `self.cfg`.
    """
    n_inst = CFG["n_inst"]
    batches = []
    for key, size, count in [("batch", BATCH_SIZE, n_big), ("small", SMALL, n_small)]:
        got, what = results[key], f"{call}({size}, {count})"
        if (message := raised(got)) is not None:
            if "must match the size" in message or "broadcast" in message:
                raise CheckFailed(f"{what} raised {message}. {HINT_BROADCAST_P}.")
            raise CheckFailed(f"{what} raised {message}")
        if isinstance(got, Tensor) and got.dim() == 3 and tuple(got.shape[:2]) == (size, n_inst):
            width, expected = got.shape[2], per_pair * count
            if width != expected and width == cfg_width:
                raise CheckFailed(f"{what} returned {width} features. {HINT_ARGUMENT}.")
            if width != expected and width == CFG["n_features"]:
                raise CheckFailed(f"{what} returned {width} features. {HINT_N_FEATURES}.")
            if per_pair == 2 and width == count:
                raise CheckFailed(f"{what} returned {width} features. {HINT_BOTH_MEMBERS}.")
        batches.append(expect_tensor(got, what, (size, n_inst, per_pair * count), "batch inst feats"))
    batch, small = batches
    if not t.isfinite(batch).all() or batch.min() < 0 or batch.max() > 1:
        raise CheckFailed(f"{HINT_RANGE}; yours range from {batch.min():.3g} to {batch.max():.3g}.")
    if isinstance(results["small_again"], Tensor) and t.equal(small, results["small_again"]):
        raise CheckFailed(HINT_FRESH + ".")
    return batch


def check_probability_unchanged(results: dict, rows: tuple[tuple[float, ...], ...]) -> None:
    after = results["feature_probability_after"]
    if not isinstance(after, Tensor) or not t.equal(after, t.tensor(rows)):
        raise CheckFailed("your generator changed `self.feature_probability` in place; compute new tensors instead.")


# ------------------------------------------------------------------------------- shared distribution tests


def check_batch_and_instance_independence(budget: Budget, on: Tensor, rate: Tensor, hint_units: str) -> None:
    """`on` [batch inst unit]: events with probability `rate` [inst unit]; rows and instances must be independent."""
    half = BATCH_SIZE // 2
    halves = (on[:half] & on[half : 2 * half]).sum(0)
    neighbours = (on[0::2][:half] & on[1::2][:half]).sum(0)
    for name, together in [("the two halves of the batch", halves), ("neighbouring rows", neighbours)]:
        if bad := budget.binomial_outliers(together, half, rate * rate):
            raise CheckFailed(f"{HINT_BATCH} (instance {bad[0][0]}, {hint_units} {bad[0][1]}, comparing {name}).")


def check_units_independent(budget: Budget, on: Tensor, rate: Tensor, hint: str, units: str) -> None:
    """Neighbouring units (pairs or features) of one instance, and the same unit in neighbouring instances."""
    for message, together, expected in [
        (hint, (on[:, :, :-1] & on[:, :, 1:]).sum(0), rate[:, :-1] * rate[:, 1:]),
        (HINT_INSTANCES, (on[:, :-1] & on[:, 1:]).sum(0), rate[:-1] * rate[1:]),
    ]:
        if bad := budget.binomial_outliers(together, BATCH_SIZE, expected):
            index = bad[0]
            raise CheckFailed(
                f"{message}. Two {units} (at {index}) were present together in "
                f"{float(together[index]) / BATCH_SIZE:.4f} of samples; independent draws would give "
                f"{float(expected[index]):.4f}."
            )


def check_magnitudes(
    budget: Budget,
    batch: Tensor,
    present: Tensor,
    presence_range: Callable[[int], Callable],
    pairings: list[tuple[str, Tensor, Tensor]],
) -> None:
    """Magnitudes of present features are U[0, 1], per instance.

    `presence_range(i)(values)` says which values the presence test of instance i lets through (e.g. u < p): when
    the magnitudes are wrong and all lie there, the presence draw was reused as the magnitude. When they are wrong
    because the entries of one of the `pairings` share them, that is named.
    """
    for i in range(batch.shape[1]):
        values = batch[:, i][present[:, i]]
        if values.numel() == 0:
            continue
        mean, var = float(values.mean()), float(((values - 0.5) ** 2).mean())
        off = budget.mean_is_off(values, 0.5, 1.0) or budget.mean_is_off((values - 0.5) ** 2, 1 / 12, 0.25)
        distance = None if off else budget.not_uniform(values, 0.0, 1.0)
        if not off and distance is None:
            continue
        if (values == 1).all():
            raise CheckFailed(HINT_CONSTANT + ".")
        if presence_range(i)(values).all():
            raise CheckFailed(HINT_REUSED + ".")
        if (hint := shared_magnitudes_hint(pairings)) is not None:
            raise CheckFailed(f"{hint}: where both are present, your two magnitudes are exactly equal.")
        if off:
            raise CheckFailed(f"{HINT_MAGNITUDE}. In instance {i} yours have mean {mean:.3f} and variance {var:.4f}.")
        raise CheckFailed(f"{HINT_MAGNITUDE}. In instance {i} they are not uniform (KS distance {distance:.3f}).")


def check_magnitudes_independent(budget: Budget, pairings: list[tuple[str, Tensor, Tensor]]) -> None:
    judge_magnitudes_independent(pairings, centre=0.5, width=0.5, budget=budget)  # (m₁ − ½)(m₂ − ½) ∈ [−¼, ¼]


def name_frequency_mistake(counts: Tensor, candidates: list[tuple[str, Tensor]], fallback: str) -> str:
    """The hint of the first candidate rate that explains every count, or the fallback."""
    return first_explaining(counts, BATCH_SIZE, candidates) or fallback


# ------------------------------------------------------------------------------------ correlated pairs

# co-occurrence 1, frequency I·P, batch 2·I·P, pairs I·(P−1), instances (I−1)·P, magnitudes 3·I, their independence 5
CORRELATED_BUDGET = 1 + 5 * CFG["n_inst"] * N_PAIRS - CFG["n_inst"] - N_PAIRS + 3 * CFG["n_inst"] + 5


def verdict_generate_correlated_features(results: dict, context: Context) -> None:
    batch = read_shapes(
        results, "generate_correlated_features", N_PAIRS, N_PAIRS_SMALL, 2, 2 * CFG["n_correlated_pairs"]
    )
    check_probability_unchanged(results, CORRELATED_ROWS)
    budget = Budget(CORRELATED_BUDGET)
    p = probabilities(CORRELATED_ROWS)  # [inst 1]
    present = batch > 0
    pairs = einops.rearrange(present, "batch inst (pair member) -> batch inst pair member", member=2)

    # Exactly: both members or neither (up to present members whose magnitude is exactly 0.0).
    n_units = pairs[..., 0].numel()
    limit = max_zero_magnitude_mismatches(n_units, budget.spend())
    half_present = int((pairs[..., 0] != pairs[..., 1]).sum())
    if half_present > limit:
        blocks = einops.rearrange(present, "batch inst (member pair) -> batch inst pair member", member=2)
        hint = HINT_LAYOUT if int((blocks[..., 0] != blocks[..., 1]).sum()) <= limit else HINT_TOGETHER
        raise CheckFailed(
            f"{hint}. In yours, {half_present / n_units:.1%} of pairs had one member present and not the other."
        )

    on = pairs.any(-1)  # [batch inst pair]
    rate = p.expand(-1, N_PAIRS)
    counts = on.sum(0)
    if bad := budget.binomial_outliers(counts, BATCH_SIZE, rate):
        hint = name_frequency_mistake(
            counts,
            [
                (HINT_ONE_MINUS_P, 1 - rate),
                (HINT_P_SQUARED, rate**2),
                (HINT_FIRST_INSTANCE, rate[:1].expand_as(rate)),
                *other_columns(CORRELATED_ROWS, N_PAIRS),
            ],
            HINT_CORRELATED_FREQUENCY,
        )
        i, k = bad[0]
        raise CheckFailed(
            f"{hint}. In instance {i} (p = {float(p[i]):.2f}), pair {k} was present in "
            f"{float(counts[i, k]) / BATCH_SIZE:.3f} of {BATCH_SIZE} samples."
        )
    check_batch_and_instance_independence(budget, on, rate, "pair")
    check_units_independent(budget, on, rate, HINT_PAIRS_INDEPENDENT, "pairs")
    members = einops.rearrange(batch, "batch inst (pair member) -> batch inst pair member", member=2)
    pairings = [
        (HINT_SHARED_MAGNITUDE, members[..., 0], members[..., 1]),
        *independent_pairings(members, 2, HINT_MAGNITUDES_ACROSS),
    ]
    check_magnitudes(budget, batch, present, lambda i: lambda values: values <= CORRELATED_P[i] + 1e-6, pairings)
    check_magnitudes_independent(budget, pairings)


def corr_independent_members(self, batch_size, n_correlated_pairs):
    p = self.feature_probability[:, :1]
    shape = (batch_size, p.shape[0], 2 * n_correlated_pairs)
    return t.where(t.rand(shape) < p, t.rand(shape), 0.0)


def corr_blocks_layout(self, batch_size, n_correlated_pairs):
    p = self.feature_probability[:, :1, None]
    seed = t.rand((batch_size, p.shape[0], 1, n_correlated_pairs))
    magnitudes = t.rand((batch_size, p.shape[0], 2, n_correlated_pairs))
    return einops.rearrange(magnitudes * (seed < p), "batch inst member pair -> batch inst (member pair)")


def corr_shared_magnitude(self, batch_size, n_correlated_pairs):
    p = self.feature_probability[:, :1]
    u = t.rand((batch_size, p.shape[0], n_correlated_pairs))
    feat = t.where(u < p, u / p, 0.0)  # section 1.1's trick: u / p is uniform given u < p, but one per pair
    return einops.repeat(feat, "batch inst pair -> batch inst (pair 2)")


def corr_reused_draw_as_magnitude(self, batch_size, n_correlated_pairs):
    p = self.feature_probability[:, :1]
    seed = t.rand((batch_size, p.shape[0], 2 * n_correlated_pairs))
    seed[..., 1::2] = seed[..., 0::2]
    return t.where(seed <= p, seed, 0.0)


def corr_one_minus_p(self, batch_size, n_correlated_pairs):
    p = self.feature_probability[:, :1]
    seed = t.rand((batch_size, p.shape[0], n_correlated_pairs)) <= 1 - p
    present = einops.repeat(seed, "batch inst pair -> batch inst (pair 2)")
    return t.where(present, t.rand(present.shape), 0.0)


def corr_two_draws_and(self, batch_size, n_correlated_pairs):
    p = self.feature_probability[:, :1]
    shape = (batch_size, p.shape[0], n_correlated_pairs)
    both = (t.rand(shape) < p) & (t.rand(shape) < p)
    present = einops.repeat(both, "batch inst pair -> batch inst (pair 2)")
    return t.where(present, t.rand(present.shape), 0.0)


def corr_first_instance_probability(self, batch_size, n_correlated_pairs):
    p = self.feature_probability[0, 0]
    seed = t.rand((batch_size, self.feature_probability.shape[0], n_correlated_pairs)) < p
    present = einops.repeat(seed, "batch inst pair -> batch inst (pair 2)")
    return t.where(present, t.rand(present.shape), 0.0)


def corr_shared_across_instances(self, batch_size, n_correlated_pairs):
    p = self.feature_probability[:, :1]
    seed = t.rand((batch_size, 1, n_correlated_pairs)) < p
    present = einops.repeat(seed, "batch inst pair -> batch inst (pair 2)")
    return t.where(present, t.rand(present.shape), 0.0)


def corr_one_draw_for_all_pairs(self, batch_size, n_correlated_pairs):
    p = self.feature_probability[:, :1]
    seed = t.rand((batch_size, p.shape[0], 1)) < p
    present = seed.expand(-1, -1, 2 * n_correlated_pairs)
    return t.where(present, t.rand(present.shape), 0.0)


def corr_uses_cfg_pairs(self, batch_size, n_correlated_pairs):
    n_pairs = self.cfg.n_correlated_pairs
    p = self.feature_probability[:, :1]
    seed = t.rand((batch_size, p.shape[0], n_pairs)) < p
    present = einops.repeat(seed, "batch inst pair -> batch inst (pair 2)")
    return t.where(present, t.rand(present.shape), 0.0)


def corr_probability_on_pair_axis(self, batch_size, n_correlated_pairs):
    p = self.feature_probability[:, 0]  # [inst], broadcast against the last axis (pairs)
    seed = t.rand((batch_size, self.feature_probability.shape[0], n_correlated_pairs)) < p
    present = einops.repeat(seed, "batch inst pair -> batch inst (pair 2)")
    return t.where(present, t.rand(present.shape), 0.0)


def corr_fixed_seed(self, batch_size, n_correlated_pairs):
    t.manual_seed(0)
    p = self.feature_probability[:, :1]
    seed = t.rand((batch_size, p.shape[0], n_correlated_pairs)) < p
    present = einops.repeat(seed, "batch inst pair -> batch inst (pair 2)")
    return t.where(present, t.rand(present.shape), 0.0)


def corr_half_batch_repeated(self, batch_size, n_correlated_pairs):
    half = (batch_size + 1) // 2
    p = self.feature_probability[:, :1]
    seed = t.rand((half, p.shape[0], n_correlated_pairs)) < p
    present = einops.repeat(seed, "batch inst pair -> batch inst (pair 2)")
    x = t.where(present, t.rand(present.shape), 0.0)
    return t.cat([x, x])[:batch_size]


def corr_probability_from_last_column(self, batch_size, n_correlated_pairs):
    p = self.feature_probability[:, -1:]
    seed = t.rand((batch_size, p.shape[0], n_correlated_pairs)) < p
    present = einops.repeat(seed, "batch inst pair -> batch inst (pair 2)")
    return t.where(present, t.rand(present.shape), 0.0)


def corr_magnitudes_shared_across_instances(self, batch_size, n_correlated_pairs):
    p = self.feature_probability[:, :1]
    seed = t.rand((batch_size, p.shape[0], n_correlated_pairs)) < p
    present = einops.repeat(seed, "batch inst pair -> batch inst (pair 2)")
    return t.where(present, t.rand((batch_size, 1, 2 * n_correlated_pairs)), 0.0)


CORRELATED_MISTAKES = [
    Mistake(corr_independent_members, HINT_TOGETHER),
    Mistake(corr_blocks_layout, HINT_LAYOUT),
    Mistake(corr_shared_magnitude, HINT_SHARED_MAGNITUDE),
    Mistake(corr_reused_draw_as_magnitude, HINT_REUSED),
    Mistake(corr_one_minus_p, HINT_ONE_MINUS_P),
    Mistake(corr_two_draws_and, HINT_P_SQUARED),
    Mistake(corr_first_instance_probability, HINT_FIRST_INSTANCE),
    Mistake(corr_shared_across_instances, HINT_INSTANCES),
    Mistake(corr_one_draw_for_all_pairs, HINT_PAIRS_INDEPENDENT),
    Mistake(corr_uses_cfg_pairs, HINT_ARGUMENT),
    Mistake(corr_probability_on_pair_axis, HINT_BROADCAST_P),
    Mistake(corr_probability_from_last_column, HINT_OTHER_COLUMN),
    Mistake(corr_magnitudes_shared_across_instances, HINT_MAGNITUDES_ACROSS_INSTANCES),
    Mistake(corr_fixed_seed, HINT_FRESH),
    Mistake(corr_half_batch_repeated, HINT_BATCH),
]


def corr_with_repeat_interleave(self, batch_size, n_correlated_pairs):
    # ARENA's way: a presence mask per pair, repeated for both members, and separate magnitudes
    n_inst = self.feature_probability.shape[0]
    seed = t.rand((batch_size, n_inst, n_correlated_pairs), device=self.W.device)
    present = (seed <= self.feature_probability[:, [0]]).repeat_interleave(2, dim=-1)
    return t.where(present, t.rand((batch_size, n_inst, 2 * n_correlated_pairs), device=self.W.device), 0.0)


def corr_with_loop_over_pairs(self, batch_size, n_correlated_pairs):
    # magnitudes first, then one Bernoulli per pair, in float64, one pair at a time
    p = self.feature_probability[:, 0].double().unsqueeze(0).expand(batch_size, -1)
    columns = []
    for _ in range(n_correlated_pairs):
        magnitudes = t.rand((batch_size, p.shape[1], 2), dtype=t.float64)
        on = t.bernoulli(p).unsqueeze(-1)
        columns.append(magnitudes * on)
    return t.cat(columns, dim=-1).float()


# -------------------------------------------------------------------------------- anticorrelated pairs

# exact 0, frequency 2·I·P, batch 2·I·P, pairs I·(P−1), instances (I−1)·P, magnitudes 3·I, their independence 4
ANTICORRELATED_BUDGET = 6 * CFG["n_inst"] * N_PAIRS - CFG["n_inst"] - N_PAIRS + 3 * CFG["n_inst"] + 4


def verdict_generate_anticorrelated_features(results: dict, context: Context) -> None:
    batch = read_shapes(
        results, "generate_anticorrelated_features", N_PAIRS, N_PAIRS_SMALL, 2, 2 * CFG["n_anticorrelated_pairs"]
    )
    check_probability_unchanged(results, ANTICORRELATED_ROWS)
    budget = Budget(ANTICORRELATED_BUDGET)
    p = probabilities(ANTICORRELATED_ROWS)
    present = batch > 0
    pairs = einops.rearrange(present, "batch inst (pair member) -> batch inst pair member", member=2)

    # Exactly: never both members (a zero magnitude can only hide a member, never add one).
    both = pairs.all(-1)
    if both.any():
        n_units = both.numel()
        limit = max_zero_magnitude_mismatches(n_units, FALSE_FAILURE_RATE)
        blocks = einops.rearrange(present, "batch inst (member pair) -> batch inst pair member", member=2)
        if int((pairs[..., 0] != pairs[..., 1]).sum()) <= limit:
            hint = HINT_SAME_CONDITION
        elif not blocks.all(-1).any():
            hint = HINT_ANTI_LAYOUT
        else:
            hint = HINT_NEVER_BOTH
        raise CheckFailed(f"{hint}. In yours, both members were present in {float(both.float().mean()):.2%} of pairs.")

    rate = p[:, :, None].expand(-1, N_PAIRS, 2)  # [inst pair member]
    counts = pairs.sum(0)
    if bad := budget.binomial_outliers(counts, BATCH_SIZE, rate):
        one_always = t.stack([rate[..., 0], 1 - rate[..., 1]], dim=-1)
        zeroing = t.stack([rate[..., 0], rate[..., 1] * (1 - rate[..., 1])], dim=-1)
        hint = name_frequency_mistake(
            counts,
            [
                (HINT_2P, 2 * rate),
                (HINT_HALF, rate / 2),
                (HINT_ONE_ALWAYS, one_always),
                (HINT_ZEROING, zeroing),
                (HINT_FIRST_INSTANCE, rate[:1].expand_as(rate)),
                *((hint, column[..., None]) for hint, column in other_columns(ANTICORRELATED_ROWS, N_PAIRS)),
            ],
            HINT_ANTICORRELATED_FREQUENCY,
        )
        i, k, member = bad[0]
        raise CheckFailed(
            f"{hint}. In instance {i} (p = {float(p[i]):.2f}), member {member} of pair {k} was present in "
            f"{float(counts[i, k, member]) / BATCH_SIZE:.3f} of {BATCH_SIZE} samples."
        )
    on = pairs.any(-1)  # one member of the pair is present: probability 2p
    pair_rate = 2 * p.expand(-1, N_PAIRS)
    check_batch_and_instance_independence(budget, on, pair_rate, "pair")
    check_units_independent(budget, on, pair_rate, HINT_PAIRS_INDEPENDENT, "pairs")
    low = lambda i: lambda values: (values <= ANTICORRELATED_P[i] + 1e-6) | (values >= 1 - ANTICORRELATED_P[i] - 1e-6)
    members = einops.rearrange(batch, "batch inst (pair member) -> batch inst pair member", member=2)
    pairings = independent_pairings(members, 2, HINT_MAGNITUDES_ACROSS)  # members are never both present
    check_magnitudes(budget, batch, present, low, pairings)
    check_magnitudes_independent(budget, pairings)


def anti_stack(first: Tensor, second: Tensor) -> Tensor:
    return einops.rearrange(t.stack([first, second], dim=-1), "batch inst pair member -> batch inst (pair member)")


def anti_independent_members(self, batch_size, n_anticorrelated_pairs):
    p = self.feature_probability[:, :1]
    shape = (batch_size, p.shape[0], 2 * n_anticorrelated_pairs)
    return t.where(t.rand(shape) < p, t.rand(shape), 0.0)


def anti_same_condition_for_both(self, batch_size, n_anticorrelated_pairs):
    p = self.feature_probability[:, :1]
    u = t.rand((batch_size, p.shape[0], n_anticorrelated_pairs))
    present = anti_stack(u < p, u < p)
    return t.where(present, t.rand(present.shape), 0.0)


def anti_blocks_layout(self, batch_size, n_anticorrelated_pairs):
    p = self.feature_probability[:, :1]
    u = t.rand((batch_size, p.shape[0], n_anticorrelated_pairs))
    present = t.cat([u < p, u >= 1 - p], dim=-1)  # all first members, then all second members
    return t.where(present, t.rand(present.shape), 0.0)


def anti_2p_per_member(self, batch_size, n_anticorrelated_pairs):
    p = self.feature_probability[:, :1]
    u = t.rand((batch_size, p.shape[0], n_anticorrelated_pairs))
    present = anti_stack(u < 2 * p, u >= 1 - 2 * p)
    return t.where(present, t.rand(present.shape), 0.0)


def anti_half_p_per_member(self, batch_size, n_anticorrelated_pairs):
    # "one of the pair is present with probability p", then a fair coin picks which
    p = self.feature_probability[:, :1]
    shape = (batch_size, p.shape[0], n_anticorrelated_pairs)
    active, first = t.rand(shape) < p, t.rand(shape) < 0.5
    present = anti_stack(active & first, active & ~first)
    return t.where(present, t.rand(present.shape), 0.0)


def anti_one_always_present(self, batch_size, n_anticorrelated_pairs):
    p = self.feature_probability[:, :1]
    u = t.rand((batch_size, p.shape[0], n_anticorrelated_pairs))
    present = anti_stack(u < p, u >= p)
    return t.where(present, t.rand(present.shape), 0.0)


def anti_zeroing_second(self, batch_size, n_anticorrelated_pairs):
    p = self.feature_probability[:, :1]
    shape = (batch_size, p.shape[0], n_anticorrelated_pairs)
    first, second = t.rand(shape) < p, t.rand(shape) < p
    present = anti_stack(first, second & ~first)
    return t.where(present, t.rand(present.shape), 0.0)


def anti_first_instance_probability(self, batch_size, n_anticorrelated_pairs):
    p = self.feature_probability[0, 0]
    u = t.rand((batch_size, self.feature_probability.shape[0], n_anticorrelated_pairs))
    present = anti_stack(u < p, u >= 1 - p)
    return t.where(present, t.rand(present.shape), 0.0)


def anti_shared_across_instances(self, batch_size, n_anticorrelated_pairs):
    p = self.feature_probability[:, :1]
    u = t.rand((batch_size, 1, n_anticorrelated_pairs))
    present = anti_stack(u < p, u >= 1 - p)
    return t.where(present, t.rand(present.shape), 0.0)


def anti_one_draw_for_all_pairs(self, batch_size, n_anticorrelated_pairs):
    p = self.feature_probability[:, :1]
    u = t.rand((batch_size, p.shape[0], 1)).expand(-1, -1, n_anticorrelated_pairs)
    present = anti_stack(u < p, u >= 1 - p)
    return t.where(present, t.rand(present.shape), 0.0)


def anti_reused_draw_as_magnitude(self, batch_size, n_anticorrelated_pairs):
    p = self.feature_probability[:, :1]
    u = t.rand((batch_size, p.shape[0], n_anticorrelated_pairs))
    return anti_stack(t.where(u < p, u, 0.0), t.where(u >= 1 - p, u, 0.0))


def anti_uses_cfg_pairs(self, batch_size, n_anticorrelated_pairs):
    p = self.feature_probability[:, :1]
    u = t.rand((batch_size, p.shape[0], self.cfg.n_anticorrelated_pairs))
    present = anti_stack(u < p, u >= 1 - p)
    return t.where(present, t.rand(present.shape), 0.0)


def anti_probability_on_pair_axis(self, batch_size, n_anticorrelated_pairs):
    p = self.feature_probability[:, 0]
    u = t.rand((batch_size, self.feature_probability.shape[0], n_anticorrelated_pairs))
    present = anti_stack(u < p, u >= 1 - p)
    return t.where(present, t.rand(present.shape), 0.0)


def anti_fixed_seed(self, batch_size, n_anticorrelated_pairs):
    t.manual_seed(0)
    p = self.feature_probability[:, :1]
    u = t.rand((batch_size, p.shape[0], n_anticorrelated_pairs))
    present = anti_stack(u < p, u >= 1 - p)
    return t.where(present, t.rand(present.shape), 0.0)


def anti_probability_from_last_column(self, batch_size, n_anticorrelated_pairs):
    p = self.feature_probability[:, -1:]
    u = t.rand((batch_size, p.shape[0], n_anticorrelated_pairs))
    present = anti_stack(u < p, u >= 1 - p)
    return t.where(present, t.rand(present.shape), 0.0)


def anti_magnitudes_shared_across_instances(self, batch_size, n_anticorrelated_pairs):
    p = self.feature_probability[:, :1]
    u = t.rand((batch_size, p.shape[0], n_anticorrelated_pairs))
    present = anti_stack(u < p, u >= 1 - p)
    return t.where(present, t.rand((batch_size, 1, 2 * n_anticorrelated_pairs)), 0.0)


ANTICORRELATED_MISTAKES = [
    Mistake(anti_independent_members, HINT_NEVER_BOTH),
    Mistake(anti_same_condition_for_both, HINT_SAME_CONDITION),
    Mistake(anti_blocks_layout, HINT_ANTI_LAYOUT),
    Mistake(anti_2p_per_member, HINT_2P),
    Mistake(anti_half_p_per_member, HINT_HALF),
    Mistake(anti_one_always_present, HINT_ONE_ALWAYS),
    Mistake(anti_zeroing_second, HINT_ZEROING),
    Mistake(anti_first_instance_probability, HINT_FIRST_INSTANCE),
    Mistake(anti_shared_across_instances, HINT_INSTANCES),
    Mistake(anti_one_draw_for_all_pairs, HINT_PAIRS_INDEPENDENT),
    Mistake(anti_reused_draw_as_magnitude, HINT_REUSED),
    Mistake(anti_uses_cfg_pairs, HINT_ARGUMENT),
    Mistake(anti_probability_on_pair_axis, HINT_BROADCAST_P),
    Mistake(anti_probability_from_last_column, HINT_OTHER_COLUMN),
    Mistake(anti_magnitudes_shared_across_instances, HINT_MAGNITUDES_ACROSS_INSTANCES),
    Mistake(anti_fixed_seed, HINT_FRESH),
]


def anti_with_arena_stack(self, batch_size, n_anticorrelated_pairs):
    # ARENA's way: one seed, compared as (seed, 1 - seed) <= p, then the two members interleaved
    n_inst = self.feature_probability.shape[0]
    p = self.feature_probability[:, [0]]
    seed = t.rand((batch_size, n_inst, n_anticorrelated_pairs), device=self.W.device)
    mask = t.stack([seed <= p, (1 - seed) <= p], dim=-1)
    mask = einops.rearrange(mask, "batch inst pair two -> batch inst (pair two)")
    return t.where(mask, t.rand((batch_size, n_inst, 2 * n_anticorrelated_pairs), device=self.W.device), 0.0)


def anti_pair_then_coin(self, batch_size, n_anticorrelated_pairs):
    # one member is present with probability 2p, and a fair coin picks which: each member has probability p
    p = self.feature_probability[:, :1]
    shape = (batch_size, p.shape[0], n_anticorrelated_pairs)
    active, first = t.rand(shape) < 2 * p, t.rand(shape) < 0.5
    present = anti_stack(active & first, active & ~first)
    return t.rand(present.shape) * present


def anti_with_multinomial(self, batch_size, n_anticorrelated_pairs):
    # three outcomes per pair: first member, second member, neither
    p = self.feature_probability[:, 0]
    n_inst = p.shape[0]
    weights = t.stack([p, p, 1 - 2 * p], dim=-1)  # [inst 3]
    draws = t.multinomial(weights, batch_size * n_anticorrelated_pairs, replacement=True)
    outcome = einops.rearrange(draws, "inst (batch pair) -> batch inst pair", batch=batch_size)
    present = anti_stack(outcome == 0, outcome == 1)
    return t.rand((batch_size, n_inst, 2 * n_anticorrelated_pairs)) * present


# ------------------------------------------------------------------------------- uncorrelated features

# frequency I·F, batch 2·I·F, features I·(F−1), instances (I−1)·F, magnitudes 3·I, their independence 4
UNCORRELATED_BUDGET = 5 * CFG["n_inst"] * N_UNCORRELATED - CFG["n_inst"] - N_UNCORRELATED + 3 * CFG["n_inst"] + 4


def verdict_generate_uncorrelated_features(results: dict, context: Context) -> None:
    n_cfg = CFG["n_features"] - 2 * (CFG["n_correlated_pairs"] + CFG["n_anticorrelated_pairs"])
    batch = read_shapes(results, "generate_uncorrelated_features", N_UNCORRELATED, N_UNCORRELATED_SMALL, 1, n_cfg)
    check_probability_unchanged(results, UNCORRELATED_ROWS)
    budget = Budget(UNCORRELATED_BUDGET)
    p = probabilities(UNCORRELATED_ROWS)
    present = batch > 0
    rate = p.expand(-1, N_UNCORRELATED)
    counts = present.sum(0)
    if bad := budget.binomial_outliers(counts, BATCH_SIZE, rate):
        hint = name_frequency_mistake(
            counts,
            [
                (HINT_ONE_MINUS_P, 1 - rate),
                (HINT_FIRST_INSTANCE, rate[:1].expand_as(rate)),
                *other_columns(UNCORRELATED_ROWS, N_UNCORRELATED),
            ],
            HINT_UNCORRELATED_FREQUENCY,
        )
        i, f = bad[0]
        raise CheckFailed(
            f"{hint}. In instance {i} (p = {float(p[i]):.2f}), feature {f} was present in "
            f"{float(counts[i, f]) / BATCH_SIZE:.3f} of {BATCH_SIZE} samples."
        )
    check_batch_and_instance_independence(budget, present, rate, "feature")
    check_units_independent(budget, present, rate, HINT_FEATURES_INDEPENDENT, "features")
    pairings = independent_pairings(batch, -1, HINT_MAGNITUDES_ACROSS)
    check_magnitudes(budget, batch, present, lambda i: lambda values: values <= UNCORRELATED_P[i] + 1e-6, pairings)
    check_magnitudes_independent(budget, pairings)


def unc_reused_uniform(self, batch_size, n_uncorrelated):
    p = self.feature_probability[:, :1]
    u = t.rand((batch_size, p.shape[0], n_uncorrelated))
    return t.where(u <= p, u, 0.0)


def unc_one_minus_p(self, batch_size, n_uncorrelated):
    p = self.feature_probability[:, :1]
    shape = (batch_size, p.shape[0], n_uncorrelated)
    return t.where(t.rand(shape) <= 1 - p, t.rand(shape), 0.0)


def unc_shared_across_features(self, batch_size, n_uncorrelated):
    p = self.feature_probability[:, :1]
    mask = t.rand((batch_size, p.shape[0], 1)) <= p
    return t.where(mask, t.rand((batch_size, p.shape[0], n_uncorrelated)), 0.0)


def unc_shared_across_instances(self, batch_size, n_uncorrelated):
    p = self.feature_probability[:, :1]
    mask = t.rand((batch_size, 1, n_uncorrelated)) <= p
    return t.where(mask, t.rand((batch_size, p.shape[0], n_uncorrelated)), 0.0)


def unc_same_magnitude_for_all_features(self, batch_size, n_uncorrelated):
    p = self.feature_probability[:, :1]
    mask = t.rand((batch_size, p.shape[0], n_uncorrelated)) <= p
    return t.where(mask, t.rand((batch_size, p.shape[0], 1)), 0.0)


def unc_constant_magnitude(self, batch_size, n_uncorrelated):
    p = self.feature_probability[:, :1]
    return (t.rand((batch_size, p.shape[0], n_uncorrelated)) <= p).float()


def unc_gaussian_magnitudes(self, batch_size, n_uncorrelated):
    p = self.feature_probability[:, :1]
    shape = (batch_size, p.shape[0], n_uncorrelated)
    return t.where(t.rand(shape) <= p, t.randn(shape).abs(), 0.0)


def unc_first_instance_probability(self, batch_size, n_uncorrelated):
    p = self.feature_probability[0, 0]
    shape = (batch_size, self.feature_probability.shape[0], n_uncorrelated)
    return t.where(t.rand(shape) <= p, t.rand(shape), 0.0)


def unc_full_probability_tensor(self, batch_size, n_uncorrelated):
    shape = (batch_size, self.feature_probability.shape[0], n_uncorrelated)
    return t.where(t.rand(shape) <= self.feature_probability, t.rand(shape), 0.0)


def unc_fixed_seed(self, batch_size, n_uncorrelated):
    t.manual_seed(0)
    p = self.feature_probability[:, :1]
    shape = (batch_size, p.shape[0], n_uncorrelated)
    return t.where(t.rand(shape) <= p, t.rand(shape), 0.0)


def unc_half_batch_repeated(self, batch_size, n_uncorrelated):
    p = self.feature_probability[:, :1]
    shape = ((batch_size + 1) // 2, p.shape[0], n_uncorrelated)
    x = t.where(t.rand(shape) <= p, t.rand(shape), 0.0)
    return t.cat([x, x])[:batch_size]


def unc_probability_per_feature(self, batch_size, n_uncorrelated):
    # as in section 1.1's generate_batch, but this section's features all use the instance's first column
    p = self.feature_probability[:, :n_uncorrelated]
    shape = (batch_size, p.shape[0], n_uncorrelated)
    return t.where(t.rand(shape) <= p, t.rand(shape), 0.0)


def unc_probability_of_last_features(self, batch_size, n_uncorrelated):
    # the uncorrelated features come last in generate_batch's layout, but use the first column all the same
    p = self.feature_probability[:, -n_uncorrelated:]
    shape = (batch_size, p.shape[0], n_uncorrelated)
    return t.where(t.rand(shape) <= p, t.rand(shape), 0.0)


def unc_magnitudes_shared_across_instances(self, batch_size, n_uncorrelated):
    p = self.feature_probability[:, :1]
    mask = t.rand((batch_size, p.shape[0], n_uncorrelated)) <= p
    return t.where(mask, t.rand((batch_size, 1, n_uncorrelated)), 0.0)


UNCORRELATED_MISTAKES = [
    Mistake(unc_reused_uniform, HINT_REUSED),
    Mistake(unc_one_minus_p, HINT_ONE_MINUS_P),
    Mistake(unc_shared_across_features, HINT_FEATURES_INDEPENDENT),
    Mistake(unc_shared_across_instances, HINT_INSTANCES),
    Mistake(unc_same_magnitude_for_all_features, HINT_MAGNITUDES_ACROSS),
    Mistake(unc_constant_magnitude, HINT_CONSTANT),
    Mistake(unc_gaussian_magnitudes, HINT_RANGE),
    Mistake(unc_first_instance_probability, HINT_FIRST_INSTANCE),
    Mistake(unc_full_probability_tensor, HINT_BROADCAST_P),
    Mistake(unc_probability_per_feature, HINT_OTHER_COLUMN),
    Mistake(unc_probability_of_last_features, HINT_OTHER_COLUMN),
    Mistake(unc_magnitudes_shared_across_instances, HINT_MAGNITUDES_ACROSS_INSTANCES),
    Mistake(unc_fixed_seed, HINT_FRESH),
    Mistake(unc_half_batch_repeated, HINT_BATCH),
]


def unc_bernoulli(self, batch_size, n_uncorrelated):
    p = self.feature_probability[:, :1].expand(-1, n_uncorrelated)
    p = p.expand(batch_size, *p.shape)
    return t.bernoulli(p) * t.rand_like(p)


def unc_one_uniform(self, batch_size, n_uncorrelated):
    # section 1.1's reference trick: given u < p, 1 - u/p is uniform on (0, 1]
    p = self.feature_probability[:, :1]
    u = t.rand((batch_size, p.shape[0], n_uncorrelated), device=p.device)
    return (1 - u / p).relu()


def unc_magnitudes_first_float64(self, batch_size, n_uncorrelated):
    shape = (batch_size, self.feature_probability.shape[0], n_uncorrelated)
    magnitudes = t.rand(shape, dtype=t.float64)
    mask = t.rand(shape, dtype=t.float64) < self.feature_probability[:, 0, None].double()
    return (magnitudes * mask).float()


def exercise(method: str, title: str, minutes: str, verdict, rows, n_big, n_small, mistakes, alternatives):
    return Exercise(
        id=f"tms.{method}",
        name="ToyModel",
        method=method,
        title=title,
        difficulty=3,
        importance=2,
        minutes=minutes,
        reference_path=f"{MODULE}:ToyModel",
        probe=make_probe(method, rows, n_big, n_small),
        verdict=verdict,
        mistakes=mistakes,
        alternatives=alternatives,
    )


EXERCISES = [
    exercise(
        "generate_correlated_features",
        "implement `generate_correlated_features`",
        "10-15",
        verdict_generate_correlated_features,
        CORRELATED_ROWS,
        N_PAIRS,
        N_PAIRS_SMALL,
        CORRELATED_MISTAKES,
        [corr_with_repeat_interleave, corr_with_loop_over_pairs],
    ),
    exercise(
        "generate_anticorrelated_features",
        "implement `generate_anticorrelated_features`",
        "10-20",
        verdict_generate_anticorrelated_features,
        ANTICORRELATED_ROWS,
        N_PAIRS,
        N_PAIRS_SMALL,
        ANTICORRELATED_MISTAKES,
        [anti_with_arena_stack, anti_pair_then_coin, anti_with_multinomial],
    ),
    exercise(
        "generate_uncorrelated_features",
        "implement `generate_uncorrelated_features`",
        "5-10",
        verdict_generate_uncorrelated_features,
        UNCORRELATED_ROWS,
        N_UNCORRELATED,
        N_UNCORRELATED_SMALL,
        UNCORRELATED_MISTAKES,
        [unc_bernoulli, unc_one_uniform, unc_magnitudes_first_float64],
    ),
]
