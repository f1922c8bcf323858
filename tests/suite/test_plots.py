"""What every plot module of `utils/plots` promises, whatever its section: importing it does no work."""

import importlib
import os
import pkgutil

import numpy as np
import plotly.graph_objects as go
import pytest
import torch as t

import utils.plots

MODULES = sorted(m.name for m in pkgutil.walk_packages(utils.plots.__path__, "utils.plots.") if not m.ispkg)


def test_every_section_has_a_plot_module():
    assert len(MODULES) >= 6, MODULES


@pytest.mark.parametrize("name", MODULES)
def test_import_does_no_work(name, tmp_path, monkeypatch, capsys):
    """No random numbers drawn, nothing printed or written, no figure or tensor built at import time."""
    monkeypatch.chdir(tmp_path)
    rng_before = t.random.get_rng_state()
    module = importlib.reload(importlib.import_module(name))
    assert t.equal(t.random.get_rng_state(), rng_before)
    assert capsys.readouterr() == ("", "")
    assert os.listdir(tmp_path) == []
    made = [key for key, value in vars(module).items() if isinstance(value, go.Figure | t.Tensor | np.ndarray)]
    assert made == [], f"module-level objects built at import: {made}"
