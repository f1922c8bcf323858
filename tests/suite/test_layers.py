"""The code is layered, and the layers are kept: a runtime library at the bottom, references above it, tools on top.

* `utils`' runtime library (training loop, sweeps, plots, setup, course facts) imports nothing from `solutions` or
  `tests`: notebooks, references and checks all stand on it;
* `solutions` (the references and their experiments) imports the runtime library only, never `tests` or a tool;
* the tools (`utils.notebooks`, `utils.bench`, `utils.grade`, `utils.grading`, `utils.website`) sit on top and may
  import anything;
* the checks (`tests` and every chapter's `tests/<chapter>/...`, packages included) import nothing from `solutions`:
  a verdict takes the reference it rebuilds its answer with from its exercise (`tests.harness.reference_of`), so that
  the probes, which the grader runs where references are redacted, cannot reach one by accident.

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
# every chapter's checks (a package under tests/ other than the course's own suite), and the machinery beside them
CHAPTERS = sorted(p.name for p in (ROOT / "tests").iterdir() if (p / "__init__.py").exists() and p.name != "suite")
CHECKS = [
    *(module_name(path) for path in sorted((ROOT / "tests").glob("*.py"))),
    *modules_under(*(f"tests/{chapter}" for chapter in CHAPTERS)),
]


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


def test_every_chapter_has_checks():
    assert CHAPTERS == ["sae", "tms"], CHAPTERS
    assert {"tests.harness", "tests.tms.superposition", "tests.sae.variants.gated"} <= set(CHECKS), CHECKS


def test_the_checks_load_no_reference_code():
    loaded = imported_after(CHECKS)
    assert [m for m in loaded if m.split(".")[0] == "solutions" or m.startswith(TOOLS)] == [], loaded


def imports_of(name: str) -> list[tuple[bool, list[str]]]:
    """Every import statement of a project module: whether it is at the top of the file, and the modules it names."""
    path = ROOT / (name.replace(".", "/") + ".py")
    if not path.exists():
        path = ROOT / name.replace(".", "/") / "__init__.py"
    tree = ast.parse(path.read_text())
    top_level = set(map(id, tree.body))
    return [
        (id(node) in top_level, [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""])
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
    ]


@pytest.mark.parametrize("name", CHECKS)
def test_checks_never_import_solutions(name):
    """Not even inside a verdict: `reference_of(exercise_id)` gives the reference its exercise names."""
    named = [target for _, targets in imports_of(name) for target in targets if target.split(".")[0] == "solutions"]
    assert named == [], f"{name} imports {named}: a verdict takes its reference from `reference_of(exercise_id)`"


# Function-level imports of project modules, and why each one is there. Anything else is a top-level import.
ALLOWED_LATE_IMPORTS = {
    # the grader's sandboxed child imports the checks only once its sandbox is in place
    ("utils.grading.child", "tests"),
    ("utils.grading.child", "tests.harness"),
    # the registry of every exercise imports every section's checks, which import the harness
    ("tests.harness", "tests"),
}


@pytest.mark.parametrize("name", [*modules_under("utils", "solutions"), *CHECKS])
def test_project_modules_import_each_other_at_the_top_of_the_file(name):
    late = []
    for at_top, targets in imports_of(name):
        if not at_top:
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
