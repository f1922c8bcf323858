"""The code is layered, and the layers are kept: a runtime library at the bottom, references above it, tools on top.

* `utils`' runtime library (training loop, sweeps, plots, setup, course facts) imports nothing from `solutions` or
  `tests`: notebooks, references and checks all stand on it;
* `solutions` (the references and their experiments) imports the runtime library only, never `tests` or a tool;
* the tools (`utils.notebooks`, `utils.bench`, `utils.grade`, `utils.grading`, `utils.website`) sit on top and may
  import anything.

Each rule is checked in a fresh interpreter, so that nothing an earlier test imported can hide a violation. And no
module of the project imports another one inside a function, where an import cycle could hide: the only such imports
are the few listed below, each with its reason.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("solutions", "tests", "utils")
TOOLS = ("utils.notebooks", "utils.bench", "utils.grade", "utils.grading", "utils.website")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules_under(*folders: str) -> list[str]:
    return sorted(module_name(path) for folder in folders for path in (ROOT / folder).rglob("*.py"))


RUNTIME = [m for m in modules_under("utils") if not m.startswith(TOOLS)]
SOLUTIONS = modules_under("solutions")


def imported_after(modules: list[str]) -> list[str]:
    """Every project module loaded by importing `modules` in a fresh interpreter."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {PROJECT!r})))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(run.stdout)


def test_the_runtime_library_imports_nothing_from_solutions_or_tests():
    assert len(RUNTIME) >= 8, RUNTIME
    loaded = imported_after(RUNTIME)
    assert [m for m in loaded if m.split(".")[0] in ("solutions", "tests")] == [], loaded


def test_solutions_import_only_the_runtime_library():
    loaded = imported_after(SOLUTIONS)
    assert [m for m in loaded if m.split(".")[0] == "tests" or m.startswith(TOOLS)] == [], loaded


# Function-level imports of project modules, and why each one is there. Anything else is a top-level import.
ALLOWED_LATE_IMPORTS = {
    # the grader's sandboxed child imports the checks only once its sandbox is in place
    ("utils.grading.child", "tests"),
    ("utils.grading.child", "tests.harness"),
    # the setup cell's text (a string in the module) is not an import; verdicts build references on demand, so that
    # the probes' module, which the grader's children import, loads no reference code
    *((module, target) for module in modules_under("tests/tms") for target in SOLUTIONS),
}


@pytest.mark.parametrize("name", [*modules_under("utils", "solutions"), *modules_under("tests/tms")])
def test_project_modules_import_each_other_at_the_top_of_the_file(name):
    path = ROOT / (name.replace(".", "/") + ".py")
    if not path.exists():
        path = ROOT / name.replace(".", "/") / "__init__.py"
    tree = ast.parse(path.read_text())
    top_level = set(map(id, tree.body))
    late = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in top_level:
            targets = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            late += [t for t in targets if t.split(".")[0] in PROJECT and (name, t) not in ALLOWED_LATE_IMPORTS]
    assert late == [], f"{name} imports {late} inside a function: import them at the top of the module"


class NoSolutions:
    """An import hook that refuses `solutions`, as the grader's children (whose references are redacted) would."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "solutions":
            raise ImportError(f"a probe imported {name}: probes must not import solutions")
        return None


@pytest.fixture
def solutions_unimportable(monkeypatch):
    for name in [m for m in sys.modules if m.split(".")[0] == "solutions"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [NoSolutions(), *sys.meta_path])


def probes():
    from tests import EXERCISES

    return [pytest.param(e, id=e.id) for e in EXERCISES.values()]


@pytest.mark.parametrize("exercise", probes())
def test_probes_never_import_solutions(exercise, request):
    from tests.harness import Context, run_probe

    reference = exercise.reference  # the learner's object, built before the hook goes in
    request.getfixturevalue("solutions_unimportable")
    results = run_probe(exercise, reference, Context())
    assert results["status"] == "ok", results.get("message")
