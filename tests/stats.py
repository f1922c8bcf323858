"""Acceptance regions for the checkers' statistical tests, with a false-failure rate we can prove.

Every bound here is a finite-sample inequality (Chernoff's for binomial counts, Hoeffding's for bounded means,
Dvoretzky–Kiefer–Wolfowitz–Massart's for a whole CDF), not a normal approximation. A check that runs k tests,
each at level `alpha / k`, therefore fails a correct implementation with probability at most `alpha` on any
seed (union bound). We use alpha = 1e-6 per check call.
"""

import functools
import math

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
