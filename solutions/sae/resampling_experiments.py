"""Chapter 2, section 4: when resampling dead latents helps, and when it cannot.

Two starts of the same SAE on the pentagon. ARENA's start (Kaiming-uniform encoder and decoder, drawn independently)
kills latents: a latent whose encoder does not read the direction its decoder writes can have negative
pre-activations on every input early on, and then it never fires again. Resampling gives those latents a new start.
The course's start (decoder rows random unit directions, encoder their transpose) kills none; where it fails, one
latent sits *between* two features, alive, and resampling, which only looks at dead latents, never triggers.
"""

import dataclasses

import torch as t
from torch import nn

from solutions.sae.measuring_recovery_experiments import recovery_report
from solutions.sae.resampling import ToySAE
from solutions.sae.toy_sae import ToySAEConfig
from solutions.sae.toy_sae_experiments import pentagon_model

RESAMPLE_FREQ = 1_000
RESAMPLE_WINDOW = 250


@dataclasses.dataclass(frozen=True)
class ResamplingRun:
    """SAEs on the pentagon, one instance per seed, with a given start and resampling method."""

    d_sae: int
    start: str  # "arena" or "course"
    resample_method: str | None
    n_inst: int = 6
    steps: int = 4_000
    seed: int = 0


def arena_start(sae: nn.Module) -> None:
    """ARENA's initialisation: Kaiming-uniform encoder and decoder, drawn independently of each other."""
    with t.no_grad():
        sae.W_enc.copy_(nn.init.kaiming_uniform_(t.empty(sae.W_enc.shape)))
        if sae._W_dec is not None:
            sae._W_dec.copy_(nn.init.kaiming_uniform_(t.empty(sae._W_dec.shape)))


def train_run(run: ResamplingRun, sae_class: type = ToySAE) -> tuple[nn.Module, dict[str, t.Tensor]]:
    """The trained SAE and its training log."""
    t.manual_seed(run.seed)
    sae = sae_class(ToySAEConfig(run.n_inst, d_in=2, d_sae=run.d_sae), pentagon_model(run.n_inst))
    if run.start == "arena":
        arena_start(sae)
    resampling = dict(resample_method=run.resample_method, resample_freq=RESAMPLE_FREQ, resample_window=RESAMPLE_WINDOW)
    log = sae.optimize(steps=run.steps, **resampling)
    return sae, log


RUNS = {
    "ARENA start, 5 latents": [ResamplingRun(5, "arena", method) for method in (None, "simple", "advanced")],
    "ARENA start, 10 latents": [ResamplingRun(10, "arena", method) for method in (None, "advanced")],
    "course start, 5 latents": [ResamplingRun(5, "course", method, n_inst=8) for method in (None, "advanced")],
}


def outcome(sae: nn.Module, log: dict[str, t.Tensor]) -> dict[str, float | list[int]]:
    """What a run ended with: features recovered per instance, their mean, the fraction of dead latents (on a fresh
    evaluation batch), and how many latents resampling gave a new start, in all."""
    report = recovery_report(sae)
    return {
        "recovered": report["recovered_0.9"].tolist(),
        "mean recovered": float(report["recovered_0.9"].float().mean()),
        "dead": float(report["dead"].mean()),
        "resampled": int(log["resampled"].sum()) if "resampled" in log else 0,
    }
