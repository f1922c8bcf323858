"""The grader against issue 16: submissions that block it, borrow the checks' answers, patch torch, or write their
notebooks in unusual but valid ways, and what an instructor expects of the outputs.

One grading run (module fixture, assignment = section 1.1 only, to stay fast) covers the submissions; planning
and the pieces that need no child process are tested directly.
"""

from __future__ import annotations

import csv
import json
import os
import re
import time
from pathlib import Path

import pytest

from tests import EXERCISES
from tests.suite.test_grade import SOLUTIONS, cell_with, code, edit, grade, load, processes_mentioning, save
from utils.grading.extract import describe, python_source
from utils.grading.planner import PlanningTimeout, plan_in_child

SECTION = [i for i, exercise in EXERCISES.items() if exercise.probe.__module__ == "tests.tms.superposition"]
TOY_MODEL = {i for i in SECTION if EXERCISES[i].name == "ToyModel"}
STATS = "tms.superposition_stats"
LIMITS = ["--memory-mb", "1536", "--disk-mb", "64", "--sections", "1.1"]


def stats_cell(notebook: dict, source: str) -> dict:
    cell_with(notebook, "def superposition_stats")["source"] = source
    return notebook


def correct_stats_source() -> str:
    return "".join(cell_with(load(SOLUTIONS), "def superposition_stats")["source"])


