"""Chapter 1, section 3: correlated and anticorrelated features.

The toy model of section 1.1, fed features that are not independent: pairs that are always present together
(correlated), and pairs of which at most one is present (anticorrelated). Elhage et al. (2022) find that the model
puts correlated features on orthogonal directions and anticorrelated ones on opposite directions, because
superposition only costs something when features are present at the same time.

This module holds the data generators (the section's exercises); the experiments of the notebook are in
`correlated_experiments.py`.
"""

import einops
import torch as t
from jaxtyping import Float
from torch import Tensor

# The complete model of section 1.1 (forward, loss, training), which this section extends with new data.
from solutions.tms import superposition


class ToyModel(superposition.ToyModel):
    """The toy model of section 1.1, whose features may come in correlated or anticorrelated pairs.

    `cfg.n_correlated_pairs` and `cfg.n_anticorrelated_pairs` say how many; pairs use the instance's probability
    `feature_probability[:, 0]`. The features are laid out as correlated pairs first, then anticorrelated pairs,
    then independent features, and pair k of a block is its features (2k, 2k+1).
    """

    def generate_correlated_features(
        self, batch_size: int, n_correlated_pairs: int
    ) -> Float[Tensor, "batch inst feats"]:
        """Pairs whose two features are present together or absent together; `feats` = 2 * n_correlated_pairs.

        Each pair is present with its instance's probability p = feature_probability[:, 0]; each present feature
        gets its own magnitude, uniform on [0, 1].
        """
        p = self.feature_probability[:, :1, None]  # [inst 1 1]: broadcasts over pairs and members
        # One presence draw per pair, broadcast over the member axis so that both members share it ...
        pair_draw = t.rand((batch_size, p.shape[0], n_correlated_pairs, 1), device=p.device)
        # ... and one magnitude per feature. Features (2k, 2k+1) are pair k: flatten (pair member) in that order.
        magnitudes = t.rand((batch_size, p.shape[0], n_correlated_pairs, 2), device=p.device)
        features = magnitudes * (pair_draw < p)  # zero where absent (a product is cheaper than t.where here)
        return einops.rearrange(features, "batch inst pair member -> batch inst (pair member)")

    def generate_anticorrelated_features(
        self, batch_size: int, n_anticorrelated_pairs: int
    ) -> Float[Tensor, "batch inst feats"]:
        """Pairs of which at most one feature is present; `feats` = 2 * n_anticorrelated_pairs.

        Each feature is present with its instance's probability p = feature_probability[:, 0] (so p ≤ 1/2), never
        together with its partner; each present feature gets a magnitude uniform on [0, 1].
        """
        p = self.feature_probability[:, :1, None]  # [inst 1 1]
        if (p > 0.5).any():
            raise ValueError(
                "anticorrelated pairs need feature_probability ≤ 0.5: two exclusive events of probability p"
            )
        # One draw per pair decides both members: the first is present when u < p, the second when u ≥ 1 - p.
        # Each has probability p, and since p ≤ 1/2 the two ranges never overlap.
        u = t.rand((batch_size, p.shape[0], n_anticorrelated_pairs, 1), device=p.device)
        present = t.cat([u < p, u >= 1 - p], dim=-1)  # [batch inst pair member]
        magnitudes = t.rand(present.shape, device=p.device)
        features = magnitudes * present
        return einops.rearrange(features, "batch inst pair member -> batch inst (pair member)")

    def generate_uncorrelated_features(self, batch_size: int, n_uncorrelated: int) -> Float[Tensor, "batch inst feats"]:
        """Independent features, each present with its instance's probability p = feature_probability[:, 0], with
        magnitude uniform on [0, 1]; `feats` = n_uncorrelated."""
        p = self.feature_probability[:, :1]
        shape = (batch_size, p.shape[0], n_uncorrelated)
        present = t.rand(shape, device=p.device) < p
        return t.rand(shape, device=p.device) * present

    def generate_batch(self, batch_size: int) -> Float[Tensor, "batch inst feats"]:
        """Correlated pairs, then anticorrelated pairs, then independent features, as `cfg` says.

        Without pairs this is section 1.1's batch, where every feature has its own probability.
        """
        n_correlated, n_anticorrelated = self.cfg.n_correlated_pairs, self.cfg.n_anticorrelated_pairs
        if n_correlated == n_anticorrelated == 0:
            return super().generate_batch(batch_size)
        n_uncorrelated = self.cfg.n_features - 2 * (n_correlated + n_anticorrelated)
        if n_uncorrelated < 0:
            raise ValueError(f"{n_correlated} + {n_anticorrelated} pairs need more than {self.cfg.n_features} features")
        parts = []
        if n_correlated > 0:
            parts.append(self.generate_correlated_features(batch_size, n_correlated))
        if n_anticorrelated > 0:
            parts.append(self.generate_anticorrelated_features(batch_size, n_anticorrelated))
        if n_uncorrelated > 0:
            parts.append(self.generate_uncorrelated_features(batch_size, n_uncorrelated))
        return t.cat(parts, dim=-1)
