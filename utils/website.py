"""The course as a website to read: every section's solutions notebook, executed, as one HTML page.

    python -m utils.website                  # every section, into build/site/ (`make site`)
    python -m utils.website 2.1 2.2 --out D  # some sections only

Each page is the executed notebook exported by nbconvert (the `lab` template): prose, code, outputs, interactive
plotly figures and animations, and every progress bar in its final state. A header links the index, the previous
and next sections and both of the section's notebooks on Colab.

Why plain nbconvert and not a site generator: the pages need nothing but the notebooks, nbconvert comes with
JupyterLab (no new dependency), and it writes what a notebook shows as it is. Jupyter Book 2 runs on Node.js (fetched
through nodeenv where none is installed: not from PyPI); Jupyter Book 1 brings Sphinx and 18 direct dependencies;
mkdocs-jupyter brings mkdocs, mkdocs-material and jupytext, and renders notebooks with nbconvert itself.

Offline: a page needs no network. plotly.js is embedded once per page (plotly's `notebook` renderer writes it into
the first figure's output), MathJax is served from build/site/mathjax/ when `jupyter-server-mathjax` is installed
(`requirements-site.txt`; without it the page shows formulas as TeX), and nbconvert's require.js, which plotly does
not need, is left out. Online the pages are the same: nothing is fetched from elsewhere; links (Colab) are links.
"""

import argparse
import importlib.util
import os
import re
import shutil
import sys
import time
from pathlib import Path

import nbformat
from jinja2 import DictLoader
from nbclient import NotebookClient
from nbconvert import HTMLExporter

from utils.notebooks import ROOT, SOURCES, colab_url, notebook_path, parse

SITE = ROOT / "build" / "site"

# nbconvert's lab page without require.js (plotly's embedded bundle defines `window.Plotly` only where no AMD loader
# is present) and with MathJax from the site's own folder, or none. jupyter-server-mathjax ships only the STIX-Web
# fonts, so MathJax is told to use those; its probe font loads from about:blank, which Chrome reports as an error,
# so it loads from an empty data: address instead; and its hidden MathML copy of every formula (assistive MathML) is
# off, since its styles ask for TeX fonts the package lacks (\mathbb). An empty favicon spares a request the site
# cannot answer.
TEMPLATE = """{%- extends 'index.html.j2' -%}
{% from 'mathjax.html.j2' import mathjax %}
{%- block html_head_js_requirejs -%}<link rel="icon" href="data:,">{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}
{%- if resources.site_mathjax_url -%}
<script type="text/x-mathjax-config">
MathJax.Hub.Config({"HTML-CSS": {availableFonts: [], imageFont: null, preferredFont: null, webFont: "STIX-Web",
                                 styles: {"@font-face": {"font-family": "MathJax_Blank", src: "url('data:,')"}}},
                    menuSettings: {assistiveMML: false}});
</script>
{{ mathjax(resources.site_mathjax_url) }}
{%- endif -%}
{%- endblock html_head_js_mathjax -%}
"""

# the environment of the kernels that execute the notebooks: text progress bars, plotly.js embedded in the page
KERNEL_ENV = {"COURSE_TEXT_PROGRESS": "1", "PLOTLY_RENDERER": "notebook"}
HEADLESS_ENV = ("TQDM_DISABLE", "COURSE_HEADLESS")  # these would hide the bars


def section_number(source: Path) -> str:
    """ "2.1" for chapter_sae/src/1_toy_sae.md: the number its title starts with."""
    return parse(source, "solutions")[0]["title"].split()[0]


def page_name(source: Path) -> str:
    return f"{source.parent.parent.name}-{source.stem}.html"


