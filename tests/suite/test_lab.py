"""The course's animations where learners run the notebooks, in Debian's headless Chromium.

* JupyterLab: a notebook that trains a small SAE and shows `animate_sae_in_2d` is executed with plotly's default
  renderer (what a kernel gives a learner: the plotly mimetype, drawn by the jupyterlab-plotly extension that comes
  with plotly), saved, and opened in a real JupyterLab. The figure must be drawn at its own height with every frame
  and slider step, and pressing ▶ must play it to the last frame.
* Colab: Colab cannot be reached from here, so the test renders the same figure with plotly's own "colab" renderer
  (what `fig.show()` gives on Colab: a page that loads plotly.js from plotly's CDN), with the CDN's plotly.js swapped
  for the copy plotly ships, and checks that it draws and that ▶ plays it to the last frame.

(The site test, tests/suite/test_website.py, covers the exported pages.)
"""

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import plotly
import plotly.io as pio
import pytest
from nbclient import NotebookClient

from solutions.sae.toy_sae import ToySAE, ToySAEConfig
from solutions.sae.toy_sae_experiments import pentagon_model
from tests.suite.browser import Browser, chromium, wait_until
from utils.notebooks import ROOT
from utils.plots.sae.toy_sae import animate_sae_in_2d

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
    outputs = [output for output in notebook.cells[0].outputs if PLOTLY_MIMETYPE in output.get("data", {})]
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


@pytest.mark.slow
def test_an_animation_draws_and_plays_to_its_last_frame_with_colabs_renderer(tmp_path):
    model = pentagon_model(2)
    log = ToySAE(ToySAEConfig(n_inst=2, d_in=2, d_sae=5), model).optimize(steps=1_000)
    page = pio.renderers["colab"].to_mimebundle(animate_sae_in_2d(model.W, log))["text/html"]
    external = re.findall(r'<script[^>]*src="(https?://[^"]+)"[^>]*></script>', page)
    assert len(external) == 2 and "plotly" in external[1] and "mathjax" in external[0], external
    # the local copy, without the CDN file's integrity hash and CORS mode (a file: page has no origin to share)
    page = re.sub(r'src="[^"]+" integrity="[^"]+" crossorigin="anonymous"', 'src="plotly.min.js"', page)
    page = page.replace(f'<script src="{external[0]}"></script>', "")
    assert "https://" not in re.sub(r"<script>.*?</script>", "", page, flags=re.S), "a script from the web is left"
    shutil.copy(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", tmp_path)
    (tmp_path / "colab.html").write_text(page, encoding="utf-8")
    browser = Browser(chromium(), timeout=60)
    try:
        browser.open((tmp_path / "colab.html").as_uri())
        figures = "[...document.querySelectorAll('.plotly-graph-div')]"
        drawn = f"{figures}.length === 1 && !!{figures}[0].querySelector('.main-svg')"
        assert wait_until(browser, drawn), "the figure was never drawn"
        played = POSITION.replace("document.querySelector('.jp-RenderedPlotly')", f"{figures}[0]")
        assert browser.evaluate(played) == {"active": 0, "at_last": False}
        browser.evaluate(PLAY.replace(".jp-RenderedPlotly", ".plotly-graph-div"))
        assert wait_until(browser, f"(p => p.at_last && p.active === {1_000 // 100})({played})", timeout=60), (
            browser.evaluate(played)
        )
        assert not browser.errors, browser.errors
    finally:
        browser.close()
