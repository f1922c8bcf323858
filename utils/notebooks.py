"""Build every notebook of the course from its single source of truth.

A section's source is a Markdown file (`chapter_*/src/<n>_<slug>.md`) whose prose becomes markdown cells and
whose fenced ```python blocks become code cells. The reference code itself is never copied into the source:

* ```python include=ToyModelConfig,ToyModel   — the source of those objects, read from the section's module in
  `solutions/` (named in the front matter); in the exercises notebook every exercise's body becomes a stub;
* ```python check=tms.forward                 — the learner's check call for that exercise;
* ```python setup                             — the setup cell (same in every notebook, built below);
* ```python solutions-only / exercises-only    — a cell that exists in one variant only;
* <!-- exercise tms.forward: title (difficulty 2, importance 5, 10-20 minutes) -->  — the exercise's header;
* <!-- solution tms.forward -->               — a collapsible block with the reference solution;
* a line `+++` splits markdown into separate cells.

`python -m utils.notebooks` writes the notebooks; `python -m utils.notebooks --check` fails if any committed
notebook differs from what its source generates.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib
import json
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from tests import EXERCISES
from utils.course import BRANCH, CHAPTERS, REPOSITORY

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [source for chapter in CHAPTERS for source in sorted(ROOT.glob(f"{chapter.folder}/src/*.md"))]
VARIANTS = ("exercises", "solutions")

SETUP_CELL = f'''\
# Setup: run this cell first (safe to re-run). On Colab it downloads the course once, in a few seconds.
import os, subprocess, sys

COURSE_REPOSITORY = "{REPOSITORY}"
try:
    from utils.setup import setup_notebook
except ImportError:  # the course is not installed here (e.g. on Colab): fetch it into the home folder
    course_dir = os.path.expanduser(os.environ.get("COURSE_DIR", "~/tms-sae-course"))
    if not os.path.isdir(course_dir):
        repository = os.environ.get("COURSE_REPOSITORY", COURSE_REPOSITORY)
        subprocess.run(["git", "clone", "--quiet", "--depth=1", repository, course_dir], check=True)
    sys.path.insert(0, course_dir)
    for name in ("utils", "tests", "solutions"):  # drop any other package that happens to share a name
        sys.modules.pop(name, None)
    from utils.setup import setup_notebook
setup_notebook()'''


@dataclass
class Cell:
    kind: str  # "markdown" or "code"
    source: str
    role: str = ""
    exercise_ids: tuple[str, ...] = ()


def front_matter(text: str) -> tuple[dict[str, str], str]:
    """`key: value` lines between two `---` lines at the top of a source file."""
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    if not match:
        return {}, text
    meta = dict(line.split(":", 1) for line in match.group(1).splitlines() if ":" in line)
    return {k.strip(): v.strip() for k, v in meta.items()}, text[match.end() :]


# -------------------------------------------------------------------------- reading reference code


def object_source(module_name: str, name: str) -> tuple[str, ast.AST]:
    """Source text of a top-level class or function of a module, and its syntax tree."""
    path = Path(importlib.import_module(module_name).__file__)
    text = path.read_text()
    for node in ast.parse(text).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef) and node.name == name:
            start = node.decorator_list[0].lineno if node.decorator_list else node.lineno
            lines = text.splitlines()[start - 1 : node.end_lineno]
            return "\n".join(lines), ast.parse("\n".join(lines)).body[0]
    raise KeyError(f"{module_name} has no top-level class or function {name!r}")


def body_span(function: ast.FunctionDef) -> tuple[int, int]:
    """First and last line (1-based, in the object's own text) of a function's body after its docstring."""
    body = function.body
    has_docstring = isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant)
    first = body[1] if has_docstring and len(body) > 1 else body[0]
    return first.lineno, function.end_lineno


def stub_text(exercise, indent: str) -> list[str]:
    return [
        f"{indent}# Exercise {exercise.id}: write this body, then run the check below.",
        f'{indent}raise NotImplementedError("{exercise.id}: not implemented yet")',
    ]


# A line of an exercise's body that ends with this marker is given to the learner: it stays in the stub, and the
# marker is removed from every notebook.
GIVEN = "  # given"


def stub_body(body: list[str], exercise, indent: str) -> list[str]:
    """An exercise's body as the exercises notebook shows it: the given lines, and the stub where the rest was."""
    stubbed, placed = [], False
    for line in body:
        if line.endswith(GIVEN):
            stubbed.append(line)
        elif not placed and line.strip():
            stubbed += stub_text(exercise, indent)
            placed = True
    return stubbed if placed else stubbed + stub_text(exercise, indent)


def without_given_markers(text: str) -> str:
    return "\n".join(line.removesuffix(GIVEN) for line in text.splitlines())


def method_nodes(node: ast.AST, name: str) -> list[ast.FunctionDef]:
    return [n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == name]


def include(module_name: str, names: list[str], stub: bool) -> tuple[str, tuple[str, ...]]:
    """The cell text for `include=`: the objects' source, with exercise bodies replaced by stubs if asked."""
    pieces, ids = [], []
    for name in names:
        text, node = object_source(module_name, name)
        lines = text.splitlines()
        targets = {}  # function node -> exercise, for the bodies the learner writes
        for exercise in EXERCISES.values():
            module, attributes = exercise.reference_path.split(":")
            if module != module_name or name not in attributes.split(","):
                continue
            if exercise.id not in ids:
                ids.append(exercise.id)
            methods = exercise.stubs or ((exercise.method,) if exercise.method else ())
            if not methods:  # a function: its whole body
                targets[node] = exercise
            for method in methods:
                targets[method_nodes(node, method)[0]] = exercise
        if stub:
            for function, exercise in sorted(targets.items(), key=lambda item: -item[0].lineno):
                first, last = body_span(function)
                indent = re.match(r"\s*", lines[first - 1]).group(0)
                lines[first - 1 : last] = stub_body(lines[first - 1 : last], exercise, indent)
        pieces.append(without_given_markers("\n".join(lines)))
    return "\n\n\n".join(pieces), tuple(ids)


def solution_source(exercise) -> str:
    """The reference code of one exercise, as shown in its solution block (a method with its decorators)."""
    module_name, attributes = exercise.reference_path.split(":")
    if exercise.also:  # several classes: each in full
        texts = [object_source(module_name, name)[0] for name in attributes.split(",")]
        return without_given_markers("\n\n\n".join(texts)).rstrip()
    text, node = object_source(module_name, attributes)
    if exercise.method is not None:
        pieces = []
        for method in (method_nodes(node, m)[0] for m in exercise.stubs or (exercise.method,)):
            start = method.decorator_list[0].lineno if method.decorator_list else method.lineno
            pieces.append(textwrap.dedent("\n".join(text.splitlines()[start - 1 : method.end_lineno])))
        text = "\n\n".join(pieces)
    return without_given_markers(text).rstrip()


# ------------------------------------------------------------------------------------ building cells


# An exercise's header in a section's source: its id, title, difficulty and importance (1-5) and time in minutes, e.g.
# <!-- exercise sae.init: the SAE's parameters (difficulty 1, importance 3, 5-15 minutes) -->
EXERCISE_MARKER = re.compile(
    r"<!-- exercise (?P<id>\S+): (?P<title>.+?) \(difficulty (?P<difficulty>[1-5]), importance (?P<importance>[1-5]), "
    r"(?P<minutes>\d+(?:-\d+)?) minutes\) -->"
)


def exercise_header(marker: re.Match) -> str:
    if marker["id"] not in EXERCISES:
        raise ValueError(f"{marker[0]}: no exercise has the id {marker['id']!r}")
    dots = lambda n, on, off: on * n + off * (5 - n)  # noqa: E731
    return (
        f"### Exercise `{marker['id']}`: {marker['title']}\n\n"
        f"> **Difficulty**: {dots(int(marker['difficulty']), '🔴', '⚪')}  \n"
        f"> **Importance**: {dots(int(marker['importance']), '🔵', '⚪')}  \n"
        f"> **Time**: about {marker['minutes']} minutes"
    )


def solution_block(exercise) -> str:
    return f"<details><summary>Solution</summary>\n\n```python\n{solution_source(exercise)}\n```\n\n</details>"


def expand_markdown(text: str) -> str:
    exercises = EXERCISES
    text = EXERCISE_MARKER.sub(exercise_header, text)
    if malformed := re.search(r"<!-- exercise .*?-->", text):
        raise ValueError(f"{malformed[0]}: an exercise's marker reads {EXERCISE_MARKER.pattern}")
    return re.sub(r"<!-- solution (\S+) -->", lambda m: solution_block(exercises[m.group(1)]), text)


def code_cell(options: list[str], body: str, meta: dict[str, str], variant: str) -> Cell | None:
    if ("solutions-only" in options and variant != "solutions") or (
        "exercises-only" in options and variant != "exercises"
    ):
        return None
    settings = dict(option.split("=", 1) for option in options if "=" in option)
    if "setup" in options:
        return Cell("code", SETUP_CELL, role="setup")
    if "include" in settings:
        source, ids = include(meta["module"], settings["include"].split(","), stub=variant == "exercises")
        return Cell("code", source, role="exercise" if ids else "given", exercise_ids=ids)
    if "check" in settings:
        exercise = EXERCISES[settings["check"]]
        source = f'check("{exercise.id}", {", ".join(exercise.names)})'
        return Cell("code", source, role="check", exercise_ids=(exercise.id,))
    return Cell("code", body.strip("\n"))


def parse(path: Path, variant: str) -> tuple[dict[str, str], list[Cell]]:
    meta, text = front_matter(path.read_text())
    cells: list[Cell] = []
    pieces = re.split(r"^```python([^\n]*)\n(.*?)^```[ \t]*$", text, flags=re.S | re.M)
    for i in range(0, len(pieces), 3):
        for chunk in re.split(r"^\+\+\+[ \t]*$", pieces[i], flags=re.M):
            if chunk.strip():
                cells.append(Cell("markdown", expand_markdown(chunk.strip("\n"))))
        if i + 2 < len(pieces):
            cell = code_cell(pieces[i + 1].split(), pieces[i + 2], meta, variant)
            if cell is not None:
                cells.append(cell)
    return meta, cells


def notebook_path(source: Path, variant: str) -> Path:
    return source.parent.parent / f"{source.stem}_{variant}.ipynb"


def colab_badge(path: Path) -> str:
    url = colab_url(path)
    badge = "https://colab.research.google.com/assets/colab-badge.svg"
    return f'<a href="{url}" target="_parent"><img src="{badge}" alt="Open In Colab"/></a>'


def build(source: Path, variant: str) -> dict:
    """The notebook (as nbformat 4.5 JSON) of one variant of one section."""
    meta, cells = parse(source, variant)
    path = notebook_path(source, variant)
    cells.insert(0, Cell("markdown", f"{colab_badge(path)}\n\n# {meta['title']} ({variant})"))
    notebook_cells = []
    for index, cell in enumerate(cells):
        digest = hashlib.sha1(f"{source.stem}/{variant}/{index}/{cell.source}".encode()).hexdigest()[:12]
        entry = {
            "cell_type": cell.kind,
            "id": f"{index:03d}-{digest}",
            "metadata": {},
            "source": cell.source.splitlines(keepends=True),
        }
        if cell.role:
            entry["metadata"]["course"] = {
                "role": cell.role,
                **({"exercise_ids": list(cell.exercise_ids)} if cell.exercise_ids else {}),
            }
        if cell.kind == "code":
            entry.update(execution_count=None, outputs=[])
        notebook_cells.append(entry)
    return {
        "cells": notebook_cells,
        "metadata": {
            "course": {"section": f"{source.parent.parent.name}/{source.stem}", "variant": variant},
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def colab_url(path: Path) -> str:
    repository = REPOSITORY.removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{repository}/blob/{BRANCH}/{path.relative_to(ROOT).as_posix()}"


def readme_with_table(readme: str) -> str:
    """The README with its table of notebooks (title, exercises, Colab links) rebuilt from the sources."""
    rows = []
    for source in SOURCES:
        meta, cells = parse(source, "exercises")
        ids = [", ".join(f"`{i}`" for i in cell.exercise_ids) for cell in cells if cell.role == "check"]
        links = " · ".join(f"[{variant}]({colab_url(notebook_path(source, variant))})" for variant in VARIANTS)
        chapter = next(chapter for chapter in CHAPTERS if chapter.folder == source.parent.parent.name)
        rows.append(f"| {chapter.number} | {meta['title']} | {', '.join(ids)} | {links} |")
    start, end = "<!-- notebooks-table -->\n", "<!-- end notebooks-table -->"
    before, rest = readme.split(start, 1)
    return before + start + "\n".join(rows) + "\n" + end + rest.split(end, 1)[1]


def render(notebook: dict) -> str:
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a notebook or the README table is out of date")
    args = parser.parse_args(argv)
    stale = []
    outputs = [(notebook_path(s, v), render(build(s, v))) for s in SOURCES for v in VARIANTS]
    readme = ROOT / "README.md"
    outputs.append((readme, readme_with_table(readme.read_text())))
    for path, text in outputs:
        if path.exists() and path.read_text() == text:
            continue
        if args.check:
            stale.append(path.relative_to(ROOT))
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print("out of date (run `make notebooks`):", *stale, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
