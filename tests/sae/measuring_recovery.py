"""Checks for chapter 2, section 2 (measuring recovery), with their catalogues of mistakes.

Both exercises are deterministic. `feature_recovery` is probed with decoder rows and features of varied norms (so a
missing normalisation shows), a feature that some latent points at exactly, one that a latent points *away* from
(cosine −1, which a ReLU latent cannot represent), a dead latent with an all-zero row, and as many latents as
features plus two (so that maximising over the wrong axis changes the shape). `sae_metrics` is probed with a standard
SAE (`ProbeSAE`) on activations with a non-zero mean, with one dead latent and one rare one.

Kit properties. feature_recovery: every instance can fail on its own (3: the instance that differs is named), and a
second case with no dead latent where, in every instance i, every latent points away from feature i (6: its best
cosine is negative, not 0). sae_metrics: each instance has a dead fraction of its own (3), and two latents fire on
every input at 1e-9 (6: a latent is dead when its activation is exactly 0 on every input, alive when positive, however
small). Neither reads a config field (1), a decoder it must tie (2), computes anything trained (4) or writes
parameters (5).
"""

import einops
import torch as t
import torch.nn.functional as F
from torch import Tensor

from tests.harness import (
    CheckFailed,
    Context,
    Exercise,
    Mistake,
    expect_close,
    expect_tensor,
    mistake_outputs,
    reference_of,
)
from tests.kit import expect_close_per_instance
from tests.sae.common import ProbeSAE, probe_activations

MODULE = "solutions.sae.measuring_recovery"

# ------------------------------------------------------------------------------------------ feature_recovery

N_INST, D_SAE, N_FEATURES, D_IN = 3, 6, 4, 3


def recovery_case(context: Context) -> dict[str, Tensor]:
    g = context.generator(60)
    W_dec = t.randn((N_INST, D_SAE, D_IN), generator=g) * (0.2 + 2 * t.rand((N_INST, D_SAE, 1), generator=g))
    features = t.randn((N_INST, N_FEATURES, D_IN), generator=g) * (
        0.3 + 2 * t.rand((N_INST, N_FEATURES, 1), generator=g)
    )
    W_dec[:, 0] = 2.5 * features[:, 0]  # feature 0 found exactly, by a longer row
    W_dec[:, 1] = -0.7 * features[:, 1]  # latent 1 points away from feature 1
    W_dec[1, 2] = 0.0  # a dead latent with an all-zero row
    return {"W_dec": W_dec, "true_features": features}


def all_negative_case(context: Context) -> dict[str, Tensor]:
    """No dead latent; in every instance i, every latent points away from feature i (all its cosines are negative,
    at most about −0.05): its best cosine is negative, not 0."""
    g = context.generator(63)
    W_dec = t.randn((N_INST, D_SAE, D_IN), generator=g)
    features = t.randn((N_INST, N_FEATURES, D_IN), generator=g)
    for i in range(N_INST):
        direction = features[i, i] / features[i, i].norm()
        along = W_dec[i] @ direction  # [d_sae]
        W_dec[i] -= (along + 0.3 + t.rand(D_SAE, generator=g))[:, None] * direction
    return {"W_dec": W_dec, "true_features": features}


def probe_feature_recovery(feature_recovery, context: Context) -> dict:
    case = {name: value.to(context.device) for name, value in recovery_case(context).items()}
    single = {name: value[:1] for name, value in case.items()}
    negative = {name: value.to(context.device) for name, value in all_negative_case(context).items()}
    return {
        "all_negative": feature_recovery(negative["W_dec"], negative["true_features"]),
        "recovery": feature_recovery(case["W_dec"], case["true_features"]),
        "single_instance": feature_recovery(single["W_dec"], single["true_features"]),
        "W_dec_after": case["W_dec"],
        "features_after": case["true_features"],
    }


def cosines_of(W_dec, features, normalise="both", eps=1e-8):
    latents = W_dec / (W_dec.norm(dim=-1, keepdim=True) + eps) if normalise in ("both", "latents") else W_dec
    feats = features / (features.norm(dim=-1, keepdim=True) + eps) if normalise in ("both", "features") else features
    return einops.einsum(latents, feats, "inst d_sae d_in, inst feats d_in -> inst d_sae feats")


def recovery_without_normalising(W_dec, true_features):
    return cosines_of(W_dec, true_features, "neither").max(dim=1).values


def recovery_normalising_latents_only(W_dec, true_features):
    return cosines_of(W_dec, true_features, "latents").max(dim=1).values