def build(folder: Path) -> None:
    save(load(SOLUTIONS), folder / "honest.ipynb")

    # defect 1: a FIFO named like a notebook, alone at the top and inside a learner's folder next to a good notebook
    os.mkfifo(folder / "pipe.ipynb")
    (folder / "fifo_learner").mkdir()
    os.mkfifo(folder / "fifo_learner" / "answers.ipynb")
    save(load(SOLUTIONS), folder / "fifo_learner" / "real.ipynb")

    # defect 3: the checks' alternatives, through EXERCISES or imported by module path
    borrow = "from tests import EXERCISES\nsuperposition_stats = EXERCISES['tms.superposition_stats'].alternatives[0]\n"
    save(stats_cell(load(SOLUTIONS), borrow), folder / "borrow_alternative.ipynb")
    alternative = EXERCISES[STATS].alternatives[0]
    by_path = f"from {alternative.__module__} import {alternative.__name__} as superposition_stats\n"
    save(stats_cell(load(SOLUTIONS), by_path), folder / "borrow_by_path.ipynb")

    # defect 4: a wrong forward, plus patches of torch that would make the probe see what the learner wants
    wrong = "F.relu(out + self.b_final)", "F.relu(out)"
    patched = edit(load(SOLUTIONS), "class ToyModel", *wrong)
    edit(patched, "class ToyModel", '    W: Float[Tensor, "inst d_hidden feats"]',
         "    t.Tensor.backward = lambda self, *args, **kwargs: None\n"
         '    W: Float[Tensor, "inst d_hidden feats"]')  # fmt: skip
    save(patched, folder / "patch_backward.ipynb")
    transient = edit(load(SOLUTIONS), "class ToyModel", "        return F.relu(out + self.b_final)",
                     "        original = t.Tensor.backward\n"
                     "        def backward(self, *args, **kwargs):\n"
                     "            t.Tensor.backward = original  # undone before anyone looks\n"
                     "            return original(self, *args, **kwargs)\n"
                     "        t.Tensor.backward = backward\n"
                     "        return F.relu(out)")  # fmt: skip
    save(transient, folder / "patch_backward_and_restore.ipynb")
    patch = "    torch.allclose = lambda *args, **kwargs: True\n    return W.norm(dim=1), W.norm(dim=1)\n"
    allclose = stats_cell(load(SOLUTIONS), "import torch\n\ndef superposition_stats(W):\n" + patch)
    save(allclose, folder / "patch_allclose.ipynb")

    # defect 5: `from __future__ import annotations` in the imports cell, an annotation naming nothing defined
    future = edit(
        load(SOLUTIONS), "import einops", "import einops", "from __future__ import annotations\nimport einops"
    )
    stats_cell(future, correct_stats_source().replace("def superposition_stats(", "def superposition_stats(  # x\n", 1))
    edit(future, "def superposition_stats", "    W: Float[", "    W: NotDefinedAnywhere | Float[")
    save(future, folder / "future_annotations.ipynb")

    # defect 6: every method in the learner's own base class, an earlier cell; ToyModel only inherits them
    inherited = load(SOLUTIONS)
    model = cell_with(inherited, "class ToyModel")
    model["source"] = "".join(model["source"]).replace("class ToyModel(", "class MyToyModelBase(", 1)
    inherited["cells"].insert(inherited["cells"].index(model) + 1, code("class ToyModel(MyToyModelBase):\n    pass\n"))
    save(inherited, folder / "inherited.ipynb")

    # defect 7: cell magics that IPython runs as Python
    timed = stats_cell(load(SOLUTIONS), "%%time\n" + correct_stats_source())
    cell = cell_with(timed, "class ToyModel")
    cell["source"] = "%%capture captured\n" + "".join(cell["source"])
    save(timed, folder / "cell_magics.ipynb")

    # defect 8: memory held in memfds (never mapped), and many files of the size allowed in the work folder
    memfd = (
        "import os\n\ndef superposition_stats(W):\n    fds = []\n    for i in range(40):\n"
        "        fd = os.memfd_create(f'hoard{i}')\n        os.posix_fallocate(fd, 0, 60 * 2**20)\n"
        "        fds.append(fd)\n    return W.norm(dim=1), W.norm(dim=1)\n"
    )  # 2.4 GB of memory pages, never mapped, each file under the 64 MB file-size limit
    save(stats_cell(load(SOLUTIONS), memfd), folder / "memfd_hoard.ipynb")
    disk = (
        "import os\n\ndef superposition_stats(W):\n    for i in range(40):\n"
        "        with open(f'chunk{i}.bin', 'wb') as file:\n"
        "            os.posix_fallocate(file.fileno(), 0, 30 * 2**20)\n"
        "    return W.norm(dim=1), W.norm(dim=1)\n"
    )  # 1.2 GB of disk blocks in the work folder, each file under the limit
    save(stats_cell(load(SOLUTIONS), disk), folder / "disk_hoard.ipynb")

    # a syntax error where the exercise is defined: an error with its line, not "missing"
    broken = correct_stats_source().replace("def superposition_stats(", "def superposition_stats((", 1)
    save(stats_cell(load(SOLUTIONS), broken), folder / "syntax_error.ipynb")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    folder, out = base / "submissions", base / "out"
    folder.mkdir()
    build(folder)
    start = time.monotonic()
    grade(folder, out, *LIMITS)
    seconds = time.monotonic() - start
    assert processes_mentioning(str(base)) == [], "a grading process outlived the grader"
    reports = {json.loads(p.read_text())["submission"]: json.loads(p.read_text()) for p in out.glob("*.json")}
    with open(out / "grades.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    return {"out": out, "json": reports, "csv": rows, "seconds": seconds, "html": (out / "report.html").read_text()}


def statuses(graded: dict, submission: str) -> dict[str, str]:
    return {i: e["status"] for i, e in graded["json"][submission]["exercises"].items()}


def test_honest_notebook_passes_the_assignment(graded):
    assert statuses(graded, "honest.ipynb") == dict.fromkeys(SECTION, "pass")


def test_defect_1_a_fifo_gets_its_row_and_is_never_opened(graded):
    assert set(statuses(graded, "pipe.ipynb").values()) == {"error"}
    assert "FIFO" in graded["json"]["pipe.ipynb"]["exercises"][STATS]["message"]
    learner = graded["json"]["fifo_learner"]
    assert statuses(graded, "fifo_learner") == dict.fromkeys(SECTION, "pass")  # its real notebook still counts
    assert any("answers.ipynb" in note and "FIFO" in note for note in learner["notes"])


def test_defect_3_the_checks_alternatives_earn_nothing(graded):
    for submission in ("borrow_alternative.ipynb", "borrow_by_path.ipynb"):
        report = graded["json"][submission]["exercises"][STATS]
        assert report["status"] != "pass" and report["points"] == 0, report
    # and the notebook/pytest process still has them
    assert EXERCISES[STATS].alternatives and EXERCISES[STATS].mistakes


def test_defect_4_patching_torch_is_tampering_and_earns_nothing(graded):
    for submission in ("patch_backward.ipynb", "patch_backward_and_restore.ipynb"):
        report = graded["json"][submission]["exercises"]
        assert report["tms.forward"]["status"] == "tampered", report["tms.forward"]
        assert report["tms.forward"]["points"] == 0
        assert "backward" in report["tms.forward"]["message"] or "Tensor" in report["tms.forward"]["message"]
    assert statuses(graded, "patch_allclose.ipynb")[STATS] == "tampered"
    assert statuses(graded, "patch_allclose.ipynb")["tms.forward"] == "pass"  # the rest of the notebook counts
    assert "tampered" in graded["html"] and "patch_allclose.ipynb" in graded["html"].split("<h2>Learners")[0]


def test_defect_5_future_annotations_apply_to_later_cells(graded):
    assert statuses(graded, "future_annotations.ipynb") == dict.fromkeys(SECTION, "pass")


def test_defect_6_methods_inherited_from_the_learners_own_base_class(graded):
    assert statuses(graded, "inherited.ipynb") == dict.fromkeys(SECTION, "pass")


def test_defect_7_cell_magics_that_run_python_keep_their_definitions(graded):
    assert statuses(graded, "cell_magics.ipynb") == dict.fromkeys(SECTION, "pass")
    assert python_source("%%time\nx = 1") == "\nx = 1"
    assert python_source("%%capture out\n%%time\nx = 1") == "\n\nx = 1"
    assert python_source("%%bash\nls") == ""


def test_defect_8_memory_and_disk_are_bounded_as_a_whole(graded):
    for submission, what in (("memfd_hoard.ipynb", "memory"), ("disk_hoard.ipynb", "disk")):
        report = graded["json"][submission]["exercises"][STATS]
        assert report["status"] == "error" and "over the limit" in report["message"], report
        assert what in report["message"] or "MB" in report["message"]
        assert statuses(graded, submission)["tms.forward"] == "pass"
    needs_a_look = graded["html"].split("<h2>Learners")[0]
    assert "memfd_hoard.ipynb" in needs_a_look and "disk_hoard.ipynb" in needs_a_look
    assert "honest.ipynb" not in needs_a_look


def test_a_syntax_error_is_an_error_with_its_line(graded):
    report = graded["json"]["syntax_error.ipynb"]["exercises"][STATS]
    assert report["status"] == "error" and re.search(r"line \d+", report["message"]), report


def test_an_assignment_covers_just_its_exercises(graded):
    assert list(graded["csv"][0]) == ["submission", *SECTION, "total"]
    for report in graded["json"].values():
        assert set(report["exercises"]) == set(SECTION)
        assert report["max_total"] == sum(EXERCISES[i].points for i in SECTION)
    row = next(row for row in graded["csv"] if row["submission"] == "honest.ipynb")
    assert int(row["total"]) == sum(EXERCISES[i].points for i in SECTION)


def test_the_report_groups_by_section_and_says_course_notes_once(graded):
    html = graded["html"]
    learners = html.split("<h2>Learners</h2>")[1].split("</table>")[0]
    header = learners.split("</tr>")[0]
    assert header.count("<th") == 3  # submission, total, section 1.1
    assert "class='name'" in header and "class='total'" in header and "position: sticky" in html
    assert all(not any("solutions" in note for note in graded["json"][s]["notes"]) for s in ("honest.ipynb",))


# ------------------------------------------------------------------------------------------------ defect 2


def notebook_of(*sources: str) -> dict:
    return {"cells": [code(source) for source in sources], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def test_defect_2_planning_and_notes_are_linear_in_the_notebook(tmp_path):
    """60,000 chained definitions, and 10,000 decorated functions in one 0.5 MB cell: planned, and every statement
    described, in seconds (quadratic planning never ended; a re-parse per note cost 0.4 s each)."""
    chain = "def f0(W): return W\n" + "".join(f"def f{i}(W): return f{i - 1}(W)\n" for i in range(1, 60_000))
    chain += "def superposition_stats(W): return f59999(W)\n"  # 1.8 MB
    decorated = "".join(f"@undefined_decorator_{i % 7}\ndef g{i}(x):\n    return x + {i}\n" for i in range(10_000))
    decorated += "def ToyModel():\n    return [" + ", ".join(f"g{i}" for i in range(10_000)) + "]\n"
    path = save(notebook_of("import torch", chain, decorated), tmp_path / "big.ipynb")
    start = time.monotonic()
    plan = plan_in_child(path, {"superposition_stats", "ToyModel"}, 120, 4 * 2**30)
    notes = [describe(plan, chunk) for chunk in plan.chunks]
    seconds = time.monotonic() - start
    assert len(plan.chunks) == 1 + 60_001 + 10_001
    assert notes[-1].startswith("cell 3, line") and "def ToyModel" in notes[-1]
    assert seconds < 60, seconds  # about 10 s on a loaded 2-core machine


def test_defect_2_a_huge_notebook_costs_its_own_budget_only(tmp_path):
    """Reading and planning count against the submission's time: a notebook too big to plan in the time left is a
    timeout for that submission, and the grader moves on."""
    cell = "".join(f"x{i} = {i}\n" for i in range(120_000))  # about 1.7 MB, close to the per-cell limit
    path = save(notebook_of(*[cell] * 20), tmp_path / "huge.ipynb")
    start = time.monotonic()
    with pytest.raises(PlanningTimeout):
        plan_in_child(path, {"superposition_stats"}, 1.0, 4 * 2**30)
    assert time.monotonic() - start < 10


def test_every_answer_of_every_check_is_removed_from_the_childrens_copy():
    """Whatever module or package a check lives in, none of its alternative correct implementations reaches the code
    being graded: each is among the functions the children's copy replaces."""
    import inspect

    from utils.grading.runner import ROOT, answers_in_tests

    answers = answers_in_tests()
    left = []
    for exercise in EXERCISES.values():
        for impl in exercise.alternatives:
            relative = str(Path(inspect.getsourcefile(impl)).resolve().relative_to(ROOT))
            if impl.__name__ not in answers.get(relative, set()):
                left.append(f"{exercise.id}: {relative}:{impl.__name__}")
    assert not left, "answers the children could still import:\n" + "\n".join(left)
