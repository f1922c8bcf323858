"""Chapter 1, section 6: the experiments of the solutions notebook, and the measurements its claims rest on.

The sweep trains toy models on fixed training sets of T points, for T from 3 to 2000 (target T11 of the README, at
CPU size: 1000 features, p = 0.01, two hidden dimensions), every (dataset size, seed) pair as one instance of one
model, and measures how the dimensionality of the features and of the training points changes with T. The notebook
and the science tests import their settings from here, so the tests assert the results at exactly the settings the
notebook shows.
"""

import functools
from dataclasses import dataclass

import einops
import torch as t
from jaxtyping import Float, Int
from torch import Tensor

from solutions.tms.double_descent import DoubleDescentModel, warmup_cosine_lr
from solutions.tms.feature_geometry import compute_dimensionality
from solutions.tms.superposition import ToyModel, ToyModelConfig
from solutions.tms.superposition_experiments import n_represented
from utils.sweeps import SeedGrid, SweepResult, best_of_n
from utils.training import AdamW, train

# ----------------------------------------------------------------------------------------- full-batch loss


@dataclass
class SparseDataset:
    """A fixed training set of one group of instances, stored as its few non-zero entries per point.

    Each point of the double-descent data has about n·p = 10 of its 1,000 features present, so the points are
    kept as (index, value) pairs, padded with value 0 to the longest point: `indices`, `values` are
    [inst, points, active]. Only the reconstruction needs all n features.
    """

    indices: Int[Tensor, "inst points active"]
    values: Float[Tensor, "inst points active"]

    @classmethod
    def from_dense(cls, points: Float[Tensor, "points inst feats"]) -> "SparseDataset":
        n_active = max(1, int((points != 0).sum(-1).max()))
        values, indices = einops.rearrange(points, "points inst feats -> inst points feats").topk(n_active, dim=-1)
        return cls(indices, values)

    @property
    def n_points(self) -> int:
        return self.values.shape[1]


def hidden_vectors(
    W: Float[Tensor, "inst d_hidden feats"], data: SparseDataset
) -> Float[Tensor, "inst points d_hidden"]:
    """h = W x for every point, summing only the columns of the features present in it."""
    columns = einops.rearrange(W, "inst d_hidden feats -> inst feats d_hidden")
    n_inst, n_points, n_active = data.indices.shape
    picked = columns.gather(1, einops.repeat(data.indices, "inst p a -> inst (p a) d", d=W.shape[1]))
    picked = einops.rearrange(picked, "inst (p a) d -> inst p a d", p=n_points)
    return einops.einsum(data.values, picked, "inst p a, inst p a d -> inst p d")


class ReconstructionLoss(t.autograd.Function):
    """Per-instance loss mean_{points, feats} (ReLU(Wᵀh + b) − x)², with a hand-written backward.

    Why not autograd: the reconstruction is the only dense [inst, points, feats] tensor of a step, and autograd
    would make several more of that size (x − x', its square, the ReLU's mask, their gradients), each a slow pass
    through memory. Here x is sparse, so we expand (r − x)² = r² − 2 r x + x² with r = ReLU(Wᵀh + b): only r is
    dense, and the backward reads it twice (two matrix products) and writes nothing of its size. It is the same
    function as `reconstruction_loss_reference`; the test suite checks values and gradients against it.
    """

    @staticmethod
    def forward(ctx, hidden, W, b_final, indices, values):
        n_inst, n_points, _ = hidden.shape
        r = t.baddbmm(b_final.unsqueeze(1), hidden, W).relu_()  # [inst, points, feats]
        r_present = r.gather(-1, indices)
        # Σ r² as one batched dot product per instance: no temporary of r's size
        flat = r.view(n_inst, 1, -1)
        dense = t.bmm(flat, flat.transpose(1, 2)).view(n_inst)
        sparse = (values * (values - 2 * r_present)).sum(dim=(1, 2))
        ctx.save_for_backward(hidden, W, r, indices, values, r_present)
        return (dense + sparse) / (n_points * W.shape[-1])

    @staticmethod
    def backward(ctx, grad_loss):
        hidden, W, r, indices, values, r_present = ctx.saved_tensors
        n_inst, n_points, d_hidden = hidden.shape
        # dloss/dpre = scale · (r − x) where pre > 0, else 0: the dense part is scale · r (zero where pre ≤ 0),
        # the sparse part −scale · x where the feature is present and pre > 0.
        scale = (2 * grad_loss / (n_points * W.shape[-1])).view(n_inst, 1, 1)
        correction = -values * (r_present > 0)
        # One matrix product gives W's and b's gradients: append a constant 1 to every hidden vector.
        hidden_1 = t.cat([hidden, t.ones_like(hidden[..., :1])], dim=-1) * scale  # [inst, points, d_hidden + 1]
        grad_Wb = t.bmm(hidden_1.transpose(1, 2), r)
        sparse_terms = einops.einsum(hidden_1, correction, "inst p d, inst p a -> inst p a d")
        index = einops.repeat(indices, "inst p a -> inst (p a) d", d=d_hidden + 1)
        sparse_Wb = t.zeros(n_inst, W.shape[-1], d_hidden + 1, dtype=r.dtype, device=r.device)
        sparse_Wb.scatter_add_(1, index, einops.rearrange(sparse_terms, "inst p a d -> inst (p a) d"))
        grad_Wb += einops.rearrange(sparse_Wb, "inst feats d -> inst d feats")
        columns = einops.rearrange(W, "inst d_hidden feats -> inst feats d_hidden")
        picked = columns.gather(1, einops.repeat(indices, "inst p a -> inst (p a) d", d=d_hidden))
        picked = einops.rearrange(picked, "inst (p a) d -> inst p a d", p=n_points)
        grad_hidden = t.bmm(r, W.transpose(1, 2)) + einops.einsum(
            correction, picked, "inst p a, inst p a d -> inst p d"
        )
        return grad_hidden * scale, grad_Wb[:, :d_hidden], grad_Wb[:, d_hidden], None, None


