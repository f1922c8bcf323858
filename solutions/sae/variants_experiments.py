"""Chapter 2, section 5: every SAE architecture on the same toy data, and where each lands on the L0 / explained
variance plane.

One toy model for all (`pareto_model`: Sharkey et al.'s synthetic data at a size a laptop trains in seconds) and one
training run per architecture and weight-tying: the run's instances are the points of that architecture's sweep.
The L1-family SAEs (standard, gated) and JumpReLU take a coefficient per instance (`ToySAEConfig.sparsity_coeff` as
an [inst] tensor); TopK and BatchTopK take a k per instance through `SweptTopKToySAE` and `SweptBatchTopKToySAE`,
the exercises' classes with `cfg.k` an [inst] tensor. Every SAE is then measured on one evaluation batch drawn from
a seeded stream of its own, in evaluation mode (BatchTopK switches to its learned threshold there).
"""

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import einops
import torch as t
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from solutions.sae.measuring_recovery import feature_recovery, sae_metrics
from solutions.sae.tied_vs_untied_experiments import sharkey_model
from solutions.sae.toy_sae import ToySAE, ToySAEConfig
from solutions.sae.variants import (
    BatchTopKToySAE,
    GatedToySAE,
    JumpReLUToySAE,
    JumpReLUToySAEConfig,
    TopKToySAE,
    TopKToySAEConfig,
)
from solutions.tms.superposition import ToyModel
from utils.batches import sae_batches, seeded_batch

# ------------------------------------------------------------------------------------- k per instance


def keep_ranks(values: Tensor, ks: Tensor) -> Tensor:
    """[..., inst, n] values sorted in descending order along the last axis: zero beyond each instance's k."""
    ranks = t.arange(values.shape[-1], device=values.device)
    return values * (ranks < ks.to(values.device)[:, None])


class SweptTopKToySAE(TopKToySAE):
    """`TopKToySAE` with a k of its own for every instance (`cfg.k` an [inst] tensor), for a sweep in one run."""

    def activation(self, pre_activations: Float[Tensor, "batch inst d_sae"]) -> Float[Tensor, "batch inst d_sae"]:
        ks = t.as_tensor(self.cfg.k)
        top = pre_activations.topk(int(ks.max()), dim=-1)
        return t.zeros_like(pre_activations).scatter(-1, top.indices, keep_ranks(F.relu(top.values), ks))

    def saelens_parameters(self, instance: int) -> tuple[str, dict[str, Tensor], dict]:
        architecture, state, config = super().saelens_parameters(instance)
        return architecture, state, config | {"k": int(t.as_tensor(self.cfg.k)[instance])}


class SweptBatchTopKToySAE(BatchTopKToySAE):
    """`BatchTopKToySAE` with a k of its own for every instance: instance i keeps the k_i · batch largest."""

    def activation(self, pre_activations: Float[Tensor, "batch inst d_sae"]) -> Float[Tensor, "batch inst d_sae"]:
        if not self.training:
            return super().activation(pre_activations)
        ks, batch = t.as_tensor(self.cfg.k), pre_activations.shape[0]
        per_instance = einops.rearrange(F.relu(pre_activations), "batch inst d_sae -> inst (batch d_sae)")
        top = per_instance.topk(min(int(ks.max()) * batch, per_instance.shape[-1]), dim=-1)
        kept = t.zeros_like(per_instance).scatter(-1, top.indices, keep_ranks(top.values, ks * batch))
        return einops.rearrange(kept, "inst (batch d_sae) -> batch inst d_sae", batch=batch)


# ------------------------------------------------------------------------------------------- the sweep

PARETO_FEATURES, PARETO_D_IN = 32, 16
PARETO_STEPS = 1_000
PARETO_LR = 3e-3
# One row of settings per architecture, all in this course's convention (L_reconstruction averages over d_in).
L1_COEFFICIENTS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
L0_COEFFICIENTS = (5e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1)
KS = (1, 2, 3, 4, 6, 8)


@dataclass(frozen=True)
class Architecture:
    """One SAE class and the knob its sweep turns: "sparsity_coeff" or "k", with one value per instance."""

    name: str
    sae_class: type
    config_class: type
    knob: str
    values: tuple[float, ...]

    def config(self, d_in: int, d_sae: int, tied: bool) -> ToySAEConfig:
        knob = t.tensor(self.values) if self.knob == "sparsity_coeff" else t.tensor(self.values, dtype=t.long)
        return self.config_class(len(self.values), d_in, d_sae, tied_weights=tied, **{self.knob: knob})


ARCHITECTURES = (
    Architecture("standard", ToySAE, ToySAEConfig, "sparsity_coeff", L1_COEFFICIENTS),
    Architecture("gated", GatedToySAE, ToySAEConfig, "sparsity_coeff", L1_COEFFICIENTS),
    Architecture("jumprelu", JumpReLUToySAE, JumpReLUToySAEConfig, "sparsity_coeff", L0_COEFFICIENTS),
    Architecture("topk", SweptTopKToySAE, TopKToySAEConfig, "k", KS),
    Architecture("batchtopk", SweptBatchTopKToySAE, TopKToySAEConfig, "k", KS),
)


