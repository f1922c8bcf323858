"""The course's website (`make site`, utils/website.py): one section built and loaded in a real headless Chromium.

CI builds section 2.1 only (its notebook runs in seconds and has both still figures and an animation); `make site`
builds every section, and `python -m utils.website 1.1 2.4 --out DIR` any of them. This test checks other sections
with `SITE_SECTIONS="1.1 2.4" pytest tests/suite/test_website.py` (building them), or a site built already with
`SITE_DIR=build/site pytest tests/suite/test_website.py`.
"""

import functools
import http.server
import importlib.util
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.suite.browser import Browser, chromium, wait_until
from utils import website
from utils.notebooks import ROOT

SECTIONS = os.environ.get("SITE_SECTIONS", "2.1").split()
BUILT = os.environ.get("SITE_DIR")  # a site built already (`make site`): test its pages instead of building

# every plotly figure of a page: drawn (an SVG with content inside a plot container), its number of frames, and
# whether its slider has one step per frame
FIGURES = """[...document.querySelectorAll('.plotly-graph-div')].map(plot => {
    const svg = plot.querySelector('.main-svg');
    const frames = ((plot._transitionData || {})._frames || []);
    const slider = ((plot.layout || {}).sliders || [])[0];
    return {drawn: !!plot.querySelector('.plot-container') && !!svg && svg.childElementCount > 0,
            traces: (plot.data || []).length, frames: frames.length, slider_steps: slider ? slider.steps.length : 0};
})"""

# play the first animation of the page to its last frame; true when every trace that frame sets shows its data
ANIMATE_TO_LAST_FRAME = """(async () => {
    const plot = [...document.querySelectorAll('.plotly-graph-div')].find(p => (p._transitionData || {})._frames
                                                                             && p._transitionData._frames.length);
    const frames = plot._transitionData._frames, last = frames[frames.length - 1];
    await Plotly.animate(plot, [last.name], {mode: 'immediate', frame: {duration: 0, redraw: true},
                                             transition: {duration: 0}});
    const same = (a, b) => JSON.stringify(Array.from(a, Number)) === JSON.stringify(Array.from(b, Number));
    return last.traces.every((index, k) => !('y' in last.data[k]) || same(plot.data[index].y, last.data[k].y));
})()"""


def test_a_progress_bar_keeps_its_last_state_and_nothing_loads_from_the_web():
    bar = "Model:   0%|          | 0/10 [00:00<?, ?it/s]\rModel: 100%|██████████| 10/10 [00:01<00:00]\n"
    assert website.final_text(bar) == "Model: 100%|██████████| 10/10 [00:01<00:00]\n"
    assert website.final_text("a\nb\r\n") == "a\nb\n"
    figure_mathjax = '<script src="https://cdnjs.cloudflare.com/ajax/libs/mathjax/3.2.2/es5/tex-svg.min.js"></script>'
    assert website.without_external_scripts(f"<p>{figure_mathjax}</p>") == "<p></p>"
    with pytest.raises(RuntimeError, match="from the web"):
        website.without_external_scripts('<script src="https://cdn.plot.ly/plotly.js"></script>')


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site of SECTIONS, built as `make site` builds it (MathJax installed as its target does, where it can be),
    or the site in SITE_DIR."""
    if BUILT:
        return Path(BUILT)
    if importlib.util.find_spec("jupyter_server_mathjax") is None:
        requirements = str(ROOT / "requirements-site.txt")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", requirements], timeout=300, check=False)
        importlib.invalidate_caches()
    out = tmp_path_factory.mktemp("site")
    website.build(SECTIONS, out)
    return out


@pytest.fixture(scope="module")
def browser(site):
    executable = chromium()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    opened = Browser(executable)
    opened.root = f"http://127.0.0.1:{server.server_port}/"
    yield opened
    opened.close()
    server.shutdown()


def wait_until_drawn(browser: Browser, timeout: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        figures = browser.evaluate(FIGURES)
        if all(figure["drawn"] for figure in figures) or time.monotonic() > deadline:
            return figures
        time.sleep(0.25)


@pytest.mark.slow
def test_every_page_draws_every_figure_and_animation_with_no_console_error(site, browser):
    pages = sorted(path.name for path in site.glob("*.html") if path.name != "index.html")
    assert len(pages) == (len(pages) if BUILT else len(SECTIONS)) >= 1
    browser.open(browser.root + "index.html")
    assert browser.evaluate("document.querySelectorAll('a[href$=\".html\"]').length") == len(pages)
    assert not browser.errors, browser.errors
    for page in pages:
        html = (site / page).read_text(encoding="utf-8")
        browser.open(browser.root + page)
        figures = wait_until_drawn(browser)
        assert len(figures) == html.count("Plotly.newPlot(") >= 1, page
        assert all(figure["drawn"] and figure["traces"] > 0 for figure in figures), (page, figures)
        animations = [figure for figure in figures if figure["frames"]]
        assert all(figure["slider_steps"] == figure["frames"] > 1 for figure in animations), (page, animations)
        if "Plotly.addFrames(" in html:
            assert animations and browser.evaluate(ANIMATE_TO_LAST_FRAME), page
        # formulas typeset (where MathJax could be installed), progress bars in their final state (text, not a
        # widget that would read 0%)
        if (site / "mathjax").exists():
            done = "!!window.MathJax && MathJax.isReady && !MathJax.Hub.queue.pending && !MathJax.Hub.queue.running"
            assert wait_until(browser, done), f"{page}: MathJax never finished typesetting"
            assert browser.evaluate("document.querySelectorAll('.MathJax, .MathJax_Display').length") > 0, page
        text = browser.evaluate("document.body.innerText")
        if "optimize(" in html:
            assert re.search(r"100%\|", text) and "widget-view+json" not in html, page
        assert "colab.research.google.com/github/" in html and "colab-badge.svg" not in html, page
        assert not browser.errors, (page, browser.errors)
        frames = [animation["frames"] for animation in animations]
        print(f"{page}: {len(figures)} figures drawn, animations with {frames} frames")
