"""Chapter 2, section 3: tied against untied SAEs, on four toy models whose true features we know.

Each experiment trains the same SAE configuration twice, untied and tied (`compare`), several seeds per setting,
and measures both with ground-truth metrics (MMCS, features recovered) and reconstruction metrics (explained variance,
L0, dead latents), on the seed each setting keeps (the lowest SAE loss: chosen without looking at the truth):

* `PENTAGON_5`, `PENTAGON_10`: the pentagon with as many latents as features, and with twice as many;
* `SHARKEY_128`, `SHARKEY_256`: Sharkey et al.'s synthetic data, scaled down: 128 Gaussian feature directions in 64
  dimensions, about 2.8 features active per input, with a dictionary of 128 latents and one of 256;
* `CORRELATED`: section 1.3's model of two correlated pairs in 2 dimensions, at each of its five densities;
* `IMPORTANCE`: a 20 → 5 model with importance 0.85^i at three densities, whose features range from fully
  represented to dropped: which features can an SAE recover, as importance falls and the model's norms shrink?

Sparsity coefficients are in this course's convention (L_reconstruction averages over d_in): 0.05 on the 2-D models
is λ = 0.1 for a reconstruction loss summed over d_in, and 0.1 / 64 on the 64-D one is λ = 0.1 too.
"""

import dataclasses
import functools

import torch as t
from jaxtyping import Float
from torch import Tensor

from solutions.sae.measuring_recovery import feature_recovery
from solutions.sae.measuring_recovery_experiments import recovery_report, true_features
from solutions.sae.toy_sae_experiments import SAESweep, pentagon_model
from solutions.tms import correlated_experiments
from solutions.tms.superposition import ToyModel, ToyModelConfig
from solutions.tms.superposition_experiments import Sweep, feature_norms
from utils.sweeps import SweepResult, train_sweep

# ------------------------------------------------------------------------------------------- the toy models


def sharkey_model(n_features: int = 128, d_in: int = 64, seed: int = 0) -> ToyModel:
    """Sharkey et al.'s toy data as a toy model: unit Gaussian feature directions (W's columns), feature i present
    with probability (5 / n)·0.99^i with magnitude U[0, 1], so about 2.8 of 128 features are active per input."""
    generator = t.Generator().manual_seed(seed)
    probability = (5 / n_features) * 0.99 ** t.arange(n_features, dtype=t.float32)
    model = ToyModel(ToyModelConfig(1, n_features, d_in), feature_probability=probability)
    with t.no_grad():
        model.W.copy_(t.nn.functional.normalize(t.randn((1, d_in, n_features), generator=generator), dim=1))
    return model


def kept_models(result: SweepResult, model_class: type = ToyModel) -> ToyModel:
    """The best seed of every setting of a trained chapter 1 sweep, as one toy model with an instance per setting."""
    source = result.model
    cfg = dataclasses.replace(source.cfg, n_inst=len(result.best))
    model = model_class(cfg, result.kept(source.feature_probability), result.kept(source.importance))
    with t.no_grad():
        model.W.copy_(result.W)
        model.b_final.copy_(result.b_final)
    return model


@functools.cache
def correlated_model() -> ToyModel:
    """Section 1.3's two correlated pairs in 2-D, trained at its five densities (the best seed of each)."""
    result = train_sweep(correlated_experiments.CORRELATED)
    return kept_models(result, correlated_experiments.ToyModel)


IMPORTANCE_TOY_MODEL = Sweep(
    n_features=20, d_hidden=5, importance_decay=0.85, feature_probabilities=(0.2, 0.05, 0.02), n_seeds=3, steps=2_000
)


@functools.cache
def importance_model() -> ToyModel:
    """20 features in 5 dimensions with importance 0.85^i at three densities (the best seed of each)."""
    return kept_models(train_sweep(IMPORTANCE_TOY_MODEL))


# ----------------------------------------------------------------------------------------- the experiments

PENTAGON_5 = SAESweep(
    toy_model=functools.partial(pentagon_model, 1), settings=1, d_sae=5, sparsity_coeff=0.05, tied_weights=False,
    n_seeds=6, steps=3_000,
)  # fmt: skip
PENTAGON_10 = dataclasses.replace(PENTAGON_5, d_sae=10)
# 5,000 steps: at 3,000 the untied SAEs have not converged (125 rather than 127 of 128 features at cos 0.9; 2 rather
# than 15 of 256 latents dead, where Sharkey-style data at 2× leaves about 14 dead)
SHARKEY_128 = SAESweep(
    toy_model=sharkey_model, settings=1, d_sae=128, sparsity_coeff=0.1 / 64, tied_weights=False, n_seeds=1,
    steps=5_000,
)  # fmt: skip
SHARKEY_256 = dataclasses.replace(SHARKEY_128, d_sae=256)
CORRELATED = SAESweep(
    toy_model=correlated_model, settings=5, d_sae=4, sparsity_coeff=0.05, tied_weights=False, n_seeds=3, steps=3_000
)
IMPORTANCE = SAESweep(
    toy_model=importance_model, settings=3, d_sae=20, sparsity_coeff=0.02, tied_weights=False, n_seeds=3, steps=3_000
)
EXPERIMENTS = {
    "pentagon, 5 latents": PENTAGON_5,
    "pentagon, 10 latents": PENTAGON_10,
    "Sharkey, 128 latents": SHARKEY_128,
    "Sharkey, 256 latents": SHARKEY_256,
    "correlated pairs": CORRELATED,
    "importance 0.85^i": IMPORTANCE,
}


