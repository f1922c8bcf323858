"""`tms.generate_anticorrelated_features`: its verdict, its catalogue of mistakes with their hints, and its
alternatives."""

import einops
import torch as t
from torch import Tensor

from tests.harness import CheckFailed, Context, Mistake
from tests.stats import FALSE_FAILURE_RATE, Budget
from tests.tms.common import (
    HINT_MAGNITUDES_ACROSS_INSTANCES,
    independent_pairings,
)
from tests.tms.correlated.shared import (
    ANTICORRELATED_P,
    ANTICORRELATED_ROWS,
    BATCH_SIZE,
    CFG,
    HINT_2P,
    HINT_ANTI_LAYOUT,
    HINT_ANTICORRELATED_FREQUENCY,
    HINT_ARGUMENT,
    HINT_BROADCAST_P,
    HINT_FIRST_INSTANCE,
    HINT_FRESH,
    HINT_HALF,
    HINT_INSTANCES,
    HINT_MAGNITUDES_ACROSS,
    HINT_NEVER_BOTH,
    HINT_ONE_ALWAYS,
    HINT_OTHER_COLUMN,
    HINT_PAIRS_INDEPENDENT,
    HINT_REUSED,
    HINT_SAME_CONDITION,
    HINT_ZEROING,
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
