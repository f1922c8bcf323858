"""Chapter 1, section 7: the helpers the notebook gives, and the settings its experiments run at.

Exact population loss (for the k-gon table), SGLD chains batched in one tensor, λ̂ at a point, full-batch
fine-tuning, and training from random starts. Every random number comes from an explicit `torch.Generator`.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch as t
from jaxtyping import Float
from torch import Tensor

from solutions.tms.learning_coefficient import estimate_llc, generate_one_hot_batch, kgon, sgld_step, slt_loss

# The paper's k-gons: (norm l*, bias b*) of the live columns, for k = 4, …, 8 (Chen et al. 2023, table 1).
KGON_PARAMETERS = {
    4: (1.0, 0.0),
    5: (1.17046, -0.28230),
    6: (1.32053, -0.61814),
    7: (1.44839, -0.96691),
    8: (1.55045, -1.29119),
}


def kgon_point(k: int, n_features: int, pluses: int = 0, dead_bias: float = 0.0) -> tuple[Tensor, Tensor]:
    """The paper's k-gon with `pluses` dead columns at their best bias 1/(2c), the others at `dead_bias` (≤ 0)."""
    length, bias = KGON_PARAMETERS[k]
    dead = t.full((n_features - k,), dead_bias)
    dead[:pluses] = 1 / (2 * n_features)
    return kgon(k, n_features, length, bias, dead)


def kgon_name(k: int, pluses: int) -> str:
    return f"{k}" + "⁺" * pluses


def population_loss(W: Float[Tensor, "... 2 feats"], b: Float[Tensor, "... feats"]) -> Float[Tensor, "..."]:
    """The exact expected loss over the paper's data distribution, differentiable in W and b.

    L = (1/c) Σ_i ∫₀¹ Σ_j (ReLU(u (WᵀW)_ji + b_j) − u δ_ij)² du. Each integrand is a quadratic in u on either side of
    its ReLU's kink u₀ = −b_j / (WᵀW)_ji, so two-point Gauss–Legendre on [0, u₀] and [u₀, 1] is exact."""
    W, b = W.double(), b.double()
    gram = W.transpose(-1, -2) @ W  # [..., i, j]: (WᵀW)_ij, symmetric
    slope, intercept = gram, b.unsqueeze(-2)  # feature i on with magnitude u: output j is ReLU(u gram_ij + b_j)
    safe = t.where(slope == 0, t.ones_like(slope), slope)
    kink = t.where(slope == 0, t.full_like(slope, 0.5), (-intercept / safe).clamp(0, 1))
    target = t.eye(W.shape[-1], dtype=W.dtype)
    total = t.zeros_like(slope)
    for low, high in [(t.zeros_like(kink), kink), (kink, t.ones_like(kink))]:
        middle, half = (low + high) / 2, (high - low) / 2
        for node in (-1 / math.sqrt(3), 1 / math.sqrt(3)):
            u = middle + half * node
            total = total + half * (t.relu(u * slope + intercept) - u * target).pow(2)
    return total.sum((-1, -2)) / W.shape[-1]


def kgon_levels(n_features: int) -> dict[str, float]:
    """Population loss of every k-gon (4 ≤ k ≤ min(8, c)) with 0 … c − k pluses, by name, lowest first."""
    levels = {
        kgon_name(k, pluses): float(population_loss(*kgon_point(k, n_features, pluses)))
        for k in range(4, min(8, n_features) + 1)
        for pluses in range(n_features - k + 1)
    }
    return dict(sorted(levels.items(), key=lambda item: item[1]))


def nearest_kgon(losses: Tensor, levels: dict[str, float]) -> list[str]:
    """The name of the k-gon whose population loss is nearest to each loss."""
    names, values = list(levels), t.tensor(list(levels.values()))
    return [names[i] for i in (losses.reshape(-1, 1) - values).abs().argmin(1).tolist()]


# ------------------------------------------------------------------------------------------ parameters


def pack(W: Float[Tensor, "... 2 feats"], b: Float[Tensor, "... feats"]) -> Float[Tensor, "... params"]:
    """W and b flattened into one vector of 3c parameters (the coordinates SGLD moves in)."""
    return t.cat([W.flatten(-2), b], dim=-1)


def unpack(w: Float[Tensor, "... params"]) -> tuple[Float[Tensor, "... 2 feats"], Float[Tensor, "... feats"]]:
    n_features = w.shape[-1] // 3
    return w[..., : 2 * n_features].unflatten(-1, (2, n_features)), w[..., 2 * n_features :]


def fine_tune(
    W: Float[Tensor, "2 feats"], b: Float[Tensor, " feats"], data: Float[Tensor, "n feats"], steps: int = 500
) -> tuple[Tensor, Tensor]:
    """The nearest minimum of the empirical loss L_n: full-batch gradient descent with momentum from (W, b).

    A k-gon is a critical point of the *population* loss; on a sample of n points the minimum sits O(1/√n) away, and
    SGLD started off it first slides down, which biases λ̂ upwards. A saddle is not a minimum: fine-tuning slides off."""
    w = pack(W, b).detach().clone().requires_grad_(True)
    optimizer = t.optim.SGD([w], lr=0.05, momentum=0.9)
    x = data.unsqueeze(1)
    for _ in range(steps):
        optimizer.zero_grad()
        slt_loss(*unpack(w.unsqueeze(0)), x).sum().backward()
        optimizer.step()
    return unpack(w.detach())


# ------------------------------------------------------------------------------------------------ SGLD