def execute(path: Path, timeout: int = 900) -> nbformat.NotebookNode:
    """The notebook at `path`, run top to bottom in its own folder; stops at the first error."""
    notebook = nbformat.read(path, as_version=4)
    saved = {name: os.environ.pop(name) for name in HEADLESS_ENV if name in os.environ}
    os.environ.update(KERNEL_ENV)
    try:
        NotebookClient(notebook, timeout=timeout, resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        for name in KERNEL_ENV:
            os.environ.pop(name, None)
        os.environ.update(saved)
    return notebook


def final_text(text: str) -> str:
    """What a terminal would show of `text`: on every line, what follows its last carriage return."""
    return "\n".join(line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.split("\n"))


def with_final_progress(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Every stream output as a terminal would leave it: a progress bar's last state, not each redraw."""
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                output["text"] = final_text(output["text"])
    return notebook


def header(source: Path) -> str:
    """The page's header (markdown): navigation, and the section's notebooks on Colab."""
    index = SOURCES.index(source)
    links = ["[all sections](index.html)"]
    if index > 0:
        links.append(f"[← {section_number(SOURCES[index - 1])}]({page_name(SOURCES[index - 1])})")
    if index + 1 < len(SOURCES):
        links.append(f"[{section_number(SOURCES[index + 1])} →]({page_name(SOURCES[index + 1])})")
    colab = " · ".join(
        f"[{variant}]({colab_url(notebook_path(source, variant))})" for variant in ("exercises", "solutions")
    )
    return f"{' · '.join(links)}\n\n**Open in Colab:** {colab} (the exercises notebook is the one to work in)\n\n"


def as_page(notebook: nbformat.NotebookNode, source: Path) -> nbformat.NotebookNode:
    """The executed notebook as the site shows it: the Colab badge (an image from the web) replaced by the header,
    progress bars in their final state."""
    first = notebook.cells[0]
    first.source = header(source) + re.sub(r"<a href=[^>]*><img [^>]*colab-badge[^>]*/></a>\s*", "", first.source)
    return with_final_progress(notebook)


# plotly's `notebook` renderer loads MathJax 3 from a CDN in every figure's output, for LaTeX in figure text, which the
# course's figures never use; the page has MathJax of its own for the prose
FIGURE_MATHJAX = re.compile(r'<script src="https://cdnjs\.cloudflare\.com/ajax/libs/mathjax/[^"]*"></script>')
EXTERNAL_SCRIPT = re.compile(r'<script[^>]*\ssrc="(?:https?:)?//[^"]*"')


def without_external_scripts(page: str) -> str:
    """The page without plotly's MathJax from the web, checked to load no other script from elsewhere."""
    page = FIGURE_MATHJAX.sub("", page)
    if found := EXTERNAL_SCRIPT.findall(page):
        raise RuntimeError(f"the page would load scripts from the web: {found}")
    return page


def exporter() -> HTMLExporter:
    html = HTMLExporter(template_name="lab", extra_loaders=[DictLoader({"site.html.j2": TEMPLATE})])
    html.template_file = "site.html.j2"
    html.exclude_input_prompt = html.exclude_output_prompt = True
    return html


def copy_mathjax(out: Path) -> str:
    """MathJax into out/mathjax/ from the `jupyter-server-mathjax` package; its address for a page, or "" if the
    package is not installed (then formulas show as TeX)."""
    spec = importlib.util.find_spec("jupyter_server_mathjax")  # optional: `make site` installs it
    if spec is None or spec.origin is None:
        return ""
    static = Path(spec.origin).parent / "static"
    if not (out / "mathjax").exists():
        shutil.copytree(static, out / "mathjax")
    return "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"


def index_page(built: list[Path]) -> str:
    rows = "\n".join(
        f'<li><a href="{page_name(source)}">{parse(source, "solutions")[0]["title"]}</a> · Colab: '
        + " · ".join(
            f'<a href="{colab_url(notebook_path(source, variant))}">{variant}</a>'
            for variant in ("exercises", "solutions")
        )
        + "</li>"
        for source in built
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">
<title>Toy models of superposition and sparse autoencoders</title>
<style>body {{ font-family: sans-serif; max-width: 50em; margin: 2em auto; line-height: 1.6; }}</style></head>
<body><h1>Toy models of superposition and sparse autoencoders</h1>
<p>Every section's solutions notebook, executed: prose, code, interactive figures and animations. To work through a
section, open its exercises notebook on Colab, or run <code>make lab</code> in a clone of the course.</p>
<ul>
{rows}
</ul></body></html>
"""


def build(sections: list[str] | None = None, out: Path = SITE) -> list[Path]:
    """Execute and export the solutions notebook of every section (or of `sections`, by number) into `out`; returns
    the pages written."""
    chosen = [source for source in SOURCES if sections is None or section_number(source) in sections]
    if sections is not None and len(chosen) != len(set(sections)):
        known = [section_number(source) for source in SOURCES]
        raise SystemExit(f"unknown section in {sections}: the sections are {known}")
    out.mkdir(parents=True, exist_ok=True)
    html, mathjax_url = exporter(), copy_mathjax(out)
    pages = []
    for source in chosen:
        start = time.perf_counter()
        notebook = as_page(execute(notebook_path(source, "solutions")), source)
        body, _ = html.from_notebook_node(notebook, resources={"site_mathjax_url": mathjax_url})
        page = out / page_name(source)
        page.write_text(without_external_scripts(body), encoding="utf-8")
        pages.append(page)
        print(f"{page.relative_to(out)}: {len(body) / 1e6:.1f} MB, {time.perf_counter() - start:.0f} s", flush=True)
    (out / "index.html").write_text(index_page(chosen), encoding="utf-8")
    return pages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sections", nargs="*", help="section numbers, e.g. 2.1 (default: every section)")
    parser.add_argument("--out", type=Path, default=SITE)
    args = parser.parse_args(argv)
    build(args.sections or None, args.out)
    print(f"open {args.out / 'index.html'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
