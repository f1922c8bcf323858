"""Section 3's shared pieces: the probe's model and probabilities, the hints, the probe, and the distribution tests
that the three generators' verdicts share."""

from collections.abc import Callable

import torch as t
from torch import Tensor

from tests.harness import CheckFailed, Context, Exercise, attempt, expect_tensor, raised
from tests.stats import Budget, binomial_range
from tests.tms.common import (
    build,
    first_explaining,
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


def exercise(method: str, verdict, rows, n_big, n_small, mistakes, alternatives):
    return Exercise(
        id=f"tms.{method}",
        name="ToyModel",
        method=method,
        reference_path=f"{MODULE}:ToyModel",
        probe=make_probe(method, rows, n_big, n_small),
        verdict=verdict,
        mistakes=mistakes,
        alternatives=alternatives,
    )
