"""The plots of chapter 2 show the data they are given: every test reads the figure's data, never its pixels."""

import numpy as np
import pytest
import torch as t
import torch.nn.functional as F

from solutions.sae import ToySAE, ToySAEConfig
from solutions.sae.measuring_recovery import feature_recovery
from solutions.sae.resampling import ToySAE as ResamplingSAE
from solutions.sae.toy_sae_experiments import pentagon_model
from utils.plots.sae import measuring_recovery, resampling, tied_vs_untied, toy_sae, variants

pytestmark = pytest.mark.usefixtures("no_show")


@pytest.fixture(scope="module")
def sae() -> ToySAE:
    t.manual_seed(0)
    return ToySAE(ToySAEConfig(3, 2, 4), pentagon_model(3))


def test_sae_in_2d_draws_every_decoder_direction_at_unit_length_per_instance(sae):
    fig = toy_sae.plot_sae_in_2d(sae.model.W, sae.W_dec, titles=["a", "b", "c"])
    latents = [trace for trace in fig.data if (trace.name or "").startswith("latent")]
    assert len(latents) == 3 * 4
    unit = F.normalize(sae.W_dec.detach(), dim=-1)
    for index, trace in enumerate(latents):
        inst, latent = divmod(index, 4)
        np.testing.assert_allclose([trace.x[1], trace.y[1]], unit[inst, latent].numpy(), rtol=1e-5)
        assert trace.name == f"latent {latent}"
    with pytest.raises(ValueError, match="inst d_sae 2"):
        toy_sae.plot_sae_in_2d(sae.model.W, sae.W_dec.transpose(-1, -2))


def test_training_plot_has_loss_l0_and_alive_panels_with_a_line_per_instance():
    log = {"step": t.arange(5), "loss": t.rand(5, 3) + 0.1, "l0": t.rand(5, 3), "frac_alive": t.ones(5, 3)}
    fig = toy_sae.plot_sae_training(log)
    assert len(fig.data) == 9
    for trace, key in zip(fig.data[::3], ("loss", "l0", "frac_alive"), strict=True):
        np.testing.assert_allclose(trace.y, log[key][:, 0].numpy())
    assert fig.layout.yaxis.type == "log"


def test_dashboard_rows_are_latents_and_first_panel_holds_the_decoder_cosines(sae):
    fig = measuring_recovery.plot_latent_dashboard(sae, sae.model, instance=1, latents=[0, 2], batch_size=512)
    bars = [trace for trace in fig.data if trace.type == "bar"]
    assert len(bars) == 4 and len([trace for trace in fig.data if trace.type == "heatmap"]) == 2
    features = F.normalize(sae.model.W[1].detach().T, dim=-1)
    for bar, latent in zip(bars[::2], (0, 2), strict=True):
        np.testing.assert_allclose(bar.y, (features @ sae.W_dec_normalized[1, latent].detach()).numpy(), rtol=1e-5)
    assert any("fires on" in annotation.text for annotation in fig.layout.annotations)


def test_dashboard_leaves_the_global_random_state_alone(sae):
    before = t.random.get_rng_state()
    measuring_recovery.plot_latent_dashboard(sae, sae.model, latents=[1], batch_size=64)
    assert t.equal(t.random.get_rng_state(), before)


def test_recovery_heatmap_counts_the_features_above_the_threshold(sae):
    recovery = feature_recovery(sae.W_dec.detach(), sae.model.W.detach().transpose(-1, -2))
    fig = measuring_recovery.plot_recovery(recovery, threshold=0.9)
    (heatmap,) = fig.data
    np.testing.assert_allclose(heatmap.z, recovery.numpy())
    assert [int(label.split("(")[1].split("/")[0]) for label in heatmap.y] == (recovery > 0.9).sum(-1).tolist()


def test_tied_vs_untied_bars_show_both_kinds_of_every_experiment():
    summary = {
        "one": {"untied": {"mmcs": 0.9}, "tied": {"mmcs": 0.8}},
        "two": {"untied": {"mmcs": 0.5}, "tied": {"mmcs": 0.7}},
    }
    fig = tied_vs_untied.plot_tied_vs_untied(summary, {"mmcs": "MMCS"})
    untied, tied = fig.data
    assert list(untied.x) == ["one", "two"] and list(untied.y) == [0.9, 0.5] and list(tied.y) == [0.8, 0.7]


def test_recovery_by_feature_draws_norms_and_both_kinds_per_setting():
    norms, recovery = t.rand(2, 6), {"untied": t.rand(2, 6), "tied": t.rand(2, 6)}
    fig = tied_vs_untied.plot_recovery_by_feature(recovery, norms, ["p = 0.1", "p = 0.01"], chance=0.5)
    assert len(fig.data) == 6
    np.testing.assert_allclose(fig.data[0].y, norms[0].numpy())
    np.testing.assert_allclose(fig.data[5].y, recovery["tied"][1].numpy())
    assert len(fig.layout.shapes) == 2  # the chance line in each panel


