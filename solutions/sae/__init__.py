"""Chapter 2, sparse autoencoders on toy models: every reference class and function, under its curriculum name.

`ToySAE` is section 2.1's, the base of every variant of section 2.5 (so that ARENA's `super(ToySAE, self).__init__()`
reaches `nn.Module`); section 2.4's `resample_simple` and `resample_advanced` are methods of its subclass
`solutions.sae.resampling.ToySAE`.
"""

from solutions.sae import toy_sae
from solutions.sae.absorption import absorption_rate, generate_hierarchical_batch
from solutions.sae.measuring_recovery import feature_recovery, sae_metrics
from solutions.sae.toy_sae import ToySAE, ToySAEConfig
from solutions.sae.variants import (
    BatchTopKToySAE,
    GatedToySAE,
    Heaviside,
    JumpReLU,
    JumpReLUToySAE,
    JumpReLUToySAEConfig,
    TopKToySAE,
    TopKToySAEConfig,
)

__all__ = [
    "BatchTopKToySAE",
    "GatedToySAE",
    "Heaviside",
    "JumpReLU",
    "JumpReLUToySAE",
    "JumpReLUToySAEConfig",
    "TopKToySAE",
    "TopKToySAEConfig",
    "ToySAE",
    "ToySAEConfig",
    "absorption_rate",
    "feature_recovery",
    "generate_hierarchical_batch",
    "sae_metrics",
    "toy_sae",
]