def compare(sweep: SAESweep, device: t.device | str | None = None) -> dict[str, SweepResult]:
    """The sweep trained untied and tied, with the same seed (so the same initial decoder directions)."""
    return {
        "untied": train_sweep(dataclasses.replace(sweep, tied_weights=False), device=device),
        "tied": train_sweep(dataclasses.replace(sweep, tied_weights=True), device=device),
    }


# ------------------------------------------------------------------------------------------- measurements

SUMMARY = ("mmcs", "recovered_0.9", "recovered_0.99", "explained_variance", "l0", "dead")


def kept_report(result: SweepResult) -> dict[str, Float[Tensor, " setting"]]:
    """`recovery_report` of the kept seed of every setting."""
    report = recovery_report(result.model)
    return {name: values[result.best] for name, values in report.items()}


def seed_report(result: SweepResult) -> dict[str, Tensor]:
    """`recovery_report` of every seed of every setting, [inst]."""
    return recovery_report(result.model)


def winner(table: dict[str, dict[str, float]], metric: str, margin: float = 0.002) -> str:
    """ "tied" or "untied", whichever has the higher value of the metric, or "neither" within `margin`."""
    difference = table["tied"][metric] - table["untied"][metric]
    return "neither" if abs(difference) < margin else "tied" if difference > 0 else "untied"


def true_l0(sae_result: SweepResult) -> Float[Tensor, " setting"]:
    """The mean number of features active per input, per setting: what an SAE with one latent per feature fires."""
    return sae_result.kept(sae_result.model.model.feature_probability.sum(-1))


def per_feature_recovery(result: SweepResult) -> Float[Tensor, "setting feats"]:
    """Every true feature's best cosine with a decoder row, for the kept seed of every setting."""
    sae = result.model
    return result.kept(feature_recovery(sae.W_dec.detach(), true_features(sae.model)))


def feature_norms_of(result: SweepResult) -> Float[Tensor, "setting feats"]:
    """‖W_i‖ of the toy model's features, for the setting of every kept seed."""
    return result.kept(feature_norms(result.model.model.W))


def chance_recovery(d_in: int, d_sae: int, n_directions: int = 20_000, seed: int = 0) -> float:
    """The best cosine a feature direction gets by chance: the mean, over random unit directions, of their largest
    cosine with `d_sae` random unit decoder rows in `d_in` dimensions (a yardstick for features no latent found)."""
    generator = t.Generator().manual_seed(seed)
    rows = t.nn.functional.normalize(t.randn((d_sae, d_in), generator=generator), dim=-1)
    directions = t.nn.functional.normalize(t.randn((n_directions, d_in), generator=generator), dim=-1)
    return float((directions @ rows.T).amax(-1).mean())


def dropped_feature_baseline(
    result: SweepResult, kept_above: float = 0.1, n_draws: int = 4_000, seed: int = 0
) -> Float[Tensor, " setting"]:
    """What the features a toy model dropped (‖W_i‖ < `kept_above`) score when an SAE learns nothing about them: the
    mean, over a setting's dropped features, of their best cosine with a dictionary that holds exactly the features
    the model kept and puts its other d_sae − n_kept latents in random directions (averaged over `n_draws` draws).

    Random directions alone are the wrong yardstick: a dropped feature's leftover direction is not random (it leans
    towards the kept features), so a dictionary of only the kept features already beats them.
    """
    generator = t.Generator().manual_seed(seed)
    norms = feature_norms_of(result)  # [setting feats]
    features = t.nn.functional.normalize(result.kept(result.model.model.W).transpose(-1, -2), dim=-1)
    d_sae = result.model.cfg.d_sae
    baseline = []
    for setting_features, setting_norms in zip(features, norms, strict=True):
        kept, dropped = setting_features[setting_norms >= kept_above], setting_features[setting_norms < kept_above]
        from_kept = (dropped @ kept.T).amax(-1)  # [dropped]
        random_rows = t.randn((n_draws, d_sae - len(kept), features.shape[-1]), generator=generator)
        from_random = (t.nn.functional.normalize(random_rows, dim=-1) @ dropped.T).amax(1)  # [draws dropped]
        baseline.append(t.maximum(from_kept, from_random).mean())
    return t.stack(baseline)


def summary(results: dict[str, SweepResult]) -> dict[str, dict[str, float]]:
    """Per kind (untied, tied): each `SUMMARY` metric of the kept seeds, averaged over the settings, with `recovered`
    as a fraction of the true features, and "l0 / true" the kept seeds' L0 over the data's mean active count."""
    table = {}
    for kind, result in results.items():
        report = kept_report(result)
        n_features = result.model.model.cfg.n_features
        row = {name: float(report[name].float().mean()) for name in SUMMARY}
        row["recovered_0.9"] /= n_features
        row["recovered_0.99"] /= n_features
        row["l0 / true"] = float((report["l0"] / true_l0(result)).mean())
        table[kind] = row
    return table
