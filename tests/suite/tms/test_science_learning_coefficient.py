"""Science of chapter 1, section 7 (Chen et al. 2023; README targets T12–T16), at the settings the notebook shows.

T12: the k-gons are critical points with the paper's eight losses. T13: SGLD's λ̂ recovers the theory at three minima,
and d/2 on a quadratic bowl. T14: the estimator's pitfalls. T15: training from random starts steps down through the
k-gon levels and mostly ends on the 5⁺-gon; a plateau met on the way is a saddle, and λ̂ on the plateaus where runs end
is higher on the low-loss ones. T16: the free-energy crossing of the 5- and 6-gons.

Tolerances: the 8 chains of one T13 estimate spread by 0.6-0.7 (standard deviation over chains, measured at the
notebook's settings: 6-gon 8.06 ± 0.66, 5⁺-gon 8.87 ± 0.57, 5-gon at c = 5 7.00 ± 0.71), so a mean of 8 chains has a
standard error near 0.25; ±1.5 around the theory (the README target's tolerance) is about 6 standard errors.
"""

import functools
import math

import pytest
import torch as t

from solutions.tms.learning_coefficient import critical_n, estimate_llc, slt_loss
from solutions.tms.learning_coefficient_experiments import (
    LLCSettings,
    fine_tune,
    kgon_levels,
    kgon_point,
    llc_at,
    nearest_kgon,
    population_loss,
    sample_data,
    sgld_chains,
    train_from_random_starts,
)

PAPER_LOSSES = [  # k, c, pluses, loss
    (5, 6, 0, 0.06874),
    (5, 6, 1, 0.06180),
    (6, 6, 0, 0.04819),
    (5, 5, 0, 0.01583),
    (4, 4, 0, 0.0),
    (4, 5, 0, 0.06667),
    (4, 5, 1, 0.05667),
    (4, 6, 1, 0.10417),
]


@pytest.mark.parametrize("k, c, pluses, expected", PAPER_LOSSES)
def test_kgons_are_critical_points_with_the_papers_losses(k, c, pluses, expected):
    W, b = (tensor.double().requires_grad_(True) for tensor in kgon_point(k, c, pluses))
    loss = population_loss(W, b)
    gradient = t.cat([g.flatten() for g in t.autograd.grad(loss, (W, b))]).norm()
    loss = float(loss.detach())
    assert abs(loss - expected) < 1e-4 and gradient < 1e-4, (loss, float(gradient))


def test_zero_model_costs_one_third():
    assert abs(float(population_loss(t.zeros(2, 6), t.zeros(6))) - 1 / 3) < 1e-9


def test_llc_of_a_quadratic_bowl_is_half_its_dimension():
    d, n = 10, 10_000
    trace = sgld_chains(lambda w, g: 0.5 * w.pow(2).sum(-1), t.zeros(d), 8, 2_000, 1e-4, n / math.log(n), 10.0,
                        t.Generator().manual_seed(0))  # fmt: skip
    llc, _ = estimate_llc(trace, 0.0, n, 500)
    assert abs(float(llc) - d / 2) < 0.5, float(llc)


@functools.cache  # the strong-localisation estimate serves two tests
def llc_at_kgon(k, c, pluses=0, n=10_000, settings=None, tune=True, dead_bias=0.0):
    data = sample_data(n, c, seed=1)
    W, b = kgon_point(k, c, pluses, dead_bias)
    if tune:
        W, b = fine_tune(W, b, data, steps=200)
    return llc_at(W, b, data, settings or LLCSettings(), seed=2)


@pytest.mark.slow
@pytest.mark.parametrize("k, c, pluses, theory", [(6, 6, 0, 8.5), (5, 6, 1, 8.5), (5, 5, 0, 7.0)])
def test_llc_recovers_the_theory_at_minima(k, c, pluses, theory):
    result = llc_at_kgon(k, c, pluses)
    assert abs(result.llc - theory) <= 1.5, (result.llc, result.per_chain)


@pytest.mark.slow
def test_strong_localisation_biases_llc_down():
    result = llc_at_kgon(6, 6, n=1_000, settings=LLCSettings(gamma=100.0))
    assert result.llc < 4.5, result.llc  # measured 2.8; theory 8.5


@pytest.mark.slow
def test_weak_localisation_spreads_the_chains():
    weak = llc_at_kgon(6, 6, n=1_000, settings=LLCSettings(gamma=1.0))
    strong = llc_at_kgon(6, 6, n=1_000, settings=LLCSettings(gamma=100.0))
    assert float(weak.per_chain.std()) > 2 * float(strong.per_chain.std()), (weak.per_chain, strong.per_chain)


@pytest.mark.slow
def test_temperature_from_the_batch_size_biases_llc_down():
    result = llc_at_kgon(6, 6, settings=LLCSettings(n_beta=500 / math.log(500)))
    assert result.llc < 8.5 - 1.5, result.llc  # measured 5.2