def reconstruction_loss(
    W: Float[Tensor, "inst d_hidden feats"], b_final: Float[Tensor, "inst feats"], data: SparseDataset
) -> Float[Tensor, " inst"]:
    """Each instance's loss on its whole dataset: the squared error, averaged over points and features."""
    return ReconstructionLoss.apply(hidden_vectors(W, data), W, b_final, data.indices, data.values)


def reconstruction_loss_reference(
    model: ToyModel, points: Float[Tensor, "points inst feats"]
) -> Float[Tensor, " inst"]:
    """The same loss written plainly with the model's forward (what `ReconstructionLoss` is tested against)."""
    return einops.reduce((model(points) - points) ** 2, "points inst feats -> inst", "mean")


# --------------------------------------------------------------------------------------------- the sweep


@dataclass(frozen=True)
class DoubleDescentSweep(SeedGrid):
    """Toy models trained on fixed datasets of different sizes T, `n_seeds` datasets (and initialisations) per T.

    The settings are the dataset sizes: instance `size * n_seeds + seed` trains on its own dataset of
    `dataset_sizes[size]` points, full batch, with AdamW and `warmup_cosine_lr`. The test set (`n_test` fresh points
    per instance) comes from the same distribution. Seeds are ranked by their training loss: m = 2 models often get
    stuck, and the paper keeps the best of several runs.
    """

    dataset_sizes: tuple[int, ...]
    n_seeds: int
    steps: int
    warmup_steps: int
    n_features: int = 1000
    d_hidden: int = 2
    feature_probability: float = 0.01
    lr: float = 1e-3
    weight_decay: float = 1e-2
    n_test: int = 2000
    seed: int = 0

    @property
    def n_settings(self) -> int:
        return len(self.dataset_sizes)

    def group(self, size_index: int) -> slice:
        """The instances trained on datasets of `dataset_sizes[size_index]` points."""
        return slice(size_index * self.n_seeds, (size_index + 1) * self.n_seeds)


# The notebook's sweep (and the science test's). The paper: n = 10,000, S = 0.999, 50,000 steps at lr 1e-3 with a
# 2,500-step warm-up. Here n·p = 10 active features per point as in the paper, the transition at T = 10 / p = 1000,
# and 30× fewer steps at a 10× larger learning rate (AdamW moves a weight at most ~lr per step, so the distance
# the weights can travel, Σ lr, is 30 % of the paper's). Two seeds per size; both show the same picture.
DOUBLE_DESCENT = DoubleDescentSweep(
    dataset_sizes=(3, 5, 10, 30, 100, 200, 400, 1000, 2000),
    n_seeds=2,
    steps=1500,
    warmup_steps=150,
    lr=1e-2,
)


@dataclass
class DoubleDescentResult(SweepResult):
    """A trained sweep (`loss` is each instance's training loss), its datasets, and each instance's test loss."""

    train_sets: list[Float[Tensor, "points seed feats"]]  # one per dataset size, as `generate_dataset` returned it
    test_loss: Float[Tensor, " inst"]

    def hidden(self, size_index: int) -> Float[Tensor, "points seed d_hidden"]:
        """Hidden vectors h = W x of the training points of one dataset size, for each of its seeds."""
        W = self.model.W.detach()[self.sweep.group(size_index)].cpu()
        return einops.einsum(
            self.train_sets[size_index], W, "points seed feats, seed d_hidden feats -> points seed d_hidden"
        )