def sgld_chains(
    loss_fn: Callable[[Tensor, t.Generator], Tensor],
    w_star: Float[Tensor, " params"],
    n_chains: int,
    steps: int,
    epsilon: float,
    n_beta: float,
    gamma: float,
    generator: t.Generator,
    step: Callable[..., Tensor] = sgld_step,
) -> Float[Tensor, "chains steps"]:
    """Run `n_chains` SGLD chains from w*, all in one [chains params] tensor, and return the loss trace.

    `loss_fn(w [chains params], generator)` returns each chain's minibatch loss [chains]; its gradient drives the step,
    and its value at the t-th point (t = 0 is w* itself) is the t-th draw of the trace."""
    w = w_star.expand(n_chains, -1).clone()
    losses = t.empty(n_chains, steps)
    for index in range(steps):
        w.requires_grad_(True)
        loss = loss_fn(w, generator)
        (grad,) = t.autograd.grad(loss.sum(), w)
        losses[:, index] = loss.detach()
        w = step(w.detach(), grad, w_star, epsilon, n_beta, gamma, generator)
    return losses


def minibatch_loss(data: Float[Tensor, "n feats"], batch_size: int) -> Callable[[Tensor, t.Generator], Tensor]:
    """The loss function of `sgld_chains` for the toy model: each chain its own minibatch, drawn with replacement."""

    def loss_fn(w: Tensor, generator: t.Generator) -> Tensor:
        index = t.randint(len(data), (batch_size, w.shape[0]), generator=generator)
        return slt_loss(*unpack(w), data[index])

    return loss_fn


@dataclass(frozen=True)
class LLCSettings:
    """How λ̂ is estimated (T13's settings by default). nβ = n / ln n of the data set unless `n_beta` is given."""

    n_chains: int = 8
    steps: int = 3_000
    burn_in: int = 1_000
    epsilon: float = 1e-4
    gamma: float = 10.0
    batch_size: int = 500
    n_beta: float | None = None


@dataclass
class LLCResult:
    llc: float
    per_chain: Tensor  # [chains]
    losses: Tensor  # [chains steps]: the trace of minibatch losses
    init_loss: float  # L_n(w*)
    n_beta: float


def llc_at(
    W: Float[Tensor, "2 feats"],
    b: Float[Tensor, " feats"],
    data: Float[Tensor, "n feats"],
    settings: LLCSettings = LLCSettings(),
    seed: int = 0,
    step: Callable[..., Tensor] = sgld_step,
    estimator: Callable[..., tuple[Tensor, Tensor]] = estimate_llc,
) -> LLCResult:
    """λ̂ at the point (W, b) given the data set: SGLD chains localised there, then the estimator on their trace."""
    n = len(data)
    n_beta = n / math.log(n) if settings.n_beta is None else settings.n_beta
    w_star = pack(W, b).detach()
    init_loss = float(slt_loss(W.unsqueeze(0), b.unsqueeze(0), data.unsqueeze(1)))
    generator = t.Generator().manual_seed(seed)
    losses = sgld_chains(
        minibatch_loss(data, settings.batch_size),
        w_star,
        settings.n_chains,
        settings.steps,
        settings.epsilon,
        n_beta,
        settings.gamma,
        generator,
        step,
    )
    llc, per_chain = estimator(losses, init_loss, n, settings.burn_in, n_beta)
    return LLCResult(float(llc), per_chain, losses, init_loss, n_beta)


def sample_data(n: int, n_features: int, seed: int) -> Float[Tensor, "n feats"]:
    """A data set of n inputs of the paper's distribution."""
    return generate_one_hot_batch(n, 1, n_features, t.Generator().manual_seed(seed))[:, 0]


# -------------------------------------------------------------------------------------------- training


@dataclass
class Training:
    steps: Tensor  # [logs]: the step at which each checkpoint was taken
    losses: Tensor  # [logs inst]: the empirical loss L_n of every instance at each checkpoint
    W: Tensor  # [logs inst 2 feats]
    b: Tensor  # [logs inst feats]
    data: Tensor  # [n inst feats]: every instance's own training set


def train_from_random_starts(
    n_inst: int = 16,
    n_features: int = 6,
    n: int = 10_000,
    steps: int = 20_000,
    lr: float = 0.01,
    momentum: float = 0.9,
    batch_size: int = 100,
    log_every: int = 100,
    seed: int = 0,
    init: tuple[Tensor, Tensor] | None = None,
) -> Training:
    """Train `n_inst` models at once by SGD with momentum on their own data sets of n points, from Xavier-normal W and
    b = 0 (or from `init` = (W [inst 2 feats], b [inst feats])), keeping a checkpoint every `log_every` steps."""
    generator = t.Generator().manual_seed(seed)
    data = generate_one_hot_batch(n, n_inst, n_features, generator)
    if init is None:
        W = t.randn((n_inst, 2, n_features), generator=generator) * math.sqrt(2 / (2 + n_features))
        b = t.zeros(n_inst, n_features)
    else:
        W, b = (tensor.detach().clone() for tensor in init)
    W.requires_grad_(True)
    b.requires_grad_(True)
    optimizer = t.optim.SGD([W, b], lr=lr, momentum=momentum)
    instances = t.arange(n_inst)
    logged: dict[str, list[Tensor]] = {"steps": [], "losses": [], "W": [], "b": []}
    for index in range(steps + 1):
        if index % log_every == 0:
            with t.no_grad():
                logged["steps"].append(t.tensor(index))
                logged["losses"].append(slt_loss(W, b, data))
                logged["W"].append(W.detach().clone())
                logged["b"].append(b.detach().clone())
        if index == steps:
            break
        x = data[t.randint(n, (batch_size, n_inst), generator=generator), instances]
        optimizer.zero_grad()
        slt_loss(W, b, x).sum().backward()
        optimizer.step()
    stacked = {name: t.stack(values) for name, values in logged.items()}
    return Training(stacked["steps"], stacked["losses"], stacked["W"], stacked["b"], data)