@pytest.mark.slow
@pytest.mark.parametrize("k, pluses, dead_bias, below", [(5, 0, -0.1, 4.5), (4, 1, 0.0, 0.0)])
def test_llc_at_a_saddle_falls_far_below_the_minimum(k, pluses, dead_bias, below):
    result = llc_at_kgon(k, 6, pluses, tune=False, dead_bias=dead_bias)
    assert result.llc < below, (result.llc, result.per_chain)  # measured 2.0 and −20


@functools.cache
def training():
    """T15 at the notebook's settings: 3,000 steps (every transition is over by step 2,000 with these seeds; a
    20,000-step run ends every seed on the same k-gon)."""
    return train_from_random_starts(n_inst=16, steps=3_000, lr=0.01, log_every=10)


def plateaus(names):
    runs = []
    for index, name in enumerate(names):
        if runs and runs[-1][0] == name:
            runs[-1][2] = index
        else:
            runs.append([name, index, index])
    return runs


@pytest.mark.slow
def test_training_steps_down_through_the_kgons_to_the_five_plus_gon():
    run, levels = training(), kgon_levels(6)
    final = nearest_kgon(run.losses[-1], levels)
    assert final.count("5⁺") >= 12, final  # the paper: 15/16; measured 13/16 with these seeds (one 6, one 5, one 4⁺⁺)
    visited = [set(nearest_kgon(run.losses[:, i], levels)) for i in range(16)]
    assert sum({"5", "5⁺"} <= seen for seen in visited) >= 8, visited
    norms = run.W[-1].norm(dim=1)  # [inst feats]
    for i in (i for i, name in enumerate(final) if name == "5⁺"):
        live = norms[i] > 0.5
        assert int(live.sum()) == 5, norms[i]
        live_bias, dead_bias = run.b[-1, i][live].mean(), run.b[-1, i][~live].mean()
        assert abs(float(live_bias) + 0.2823) < 0.05 and abs(float(dead_bias) - 1 / 12) < 0.02, run.b[-1, i]


@pytest.mark.slow
def test_a_plateau_met_on_the_way_is_a_saddle():
    """The middle of the longest 4⁺⁺ plateau of a run that goes on to the 5⁺-gon: gradient descent lowers the loss from
    there (measured 0.0987 → 0.0920 in 100 steps, seed 13 at step 1,120), and SGLD's chains slide down too (λ̂ measured
    −2.3, −17.5, −8.8 with chain seeds 3, 4, 5)."""
    run, levels = training(), kgon_levels(6)
    final = nearest_kgon(run.losses[-1], levels)
    candidates = [
        (last - first, seed, (first + last) // 2)
        for seed in range(16)
        if final[seed] == "5⁺"
        for name, first, last in plateaus(nearest_kgon(run.losses[:, seed], levels))
        if name == "4⁺⁺"
    ]
    _, seed, middle = max(candidates)
    W, b, data = run.W[middle, seed], run.b[middle, seed], run.data[:, seed]
    tuned = slt_loss(*(x.unsqueeze(0) for x in fine_tune(W, b, data, steps=100)), data.unsqueeze(1))
    assert float(tuned) < float(run.losses[middle, seed]) - 0.003, (float(tuned), float(run.losses[middle, seed]))
    result = llc_at(W, b, data, LLCSettings(steps=1_500, burn_in=500), seed=3)
    assert result.llc < 0, result.llc


@pytest.mark.slow
def test_llc_is_higher_on_the_low_loss_plateaus_where_runs_end():
    """λ̂ (1,500-step chains) at the last checkpoint of one seed per final k-gon. Measured with chain seeds 3, 4, 5, 6:
    4⁺⁺ 5.4, −0.7, 5.6, 5.8; 5: 7.2, 5.3, 5.8, 6.1; 5⁺: 9.1, 9.3, 8.3, 9.0; 6: 8.0, 8.2, 7.7, 7.8. The order of 4⁺⁺ and
    5 is not settled (both are saddles whose exit SGD misses), so only the step between the two pairs is asserted."""
    run, levels = training(), kgon_levels(6)
    ends = {}
    for seed, name in enumerate(nearest_kgon(run.losses[-1], levels)):
        ends.setdefault(name, seed)
    assert set(ends) == {"4⁺⁺", "5", "5⁺", "6"}, ends
    short = LLCSettings(steps=1_500, burn_in=500)
    llc = {name: llc_at(run.W[-1, seed], run.b[-1, seed], run.data[:, seed], short, seed=3).llc
           for name, seed in ends.items()}  # fmt: skip
    assert min(llc["5⁺"], llc["6"]) > max(llc["4⁺⁺"], llc["5"]), llc
    assert abs(llc["5⁺"] - 8.5) <= 1.5 and abs(llc["6"] - 8.5) <= 1.5, llc


def test_bayesian_transition_arithmetic():
    levels = kgon_levels(6)
    assert abs(critical_n(levels["5"], 7.0, levels["6"], 8.5) - 445) < 2
    assert abs(critical_n(levels["5"], 7.0, levels["6"], 8.5, 0.0, 2.7535) - 601) < 2
