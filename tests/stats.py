"""Acceptance regions for the checkers' statistical tests, with a false-failure rate we can prove.

Every bound here is a finite-sample inequality (Chernoff's for binomial counts, Hoeffding's for bounded means,
Dvoretzky–Kiefer–Wolfowitz–Massart's for a whole CDF), not a normal approximation. A check that runs k tests,
each at level `alpha / k`, therefore fails a correct implementation with probability at most `alpha` on any
seed (union bound). We use alpha = 1e-6 per check call: a verdict's `Budget` holds its number of tests k and hands
out each test at level alpha / k.
"""

import functools
import itertools
import math

import torch as t
from torch import Tensor

FALSE_FAILURE_RATE = 1e-6


def _kl(q: float, p: float) -> float:
    """Kullback–Leibler divergence between Bernoulli(q) and Bernoulli(p)."""
    total = 0.0
    if q > 0:
        total += q * math.log(q / p)
    if q < 1:
        total += (1 - q) * math.log((1 - q) / (1 - p))
    return total


@functools.lru_cache(maxsize=4096)
def binomial_range(n: int, p: float, alpha: float) -> tuple[float, float]:
    """Interval for the frequency of a Binomial(n, p) count that holds with probability ≥ 1 - alpha.

    Chernoff: P(X/n ≥ q) ≤ exp(-n·KL(q‖p)) for q > p, and the same below p; each tail gets alpha / 2.
    """
    if p <= 0 or p >= 1:
        return (p, p)
    target = math.log(2 / alpha) / n

    def upper(p: float) -> float:  # the q > p with KL(q‖p) = target, or 1 if no such q
        if _kl(1.0, p) <= target:
            return 1.0
        lo, hi = p, 1.0
        for _ in range(100):
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if _kl(mid, p) > target else (mid, hi)
        return hi

    return 1 - upper(1 - p), upper(p)


def hoeffding_radius(n: int, value_range: float, alpha: float) -> float:
    """|mean − E[mean]| ≤ radius with probability ≥ 1 - alpha, for n independent values in a range of that width."""
    return value_range * math.sqrt(math.log(2 / alpha) / (2 * n))


def dkw_radius(n: int, alpha: float) -> float:
    """sup |F_n − F| ≤ radius with probability ≥ 1 - alpha for an empirical CDF of n samples (Massart's constant)."""
    return math.sqrt(math.log(2 / alpha) / (2 * n))


def outside(counts: Tensor, n: int | Tensor, probs: Tensor, alpha: float) -> list[tuple[int, ...]]:
    """Indices whose count is outside its Chernoff range (rounded probabilities make the ranges cacheable). `n` is
    the number of trials, shared or one per index (an index with no trials is never outside)."""
    bad = []
    for index in itertools.product(*map(range, probs.shape)):
        trials = n if isinstance(n, int) else int(n[index])
        if trials == 0:
            continue
        lo, hi = binomial_range(trials, round(float(probs[index]), 12), alpha)
        if not lo <= float(counts[index]) / trials <= hi:
            bad.append(index)
    return bad


DIAGNOSIS_ALPHA = 1e-6  # when naming a mistake, how plausible the data must be under it


def explained_by(counts: Tensor, n: int, rates: Tensor) -> bool:
    """Whether the counts are plausible under these rates: used only to name a mistake once a test has failed."""
    return not outside(counts, n, rates.expand(counts.shape), DIAGNOSIS_ALPHA)


def uniform_ks_distance(values: Tensor, low: float, high: float, bins: int = 10_000) -> Tensor:
    """Kolmogorov–Smirnov distance of `values` to U[low, high] at `bins` grid points: never more than the exact
    statistic, so the DKW bound still caps the false-failure rate, and far cheaper than sorting."""
    cdf = t.histc(values, bins=bins, min=low, max=high).cumsum(0) / values.numel()
    return (cdf - t.linspace(1 / bins, 1, bins)).abs().max()


class Budget:
    """The statistical tests one verdict may run, each at level FALSE_FAILURE_RATE / tests, so that together (a union
    bound) they fail a correct implementation with probability at most FALSE_FAILURE_RATE on any seed.

    Every test is taken from the budget as it runs; a verdict that runs more than its budget has miscounted, which is
    a bug in the check, never the learner's fault, so it raises RuntimeError. Naming a mistake once a test has failed
    is not a test, and takes nothing from the budget.
    """

    def __init__(self, tests: int):
        self.tests = tests
        self.spent = 0
        self.alpha = FALSE_FAILURE_RATE / tests

    def spend(self, n: int = 1) -> float:
        """Take `n` tests from the budget, and return the level each of them runs at."""
        self.spent += n
        if self.spent > self.tests:
            raise RuntimeError(f"this verdict ran more than the {self.tests} tests its false-failure rate allows")
        return self.alpha

    def binomial_range(self, n: int, p: float) -> tuple[float, float]:
        """One test: the range of the frequency of a Binomial(n, p) count."""
        return binomial_range(n, p, self.spend())

    def binomial_outliers(self, counts: Tensor, n: int | Tensor, rates: Tensor) -> list[tuple[int, ...]]:
        """One test per rate: the indices whose frequency counts / n lies outside the Chernoff range of its rate."""
        return outside(counts, n, rates, self.spend(rates.numel()))

    def hoeffding_radius(self, n: int, value_range: float) -> float:
        """One test: the radius of the mean of n independent values in a range of that width."""
        return hoeffding_radius(n, value_range, self.spend())

    def mean_is_off(self, values: Tensor, expected: float, value_range: float) -> bool:
        """One test: whether the mean of `values`, each in a range of that width, is too far from `expected`."""
        return abs(float(values.mean()) - expected) > self.hoeffding_radius(values.numel(), value_range)

    def not_uniform(self, values: Tensor, low: float, high: float, bins: int = 10_000) -> float | None:
        """One test: the Kolmogorov–Smirnov distance of `values` to U[low, high] if it is too large, else None."""
        distance = float(uniform_ks_distance(values, low, high, bins))
        return distance if distance > dkw_radius(values.numel(), self.spend()) else None
