"""The science of chapter 2, section 3 (tied against untied SAEs), asserted at exactly the notebook's settings.

S1/S2 (Sharkey-style data, 128 features in 64-D): untied SAEs recover the features (MMCS ≥ 0.98, ≥ 95 % at cos 0.9) and
beat tied ones on every measure (the size of the MMCS gap depends on the setting: 0.018-0.034 on four settings the
course does not use, issue 17, so no margin is asserted); dead latents appear only when the dictionary is larger than
the number of features, and L0 rises above the true mean. S3/S4 (the pentagon): with 10 latents both recover all five
features, tied more precisely, untied with the better reconstruction. Correlated pairs: tied wins while pairs are
common, untied when they are rare. Varying importance: an SAE recovers what the model represents, and finds the features
the model dropped no better than a dictionary of exactly the kept features (its other latents random) does.
"""

import pytest
import torch as t

from solutions.sae import tied_vs_untied_experiments as ex

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results() -> dict:
    t.set_num_threads(1)
    return {name: ex.compare(sweep) for name, sweep in ex.EXPERIMENTS.items()}


def summary(results, name) -> tuple[dict, dict, str]:
    table = ex.summary(results[name])
    measured = "; ".join(f"{kind}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()) for kind, row in table.items())
    return table["untied"], table["tied"], f"{name}: {measured}"


@pytest.mark.parametrize("name", ["Sharkey, 128 latents", "Sharkey, 256 latents"])
def test_untied_saes_win_on_many_features_at_once(results, name):
    untied, tied, measured = summary(results, name)
    assert untied["mmcs"] >= 0.98 and untied["recovered_0.9"] >= 0.95, measured
    assert untied["mmcs"] > tied["mmcs"] and untied["explained_variance"] > tied["explained_variance"], measured
    assert untied["recovered_0.99"] > 3 * tied["recovered_0.99"], f"far fewer tied features at cos 0.99; {measured}"
    assert untied["l0"] < tied["l0"], f"the tied SAE over-fires; {measured}"


def test_a_dictionary_larger_than_the_features_leaves_dead_latents_and_a_higher_l0(results):
    for kind in ("untied", "tied"):
        small = ex.summary(results["Sharkey, 128 latents"])[kind]
        large = ex.summary(results["Sharkey, 256 latents"])[kind]
        measured = f"{kind}: dead {small['dead']:.3f} → {large['dead']:.3f}, L0 {small['l0']:.2f} → {large['l0']:.2f}"
        assert small["dead"] == 0 < large["dead"], measured
        assert small["l0 / true"] > 1 and large["l0"] > small["l0"], measured


def test_pentagon_with_twice_the_latents(results):
    untied, tied, measured = summary(results, "pentagon, 10 latents")
    assert untied["recovered_0.9"] == tied["recovered_0.9"] == 1 and min(untied["mmcs"], tied["mmcs"]) >= 0.95, measured
    assert tied["mmcs"] > untied["mmcs"], f"tied: the closer directions; {measured}"
    assert untied["explained_variance"] > tied["explained_variance"], f"untied: the better reconstruction; {measured}"


def test_pentagon_with_as_many_latents_as_features(results):
    untied, tied, measured = summary(results, "pentagon, 5 latents")
    per_seed = ex.seed_report(results["pentagon, 5 latents"]["untied"])["recovered_0.9"].tolist()
    assert untied["recovered_0.9"] >= 0.8 and tied["recovered_0.9"] >= 0.8, f"the kept seed finds ≥ 4 of 5; {measured}"
    assert min(per_seed) < 5, f"a latent between two features: some seed misses one (per seed {per_seed}); {measured}"


def test_correlated_pairs_tied_wins_when_pairs_are_common_untied_when_rare(results):
    mmcs = {kind: ex.kept_report(result)["mmcs"] for kind, result in results["correlated pairs"].items()}
    ev = {kind: ex.kept_report(result)["explained_variance"] for kind, result in results["correlated pairs"].items()}
    measured = f"MMCS per density { ({k: v.numpy().round(3).tolist() for k, v in mmcs.items()}) }"
    assert (mmcs["tied"][:2] > mmcs["untied"][:2]).all(), measured
    assert (mmcs["untied"][-2:] > mmcs["tied"][-2:]).all(), measured
    assert all((values > 0.98).all() for values in ev.values()), f"reconstruction cannot tell them apart; {measured}"


def test_an_sae_recovers_what_the_model_represents_and_nothing_of_what_it_dropped(results):
    norms = ex.feature_norms_of(results["importance 0.85^i"]["untied"])
    represented, dropped = norms > 0.5, norms < 0.1
    baseline = ex.dropped_feature_baseline(results["importance 0.85^i"]["untied"])
    for kind, result in results["importance 0.85^i"].items():
        recovery = ex.per_feature_recovery(result)
        found = (recovery > 0.9) & represented
        dropped_score = t.stack([values[mask].mean() for values, mask in zip(recovery, dropped, strict=True)])
        measured = (
            f"{kind}: recovered {found.sum(-1).tolist()} of {represented.sum(-1).tolist()} represented; dropped "
            f"features' best cosine per setting {dropped_score.numpy().round(3).tolist()} against "
            f"{baseline.numpy().round(3).tolist()} for the kept features plus random latents"
        )
        assert (recovery[0] > 0.9)[represented[0]].all(), f"at the densest setting every represented one; {measured}"
        # measured: within 0.03 of the baseline in every setting, tied and untied
        assert ((dropped_score - baseline).abs() < 0.05).all(), f"nothing learnt about dropped features; {measured}"