def train_double_descent(sweep: DoubleDescentSweep, device: t.device | str | None = None) -> DoubleDescentResult:
    """Train every (dataset size, seed) of the sweep as the instances of one model, all for the same steps.

    Each training set is fixed (`batches` returns it at every step). The datasets have different sizes, so each step
    loops over the dataset sizes (a dozen small matrix products) rather than padding every dataset to the largest:
    with sizes spread over three decades, padding would multiply the cost of a step by about five.
    """
    t.manual_seed(sweep.seed)
    cfg = ToyModelConfig(n_inst=sweep.n_inst, n_features=sweep.n_features, d_hidden=sweep.d_hidden)
    model = DoubleDescentModel(cfg, feature_probability=sweep.feature_probability, device=device)
    # Datasets come from `generate_dataset` of a model the size of one group: all instances share one p.
    sampler = DoubleDescentModel(
        ToyModelConfig(sweep.n_seeds, sweep.n_features, sweep.d_hidden), sweep.feature_probability, device=device
    )
    train_sets = [sampler.generate_dataset(size) for size in sweep.dataset_sizes]
    test_data = [SparseDataset.from_dense(sampler.generate_dataset(sweep.n_test)) for _ in sweep.dataset_sizes]
    train_data = [SparseDataset.from_dense(points) for points in train_sets]

    def losses(data: list[SparseDataset]) -> Float[Tensor, " inst"]:
        return t.cat(
            [reconstruction_loss(model.W[sweep.group(i)], model.b_final[sweep.group(i)], d) for i, d in enumerate(data)]
        )

    def objective(data: list[SparseDataset], log: bool) -> tuple[Tensor, dict[str, Tensor]]:
        loss = losses(data)
        return loss.sum(), {"loss": loss.detach()}

    history = train(
        objective,
        lambda step: train_data,
        AdamW([model.W, model.b_final], sweep.weight_decay),
        steps=sweep.steps,
        lr=sweep.lr,
        lr_scale=functools.partial(warmup_cosine_lr, warmup_steps=sweep.warmup_steps),
        log_freq=max(1, sweep.steps // 100),
        desc="DoubleDescentModel",
        single_thread=True,  # although a step is big enough to split: it is a dozen small kernels
    )
    with t.no_grad():
        train_loss, test_loss = losses(train_data).cpu(), losses(test_data).cpu()
    best = best_of_n(train_loss, sweep.n_seeds)
    return DoubleDescentResult(sweep, model, history, train_loss, best, [x.cpu() for x in train_sets], test_loss)


# ------------------------------------------------------------------------------------------- measurements


def zero_model_loss(n_features: int, feature_probability: float) -> float:
    """Loss of a model that outputs 0 everywhere: E‖x‖² / n = P(point not empty) / n, since points have norm 1."""
    return (1 - (1 - feature_probability) ** n_features) / n_features


def dimensionalities(vectors: Float[Tensor, "inst d_hidden items"]) -> Float[Tensor, "inst items"]:
    """D_i = ‖v_i‖² / Σ_j (v̂_i·v_j)² of every item: features (v = W_i), or training points (v = h_i = W x_i).

    Section 5's dimensionality: the share of a hidden dimension that item i gets. A regular k-gon of items in 2-D
    gives each 2/k; items that are tiny beside a few large ones get ≈0. (Summed over all items it is ≈ d_hidden
    whatever the geometry, so we look at its largest values instead.)
    """
    return compute_dimensionality(vectors)


@dataclass
class DoubleDescentSummary:
    """Per (dataset size, seed): losses, and the largest dimensionality of any feature and of any training point."""

    dataset_sizes: tuple[int, ...]
    train_loss: Float[Tensor, "size seed"]
    test_loss: Float[Tensor, "size seed"]
    feature_dimensionality: Float[Tensor, "size seed"]  # max_i D_i over features
    data_dimensionality: Float[Tensor, "size seed"]  # max_i D_i over the training points' hidden vectors
    polygon_error: Float[Tensor, "size seed"]  # max_i |D_i / (2/T) − 1| over training points: 0 for a regular T-gon
    n_features_represented: Int[Tensor, "size seed"]  # features with ‖W_i‖ > 0.5

    def size(self, dataset_size: int) -> int:
        """Row index of a dataset size."""
        return self.dataset_sizes.index(dataset_size)


def summarise(result: DoubleDescentResult) -> DoubleDescentSummary:
    sweep = result.sweep
    per_size = lambda x: einops.rearrange(x, "(size seed) -> size seed", seed=sweep.n_seeds)  # noqa: E731
    W = result.model.W.detach().cpu()
    data = [
        dimensionalities(einops.rearrange(result.hidden(i), "points seed d_hidden -> seed d_hidden points"))
        for i in range(len(sweep.dataset_sizes))
    ]
    polygon = [
        (D * size / sweep.d_hidden - 1).abs().amax(-1) for D, size in zip(data, sweep.dataset_sizes, strict=True)
    ]
    return DoubleDescentSummary(
        dataset_sizes=sweep.dataset_sizes,
        train_loss=per_size(result.loss),
        test_loss=per_size(result.test_loss),
        feature_dimensionality=per_size(dimensionalities(W).amax(-1)),
        data_dimensionality=t.stack([D.amax(-1) for D in data]),
        polygon_error=t.stack(polygon),
        n_features_represented=per_size(n_represented(W)),
    )