def recovery_normalising_features_only(W_dec, true_features):
    return cosines_of(W_dec, true_features, "features").max(dim=1).values


def recovery_absolute_cosine(W_dec, true_features):
    return cosines_of(W_dec, true_features).abs().max(dim=1).values


def recovery_best_feature_per_latent(W_dec, true_features):
    return cosines_of(W_dec, true_features).max(dim=2).values


def recovery_mean_over_latents(W_dec, true_features):
    return cosines_of(W_dec, true_features).mean(dim=1)


def recovery_nan_for_dead_latents(W_dec, true_features):
    latents = W_dec / W_dec.norm(dim=-1, keepdim=True)
    feats = true_features / true_features.norm(dim=-1, keepdim=True)
    return einops.einsum(latents, feats, "inst d_sae d_in, inst feats d_in -> inst d_sae feats").max(dim=1).values


def recovery_normalised_over_latents(W_dec, true_features):
    latents = W_dec / W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)
    return einops.einsum(latents, F.normalize(true_features, dim=-1), "i s d, i f d -> i s f").max(dim=1).values


def recovery_first_instance_latents(W_dec, true_features):
    latents, feats = F.normalize(W_dec[0], dim=-1), F.normalize(true_features, dim=-1)
    return einops.einsum(latents, feats, "d_sae d_in, inst feats d_in -> inst d_sae feats").max(dim=1).values


def recovery_returns_mmcs(W_dec, true_features):
    return cosines_of(W_dec, true_features).max(dim=1).values.mean(-1)


HINT_NORMALISE = "Cosine similarity: normalise both the decoder rows and the true features to unit length (over d_in) before the dot products"
HINT_SIGN = (
    "Don't take the absolute value: a latent's activation is never negative, so a latent pointing *away* from a "
    "feature (cosine −1) cannot represent it"
)
HINT_AXIS = "For every true feature take the best latent: the max over the d_sae axis, giving [inst feats]"
HINT_DEAD_ROW = "A dead latent's decoder row can be all zeros: normalise with an epsilon (or `F.normalize`) so that it gives cosine 0, not NaN"
HINT_MMCS = "Return one value per feature, [inst feats]: the MMCS is their mean, which the caller takes"


def recovery_best_starts_at_zero(W_dec, true_features):
    cosines = cosines_of(W_dec, true_features)
    best = t.zeros((cosines.shape[0], cosines.shape[2]))
    for latent in range(cosines.shape[1]):
        best = t.maximum(best, cosines[:, latent])
    return best


def recovery_features_of_instance_zero(W_dec, true_features):
    latents, feats = F.normalize(W_dec, dim=-1), F.normalize(true_features[0], dim=-1)
    return einops.einsum(latents, feats, "inst d_sae d_in, feats d_in -> inst d_sae feats").max(dim=1).values


HINT_NEGATIVE = (
    "A feature that every latent points away from has a negative best cosine: take the plain maximum, don't start it "
    "at 0 or clamp it (a ReLU latent cannot represent that feature, and the score should say so)"
)

RECOVERY_MISTAKES = [
    Mistake(recovery_without_normalising, HINT_NORMALISE),
    Mistake(recovery_normalising_latents_only, HINT_NORMALISE),
    Mistake(recovery_normalising_features_only, HINT_NORMALISE),
    Mistake(recovery_absolute_cosine, HINT_SIGN),
    Mistake(recovery_best_feature_per_latent, HINT_AXIS),
    Mistake(recovery_mean_over_latents, "Take the *best* latent for every feature (max over d_sae), not the average"),
    Mistake(recovery_nan_for_dead_latents, HINT_DEAD_ROW),
    Mistake(recovery_normalised_over_latents, "Normalise every decoder row over d_in (`dim=-1`), not over the latents"),
    Mistake(recovery_first_instance_latents, "Compare every instance's features with that instance's own latents"),
    Mistake(recovery_returns_mmcs, HINT_MMCS),
    Mistake(recovery_best_starts_at_zero, HINT_NEGATIVE),  # kind 6
    Mistake(
        recovery_features_of_instance_zero, "Compare every instance's latents with that instance's own true features"
    ),  # kind 3
]


