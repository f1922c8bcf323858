"""Checks for chapter 1, section 5 (feature geometry), with their catalogues of mistakes.

Both exercises are deterministic functions of W, so each check compares with the reference on seeded weights: with
all three sizes different (so a wrong axis shows up), varied norms (so ‖W_i‖ and ‖W_i‖² differ), varied per instance
(so mixing instances shows up), a dead feature (a zero column, which must give 0, not NaN), and an instance of known
geometry whose features are mostly dead (so that D* > 1 and a weak feature alone in its direction has D_i = 1); then
on weights with a single instance and with a single hidden dimension.
"""

import einops
import torch as t
import torch.nn.functional as F
from torch import Tensor

from tests.harness import CheckFailed, Context, Exercise, Mistake, attempt, expect_close, mistake_outputs, reference_of
from tests.kit import expect_close_per_instance
from tests.tms.common import (
    HINT_EVERY_INSTANCE,
    HINT_SQUEEZE,
    expect_close_to_reference,
    expect_shaped,
    judge_size_one,
    planted_instance,
    size_one_weights,
)

MODULE = "solutions.tms.feature_geometry"

SHAPE = (4, 3, 7)  # inst, d_hidden, feats: all different, so a wrong axis shows up in the shape
DEAD = (1, 3)  # (instance, feature) whose column is all zeros, besides the planted instance's dead features
# The last instance has a known geometry, with most features dead: a feature alone in its direction (D = 1), an
# antipodal pair of unequal norms (D = 0.62 and 0.38), a weak feature alone in its direction (still D = 1), three
# dead features (D = 0), and ‖W‖_F² = 0.855 < d_hidden, so D* = 3.5 > 1.
PLANTED = {0: (0, 0.7), 2: (1, 0.45), 5: (1, -0.35), 4: (2, 0.2)}


def weights_case(context: Context) -> Tensor:
    """Random weights, every column and every instance with its own scale, one dead feature, and the planted
    instance."""
    g = context.generator(5)
    n_inst, d_hidden, n_features = SHAPE
    column_scale = 0.3 + 2 * t.rand((n_inst, 1, n_features), generator=g)
    instance_scale = t.tensor([0.5, 1.0, 1.7, 1.0]).view(n_inst, 1, 1)
    W = t.randn(SHAPE, generator=g) * column_scale * instance_scale
    W[DEAD[0], :, DEAD[1]] = 0.0
    W[-1] = planted_instance(g, d_hidden, n_features, PLANTED)
    return W


def size_one_cases(context: Context) -> dict[str, Tensor]:
    return size_one_weights(context.generator(6), SHAPE[1], SHAPE[2])


def check_unchanged(results: dict, W: Tensor, name: str) -> None:
    if not t.equal(results["W_after"], W):
        raise CheckFailed(f"{name} changed W in place; compute new tensors instead.")


# ---------------------------------------------------------------------------------- compute_dimensionality


def probe_on_size_one_cases(function, context: Context) -> dict:
    return {name: attempt(lambda W=W: function(W.to(context.device))) for name, W in size_one_cases(context).items()}


def probe_compute_dimensionality(compute_dimensionality, context: Context) -> dict:
    W = weights_case(context).to(context.device)
    D = compute_dimensionality(W)
    return {"D": D, "W_after": W, "size_one": probe_on_size_one_cases(compute_dimensionality, context)}


def overlaps_of(W: Tensor, normalise: str = "i") -> Tensor:
    """[inst feat_i feat_j] dot products, with feature i's column (or j's, or both, or neither) normalised."""
    W_normed = W / W.norm(dim=1, keepdim=True).clamp_min(1e-8)
    left = W_normed if normalise in ("i", "both") else W
    right = W_normed if normalise in ("j", "both") else W
    return einops.einsum(left, right, "inst h i, inst h j -> inst i j")


def dim_norm_not_squared(W):
    return W.norm(dim=1) / (overlaps_of(W) ** 2).sum(-1).clamp_min(1e-12)


