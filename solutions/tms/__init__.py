"""Chapter 1, toy models of superposition: every reference class and function, under its curriculum name."""

from solutions.tms.double_descent import DoubleDescentModel, warmup_cosine_lr
from solutions.tms.feature_geometry import capacity, compute_dimensionality, dimensions_per_feature
from solutions.tms.learning_coefficient import (
    critical_n,
    estimate_llc,
    generate_one_hot_batch,
    kgon,
    sgld_step,
    slt_loss,
)
from solutions.tms.phase_diagrams import LinearToyModel, classify_phase, phase_losses
from solutions.tms.privileged_basis import NeuronComputationModel, NeuronModel
from solutions.tms.superposition import ToyModel, ToyModelConfig, superposition_stats
from utils.schedules import constant_lr, linear_lr

__all__ = [
    "DoubleDescentModel",
    "LinearToyModel",
    "NeuronComputationModel",
    "NeuronModel",
    "ToyModel",
    "ToyModelConfig",
    "capacity",
    "classify_phase",
    "critical_n",
    "compute_dimensionality",
    "constant_lr",
    "dimensions_per_feature",
    "estimate_llc",
    "generate_one_hot_batch",
    "kgon",
    "linear_lr",
    "phase_losses",
    "sgld_step",
    "slt_loss",
    "superposition_stats",
    "warmup_cosine_lr",
]
