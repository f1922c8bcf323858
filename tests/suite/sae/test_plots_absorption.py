"""The plots of chapter 2, section 6 show the data they are given: every test reads the figure's data, never its
pixels."""

import numpy as np
import pytest
import torch as t

from utils.plots.sae import absorption

pytestmark = pytest.mark.usefixtures("no_show")


def test_absorption_bars_have_one_panel_per_metric_and_one_bar_per_kind():
    summary = {"untied": {"absorption_rate": 1.0, "mmcs": 0.93}, "tied": {"absorption_rate": 0.0, "mmcs": 1.0}}
    fig = absorption.plot_absorption_by_kind(summary, {"absorption_rate": "absorption rate", "mmcs": "MMCS"})
    rate, mmcs = fig.data
    assert list(rate.x) == ["untied", "tied"] and list(rate.y) == [1.0, 0.0] and list(mmcs.y) == [0.93, 1.0]
    assert [annotation.text for annotation in fig.layout.annotations] == ["absorption rate", "MMCS"]


def test_rate_against_sparsity_draws_every_seed_and_the_kept_line_on_a_log_axis():
    rates, kept = t.rand(4, 3), t.rand(4)
    fig = absorption.plot_absorption_vs_sparsity([0.01, 0.03, 0.1, 0.3], rates, kept)
    assert len(fig.data) == 4 and fig.layout.xaxis.type == "log"
    for seed in range(3):
        np.testing.assert_allclose(fig.data[seed].y, rates[:, seed].numpy())
    np.testing.assert_allclose(fig.data[3].y, kept.numpy())
    np.testing.assert_allclose(fig.data[3].x, [0.01, 0.03, 0.1, 0.3])


def test_firing_heatmaps_hold_the_fractions_with_kinds_as_rows_and_latents_as_columns():
    firing = {"a": t.rand(4, 3), "b": t.rand(4, 3)}
    kinds = ["parent alone", "parent + child", "f2", "f3"]
    fig = absorption.plot_firing_by_input(firing, kinds, {"b": ["x", "y", "z"]})
    first, second = fig.data
    np.testing.assert_allclose(first.z, firing["a"].numpy())
    assert list(first.y) == kinds and list(first.x) == ["latent 0", "latent 1", "latent 2"]
    assert list(second.x) == ["x", "y", "z"] and first.zmin == 0 and first.zmax == 1


def test_firing_animation_has_a_frame_per_logged_step_with_a_bar_per_latent():
    firing = t.rand(5, 4, 3)
    kinds = ["parent alone", "parent + child", "f2", "f3"]
    fig = absorption.animate_firing_by_input(firing, t.arange(5) * 100, kinds, ["x", "y", "z"])
    assert [frame.name for frame in fig.frames] == ["0", "100", "200", "300", "400"]
    assert [trace.name for trace in fig.data] == ["x", "y", "z"] and list(fig.data[0].x) == kinds
    for frame, values in zip(fig.frames, firing, strict=True):
        for latent, data in enumerate(frame.data):
            np.testing.assert_allclose(data.y, values[:, latent].numpy())
    np.testing.assert_allclose(fig.data[2].y, firing[0, :, 2].numpy())
    with pytest.raises(ValueError, match="n_logs"):
        absorption.animate_firing_by_input(firing, t.arange(4), kinds)
