"""Chapter 2, section 1: the toy models the chapter's SAEs read, best-of-N sweeps of SAEs, and the notebook's run.

The SAEs of this chapter read the hidden activations of toy models whose true features we know; `SAESweep` trains
several seeds of one SAE configuration on them and keeps the best, as chapter 1's sweeps do for toy models. The
first toy model is the pentagon: section 1.1's 5 → 2 model at low density stores its five features as a regular
pentagon, so here every instance holds the ideal pentagon directly (feature k at angle 2πk/5, unit norm). Every SAE
instance then sees the same data distribution, and the differences between instances come from the SAEs' own
initialisations.
"""

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch as t
from jaxtyping import Float
from torch import Tensor, nn

from solutions.sae.toy_sae import ToySAE, ToySAEConfig
from solutions.tms.superposition import ToyModel, ToyModelConfig
from utils.batches import sae_batches, seeded_batch
from utils.schedules import constant_lr
from utils.sweeps import SeedGrid

PENTAGON_FEATURE_PROBABILITY = 0.025  # 5 features × 0.025: one feature in 8 inputs on average, rarely two at once

# The notebook's run: 8 SAEs of 5 latents (as many as the features), ARENA's sparsity coefficient 0.2.
DEMO_INSTANCES = 8
DEMO_STEPS = 4_000


def pentagon_directions() -> Float[Tensor, "2 5"]:
    """The five unit directions of a regular pentagon, feature k at angle 2πk/5."""
    angles = t.arange(5, dtype=t.float32) * 2 * math.pi / 5
    return t.stack([angles.cos(), angles.sin()])


def pentagon_model(
    n_inst: int,
    feature_probability: float | Tensor = PENTAGON_FEATURE_PROBABILITY,
    device: t.device | str | None = None,
) -> ToyModel:
    """A 5 → 2 toy model whose every instance stores its features as the ideal pentagon."""
    model = ToyModel(ToyModelConfig(n_inst, 5, 2), feature_probability=feature_probability, device=device)
    with t.no_grad():
        model.W.copy_(pentagon_directions().expand(n_inst, 2, 5))
    return model


def repeat_instances(model: ToyModel, n_seeds: int) -> ToyModel:
    """A copy of the toy model with every instance repeated `n_seeds` times: instance `s * n_seeds + k` of the copy
    is instance s of the model, so that several SAE seeds can read the same toy model instance."""
    repeat = lambda values: values.detach().repeat_interleave(n_seeds, dim=0)  # noqa: E731
    cfg = dataclasses.replace(model.cfg, n_inst=model.cfg.n_inst * n_seeds)
    device = model.W.device
    copy = type(model)(cfg, repeat(model.feature_probability), repeat(model.importance), device=device)
    with t.no_grad():
        copy.W.copy_(repeat(model.W))
        copy.b_final.copy_(repeat(model.b_final))
    return copy


@dataclass(frozen=True)
class SAESweep(SeedGrid):
    """SAEs of one configuration, `n_seeds` instances per setting, where the settings are the instances of a toy
    model: `toy_model()` builds it, and every seed of setting s reads that model's instance s.

    Seeds are ranked by the SAE's own loss on a fresh evaluation batch (as one would without ground truth), never by
    how well they recover the true features.
    """

    toy_model: Callable[[], ToyModel]
    settings: int
    d_sae: int
    sparsity_coeff: float
    tied_weights: bool
    n_seeds: int
    steps: int
    batch_size: int = 1024
    lr: float = 1e-3
    lr_scale: Callable[[int, int], float] = constant_lr
    seed: int = 0

    @property
    def n_settings(self) -> int:
        return self.settings

    def build(self, model_class: type | None = None, device: t.device | str | None = None) -> ToySAE:
        model = repeat_instances(self.toy_model().to(device), self.n_seeds)
        cfg = ToySAEConfig(self.n_inst, model.cfg.d_hidden, self.d_sae, self.sparsity_coeff, self.tied_weights)
        return (model_class or ToySAE)(cfg, model)

    def train(self, sae: ToySAE) -> dict[str, Tensor]:
        return sae.optimize(batch_size=self.batch_size, steps=self.steps, lr=self.lr, lr_scale=self.lr_scale)

    def rank(self, sae: ToySAE) -> Float[Tensor, " inst"]:
        first_of_setting = t.arange(self.n_inst) // self.n_seeds * self.n_seeds
        return evaluation_loss(sae, same_data=first_of_setting)


@t.no_grad()
def evaluation_loss(
    sae: nn.Module, batch_size: int = 1 << 14, seed: int = 0, same_data: Tensor | None = None
) -> Float[Tensor, " inst"]:
    """The SAE's loss, per instance, on one batch from a seeded stream of its own (training's draws are untouched).

    `same_data[i]` = j gives instance i the batch of instance j: the seeds of a setting are compared on the same
    inputs, so that their losses differ only by what the SAEs learned (a few % between a seed that found every
    feature and one that did not, about the noise of independent batches of this size).
    """
    h = seeded_batch(sae_batches(sae), batch_size, seed, sae.b_dec.device)
    if same_data is not None:
        h = h[:, same_data.to(h.device)]
    return sae(h)[1].mean(0)
