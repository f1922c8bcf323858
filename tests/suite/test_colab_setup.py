"""The setup cell, as far as this machine can play Colab.

A fresh virtual environment holds only what Colab preinstalls (torch, numpy, plotly 5.24, einops, tqdm, safetensors: no
jaxtyping, no course). A notebook is copied alone into an empty folder. Its setup cell then has to fetch the
course from a clone of this repository (standing in for GitHub), install jaxtyping and nothing else, leave
torch, numpy and plotly alone, and make the first check runnable; run twice, it must do nothing new.
"""

import json
import os
import shutil
import subprocess
import sys
import venv

import pytest

from tests.suite.conftest import ROOT

COLAB_PREINSTALLED = ["torch==2.13.0", "numpy", "plotly==5.24.1", "einops", "tqdm", "safetensors"]
UNTOUCHABLE = ("torch", "numpy", "plotly")


def pip_freeze(python) -> dict[str, str]:
    lines = subprocess.run(
        [python, "-m", "pip", "freeze"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    return dict(line.split("==", 1) for line in lines if "==" in line)


@pytest.mark.slow
def test_setup_cell_on_a_colab_like_machine(tmp_path):
    environment = tmp_path / "colab-venv"
    venv.create(environment, with_pip=True)
    python = str(environment / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "--quiet", *COLAB_PREINSTALLED], check=True)
    before = pip_freeze(python)
    assert "jaxtyping" not in before

    # the committed tree stands in for the GitHub repository
    remote = tmp_path / "remote"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(remote)], check=True)

    notebook_dir = tmp_path / "content"
    notebook_dir.mkdir()
    notebook = notebook_dir / "copy.ipynb"
    shutil.copy(ROOT / "chapter_tms" / "1_superposition_solutions.ipynb", notebook)
    cells = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    setup = "".join(cells[0]["source"])
    assert cells[0]["metadata"]["course"]["role"] == "setup"
    after_setup = "".join(
        "".join(c["source"]) + "\n"
        for c in cells[1:]
        if c["metadata"].get("course", {}).get("role") in {"given", "exercise"}
        or "".join(c["source"]).startswith("from")
    )
    script = notebook_dir / "run_cells.py"
    script.write_text(f"{setup}\n{setup}\n{after_setup}\ncheck('tms.forward', ToyModel)\n")

    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(HOME=str(home), COURSE_REPOSITORY=str(remote), PATH=f"{environment / 'bin'}:{env['PATH']}")
    result = subprocess.run(
        [python, str(script)], cwd=notebook_dir, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("✓ Course ready") == 2, result.stdout
    assert result.stdout.count("Installing") == 1, "the second run of the setup cell must install nothing"
    assert "✓ tms.forward" in result.stdout
    assert (home / "tms-sae-course" / "utils" / "setup.py").exists()

    after = pip_freeze(python)
    assert "jaxtyping" in after
    assert {k: after[k] for k in UNTOUCHABLE} == {k: before[k] for k in UNTOUCHABLE}, "torch/numpy/plotly changed"
    assert sys.executable != python
