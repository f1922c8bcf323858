"""`tms.generate_uncorrelated_features`: its verdict, its catalogue of mistakes with their hints, and its
alternatives."""

import torch as t

from tests.harness import CheckFailed, Context, Mistake
from tests.stats import Budget
from tests.tms.common import (
    HINT_MAGNITUDES_ACROSS_INSTANCES,
    independent_pairings,
)
from tests.tms.correlated.shared import (
    BATCH_SIZE,
    CFG,
    HINT_BATCH,
    HINT_BROADCAST_P,
    HINT_CONSTANT,
    HINT_FEATURES_INDEPENDENT,
    HINT_FIRST_INSTANCE,
    HINT_FRESH,
    HINT_INSTANCES,
    HINT_MAGNITUDES_ACROSS,
    HINT_ONE_MINUS_P,
    HINT_OTHER_COLUMN,
    HINT_RANGE,
    HINT_REUSED,
    HINT_UNCORRELATED_FREQUENCY,
    N_UNCORRELATED,
    N_UNCORRELATED_SMALL,
    UNCORRELATED_P,
    UNCORRELATED_ROWS,
    check_batch_and_instance_independence,
    check_magnitudes,
    check_magnitudes_independent,
    check_probability_unchanged,
    check_units_independent,
    name_frequency_mistake,
    other_columns,
    probabilities,
    read_shapes,
)

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
