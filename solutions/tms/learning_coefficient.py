"""Chapter 1, section 7: singular learning theory on the toy model.

Chen, Lau, Mendel, Wei and Murfet (2023), "Dynamical versus Bayesian Phase Transitions in a Toy Model of
Superposition", study a smaller cousin of section 1's model: f(x) = ReLU(WᵀW x + b) with W: [2 feats] (c = 6
features in 2 dimensions), trained on inputs with *exactly one* feature on, and a loss summed over the features. Its
critical points are regular k-gons, and the local learning coefficient λ (the "effective dimension" of singular
learning theory) tells them apart where the loss alone cannot.

This module holds the six exercises: the data, the loss, the k-gons, one SGLD step, the λ̂ estimator and the sample
size at which the Bayesian posterior switches between two k-gons. The helpers that run them (exact population loss,
SGLD chains, training from random starts, fine-tuning) are in `learning_coefficient_experiments.py`.
"""

import math

import einops
import torch as t
from jaxtyping import Float
from torch import Tensor


def generate_one_hot_batch(
    batch_size: int,
    n_inst: int,
    n_features: int,
    generator: t.Generator | None = None,
    device: t.device | str | None = None,
) -> Float[Tensor, "batch inst feats"]:
    """Inputs of the paper: in every (batch, inst) row exactly one feature is on, chosen uniformly among the
    `n_features`, with magnitude U[0, 1]; every other entry is 0. All random numbers come from `generator` (a CPU
    generator, or the global one when None); the result is then moved to `device`."""
    which = t.randint(n_features, (batch_size, n_inst, 1), generator=generator)
    magnitude = t.rand((batch_size, n_inst, 1), generator=generator)
    x = t.zeros((batch_size, n_inst, n_features)).scatter_(-1, which, magnitude)
    return x.to(device)


def slt_loss(
    W: Float[Tensor, "inst 2 feats"], b: Float[Tensor, "inst feats"], x: Float[Tensor, "batch inst feats"]
) -> Float[Tensor, " inst"]:
    """The paper's loss, one value per instance: the squared error of ReLU(WᵀW x + b) against x, summed over the
    features and averaged over the batch (not averaged over features, as section 1's loss is)."""
    hidden = einops.einsum(W, x, "inst d feats, batch inst feats -> batch inst d")
    out = t.relu(einops.einsum(W, hidden, "inst d feats, batch inst d -> batch inst feats") + b)
    return (out - x).pow(2).sum(-1).mean(0)


def kgon(
    k: int, n_features: int, length: float, bias: float, dead_bias: float | Tensor = 0.0
) -> tuple[Float[Tensor, "2 feats"], Float[Tensor, " feats"]]:
    """The k-gon critical point of one model: columns j = 0, …, k−1 of W at angle 2πj/k with norm `length` and bias
    `bias`; columns k, …, n_features−1 zero, with bias `dead_bias` (a float for all of them, or one value each).

    A dead column's bias matters: its best value is 1/(2c) (the "k⁺-gon"), any value ≤ 0 gives the plain k-gon."""
    angles = 2 * math.pi * t.arange(k) / k
    W = t.zeros(2, n_features)
    W[0, :k] = length * angles.cos()
    W[1, :k] = length * angles.sin()
    b = t.empty(n_features)
    b[:k] = bias
    b[k:] = t.as_tensor(dead_bias, dtype=t.float32)
    return W, b


def sgld_step(
    w: Float[Tensor, "chains ..."],
    grad: Float[Tensor, "chains ..."],
    w_star: Float[Tensor, "..."],
    epsilon: float,
    n_beta: float,
    gamma: float,
    generator: t.Generator | None = None,
) -> Float[Tensor, "chains ..."]:
    """One step of stochastic-gradient Langevin dynamics for every chain at once, localised at w*:

        w ← w − (ε/2) (nβ ∇L_batch(w) + γ (w − w*)) + η,   η ~ N(0, ε) (standard deviation √ε),

    with `grad` = ∇L_batch(w) (the gradient of the mean loss on a minibatch) for each chain and `w_star` broadcast
    over the chains. The noise is drawn from `generator` (one independent draw per entry) on w's device. Returns the
    new points; `w` is left unchanged."""
    drift = n_beta * grad + gamma * (w - w_star)
    noise = t.randn(w.shape, generator=generator, device=w.device) * math.sqrt(epsilon)
    return w - (epsilon / 2) * drift + noise


def estimate_llc(
    losses: Float[Tensor, "chains draws"],
    init_loss: float | Float[Tensor, " chains"],
    n: int,
    burn_in: int,
    n_beta: float | None = None,
) -> tuple[Float[Tensor, ""], Float[Tensor, " chains"]]:
    """The local learning coefficient estimate from the loss traces of SGLD chains started at w*.

    `losses[c, t]` is L_n at the t-th draw of chain c; the first `burn_in` draws of every chain are dropped.
    `init_loss` is L_n(w*) (a float, or one value per chain). nβ defaults to n / ln n with n the size of the data set
    (never the minibatch). Returns (λ̂, λ̂ per chain): λ̂_c = nβ · (mean over chain c's kept draws − L_n(w*)), and λ̂ is
    their mean (the mean over all kept draws, since every chain keeps as many)."""
    n_beta = n / math.log(n) if n_beta is None else n_beta
    per_chain = n_beta * (losses[:, burn_in:].mean(dim=1) - t.as_tensor(init_loss, dtype=losses.dtype))
    return per_chain.mean(), per_chain


def critical_n(
    loss_a: float, llc_a: float, loss_b: float, llc_b: float, constant_a: float = 0.0, constant_b: float = 0.0
) -> float:
    """The sample size n at which the Bayesian posterior switches from critical point a to critical point b.

    Each point's free energy is F(n) ≈ n·L + λ·ln n + constant. Point b must have the lower loss (loss_b < loss_a),
    so for large n its F is lower. Returns the smallest n ≥ 1 from which on F_b ≤ F_a: the larger root of
    n (L_a − L_b) − (λ_b − λ_a) ln n + (constant_a − constant_b) = 0, or 1.0 when F_b ≤ F_a already at every n ≥ 1."""
    loss_gap, llc_gap, constant_gap = loss_a - loss_b, llc_b - llc_a, constant_a - constant_b
    if loss_gap <= 0:
        raise ValueError(f"point b must have the lower loss (got loss_a = {loss_a}, loss_b = {loss_b})")

    def gap(n: float) -> float:  # F_a − F_b: negative while a is preferred
        return n * loss_gap - llc_gap * math.log(n) + constant_gap

    low = max(1.0, llc_gap / loss_gap)  # F_a − F_b is smallest here, and increases from here on
    if gap(low) >= 0:
        return 1.0
    high = 2 * low
    while gap(high) < 0:
        high *= 2
    for _ in range(200):  # bisection, to float precision
        middle = (low + high) / 2
        low, high = (middle, high) if gap(middle) < 0 else (low, middle)
    return high
