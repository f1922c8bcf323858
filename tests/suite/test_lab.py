"""The course's animations in JupyterLab, as a learner sees them: a notebook that trains a small SAE and shows
`animate_sae_in_2d` is executed with plotly's default renderer (what a kernel gives a learner: the plotly mimetype,
drawn by the jupyterlab-plotly extension that comes with plotly), saved, and opened in a real JupyterLab in Debian's
headless Chromium. The figure must be drawn at its own height with every frame and slider step, and pressing ▶ must
play it to the last frame. (The site test, tests/suite/test_website.py, covers the other path: plotly.js and the
frames written into the page, which is also how Colab's renderer shows a figure.)
"""

import json
import socket
import subprocess
import sys
import time
import urllib.request

import nbformat
import pytest
from nbclient import NotebookClient

from tests.suite.browser import Browser, chromium, wait_until
from utils.notebooks import ROOT

TOKEN = "course-test"
PLOTLY_MIMETYPE = "application/vnd.plotly.v1+json"
CODE = f"""import sys
sys.path.insert(0, {str(ROOT)!r})
from solutions.sae.toy_sae import ToySAE, ToySAEConfig
from solutions.sae.toy_sae_experiments import pentagon_model
from utils.plots.sae.toy_sae import animate_sae_in_2d

model = pentagon_model(2)
sae = ToySAE(ToySAEConfig(n_inst=2, d_in=2, d_sae=5), model)
log = sae.optimize(steps=1_000)
animate_sae_in_2d(model.W, log).show()"""

# every plotly figure JupyterLab rendered: drawn, its frames, its slider's steps, its play buttons and heights
FIGURES = """[...document.querySelectorAll('.jp-RenderedPlotly')].map(plot => ({
    drawn: !!plot.querySelector('.main-svg'), frames: ((plot._transitionData || {})._frames || []).length,
    slider_steps: (((plot.layout || {}).sliders || [])[0] || {steps: []}).steps.length,
    buttons: plot.querySelectorAll('.updatemenu-button').length, height: plot.offsetHeight,
    layout_height: (plot.layout || {}).height}))"""
# the slider's position, and whether every trace the last frame sets shows that frame's data
POSITION = """(() => {
    const plot = document.querySelector('.jp-RenderedPlotly'), frames = plot._transitionData._frames;
    const last = frames[frames.length - 1];
    const same = (a, b) => JSON.stringify(Array.from(a, Number)) === JSON.stringify(Array.from(b, Number));
    return {active: plot._fullLayout.sliders[0].active,
            at_last: last.traces.every((index, k) => same(plot.data[index].x, last.data[k].x)
                                                   && same(plot.data[index].y, last.data[k].y))};
})()"""
PLAY = "document.querySelector('.jp-RenderedPlotly .updatemenu-button').dispatchEvent(new MouseEvent('click'))"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab serving a folder with the executed animation notebook; yields the notebook's address."""
    folder = tmp_path_factory.mktemp("lab")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CODE)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(notebook, timeout=300).execute()
    outputs = [
        output for output in notebook.cells[0].outputs if "application/vnd.plotly.v1+json" in output.get("data", {})
    ]
    assert len(outputs) == 1, "plotly's default renderer in a kernel should give the plotly mimetype"
    nbformat.write(notebook, folder / "animation.ipynb")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
         f"--port={port}", f"--ServerApp.token={TOKEN}", f"--ServerApp.root_dir={folder}"],
        stdout=subprocess.DEVNULL, stderr=(folder / "lab.log").open("w"),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={TOKEN}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start: {(folder / 'lab.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/lab/tree/animation.ipynb?token={TOKEN}"
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_an_animation_draws_and_plays_to_its_last_frame_in_jupyterlab(lab):
    browser = Browser(chromium(), timeout=120)
    try:
        browser.open(lab)
        drawn = "(figures => figures.length === 1 && figures[0].drawn && figures[0].frames > 0)(" + FIGURES + ")"
        assert wait_until(browser, drawn, timeout=90), "JupyterLab never drew the animation"
        (figure,) = browser.evaluate(FIGURES)
        log_entries = 1_000 // 100 + 1  # optimize logs every 100 steps and the last one
        assert figure["drawn"] and figure["frames"] == figure["slider_steps"] == log_entries, figure
        assert figure["buttons"] == 2, figure  # ▶ and ❚❚
        # JupyterLab gives a figure without a height 360 px; the course's animations set theirs, and get it
        assert figure["layout_height"] > 360 and figure["height"] >= figure["layout_height"], figure
        assert browser.evaluate(POSITION) == {"active": 0, "at_last": False}
        browser.evaluate(PLAY)
        assert wait_until(browser, f"({POSITION}).active === {log_entries - 1}", timeout=60), (
            "▶ did not play to the end"
        )
        assert wait_until(browser, f"({POSITION}).at_last", timeout=10), "the last frame's data is not shown"
        assert not browser.errors, browser.errors
        print(json.dumps(figure))
    finally:
        browser.close()
