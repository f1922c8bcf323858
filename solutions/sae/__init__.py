"""Chapter 2, sparse autoencoders on toy models: every reference class and function, under its curriculum name."""

from solutions.sae.absorption import absorption_rate, generate_hierarchical_batch
from solutions.sae.toy_sae import ToySAE, ToySAEConfig

__all__ = ["ToySAE", "ToySAEConfig"]
__all__ += ["absorption_rate", "generate_hierarchical_batch"]