def dim_excluding_self(W):
    overlaps = overlaps_of(W)
    interference = (overlaps**2).sum(-1) - overlaps.diagonal(dim1=1, dim2=2) ** 2
    return W.norm(dim=1) ** 2 / interference


def dim_without_normalising(W):
    return W.norm(dim=1) ** 2 / (overlaps_of(W, "neither") ** 2).sum(-1).clamp_min(1e-12)


def dim_cosine_squared(W):
    return W.norm(dim=1) ** 2 / (overlaps_of(W, "both") ** 2).sum(-1).clamp_min(1e-12)


def dim_normalises_the_other_feature(W):
    return W.norm(dim=1) ** 2 / (overlaps_of(W, "j") ** 2).sum(-1).clamp_min(1e-12)


def dim_absolute_overlaps(W):
    return W.norm(dim=1) ** 2 / overlaps_of(W).abs().sum(-1).clamp_min(1e-12)


def dim_inverted(W):
    return (overlaps_of(W) ** 2).sum(-1) / W.norm(dim=1).clamp_min(1e-8) ** 2


def dim_mean_over_features(W):
    return W.norm(dim=1) ** 2 / (overlaps_of(W) ** 2).mean(-1).clamp_min(1e-12)


def dim_nan_for_dead_features(W):
    W_normed = W / W.norm(dim=1, keepdim=True)
    overlaps = einops.einsum(W_normed, W, "inst h i, inst h j -> inst i j")
    return W.norm(dim=1) ** 2 / (overlaps**2).sum(-1)


def dim_weak_features_as_dead(W):
    norms = W.norm(dim=1)
    W_normed = W / norms.clamp_min(1e-8).unsqueeze(1)
    overlaps = einops.einsum(W_normed, W, "inst h i, inst h j -> inst i j")
    return t.where(norms > 0.5, norms**2 / (overlaps**2).sum(-1).clamp_min(1e-12), 0.0)


def dim_loop_over_wrong_axis(W):
    # the loop runs over W.shape[1] (d_hidden) where n_inst = W.shape[0] was meant: the last instances stay 0
    D = t.zeros(W.shape[0], W.shape[2])
    for i in range(W.shape[1]):
        norms = W[i].norm(dim=0)
        overlaps = (W[i] / norms.clamp_min(1e-8)).T @ W[i]
        D[i] = norms**2 / (overlaps**2).sum(-1).clamp_min(1e-12)
    return D


def dim_squeezed(W):
    W_normed = W / W.norm(dim=1, keepdim=True).clamp_min(1e-8)
    overlaps = einops.einsum(W_normed, W, "inst h i, inst h j -> inst i j")
    return (W.norm(dim=1) ** 2 / (overlaps**2).sum(-1).clamp_min(1e-12)).squeeze()


def dim_norm_over_features(W):
    norms = W.norm(dim=2)  # [inst d_hidden]: one norm per hidden dimension, not per feature
    return norms**2 / (overlaps_of(W) ** 2).sum(-1)[:, : W.shape[1]].clamp_min(1e-12)


HINT_DEAD = (
    "A dead feature (an all-zero column of W) must get dimensionality 0, not NaN: it gets no dimension at all. "
    "Clamp the norm (e.g. `.clamp_min(1e-8)`) before dividing by it, and keep the final denominator away from 0"
)
HINT_NORM_AXIS = (
    "One value per feature: take norms of the columns W[inst, :, i], over the d_hidden axis (dim=1), "
    "so the result has shape [inst feats]"
)

