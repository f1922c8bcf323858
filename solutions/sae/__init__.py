"""Chapter 2, sparse autoencoders on toy models: every reference class and function, under its curriculum name.

`ToySAE` is the whole of it: section 2.1's SAE with section 2.4's resampling methods. Section 2.5's variants extend
section 2.1's.
"""

from solutions.sae import toy_sae
from solutions.sae.measuring_recovery import feature_recovery, sae_metrics
from solutions.sae.resampling import ToySAE
from solutions.sae.toy_sae import ToySAEConfig
from solutions.sae.variants import BatchTopKToySAE, GatedToySAE, Heaviside, JumpReLU, JumpReLUToySAE, TopKToySAE

__all__ = [
    "BatchTopKToySAE",
    "GatedToySAE",
    "Heaviside",
    "JumpReLU",
    "JumpReLUToySAE",
    "TopKToySAE",
    "ToySAE",
    "ToySAEConfig",
    "feature_recovery",
    "sae_metrics",
    "toy_sae",
]
