"""Probing and judging `generate_batch` (sections 1, 4 and 6): the statistical tests on sampled batches, and the
mistakes every such sampler can make."""

import contextlib
from collections.abc import Callable, Iterator

import torch as t
from torch import Tensor

from tests.harness import CheckFailed, Context, Mistake, expect_tensor
from tests.stats import Budget, outside
from tests.tms.common.basics import (
    build,
)

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
HINT_MAGNITUDES_ACROSS_INSTANCES = (
    "Instances must get independent magnitudes too: draw one magnitude per (batch, inst, feat) entry, not one set "
    "(e.g. `t.rand(batch, 1, feats)`) broadcast over the `inst` axis"
)
HINT_ONE_COLUMN = (
    "Every feature has its own probability: use `self.feature_probability` [inst, feats] as it is, not one "
    "feature's column (e.g. `[:, :1]` or `[:, -1:]`) for all of them"
)
HINT_ONE_INSTANCE = (
    "Every instance has its own probabilities: use `self.feature_probability` [inst, feats] as it is, not one "
    "instance's row (e.g. `[0]` or `[:1]`) for all of them"
)
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

    def generate_batch_magnitudes_shared_across_instances(self, batch_size):
        n_inst, n_features = self.feature_probability.shape
        mask = t.rand((batch_size, n_inst, n_features)) <= self.feature_probability
        return t.where(mask, magnitudes((batch_size, 1, n_features)), 0.0)

    def generate_batch_first_feature_probability(self, batch_size):
        shape = shape_of(self, batch_size)
        return t.where(t.rand(shape) <= self.feature_probability[:, :1], magnitudes(shape), 0.0)

    def generate_batch_last_feature_probability(self, batch_size):
        shape = shape_of(self, batch_size)
        return t.where(t.rand(shape) <= self.feature_probability[:, -1:], magnitudes(shape), 0.0)

    def generate_batch_first_instance_probability(self, batch_size):
        shape = shape_of(self, batch_size)
        return t.where(t.rand(shape) <= self.feature_probability[0], magnitudes(shape), 0.0)

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
        Mistake(generate_batch_magnitudes_shared_across_instances, HINT_MAGNITUDES_ACROSS_INSTANCES),
        Mistake(generate_batch_first_feature_probability, HINT_ONE_COLUMN),
        Mistake(generate_batch_last_feature_probability, HINT_ONE_COLUMN),
        Mistake(generate_batch_first_instance_probability, HINT_ONE_INSTANCE),
        Mistake(generate_batch_same_magnitude_for_all_features, HINT_MAGNITUDE_INDEPENDENCE),
        Mistake(generate_batch_half_batch_repeated, HINT_BATCH_INDEPENDENCE),
        Mistake(generate_batch_fixed_seed, HINT_FRESH_CALLS),
    ]


DIAGNOSIS_ALPHA = 1e-6  # when naming a mistake, how plausible the data must be under it


def explained_by(counts: Tensor, n: int, rates: Tensor) -> bool:
    """Whether the counts are plausible under these rates: used only to name a mistake once a test has failed."""
    return not outside(counts, n, rates.expand(counts.shape), DIAGNOSIS_ALPHA)


def first_explaining(counts: Tensor, n: int, candidates: list[tuple[str, Tensor]]) -> str | None:
    """The hint of the first candidate rate that explains every count, if any."""
    return next((hint for hint, rates in candidates if explained_by(counts, n, rates)), None)


def frequency_mistake(present: Tensor, p: Tensor) -> str | None:
    """The hint for probabilities read from one column or one row of `p` [inst feats], if that explains how often
    each feature of each instance was present."""
    columns = [(HINT_ONE_COLUMN, p[:, c : c + 1]) for c in range(p.shape[1])]
    rows = [(HINT_ONE_INSTANCE, p[i : i + 1]) for i in range(p.shape[0])]
    return first_explaining(present.sum(0), present.shape[0], columns + rows)


def judge_frequency(present: Tensor, p: Tensor, budget: Budget) -> None:
    """Each feature of each instance present with its own probability: one test per (inst, feat)."""
    n = present.shape[0]
    counts = present.sum(0)
    if bad := budget.binomial_outliers(counts, n, p):
        i, f = bad[0]
        known = frequency_mistake(present, p)
        raise CheckFailed(
            f"{HINT_FREQUENCY if known is None else f'{HINT_FREQUENCY}. {known}'}: instance {i}, feature {f} has "
            f"probability {float(p[i, f]):.2f} but was present in {float(counts[i, f]) / n:.3f} of {n} samples."
        )


