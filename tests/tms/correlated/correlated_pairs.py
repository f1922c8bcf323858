"""`tms.generate_correlated_features`: its verdict, its catalogue of mistakes with their hints, and its alternatives."""

import einops
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
    CORRELATED_P,
    CORRELATED_ROWS,
    HINT_ARGUMENT,
    HINT_BATCH,
    HINT_BROADCAST_P,
    HINT_CORRELATED_FREQUENCY,
    HINT_FIRST_INSTANCE,
    HINT_FRESH,
    HINT_INSTANCES,
    HINT_LAYOUT,
    HINT_MAGNITUDES_ACROSS,
    HINT_ONE_MINUS_P,
    HINT_OTHER_COLUMN,
    HINT_P_SQUARED,
    HINT_PAIRS_INDEPENDENT,
    HINT_REUSED,
    HINT_SHARED_MAGNITUDE,
    HINT_TOGETHER,
    N_PAIRS,
    N_PAIRS_SMALL,
    check_batch_and_instance_independence,
    check_magnitudes,
    check_magnitudes_independent,
    check_probability_unchanged,
    check_units_independent,
    max_zero_magnitude_mismatches,
    name_frequency_mistake,
    other_columns,
    probabilities,
    read_shapes,
)

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
