"""Chapter 1, section 1: superposition in a non-privileged basis.

The ReLU-output toy model of Elhage et al. (2022), trained as many independent instances side by side,
and the two quantities the paper plots for every feature: its norm and its interference with the others.
"""

from collections.abc import Callable
from dataclasses import dataclass

import einops
import torch as t
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from utils.schedules import constant_lr, linear_lr  # noqa: F401 (re-exported: importable from here, as before)
from utils.training import train_toy_model


@dataclass
class ToyModelConfig:
    """Shape of a batch of toy models: `n_inst` independent models of `n_features` → `d_hidden` → `n_features`."""

    n_inst: int
    n_features: int = 5
    d_hidden: int = 2
    n_correlated_pairs: int = 0
    n_anticorrelated_pairs: int = 0


def per_instance(
    value: float | Tensor | None, n_inst: int, n_features: int, device: t.device | str | None
) -> Float[Tensor, "inst feats"]:
    """Broadcast a float, int or tensor (scalar, [feats], [inst, 1] or [inst, feats]) to a float [inst, feats]."""
    value = 1.0 if value is None else value
    value = t.as_tensor(value, dtype=t.float32, device=device)
    return t.broadcast_to(value, (n_inst, n_features)).clone()


class ToyModel(nn.Module):
    """`n_inst` toy models trained at once: each instance has its own weights, sparsity and importance.

    The model compresses a feature vector x into d_hidden dimensions with h = W x, and reconstructs it with
    x' = ReLU(Wᵀ h + b_final), using the same W both ways. `feature_probability` and `importance` (a float, int or
    tensor, broadcast to [inst, feats]) default to 1: every feature always present, all equally important. (ARENA's
    ToyModel defaults to a feature probability of 0.01; pass it explicitly when porting code that relies on that.)
    """

    W: Float[Tensor, "inst d_hidden feats"]
    b_final: Float[Tensor, "inst feats"]
    feature_probability: Float[Tensor, "inst feats"]
    importance: Float[Tensor, "inst feats"]

    def __init__(
        self,
        cfg: ToyModelConfig,
        feature_probability: float | Tensor | None = None,
        importance: float | Tensor | None = None,
        device: t.device | str | None = None,
    ):
        super().__init__()
        self.cfg = cfg
        shape = (cfg.n_inst, cfg.n_features)
        self.register_buffer("feature_probability", per_instance(feature_probability, *shape, device), persistent=False)
        self.register_buffer("importance", per_instance(importance, *shape, device), persistent=False)
        # Xavier-normal per instance, so that an instance starts the same whether it is trained alone or beside
        # others (initialising the whole 3-D tensor would make the scale depend on n_inst).
        std = (2 / (cfg.d_hidden + cfg.n_features)) ** 0.5
        self.W = nn.Parameter(t.randn((cfg.n_inst, cfg.d_hidden, cfg.n_features), device=device) * std)
        self.b_final = nn.Parameter(t.zeros(shape, device=device))

    def forward(self, features: Float[Tensor, "... inst feats"]) -> Float[Tensor, "... inst feats"]:
        """x' = ReLU(Wᵀ W x + b_final), computed separately for every instance."""
        hidden = einops.einsum(features, self.W, "... inst feats, inst d_hidden feats -> ... inst d_hidden")
        out = einops.einsum(hidden, self.W, "... inst d_hidden, inst d_hidden feats -> ... inst feats")
        return F.relu(out + self.b_final)

    def generate_batch(self, batch_size: int) -> Float[Tensor, "batch inst feats"]:
        """Each feature is present independently with its instance's probability p, with magnitude U[0, 1]."""
        p = self.feature_probability
        present = t.rand((batch_size, *p.shape), device=p.device) < p
        magnitudes = t.rand((batch_size, *p.shape), device=p.device)
        return t.where(present, magnitudes, 0.0)

    def calculate_loss(
        self,
        out: Float[Tensor, "batch inst feats"],
        batch: Float[Tensor, "batch inst feats"],
    ) -> Float[Tensor, ""]:
        """Importance-weighted squared error, averaged over batch and features, summed over instances.

        A sum, because instances never interact: minimising the sum minimises each of them.
        """
        # Importance is the same for every sample, so we average the squared error over the batch first and weight
        # it afterwards. Written this way, backward is cheap too: a sum's gradient is a free broadcast (a mean's is a
        # new batch-sized tensor), and `out - batch` needs no negation (`batch - out` would).
        squared_error = (out - batch) ** 2
        per_feature = einops.reduce(squared_error, "batch inst feats -> inst feats", "sum") / batch.shape[0]
        return einops.reduce(self.importance * per_feature, "inst feats -> inst", "mean").sum()

    def optimize(
        self,
        batch_size: int = 1024,
        steps: int = 10_000,
        log_freq: int = 100,
        lr: float = 1e-3,
        lr_scale: Callable[[int, int], float] = constant_lr,
        weight_decay: float = 1e-2,
    ) -> dict[str, Tensor]:
        """Train every instance at once with AdamW; return the per-instance loss every `log_freq` steps ("loss"
        [n_logs, inst]) and the weights at those steps ("W", "b_final": [n_logs, inst, ...]), for animations."""
        return train_toy_model(self, batch_size, steps, log_freq, lr, lr_scale, weight_decay)


def superposition_stats(
    W: Float[Tensor, "inst d_hidden feats"],
) -> tuple[Float[Tensor, "inst feats"], Float[Tensor, "inst feats"]]:
    """The paper's two bar-chart quantities for every feature i of every instance.

    norms[i] = ‖W_i‖ says how strongly feature i is represented; interference[i] = Σ_{j≠i} (Ŵ_i·W_j)² says how
    much the other features project onto its direction (0 for a feature with a dimension to itself).
    """
    norms = W.norm(dim=1)
    W_normed = W / norms.clamp_min(1e-8).unsqueeze(1)
    overlaps = einops.einsum(W_normed, W, "inst d_hidden feat_i, inst d_hidden feat_j -> inst feat_i feat_j")
    others = ~t.eye(W.shape[-1], dtype=t.bool, device=W.device)
    interference = (overlaps**2 * others).sum(-1)
    return norms, interference