def judge_independence(present: Tensor, p: Tensor, budget: Budget) -> None:
    """Presence independent across rows of the batch (2 tests per cell), neighbouring features and instances."""
    n = present.shape[0]
    half = n // 2
    halves = (present[:half] & present[half : 2 * half]).sum(0)
    neighbours = (present[0::2][:half] & present[1::2][:half]).sum(0)
    for name, together in [("the two halves of the batch", halves), ("neighbouring rows", neighbours)]:
        if bad := budget.binomial_outliers(together, half, p * p):
            raise CheckFailed(
                f"{HINT_BATCH_INDEPENDENCE} (instance {bad[0][0]}, feature {bad[0][1]}, comparing {name})."
            )
    for hint, together, expected in [
        (HINT_FEATURE_INDEPENDENCE, (present[:, :, :-1] & present[:, :, 1:]).sum(0), p[:, :-1] * p[:, 1:]),
        (HINT_INSTANCE_INDEPENDENCE, (present[:, :-1] & present[:, 1:]).sum(0), p[:-1] * p[1:]),
    ]:
        if bad := budget.binomial_outliers(together, n, expected):
            index = bad[0]
            raise CheckFailed(
                f"{hint}. Two entries (pair {index}) were present together in {float(together[index]) / n:.4f} "
                f"of samples; independent draws would give {float(expected[index]):.4f}."
            )


def judge_uniform(values: Tensor, low: float, high: float, budget: Budget, hint: str, instance: int) -> None:
    """One instance's present magnitudes uniform on [low, high] (a Kolmogorov–Smirnov test)."""
    if (distance := budget.not_uniform(values, low, high)) is not None:
        raise CheckFailed(f"{hint}. In instance {instance} they are not uniform (KS distance {distance:.3f}).")


def disjoint_neighbours(x: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """Entries 0, 2, 4, … and 1, 3, 5, … along `dim`, cut to the same length: neighbours paired up so that no entry is
    in two pairs, which keeps the pairs independent (Hoeffding's inequality needs that; overlapping pairs (0, 1),
    (1, 2), … would not be)."""
    d = dim % x.dim()
    pairs = x.narrow(d, 0, 2 * (x.shape[d] // 2)).unflatten(d, (-1, 2))
    return pairs.select(d + 1, 0), pairs.select(d + 1, 1)


def independent_pairings(x: Tensor, unit_dim: int, unit_hint: str) -> list[tuple[str, Tensor, Tensor]]:
    """Pairings of entries that a generator must draw independently, for `judge_magnitudes_independent`: neighbouring
    units along `unit_dim` (features, or pairs of features), neighbouring instances (axis 1), and rows of the batch
    (axis 0: neighbours, then the two halves)."""
    half = x.shape[0] // 2
    return [
        (unit_hint, *disjoint_neighbours(x, unit_dim)),
        (HINT_MAGNITUDES_ACROSS_INSTANCES, *disjoint_neighbours(x, 1)),
        (HINT_BATCH_INDEPENDENCE, *disjoint_neighbours(x, 0)),
        (HINT_BATCH_INDEPENDENCE, x[:half], x[half : 2 * half]),
    ]


def shared_magnitudes_hint(pairings: list[tuple[str, Tensor, Tensor]]) -> str | None:
    """The hint of the first pairing whose two entries share their magnitudes: mostly exactly equal where both are
    present, among many distinct values (independent continuous draws are equal with probability about 2⁻²⁴, and a
    constant magnitude is a different mistake). Only to name a mistake once a test has failed."""
    for hint, a, b in pairings:
        both = (a != 0) & (b != 0)
        if both.sum() > 100 and (a[both] == b[both]).float().mean() > 0.5 and a[both].unique().numel() > 100:
            return hint
    return None


@contextlib.contextmanager
def naming_shared_magnitudes(pairings: list[tuple[str, Tensor, Tensor]]) -> Iterator[None]:
    """Around the tests of the magnitudes' distribution: magnitudes shared between the entries of a pairing make the
    values of an instance dependent, so those tests may fail first; name the sharing instead."""
    try:
        yield
    except CheckFailed:
        if (hint := shared_magnitudes_hint(pairings)) is not None:
            raise CheckFailed(f"{hint}: where both are present, your two magnitudes are exactly equal.") from None
        raise


def judge_magnitudes_independent(
    pairings: list[tuple[str, Tensor, Tensor]], centre: float, width: float, budget: Budget
) -> None:
    """Magnitudes the contract draws independently must be uncorrelated. For each pairing (hint, a, b), of entries
    paired up so that each entry is in at most one pair, where both are present (non-zero): the mean of
    (a − centre)(b − centre) is 0 up to Hoeffding's radius, each term lying in an interval of the given width. Given
    which entries are present, a correct generator's magnitudes are independent draws, so each test holds at
    its level whatever the presence pattern. Magnitudes shared between the two entries give a mean of their variance.

    One test per pairing, in order: callers list the most specific pairing first, and run this after every test of
    presence and of the magnitudes' distribution, so that it names only mistakes that those tests let through.
    """
    for hint, a, b in pairings:
        both = (a != 0) & (b != 0)
        products = ((a - centre) * (b - centre))[both]
        if products.numel() == 0:
            continue
        mean, radius = float(products.mean()), budget.hoeffding_radius(products.numel(), width)
        if abs(mean) > radius:
            term = f"(m₁ − {centre:g})(m₂ − {centre:g})" if centre else "m₁ m₂"
            raise CheckFailed(
                f"{hint}. Where both entries of such a pair are present, the mean of {term} is {mean:.4f}; "
                f"independent magnitudes give 0 ± {radius:.4f}."
            )