def expect_close_named(got: Tensor, expected: Tensor, what: str, outputs: dict, hints: dict) -> None:
    """`expect_close`, naming the instance that differs when no catalogued mistake explains the values."""
    if t.allclose(got, expected, rtol=1e-4, atol=1e-5):
        return
    for name, output in outputs.items():
        if isinstance(output, Tensor) and output.shape == got.shape and t.allclose(got, output, rtol=1e-4, atol=1e-5):
            raise CheckFailed(f"{what} is wrong. {hints[name]}")
    expect_close_per_instance(got, expected, what)
    expect_close(got, expected, what)


def verdict_feature_recovery(results: dict, context: Context) -> None:
    feature_recovery = reference_of("sae.feature_recovery")
    case = recovery_case(context)
    W_dec, features = case["W_dec"], case["true_features"]
    if not (t.equal(results["W_dec_after"], W_dec) and t.equal(results["features_after"], features)):
        raise CheckFailed("feature_recovery changed its inputs in place; compute new tensors instead.")
    got = results["recovery"]
    if isinstance(got, Tensor) and tuple(got.shape) == (N_INST, D_SAE):
        raise CheckFailed(HINT_AXIS + f"; yours has shape {tuple(got.shape)}, one value per latent.")
    if isinstance(got, Tensor) and tuple(got.shape) == (N_INST,):
        raise CheckFailed(HINT_MMCS + ".")
    got = expect_tensor(got, "feature_recovery(W_dec, true_features)", (N_INST, N_FEATURES), "inst feats")
    if not t.isfinite(got).all():
        raise CheckFailed(HINT_DEAD_ROW + ".")
    outputs, hints = mistake_outputs(RECOVERY_MISTAKES, lambda impl: impl(W_dec, features))
    expected = feature_recovery(W_dec, features)
    expect_close_named(got, expected, "feature_recovery(W_dec, true_features)", outputs, hints)
    negative = all_negative_case(context)
    got = expect_tensor(results["all_negative"], "feature_recovery (a feature every latent points away from)",
                        (N_INST, N_FEATURES), "inst feats")  # fmt: skip
    expected = feature_recovery(negative["W_dec"], negative["true_features"])
    assert all(expected[i, i] < -0.01 for i in range(N_INST)), "own case: feature i of instance i is all negative"
    what = "feature_recovery on a feature whose every cosine is negative (feature i of instance i)"
    outputs, hints = mistake_outputs(RECOVERY_MISTAKES, lambda impl: impl(negative["W_dec"], negative["true_features"]))
    expect_close_named(got, expected, what, outputs, hints)
    single = expect_tensor(
        results["single_instance"], "feature_recovery on one instance", (1, N_FEATURES), "inst feats"
    )
    expect_close(
        single, feature_recovery(W_dec[:1], features[:1]), "feature_recovery on one instance ([1, ...] inputs)"
    )


def recovery_with_cosine_similarity(W_dec, true_features):
    cos = F.cosine_similarity(W_dec[:, :, None, :], true_features[:, None, :, :], dim=-1)  # [inst d_sae feats]
    return cos.amax(dim=1)


def recovery_with_loops(W_dec, true_features):
    n_inst, _, _ = W_dec.shape
    best = t.full((n_inst, true_features.shape[1]), -1.0)
    for i in range(n_inst):
        for f, feature in enumerate(true_features[i]):
            for row in W_dec[i]:
                denominator = row.norm() * feature.norm()
                cos = (row @ feature) / denominator if denominator > 0 else t.tensor(0.0)
                best[i, f] = max(best[i, f], cos)
    return best


# ---------------------------------------------------------------------------------------------- sae_metrics

METRICS = ("l0", "explained_variance", "mse", "dead")


TINY = 1e-9  # latents 4 and 5 fire on every input with this activation: alive, however small


def metrics_case(context: Context) -> tuple[ProbeSAE, Tensor]:
    """A standard SAE where latent 0 is dead and latent 1 rare in every instance; instance i has i more dead latents
    (2, ..., i + 1), so that each instance's dead fraction is its own; latents 4 and 5 fire on every input at 1e-9."""
    sae = ProbeSAE(context, salt=61)
    with t.no_grad():
        for i in range(sae.b_enc.shape[0]):
            sae.b_enc[i, 2 : 2 + i] = -100.0
        sae.W_enc[:, :, 4:] = 0.0
        sae.b_enc[:, 4:] = TINY
    return sae, probe_activations(context, 62, sae)


def probe_sae_metrics(sae_metrics, context: Context) -> dict:
    sae, h = metrics_case(context)
    sae, h = sae.to(context.device), h.to(context.device)
    returned = sae_metrics(sae, h)
    if not isinstance(returned, dict):
        raise CheckFailed(f"sae_metrics should return a dict of tensors, got {type(returned).__name__}.")
    return {"metrics": dict(returned), "h_after": h}