def test_pareto_draws_every_sweep_in_order_of_l0_in_both_panels():
    table = {
        "standard untied": {"l0": t.tensor([5.0, 1.0, 3.0]), "explained_variance": t.tensor([0.9, 0.2, 0.6]),
                            "shrinkage": t.tensor([0.95, 0.7, 0.8]), "sparsity_coeff": t.tensor([0.01, 0.1, 0.05])},
        "topk tied": {"l0": t.tensor([1.0, 2.0]), "explained_variance": t.tensor([0.5, 0.7]),
                      "shrinkage": t.tensor([1.0, 1.0]), "k": t.tensor([1, 2])},
    }  # fmt: skip
    fig = variants.plot_pareto(table, true_l0=2.5)
    assert [trace.name for trace in fig.data] == ["standard untied"] * 2 + ["topk tied"] * 2
    np.testing.assert_allclose(fig.data[0].x, [1.0, 3.0, 5.0])
    np.testing.assert_allclose(fig.data[0].y, [0.2, 0.6, 0.9])
    np.testing.assert_allclose(fig.data[1].y, [0.7, 0.8, 0.95])
    assert list(fig.data[0].text) == ["sparsity_coeff = 0.1", "sparsity_coeff = 0.05", "sparsity_coeff = 0.01"]
    assert fig.data[2].line.dash == "dash" and list(fig.data[3].text) == ["k = 1", "k = 2"]
    assert len(fig.layout.shapes) == 2


def decoder_log(n_logs: int = 6, n_inst: int = 3, d_sae: int = 4) -> dict[str, t.Tensor]:
    generator = t.Generator().manual_seed(0)
    return {"step": t.arange(n_logs) * 100, "W_dec": t.randn((n_logs, n_inst, d_sae, 2), generator=generator)}


def test_sae_animation_has_a_frame_per_logged_step_with_that_steps_decoder_directions(sae):
    log = decoder_log()
    fig = toy_sae.animate_sae_in_2d(sae.model.W, log)
    assert [frame.name for frame in fig.frames] == [str(step) for step in log["step"].tolist()]
    assert [step.label for step in fig.layout.sliders[0].steps] == [frame.name for frame in fig.frames]
    latents = [index for index, trace in enumerate(fig.data) if (trace.name or "").startswith("latent")]
    unit = F.normalize(log["W_dec"], dim=-1)
    for frame, directions in zip(fig.frames, unit, strict=True):
        assert list(frame.traces) == latents  # the features stay; only the latents move
        for index, data in enumerate(frame.data):
            inst, latent = divmod(index, 4)
            np.testing.assert_allclose([data.x[1], data.y[1]], directions[inst, latent].numpy(), rtol=1e-5)
    for index, data in zip(latents, fig.frames[0].data, strict=True):  # the figure shows the first frame
        assert fig.data[index].x == data.x and fig.data[index].y == data.y


def test_sae_animation_stars_the_marked_latents_of_each_frame(sae):
    log = decoder_log()
    marked = t.zeros((6, 3, 4), dtype=t.bool)
    marked[3:, 1, 2] = True
    fig = toy_sae.animate_sae_in_2d(sae.model.W, log, marked=marked)
    for frame, marks in zip(fig.frames, marked, strict=True):
        stars = [index for index, data in enumerate(frame.data) if data.marker.symbol[1] == "star"]
        assert stars == marks.flatten().nonzero().flatten().tolist()  # trace inst * d_sae + latent
    assert "resampled" in fig.frames[3].data[1 * 4 + 2].hovertemplate
    with pytest.raises(ValueError, match="n_logs, inst, d_sae"):
        toy_sae.animate_sae_in_2d(sae.model.W, log, marked=marked[:, :2])


def test_resampled_since_marks_the_latents_of_the_latest_resampling_before_each_logged_step():
    latents = t.zeros((2, 1, 3), dtype=t.bool)
    latents[0, 0, 1] = latents[1, 0, 2] = True
    log = {"step": t.arange(5) * 100, "resample_step": t.tensor([99, 299]), "resampled_latents": latents,
           "W_dec": t.zeros(5, 1, 3, 2)}  # fmt: skip
    marked = resampling.resampled_since(log)[:, 0]
    assert marked.tolist() == [[False] * 3, [False, True, False], [False, True, False], [False, False, True],
                               [False, False, True]]  # fmt: skip


def test_training_logs_which_latents_each_resampling_gave_a_new_start():
    t.manual_seed(0)
    sae = ResamplingSAE(ToySAEConfig(2, 2, 5), pentagon_model(2))
    with t.no_grad():
        sae.b_enc[0, :2] = -10.0  # two latents of instance 0 that never fire
    log = sae.optimize(batch_size=64, steps=40, log_freq=10, resample_method="simple", resample_freq=20,
                       resample_window=10)  # fmt: skip
    assert log["resampled_latents"].shape == (2, 2, 5)
    assert t.equal(log["resampled_latents"].sum(-1), log["resampled"])
    assert log["resampled_latents"][0, 0, :2].all()
