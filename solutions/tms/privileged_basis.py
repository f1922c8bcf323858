"""Chapter 1, section 4: superposition in a privileged basis.

Two variants of the toy model whose hidden layer has a ReLU. The ReLU acts on each hidden dimension separately,
so the standard basis of the hidden layer becomes special: its dimensions are *neurons*, and we can ask whether
each neuron responds to one feature (monosemantic) or to several (polysemantic).

* `NeuronModel`: the section-1 model with a hidden ReLU, h = ReLU(W x), x' = ReLU(Wᵀ h + b_final).
* `NeuronComputationModel`: a model that must *compute* something, abs(x), with separate weights in and out.

The experiments of the notebook are in `privileged_basis_experiments.py`.
"""

import einops
import torch as t
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from solutions.tms import superposition


class NeuronModel(superposition.ToyModel):
    """The toy model with a ReLU on the hidden layer: h = ReLU(W x), x' = ReLU(Wᵀ h + b_final), per instance.

    Everything but `forward` (init, data, loss, training) is the section-1 `ToyModel`'s.
    """

    def forward(self, features: Float[Tensor, "... inst feats"]) -> Float[Tensor, "... inst feats"]:
        """x' = ReLU(Wᵀ ReLU(W x) + b_final), computed separately for every instance."""
        hidden = F.relu(einops.einsum(features, self.W, "... inst feats, inst d_hidden feats -> ... inst d_hidden"))
        out = einops.einsum(hidden, self.W, "... inst d_hidden, inst d_hidden feats -> ... inst feats")
        return F.relu(out + self.b_final)


class NeuronComputationModel(superposition.ToyModel):
    """A toy model that computes abs(x): y = ReLU(W2 ReLU(W1 x) + b_final), trained against abs(x).

    Inputs are signed (U[-1, 1] where present), and the read-out W2 is separate from W1, so a neuron can read a
    feature with one sign and write to another feature. One neuron per sign computes a feature exactly,
    |x| = ReLU(x) + ReLU(-x); the question is how many features m neurons can compute when features are sparse.
    """

    W1: Float[Tensor, "inst d_hidden feats"]
    W2: Float[Tensor, "inst feats d_hidden"]

    def __init__(
        self,
        cfg: superposition.ToyModelConfig,
        feature_probability: float | Tensor | None = None,
        importance: float | Tensor | None = None,
        device: t.device | str | None = None,
    ):
        super().__init__(cfg, feature_probability, importance, device)
        del self.W  # two separate weight matrices instead of the tied W
        # Xavier-normal per instance, as `ToyModel` (so the init does not depend on how many instances we train)
        std = (2 / (cfg.d_hidden + cfg.n_features)) ** 0.5
        self.W1 = nn.Parameter(t.randn((cfg.n_inst, cfg.d_hidden, cfg.n_features), device=device) * std)
        self.W2 = nn.Parameter(t.randn((cfg.n_inst, cfg.n_features, cfg.d_hidden), device=device) * std)

    def forward(self, features: Float[Tensor, "... inst feats"]) -> Float[Tensor, "... inst feats"]:
        """y = ReLU(W2 ReLU(W1 x) + b_final), computed separately for every instance."""
        hidden = F.relu(einops.einsum(features, self.W1, "... inst feats, inst d_hidden feats -> ... inst d_hidden"))
        out = einops.einsum(hidden, self.W2, "... inst d_hidden, inst feats d_hidden -> ... inst feats")
        return F.relu(out + self.b_final)

    def generate_batch(self, batch_size: int) -> Float[Tensor, "batch inst feats"]:
        """Each feature is present independently with its instance's probability p, with magnitude U[-1, 1]."""
        p = self.feature_probability
        # One uniform u per entry does both jobs, as in section 1.1's one-draw sampler: the feature is present when
        # u < p, and given that, u / p is uniform on [0, 1), so 2 u / p - 1 is uniform on [-1, 1).
        u = t.rand((p.shape[0], batch_size, p.shape[1]), device=p.device)
        u = einops.rearrange(u, "inst batch feats -> batch inst feats").div_(p)
        return t.where(u < 1, 2 * u - 1, 0.0)

    def calculate_loss(
        self,
        out: Float[Tensor, "batch inst feats"],
        batch: Float[Tensor, "batch inst feats"],
    ) -> Float[Tensor, ""]:
        """Importance-weighted squared error against the target abs(x), averaged over batch and features, summed
        over instances."""
        squared_error = (out - batch.abs()) ** 2
        return einops.reduce(self.importance * squared_error, "batch inst feats -> inst", "mean").sum()