def pareto_model(n_inst: int) -> ToyModel:
    """Sharkey et al.'s data with 32 features in 16 dimensions (about 4.3 active per input), `n_inst` copies."""
    model = sharkey_model(PARETO_FEATURES, PARETO_D_IN)
    repeated = type(model)(
        dataclasses.replace(model.cfg, n_inst=n_inst),
        model.feature_probability.expand(n_inst, -1).clone(),
        model.importance.expand(n_inst, -1).clone(),
    )
    with t.no_grad():
        repeated.W.copy_(model.W.expand(n_inst, -1, -1))
    return repeated


def train_architecture(
    architecture: Architecture,
    tied: bool,
    steps: int = PARETO_STEPS,
    seed: int = 0,
    sae_class: type | None = None,
    device: str | None = None,
) -> ToySAE:
    """One run: an instance per setting of the architecture's sweep, all on the same toy data. `sae_class` replaces
    the architecture's own class (a learner's, say)."""
    t.manual_seed(seed)
    model = pareto_model(len(architecture.values)).to(device)
    sae = (sae_class or architecture.sae_class)(architecture.config(PARETO_D_IN, PARETO_FEATURES, tied), model)
    sae.optimize(steps=steps, lr=PARETO_LR, log_freq=max(steps // 10, 1))
    return sae.eval()


def evaluation_batch(sae: ToySAE, batch_size: int = 1 << 14, seed: int = 1) -> Float[Tensor, "batch inst d_in"]:
    """A batch of the SAE's data from a seeded stream of its own (training's draws are untouched)."""
    return seeded_batch(sae_batches(sae), batch_size, seed, sae.b_dec.device)


@t.no_grad()
def measure(sae: ToySAE, batch_size: int = 1 << 14, seed: int = 1) -> dict[str, Tensor]:
    """SAELens' metrics per instance (l0, explained_variance, mse, dead), MMCS against the true features, and the
    relative reconstruction bias γ = E‖ĥ‖² / E[h·ĥ] (Rajamanoharan et al.: below 1 means shrinkage)."""
    h = evaluation_batch(sae, batch_size, seed)
    metrics = sae_metrics(sae, h)
    h_reconstructed = sae(h)[3]
    metrics["shrinkage"] = h_reconstructed.pow(2).sum(-1).mean(0) / (h * h_reconstructed).sum(-1).mean(0)
    metrics["mmcs"] = feature_recovery(sae.W_dec_normalized, sae.model.W.transpose(-1, -2)).mean(-1)
    return metrics


def pareto(
    steps: int = PARETO_STEPS, classes: Mapping[str, type] | None = None, device: str | None = None
) -> dict[str, dict[str, Tensor]]:
    """Every architecture, untied and tied: "{name} untied" / "{name} tied" → [setting] metrics and the setting.
    `classes` replaces some architectures' classes, by name."""
    table = {}
    for architecture in ARCHITECTURES:
        for tied in (False, True):
            sae_class = (classes or {}).get(architecture.name)
            sae = train_architecture(architecture, tied, steps, sae_class=sae_class, device=device)
            table[f"{architecture.name} {'tied' if tied else 'untied'}"] = measure(sae) | {
                architecture.knob: t.tensor(architecture.values)
            }
    return table


def true_l0() -> float:
    """How many true features are active per input, on average."""
    return float(pareto_model(1).feature_probability.sum())


def frontier_gain(table: Mapping[str, Mapping[str, Tensor]], key: str, baseline: str) -> Float[Tensor, " setting"]:
    """How much more variance `key` explains than `baseline` at the baseline's own L0s: `key`'s explained variance
    interpolated (linearly in log L0) at each baseline point inside `key`'s range of L0, minus the baseline's (NaN
    outside that range)."""
    l0, ev = table[key]["l0"].double(), table[key]["explained_variance"].double()
    order = l0.argsort()
    x, y = l0[order].log(), ev[order]
    gains, base = [], table[baseline]
    for point, value in zip(base["l0"].double(), base["explained_variance"].double(), strict=True):
        if not x[0] <= point.log() <= x[-1]:
            gains.append(float("nan"))
            continue
        i = int(t.searchsorted(x, point.log()).clamp(1, len(x) - 1))
        weight = (point.log() - x[i - 1]) / (x[i] - x[i - 1])
        gains.append(float(y[i - 1] + weight * (y[i] - y[i - 1]) - value))
    return t.tensor(gains)


@t.no_grad()
def topk_counts(sae: ToySAE, batch_size: int = 1 << 14) -> dict[str, Tensor]:
    """Per instance of a TopK SAE: the most latents active on any input, and the fraction of inputs with exactly k
    active (fewer only where fewer than k pre-activations are positive)."""
    h = evaluation_batch(sae, batch_size)
    active = (sae(h)[2] > 0).sum(-1)  # [batch inst]
    positive = (sae.pre_activations(h) > 0).sum(-1)
    k = t.as_tensor(sae.cfg.k).to(active.device)
    return {
        "most_active": active.max(0).values,
        "exactly_k": (active == k).float().mean(0),
        "explained": (active == t.minimum(positive, k.expand_as(positive))).float().mean(0),
    }
