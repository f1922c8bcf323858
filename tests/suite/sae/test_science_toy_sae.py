"""The science of chapter 2, sections 1 and 2, asserted with numbers at exactly the settings of their notebooks.

2.1: SAEs with as many latents as features, on the pentagon, recover its features (S3). 2.2: reconstruction metrics
and ground-truth recovery disagree: a plain autoencoder (no L1) reconstructs best and recovers worst.
"""

import pytest
import torch as t

from solutions.sae import ToySAE, ToySAEConfig
from solutions.sae.measuring_recovery_experiments import recovery_report, train_comparison
from solutions.sae.toy_sae_experiments import DEMO_INSTANCES, DEMO_STEPS, pentagon_model

pytestmark = pytest.mark.slow


def rounded(values) -> list[float]:
    return [round(float(v), 3) for v in values]


def test_the_demo_saes_find_the_pentagons_features():
    t.manual_seed(0)  # the notebook's seed
    model = pentagon_model(DEMO_INSTANCES)
    sae = ToySAE(ToySAEConfig(n_inst=DEMO_INSTANCES, d_in=2, d_sae=5), model)
    log = sae.optimize(steps=DEMO_STEPS)
    report = recovery_report(sae)
    measured = (
        f"recovered {report['recovered_0.9'].tolist()}, MMCS {rounded(report['mmcs'])}, L0 {rounded(report['l0'])}"
    )
    assert report["recovered_0.9"].float().mean() >= 4, f"on average at least 4 of 5 features; {measured}"
    assert (report["dead"] == 0).all() and (log["frac_alive"][-1] == 1).all(), f"no dead latent; {measured}"
    # one feature in 8 inputs on average (5 × 0.025): an SAE whose latents are the features fires about that often
    assert ((report["l0"] > 0.08) & (report["l0"] < 0.2)).all(), f"L0 near 0.125; {measured}"


def test_reconstruction_and_recovery_disagree():
    saes = train_comparison()
    plain, sparse = (recovery_report(saes[coefficient]) for coefficient in (0.0, 0.2))
    measured = (
        f"no L1: EV {rounded(plain['explained_variance'])}, MMCS {rounded(plain['mmcs'])}; "
        f"λ = 0.2: EV {rounded(sparse['explained_variance'])}, MMCS {rounded(sparse['mmcs'])}, "
        f"l2_ratio {rounded(sparse['l2_ratio'])}"
    )
    assert plain["explained_variance"].mean() > 0.99, f"a plain autoencoder reconstructs almost perfectly; {measured}"
    assert plain["explained_variance"].mean() > sparse["explained_variance"].mean() + 0.05, measured
    assert plain["mmcs"].mean() < sparse["mmcs"].mean() - 0.02, f"... and finds the features worse; {measured}"
    assert (sparse["l2_ratio"] < 0.9).all() and (sparse["relative_reconstruction_bias"] < 1).all(), (
        f"the L1 penalty shrinks the reconstruction; {measured}"
    )
