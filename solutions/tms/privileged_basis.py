"""Chapter 1, section 4: superposition in a privileged basis.

Two variants of the toy model whose hidden layer has a ReLU. The ReLU acts on each hidden dimension separately,
so the standard basis of the hidden layer becomes special: its dimensions are *neurons*, and we can ask whether
each neuron responds to one feature (monosemantic) or to several (polysemantic).

* `NeuronModel`: the section-1 model with a hidden ReLU, h = ReLU(W x), x' = ReLU(Wᵀ h + b_final).
* `NeuronComputationModel`: a model that must *compute* something, abs(x), with separate weights in and out.
"""

import einops
import torch as t
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from solutions.tms import superposition
from solutions.tms.superposition_experiments import Sweep


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
        # One uniform u per entry does both jobs, as in `ToyModel.generate_batch`: the feature is present when
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


# ----------------------------------------------------------------------------- experiments and measurements
# The notebook and the science tests import their settings from here, so the tests assert the results at exactly
# the settings the notebook shows. Each sweep packs (feature probability × seed) as the instances of one model.

# A feature counts as represented when ‖W_i‖ > 0.5, and a neuron as monosemantic when its largest feature carries
# at least 90 % of its squared weight (SCIENCE T9).
REPRESENTED = 0.5
MONOSEMANTIC = 0.9
# A signed half of a feature (its positive or negative inputs) counts as computed when the mean squared error of its
# output against |x| on single-feature inputs is below 0.01 (an ignored half: ≥ 1/12).
COMPUTED = 0.01

PRIVILEGED_BASIS = Sweep(
    n_features=10,
    d_hidden=5,
    importance_decay=0.75,
    feature_probabilities=(0.75, 0.35, 0.15, 0.1, 0.06, 0.02, 0.01),
    n_seeds=3,
    steps=3_000,
)

ABSOLUTE_VALUE = Sweep(
    n_features=20,
    d_hidden=10,
    importance_decay=0.8,
    feature_probabilities=(1.0, 0.1, 0.03, 0.01),
    n_seeds=2,
    steps=3_000,
)


def feature_norms(W: Float[Tensor, "inst d_hidden feats"]) -> Float[Tensor, "inst feats"]:
    """‖W_i‖, the length of feature i's column: how strongly the feature is represented."""
    return W.norm(dim=1)


def n_represented(W: Float[Tensor, "inst d_hidden feats"]) -> Int[Tensor, " inst"]:
    """Number of features with ‖W_i‖ > 0.5."""
    return (feature_norms(W) > REPRESENTED).sum(-1)


def neuron_monosemanticity(W: Float[Tensor, "inst d_hidden feats"]) -> Float[Tensor, "inst d_hidden"]:
    """For every neuron (row of W), the share of its squared weight carried by its largest feature.

    1 for a neuron that reads a single feature, 1/k for one that reads k features equally.
    """
    squared = W**2
    return squared.amax(dim=-1) / squared.sum(dim=-1).clamp_min(1e-12)


def n_monosemantic(W: Float[Tensor, "inst d_hidden feats"]) -> Int[Tensor, " inst"]:
    """Number of neurons whose largest feature carries at least 90 % of their squared weight."""
    return (neuron_monosemanticity(W) >= MONOSEMANTIC).sum(-1)


@t.no_grad()
def single_feature_errors(model: superposition.ToyModel, n_points: int = 20) -> Float[Tensor, "inst feats sign"]:
    """How well each feature's abs is computed when it is alone, for negative (sign 0) and positive (sign 1) inputs.

    Mean of (y_i − |a|)² over inputs x = a·e_i, with a on an even grid of (0, 1] times the sign. A half the model
    ignores gets an error of at least Var(|a|) = 1/12 ≈ 0.08 (≈ 1/3 if its output stays 0); a computed half ≈ 0.
    """
    n_inst, n_features = model.cfg.n_inst, model.cfg.n_features
    device = model.b_final.device
    magnitude = t.linspace(1 / n_points, 1, n_points, device=device)
    a = t.stack([-magnitude, magnitude])  # [sign point]
    x = einops.einsum(a, t.eye(n_features, device=device), "sign point, alone feats -> sign point alone feats")
    x = einops.repeat(x, "sign point alone feats -> sign point alone inst feats", inst=n_inst)
    out = model(x).diagonal(dim1=2, dim2=4)  # [sign point inst feats]: feature j's output when j alone is on
    errors = ((out - magnitude[:, None, None]) ** 2).mean(1)
    return einops.rearrange(errors, "sign inst feats -> inst feats sign")


def n_computed(errors: Float[Tensor, "inst feats sign"], threshold: float = COMPUTED) -> tuple[Tensor, Tensor, Tensor]:
    """(features computed for both signs, features computed for at least one sign, signed halves computed) per inst.

    Without superposition one neuron computes one half, ReLU(x_i) or ReLU(-x_i), so m neurons compute at most m halves.
    """
    halves = errors < threshold
    return halves.all(-1).sum(-1), halves.any(-1).sum(-1), halves.sum((-1, -2))