def metric_values(sae, h, **changes):
    """The reference's metrics, with some of them computed another way (for the catalogue of mistakes)."""
    _, _, acts, h_rec = sae(h)
    error = (h - h_rec).pow(2).sum(-1)
    values = {
        "l0": (acts > 0).float().sum(-1).mean(0),
        "explained_variance": 1 - error.mean(0) / (h - h.mean(0)).pow(2).sum(-1).mean(0),
        "mse": error.mean(0),
        "dead": (~(acts > 0).any(0)).float().mean(-1),
    }
    for name, change in changes.items():
        values[name] = change(acts, h, h_rec)
    return values


def metrics_uncentred_variance(sae, h):
    return metric_values(
        sae, h, explained_variance=lambda a, h, r: 1 - (h - r).pow(2).sum(-1).mean(0) / h.pow(2).sum(-1).mean(0)
    )


def metrics_mean_of_ratios(sae, h):
    return metric_values(
        sae, h, explained_variance=lambda a, h, r: (1 - (h - r).pow(2).sum(-1) / (h - h.mean(0)).pow(2).sum(-1)).mean(0)
    )


def metrics_centred_residual(sae, h):
    def centred(a, h, r):
        residual = h - r
        return 1 - (residual - residual.mean(0)).pow(2).sum(-1).mean(0) / (h - h.mean(0)).pow(2).sum(-1).mean(0)

    return metric_values(sae, h, explained_variance=centred)


def metrics_mse_averaged_over_dimensions(sae, h):
    return metric_values(sae, h, mse=lambda a, h, r: (h - r).pow(2).mean(-1).mean(0))


def metrics_root_mean_square(sae, h):
    return metric_values(sae, h, mse=lambda a, h, r: (h - r).pow(2).sum(-1).mean(0).sqrt())


def metrics_l0_counts_zeros(sae, h):
    return metric_values(sae, h, l0=lambda a, h, r: (a >= 0).float().sum(-1).mean(0))


def metrics_l0_summed_over_batch(sae, h):
    return metric_values(sae, h, l0=lambda a, h, r: (a > 0).float().sum(dim=(0, 2)))


def metrics_l0_as_fraction(sae, h):
    return metric_values(sae, h, l0=lambda a, h, r: (a > 0).float().mean(dim=(0, 2)))


def metrics_dead_count(sae, h):
    return metric_values(sae, h, dead=lambda a, h, r: (~(a > 0).any(0)).float().sum(-1))


def metrics_dead_when_rare(sae, h):
    return metric_values(sae, h, dead=lambda a, h, r: ((a > 0).float().mean(0) < 0.05).float().mean(-1))


def metrics_dead_when_ever_zero(sae, h):
    return metric_values(sae, h, dead=lambda a, h, r: (a == 0).any(0).float().mean(-1))


HINT_EV = (
    "explained_variance = 1 − E‖h − ĥ‖² / E‖h − h̄‖², where h̄ is the batch mean of h (per instance and dimension), "
    "as SAELens computes it: a ratio of two means over the batch"
)
HINT_MSE = "mse is SAELens' `mse_loss`: the squared error summed over d_in, then averaged over the batch (not the mean over d_in that L_reconstruction uses)"
HINT_L0 = "l0 is the number of latents with a positive activation per input, averaged over the batch"
HINT_DEAD = (
    "dead is the *fraction* of latents that fire on no input of the batch (a latent that fires even once is alive)"
)


def metrics_dead_pooled_over_instances(sae, h):
    def pooled(a, h, r):
        fired = einops.reduce((a > 0).float(), "batch inst d_sae -> d_sae", "max")
        return (fired == 0).float().mean().expand(a.shape[1])

    return metric_values(sae, h, dead=pooled)


def metrics_dead_below_a_tolerance(sae, h):
    return metric_values(sae, h, dead=lambda a, h, r: (a.max(0).values < 1e-6).float().mean(-1))


HINT_FIRES = (
    "A latent fires whenever its activation is positive, however small (`acts > 0`): a tolerance counts a live latent "
    "as dead"
)