DIMENSIONALITY_MISTAKES = [
    Mistake(dim_norm_not_squared, "The numerator is ‖W_i‖², the squared norm: D_i = ‖W_i‖² / Σ_j (Ŵ_i·W_j)²."),
    Mistake(
        dim_excluding_self,
        "The sum in the denominator runs over every j, *including* j = i (which contributes ‖W_i‖²): a feature "
        "alone in its dimension has D_i = ‖W_i‖² / ‖W_i‖² = 1.",
    ),
    Mistake(
        dim_without_normalising, "Normalise feature i's direction in the denominator: (Ŵ_i·W_j)², Ŵ_i = W_i/‖W_i‖."
    ),
    Mistake(
        dim_cosine_squared,
        "Normalise only W_i, not W_j: the denominator Σ_j (Ŵ_i·W_j)² grows with the other features' norms.",
    ),
    Mistake(dim_normalises_the_other_feature, "You normalised W_j instead of W_i: the denominator is Σ_j (Ŵ_i·W_j)²."),
    Mistake(dim_absolute_overlaps, "Square the overlaps (Ŵ_i·W_j)² in the denominator, don't take absolute values."),
    Mistake(dim_inverted, "Your fraction is upside down: D_i = ‖W_i‖² / Σ_j (Ŵ_i·W_j)², at most 1."),
    Mistake(dim_mean_over_features, "Sum the squared overlaps over j in the denominator; don't average them."),
    Mistake(dim_nan_for_dead_features, HINT_DEAD),
    Mistake(dim_norm_over_features, HINT_NORM_AXIS),
    Mistake(
        dim_weak_features_as_dead,
        "Only a feature whose column is exactly zero is dead: a weak feature still has its direction, and alone in "
        "it its dimensionality is ‖W_i‖² / ‖W_i‖² = 1, however small ‖W_i‖ is. Don't zero features below a threshold.",
    ),
    Mistake(dim_squeezed, HINT_SQUEEZE),
    Mistake(dim_loop_over_wrong_axis, HINT_EVERY_INSTANCE),
]


def verdict_compute_dimensionality(results: dict, context: Context) -> None:
    compute_dimensionality = reference_of("tms.compute_dimensionality")
    W = weights_case(context)
    n_inst, d_hidden, n_features = W.shape
    check_unchanged(results, W, "compute_dimensionality")
    D = results["D"]
    if isinstance(D, Tensor) and tuple(D.shape) == (n_inst, d_hidden):
        raise CheckFailed(HINT_NORM_AXIS + ".")
    D = expect_shaped(D, "compute_dimensionality(W)", (n_inst, n_features), "inst feats")
    expected = compute_dimensionality(W)
    # Judge the live features first, so that a wrong formula is named even if it also gets dead features wrong, or
    # gives inf for a feature alone in its direction (as leaving out j = i does).
    alive = W.norm(dim=1) > 0
    if not t.allclose(D[alive], expected[alive], rtol=1e-4, atol=1e-5):
        outputs, hints = mistake_outputs(DIMENSIONALITY_MISTAKES, lambda impl: impl(W))
        for name, output in outputs.items():
            if output.shape == D.shape and t.allclose(D[alive], output[alive], rtol=1e-4, atol=1e-5, equal_nan=True):
                raise CheckFailed(f"compute_dimensionality(W) is wrong. {hints[name]}")
        what = "compute_dimensionality(W) on the features that are not dead"
        expect_close_per_instance(D.where(alive, 0.0), expected.where(alive, 0.0), what, inst_axis=0)
        expect_close(D[alive], expected[alive], what)
    for inst, feature in (~alive).nonzero().tolist():
        dead = D[inst, feature]
        if not t.isfinite(dead):
            raise CheckFailed(f"{HINT_DEAD}. (Feature {feature} of instance {inst} is dead; you returned {dead:.3g}.)")
        if dead.abs() > 1e-5:
            raise CheckFailed(
                f"Feature {feature} of instance {inst} is dead (its column is all zeros), so its dimensionality is 0; "
                f"you returned {dead:.5g}."
            )
    for name, W_small in size_one_cases(context).items():
        what = f"compute_dimensionality on W of shape {list(W_small.shape)} ({name})"
        judge_size_one(results["size_one"][name], compute_dimensionality(W_small), what, "inst feats")


# ---------------------------------------------------------------------------------- dimensions_per_feature


def probe_dimensions_per_feature(dimensions_per_feature, context: Context) -> dict:
    W = weights_case(context).to(context.device)
    D_star = dimensions_per_feature(W)
    return {"D_star": D_star, "W_after": W, "size_one": probe_on_size_one_cases(dimensions_per_feature, context)}


