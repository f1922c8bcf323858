"""Notebooks are build artefacts: in sync with their sources, well formed, and runnable top to bottom."""

import ast
import json
import os
import re
import time

import nbformat
import pytest
from nbclient import NotebookClient

from tests import EXERCISES
from utils import notebooks

NOTEBOOKS = [notebooks.notebook_path(source, variant) for source in notebooks.SOURCES for variant in notebooks.VARIANTS]


def run_notebook(path, allow_errors: bool) -> tuple[nbformat.NotebookNode, float]:
    notebook = nbformat.read(path, as_version=4)
    os.environ.update(TQDM_DISABLE="1", COURSE_HEADLESS="1")
    start = time.perf_counter()
    NotebookClient(
        notebook, timeout=600, allow_errors=allow_errors, resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    return notebook, time.perf_counter() - start


def errors(notebook) -> list[tuple[int, str, str]]:
    return [
        (index, output["ename"], output["evalue"])
        for index, cell in enumerate(notebook.cells)
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]


def test_committed_notebooks_match_their_sources():
    assert notebooks.main(["--check"]) == 0, "run `make notebooks` and commit the result"


def test_every_notebook_is_valid_nbformat_without_outputs():
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), path


def test_every_exercise_appears_once_with_header_hints_check_and_solution():
    texts = {path: path.read_text() for path in NOTEBOOKS}
    for exercise in EXERCISES.values():
        exercise_notebooks = [
            p for p in NOTEBOOKS if p.stem.endswith("exercises") and f"Exercise `{exercise.id}`" in texts[p]
        ]
        assert len(exercise_notebooks) == 1, f"{exercise.id} should be in exactly one exercises notebook"
        cells = json.loads(texts[exercise_notebooks[0]])["cells"]
        header = next(i for i, c in enumerate(cells) if f"Exercise `{exercise.id}`" in "".join(c["source"]))
        header_text = "".join(cells[header]["source"])
        assert "Difficulty" in header_text and "Importance" in header_text and "minutes" in header_text
        cell = f'check("{exercise.id}", {", ".join(exercise.names)})'
        checks = [i for i, c in enumerate(cells) if "".join(c["source"]) == cell]
        assert len(checks) == 1 and checks[0] > header, f"{exercise.id}: one check cell after the header"
        between = "".join("".join(c["source"]) for c in cells[header : checks[0] + 2])
        assert "<summary>Hint" in between, f"{exercise.id} has no hint between its header and its check"
        assert "<summary>Solution</summary>" in "".join("".join(c["source"]) for c in cells[checks[0] :]), exercise.id


def test_exercise_cells_hold_stubs_and_solution_cells_hold_the_reference():
    for source in notebooks.SOURCES:
        exercises = json.loads(notebooks.notebook_path(source, "exercises").read_text())["cells"]
        solutions = json.loads(notebooks.notebook_path(source, "solutions").read_text())["cells"]
        stubbed = "".join(
            "".join(c["source"]) for c in exercises if c["metadata"].get("course", {}).get("role") == "exercise"
        )
        complete = "".join(
            "".join(c["source"]) for c in solutions if c["metadata"].get("course", {}).get("role") == "exercise"
        )
        for exercise_id in re.findall(r'check\("([^"]+)"', "".join("".join(c["source"]) for c in exercises)):
            assert f'raise NotImplementedError("{exercise_id}: not implemented yet")' in stubbed
            assert f'raise NotImplementedError("{exercise_id}' not in complete


def code_cells(path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def has_exercises(path) -> bool:
    cells = json.loads(path.read_text())["cells"]
    return any(cell["metadata"].get("course", {}).get("role") == "check" for cell in cells)


WITH_EXERCISES = [p for p in NOTEBOOKS if p.stem.endswith("exercises") and has_exercises(p)]


def test_a_section_without_exercises_has_the_same_code_in_both_notebooks():
    """Its exercises notebook has nothing to stub, so running it would only repeat the solutions notebook."""
    for path in NOTEBOOKS:
        if path.stem.endswith("exercises") and not has_exercises(path):
            solutions = path.with_name(path.name.replace("_exercises", "_solutions"))
            assert code_cells(path) == code_cells(solutions), path


@pytest.mark.slow
@pytest.mark.parametrize("path", WITH_EXERCISES, ids=lambda p: p.stem)
def test_exercises_notebook_fails_only_at_stubs(path):
    notebook, _ = run_notebook(path, allow_errors=True)
    found = errors(notebook)
    assert found, "an exercises notebook full of stubs should raise somewhere"
    # A cell that stopped at a stub leaves its results undefined; a later cell using them fails with a NameError
    # for exactly those names, which is the stub's fault too.
    unbound = {
        node.id
        for i, ename, _ in found
        if ename in {"NotImplementedYet", "NotImplementedError"}
        for node in ast.walk(ast.parse(notebook.cells[i].source))
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)
    }
    cascade = {f"name '{name}' is not defined" for name in unbound}
    found = [(i, name, value) for i, name, value in found if not (name == "NameError" and value in cascade)]
    wrong = [(i, name, value) for i, name, value in found if name not in {"NotImplementedYet", "NotImplementedError"}]
    assert not wrong, f"cells failing for another reason than a stub: {wrong}"
    failed_checks = {value.split(":")[0] for _, name, value in found if name == "NotImplementedYet"}
    expected = set(re.findall(r'check\("([^"]+)"', "".join(cell.source for cell in notebook.cells)))
    assert failed_checks == expected, f"every check should report 'not implemented yet': {expected - failed_checks}"


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.stem.endswith("solutions")], ids=lambda p: p.stem)
def test_solutions_notebook_runs_without_error(path):
    notebook, seconds = run_notebook(path, allow_errors=False)
    assert not errors(notebook)
    print(f"{path.name} executed in {seconds:.0f} s")