METRICS_MISTAKES = [
    Mistake(metrics_uncentred_variance, HINT_EV),
    Mistake(metrics_mean_of_ratios, HINT_EV),
    Mistake(metrics_centred_residual, HINT_EV),
    Mistake(metrics_mse_averaged_over_dimensions, HINT_MSE),
    Mistake(metrics_root_mean_square, HINT_MSE),
    Mistake(metrics_l0_counts_zeros, HINT_L0),
    Mistake(metrics_l0_summed_over_batch, HINT_L0),
    Mistake(metrics_l0_as_fraction, HINT_L0),
    Mistake(metrics_dead_count, HINT_DEAD),
    Mistake(metrics_dead_when_rare, HINT_DEAD),
    Mistake(metrics_dead_when_ever_zero, HINT_DEAD),
    Mistake(
        metrics_dead_pooled_over_instances,
        "Count dead latents per instance: reduce over the batch only, not over the instances too (each instance is "
        "an SAE of its own)",
    ),  # kind 3
    Mistake(metrics_dead_below_a_tolerance, HINT_FIRES),  # kind 6
]


def verdict_sae_metrics(results: dict, context: Context) -> None:
    sae_metrics = reference_of("sae.sae_metrics")
    sae, h = metrics_case(context)
    if not t.equal(results["h_after"], h):
        raise CheckFailed("sae_metrics changed `h` in place; compute new tensors instead.")
    got = results["metrics"]
    if missing := [name for name in METRICS if name not in got]:
        raise CheckFailed(f"sae_metrics should return the keys {list(METRICS)}; {missing} are missing.")
    with t.no_grad():
        expected = sae_metrics(sae, h)
        alive_rates = (sae(h)[2] > 0).float().mean(0)
    assert ((alive_rates[:, 1] > 0) & (alive_rates[:, 1] < 0.05)).all() and (alive_rates[:, 0] == 0).all(), "own case"
    assert (alive_rates[:, 4:] == 1).all() and (expected["dead"] == t.tensor([1, 2, 3]) / 6).all(), "own case"
    mistaken = {}
    with t.no_grad():
        for mistake in METRICS_MISTAKES:
            mistaken[mistake.name] = mistake.impl(sae, h)
    hints = {mistake.name: mistake.hint for mistake in METRICS_MISTAKES}
    for name in METRICS:
        value = got[name]
        if isinstance(value, float | int):
            raise CheckFailed(f"`{name}` should be a tensor with one value per instance, shape [inst], got a number.")
        value = expect_tensor(value, f"sae_metrics(...)['{name}']", (h.shape[1],), "inst")
        candidates = {k: v[name] for k, v in mistaken.items()}
        expect_close_named(value.float(), expected[name], f"sae_metrics(...)['{name}']", candidates, hints)


def metrics_with_mse_loss(sae, h):
    _, _, acts, h_reconstructed = sae(h)
    mse = F.mse_loss(h_reconstructed, h, reduction="none").sum(-1).mean(0)
    variance = h.var(dim=0, unbiased=False).sum(-1)
    fired = acts.gt(0)
    return {
        "l0": fired.sum(-1).float().mean(0),
        "explained_variance": 1 - mse / variance,
        "mse": mse,
        "dead": 1 - fired.any(0).float().mean(-1),
    }


def metrics_with_einops(sae, h):
    with t.no_grad():
        _, _, acts, h_rec = sae.forward(h)
    squared = einops.reduce((h - h_rec) ** 2, "batch inst d_in -> batch inst", "sum")
    centred = einops.reduce((h - h.mean(0, keepdim=True)) ** 2, "batch inst d_in -> batch inst", "sum")
    return {
        "l0": einops.reduce((acts != 0).float(), "batch inst d_sae -> inst", "sum") / h.shape[0],
        "explained_variance": 1 - squared.mean(0) / centred.mean(0),
        "mse": squared.mean(0),
        "dead": ((acts != 0).sum(0) == 0).float().mean(-1),
    }


EXERCISES = [
    Exercise(
        id="sae.feature_recovery",
        name="feature_recovery",
        signature=("W_dec", "true_features"),
        reference_path=f"{MODULE}:feature_recovery",
        probe=probe_feature_recovery,
        verdict=verdict_feature_recovery,
        mistakes=RECOVERY_MISTAKES,
        alternatives=[recovery_with_cosine_similarity, recovery_with_loops],
    ),
    Exercise(
        id="sae.sae_metrics",
        name="sae_metrics",
        signature=("sae", "h"),
        reference_path=f"{MODULE}:sae_metrics",
        probe=probe_sae_metrics,
        verdict=verdict_sae_metrics,
        mistakes=METRICS_MISTAKES,
        alternatives=[metrics_with_mse_loss, metrics_with_einops],
    ),
]