def dpf_not_squared(W):
    return W.shape[1] / W.pow(2).sum(dim=(1, 2)).sqrt()


def dpf_inverted(W):
    return W.pow(2).sum(dim=(1, 2)) / W.shape[1]


def dpf_n_features(W):
    return W.shape[2] / W.pow(2).sum(dim=(1, 2))


def dpf_sum_of_norms(W):
    return W.shape[1] / W.norm(dim=1).sum(-1)


def dpf_counts_represented(W):
    return W.shape[1] / (W.norm(dim=1) > 0.5).sum(-1).float()


def dpf_mean_dimensionality(W):
    W_normed = W / W.norm(dim=1, keepdim=True).clamp_min(1e-8)
    overlaps = einops.einsum(W_normed, W, "inst h i, inst h j -> inst i j")
    return (W.norm(dim=1) ** 2 / (overlaps**2).sum(-1).clamp_min(1e-12)).mean(-1)


def dpf_per_feature(W):
    return W.shape[1] / W.pow(2).sum(dim=1)


def dpf_whole_tensor(W):
    return W.shape[1] / W.pow(2).sum()


def dpf_frobenius_over_wrong_axes(W):
    return W.shape[1] / W.pow(2).sum(dim=(0, 1))


def dpf_capped_at_one(W):
    return (W.shape[1] / W.pow(2).sum(dim=(1, 2))).clamp(max=1)


def dpf_loop_over_wrong_axis(W):
    # the loop runs over W.shape[1] (d_hidden) where n_inst = W.shape[0] was meant: the last instances stay 0
    D_star = t.zeros(W.shape[0])
    for i in range(W.shape[1]):
        D_star[i] = W.shape[1] / (W[i] ** 2).sum()
    return D_star


def dpf_squeezed(W):
    return (W.shape[1] / W.pow(2).sum(dim=(1, 2))).squeeze()


HINT_PER_INSTANCE = (
    "Return one D* per instance (shape [inst]): sum W² over the d_hidden and feats axes only, not over instances"
)
HINT_PER_FEATURE = (
    "D* describes a whole model, not one feature: ‖W‖_F² = Σ_i ‖W_i‖² sums over the feats axis too, giving shape [inst]"
)
HINT_AXES = "‖W‖_F² is the sum of W² over the d_hidden and feats axes (dims 1 and 2), keeping the inst axis"

DIMENSIONS_PER_FEATURE_MISTAKES = [
    Mistake(dpf_not_squared, "Divide by the *squared* Frobenius norm: D* = d_hidden / ‖W‖_F²."),
    Mistake(dpf_inverted, "Your fraction is upside down: D* = d_hidden / ‖W‖_F² (dimensions per feature)."),
    Mistake(
        dpf_n_features, "The numerator is the number of hidden dimensions, W.shape[1], not the number of features."
    ),
    Mistake(dpf_sum_of_norms, "‖W‖_F² = Σ_i ‖W_i‖² is a sum of *squared* norms (the sum of every entry squared)."),
    Mistake(
        dpf_counts_represented,
        "Don't count features above a threshold: ‖W‖_F² (the sum of every squared entry) is the smooth version of "
        "that count, and needs no threshold.",
    ),
    Mistake(
        dpf_mean_dimensionality,
        "D* is not the mean of the D_i: it is d_hidden / ‖W‖_F², with ‖W‖_F² the sum of every squared entry of W.",
    ),
    Mistake(dpf_per_feature, HINT_PER_FEATURE),
    Mistake(dpf_whole_tensor, HINT_PER_INSTANCE),
    Mistake(dpf_frobenius_over_wrong_axes, HINT_AXES),
    Mistake(
        dpf_capped_at_one,
        "Don't cap D* at 1: when fewer features are represented than there are hidden dimensions (‖W‖_F² < d_hidden), "
        "each of them gets more than one dimension, and D* = d_hidden / ‖W‖_F² > 1.",
    ),
    Mistake(dpf_squeezed, HINT_SQUEEZE),
    Mistake(dpf_loop_over_wrong_axis, HINT_EVERY_INSTANCE),
]


