"""Best-of-N sweeps: settings × seeds trained as the instances of one model, and the best seed of every setting kept.

Gradient descent can settle in a local minimum and stay there: with 5 features in 2 dimensions at p ≈ 0.1 about 4
runs in 10 end in a "square" (two antipodal pairs, one feature dropped) that survives 10k steps, although the pentagon
reaches a lower loss at the same p; an SAE whose dictionary is as large as the number of features often leaves one
latent between two of them. Several seeds per setting, ranked by loss, recover the better solution: the rule the
double-descent paper uses "to avoid local minima". The models of this course train many independent instances at
once, so a seed is just another instance and costs only its share of each step.

A sweep is a `SeedGrid`: it says how many settings and seeds it has and how to build, train and rank its model.
`train_sweep` does the rest, for toy models and SAEs alike. This module belongs to the course's runtime library: it
imports nothing from `solutions` or `tests`.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import einops
import torch as t
from jaxtyping import Float, Int
from torch import Tensor, nn


class SeedGrid:
    """Settings × seeds packed as the instances of one model: instance `setting * n_seeds + seed`.

    A subclass (usually a frozen dataclass) has the fields `n_seeds` and `seed` (which fixes the initialisation and
    every random draw of training) and defines `n_settings` and the three steps `train_sweep` takes: `build` the
    model, `train` it (returning its training log), and `rank` its instances (lower is better).
    """

    n_seeds: int
    seed: int

    @property
    def n_settings(self) -> int:
        raise NotImplementedError

    @property
    def n_inst(self) -> int:
        return self.n_settings * self.n_seeds

    def instances(self, setting: int) -> range:
        """The instances that train this setting, one per seed."""
        return range(setting * self.n_seeds, (setting + 1) * self.n_seeds)

    def for_every_seed(self, values: Tensor) -> Tensor:
        """Values given per setting, [setting, ...], repeated for each of its seeds: [inst, ...]."""
        return values.repeat_interleave(self.n_seeds, dim=0)

    def build(self, model_class: type | None, device: t.device | str | None) -> nn.Module:
        raise NotImplementedError

    def train(self, model: nn.Module) -> dict[str, Tensor]:
        raise NotImplementedError

    def rank(self, model: nn.Module) -> Float[Tensor, " inst"]:
        raise NotImplementedError


def best_of_n(loss: Float[Tensor, " inst"], n_seeds: int) -> Int[Tensor, " setting"]:
    """For each setting, the index of the instance (among its `n_seeds` seeds) with the lowest loss."""
    per_setting = einops.rearrange(loss, "(setting seed) -> setting seed", seed=n_seeds)
    return per_setting.argmin(dim=-1) + t.arange(per_setting.shape[0], device=loss.device) * n_seeds


@dataclass
class SweepResult:
    """A trained sweep: the model, its training log, the loss it was ranked by, and the best seed of every setting.

    `result.<name>` is the model's parameter or buffer `<name>` for the kept seed of every setting, on the CPU
    (`result.W`, `result.b_final` for a toy model; `result.W_enc`, `result.b_dec` for an SAE).
    """

    sweep: SeedGrid
    model: nn.Module
    history: dict[str, Tensor]
    loss: Float[Tensor, " inst"]  # what the instances were ranked by (lower is better)
    best: Int[Tensor, " setting"]  # the instance kept for each setting

    def kept(self, values: Float[Tensor, "inst ..."]) -> Float[Tensor, "setting ..."]:
        """Per-instance values of the kept seed of every setting, detached and on the CPU."""
        return values.detach()[self.best.to(values.device)].cpu()

    @property
    def best_loss(self) -> Float[Tensor, " setting"]:
        return self.loss[self.best]

    def __getattr__(self, name: str) -> Any:
        # Called only for names that are not fields: look them up among the model's tensors.
        model = self.__dict__.get("model")
        if name.startswith("_") or model is None:
            raise AttributeError(name)
        values = getattr(model, name, None)
        if not isinstance(values, Tensor):
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}, nor has its model a tensor of it")
        return self.kept(values)


def train_sweep(
    grid: SeedGrid,
    model_class: type | None = None,
    device: t.device | str | None = None,
    rank: Callable[[nn.Module], Tensor] | None = None,
) -> SweepResult:
    """Build, train and rank every (setting, seed) of a grid at once, then keep the best seed of every setting.

    `model_class` is the grid's own model by default; the notebooks pass the learner's class instead. `rank` replaces
    the grid's ranking (lower is better) when given.
    """
    t.manual_seed(grid.seed)
    model = grid.build(model_class, device)
    history = grid.train(model)
    loss = (rank or grid.rank)(model).detach().cpu()
    return SweepResult(grid, model, history, loss, best_of_n(loss, grid.n_seeds))
