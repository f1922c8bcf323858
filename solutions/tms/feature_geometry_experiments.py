"""Chapter 1, section 5: the experiments of the solutions notebook, and the measurements its claims rest on.

A sparsity sweep of 200 features in 20 dimensions, in which D* sticks at 1/2, and a run with decaying importance, in
which capacity flows to the features that matter most. The notebook and the science tests import their settings
from here, so the tests assert the results at exactly the settings the notebook shows.
"""

from jaxtyping import Float
from torch import Tensor

from solutions.tms.feature_geometry import compute_dimensionality, dimensions_per_feature
from solutions.tms.superposition_experiments import Sweep

# The paper's notebook trains 20 sparsity levels p_k = 20^(-k/19) (1/(1 − S) log-spaced from 1 to 20). We keep 10 of
# them: the plateau at 1/2 (k = 6…8) and its edges at full resolution, the rest of the curve sparser.
DIMENSIONALITY_LEVELS = (0, 2, 4, 6, 7, 8, 9, 10, 15, 19)

# n = 200 features in m = 20 dimensions, all equally important, as in the paper. The paper trains 10k steps of batch
# 1024 at lr 1e-3; that is ~20 CPU-minutes for these 10 models. The course's schedule (lr 1e-2, constant for half
# the run, then decaying to 0) on batches of 256 reaches the same plateau in 2000 steps, 20× cheaper: the antipodal
# pairs form within a few hundred steps, and the decay only sharpens them. 10 models × 256 × 200 features is also
# just small enough for the training loop to run on one thread (a second one costs more than it gives here).
DIMENSIONALITY = Sweep(
    n_features=200,
    d_hidden=20,
    importance_decay=1.0,
    feature_probabilities=tuple(20 ** (-k / 19) for k in DIMENSIONALITY_LEVELS),
    n_seeds=1,
    steps=2_000,
    batch_size=256,
)

# Importance I_i = 0.8^i over 20 features in 5 dimensions, from dense to sparse, 3 seeds per sparsity (the best by
# loss is kept: with 5 → 2 features section 1 met local minima, and seeds here are nearly free).
CAPACITY = Sweep(
    n_features=20,
    d_hidden=5,
    importance_decay=0.8,
    feature_probabilities=(1.0, 0.3, 0.1, 0.03),
    n_seeds=3,
    steps=2_000,
)


# --------------------------------------------------------------------------------------------- measurements

STICKY_FRACTIONS = {"1": 1.0, "3/4": 3 / 4, "2/3": 2 / 3, "1/2": 1 / 2, "2/5": 2 / 5, "3/8": 3 / 8}
LINE_HALF_WIDTH = 0.005
LINE_FLANK = 0.0125


def pooled_dimensionalities(
    W: Float[Tensor, "inst d_hidden feats"], max_dimensions_per_feature: float = 0.95
) -> Float[Tensor, " pooled"]:
    """The D_i of every feature of every model in superposition (D* < 0.95), in one flat tensor.

    Dense models are left out: with equal importances their 20 dimensions can be spread over the features in any
    rotation, so their D_i take arbitrary values and say nothing about geometry.
    """
    keep = dimensions_per_feature(W) < max_dimensions_per_feature
    return compute_dimensionality(W[keep]).flatten()


def line_counts(D: Float[Tensor, " pooled"], fraction: float) -> tuple[int, int, int]:
    """How many D_i lie within ±0.005 of `fraction`, and of the two flank points `fraction` ∓ 0.0125.

    A "line" in the paper's scatter plot is a value that many features share exactly, far more than share the
    values just beside it; a broad cloud passing through the fraction has flanks as full as its centre.
    """
    near = lambda value: int(((D - value).abs() <= LINE_HALF_WIDTH).sum())  # noqa: E731
    return near(fraction), near(fraction - LINE_FLANK), near(fraction + LINE_FLANK)


def is_line(D: Float[Tensor, " pooled"], fraction: float, min_count: int = 10) -> bool:
    """At least `min_count` features at the fraction, and at least twice as many as at either flank."""
    centre, below, above = line_counts(D, fraction)
    return centre >= min_count and centre >= 2 * max(below, above)


def rank_correlation(x: Float[Tensor, " n"], y: Float[Tensor, " n"]) -> float:
    """Spearman's rank correlation (ties get their average rank): 1 when y grows whenever x grows."""

    def ranks(v: Tensor) -> Tensor:
        below = (v[:, None] > v[None, :]).sum(-1).float()
        equal = (v[:, None] == v[None, :]).sum(-1).float()
        return below + (equal + 1) / 2

    rx, ry = ranks(x.float()), ranks(y.float())
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float((rx * ry).sum() / (rx.norm() * ry.norm()))


def order_violations(
    importance: Float[Tensor, " feats"], capacity: Float[Tensor, " feats"], tolerance: float = 0.05
) -> float:
    """Fraction of feature pairs in which the less important feature has more capacity, by more than `tolerance`."""
    more_important = importance[:, None] > importance[None, :]
    violated = more_important & (capacity[None, :] > capacity[:, None] + tolerance)
    return float(violated.sum() / more_important.sum())