def verdict_dimensions_per_feature(results: dict, context: Context) -> None:
    dimensions_per_feature = reference_of("tms.dimensions_per_feature")
    W = weights_case(context)
    n_inst, d_hidden, n_features = W.shape
    check_unchanged(results, W, "dimensions_per_feature")
    D_star = results["D_star"]
    if isinstance(D_star, Tensor):
        shape = tuple(D_star.shape)
        if shape in ((), (1,)):
            raise CheckFailed(HINT_PER_INSTANCE + ".")
        if shape == (n_inst, n_features):
            raise CheckFailed(HINT_PER_FEATURE + ".")
        if shape in ((n_features,), (d_hidden,), (n_inst, d_hidden)):
            raise CheckFailed(f"{HINT_AXES}; you returned shape {shape}.")
    D_star = expect_shaped(D_star, "dimensions_per_feature(W)", (n_inst,), "inst")
    expected = dimensions_per_feature(W)
    run = lambda impl: impl(W)
    what = "dimensions_per_feature(W)"
    expect_close_to_reference(D_star, expected, what, DIMENSIONS_PER_FEATURE_MISTAKES, run, inst_axis=0)
    for name, W_small in size_one_cases(context).items():
        what = f"dimensions_per_feature on W of shape {list(W_small.shape)} ({name})"
        judge_size_one(results["size_one"][name], dimensions_per_feature(W_small), what, "inst")


# -------------------------------------------- correct implementations written differently: all must pass


def dim_with_loops(W):
    n_inst, _, n_features = W.shape
    D = t.zeros(n_inst, n_features, device=W.device)
    for inst in range(n_inst):
        for i in range(n_features):
            norm = W[inst, :, i].norm()
            if norm == 0:
                continue
            overlaps = (W[inst, :, i] / norm) @ W[inst]
            D[inst, i] = norm**2 / (overlaps**2).sum()
    return D


def dim_as_capacity_from_gram(W):
    # Scherlis et al.'s capacity (W_i·W_i)² / Σ_j (W_i·W_j)²: the same number, written from the Gram matrix
    gram = W.transpose(1, 2) @ W
    return t.nan_to_num(gram.diagonal(dim1=1, dim2=2) ** 2 / (gram**2).sum(-1), nan=0.0)


def dim_with_normalize(W):
    W_normed = F.normalize(W, dim=1)
    overlaps = einops.einsum(W_normed, W, "inst h i, inst h j -> inst i j")
    denominator = (overlaps**2).sum(-1)
    return t.where(denominator > 0, W.pow(2).sum(1) / denominator.clamp_min(1e-30), 0.0)


def dpf_with_matrix_norm(W):
    return W.shape[-2] / t.linalg.matrix_norm(W) ** 2


def dpf_with_einsum(W):
    return W.shape[1] / einops.einsum(W, W, "inst h f, inst h f -> inst")


EXERCISES = [
    Exercise(
        id="tms.compute_dimensionality",
        name="compute_dimensionality",
        signature=("W",),
        reference_path=f"{MODULE}:compute_dimensionality",
        probe=probe_compute_dimensionality,
        verdict=verdict_compute_dimensionality,
        mistakes=DIMENSIONALITY_MISTAKES,
        alternatives=[dim_with_loops, dim_as_capacity_from_gram, dim_with_normalize],
    ),
    Exercise(
        id="tms.dimensions_per_feature",
        name="dimensions_per_feature",
        signature=("W",),
        reference_path=f"{MODULE}:dimensions_per_feature",
        probe=probe_dimensions_per_feature,
        verdict=verdict_dimensions_per_feature,
        mistakes=DIMENSIONS_PER_FEATURE_MISTAKES,
        alternatives=[dpf_with_matrix_norm, dpf_with_einsum],
    ),
]
