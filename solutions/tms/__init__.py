"""Chapter 1, toy models of superposition: every reference class and function, under its curriculum name."""

from solutions.tms.superposition import (
    ToyModel,
    ToyModelConfig,
    constant_lr,
    linear_lr,
    superposition_stats,
)

__all__ = ["ToyModel", "ToyModelConfig", "constant_lr", "linear_lr", "superposition_stats"]
