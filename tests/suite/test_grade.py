"""The grader, end to end: `python -m utils.grade` on a folder of fixture submissions built here from the real
generated notebooks, honest ones and hostile ones, and what must hold whatever they contain.

One grading run (module fixture) covers most submissions; the sandbox layers are then tested one at a time
with the same vandal submission. Every fixture is text written into tmp_path: no binary blobs.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import EXERCISES
from utils.grade import display_name
from utils.grading.extract import code_cells, plan_notebook, python_source

ROOT = Path(__file__).resolve().parents[2]
SOLUTIONS = ROOT / "chapter_tms" / "1_superposition_solutions.ipynb"
STUBS = ROOT / "chapter_tms" / "1_superposition_exercises.ipynb"
BUDGETS = ["--cell-timeout", "3", "--exercise-timeout", "5", "--memory-mb", "1536", "--workers", "2"]


# ------------------------------------------------------------------------------------------ notebooks


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def code(source: str) -> dict:
    return {"cell_type": "code", "metadata": {}, "source": source, "outputs": [], "execution_count": None}


def cell_with(notebook: dict, text: str) -> dict:
    """The last code cell whose source contains `text`."""
    found = [c for c in notebook["cells"] if c["cell_type"] == "code" and text in "".join(c["source"])]
    assert found, f"no code cell contains {text!r}: did the notebooks change?"
    return found[-1]


def edit(notebook: dict, text: str, old: str, new: str) -> dict:
    """Replace `old` by `new` in the cell containing `text` (failing loudly if `old` is not there)."""
    cell = cell_with(notebook, text)
    source = "".join(cell["source"])
    assert old in source, f"{old!r} not found in the cell defining {text!r}"
    cell["source"] = source.replace(old, new, 1)
    return notebook


def save(notebook: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(notebook))
    return path


def defined_in(notebook_path: Path) -> set[str]:
    """Exercise ids whose symbol (and, for a method exercise, method) the notebook defines: what a perfect grade of
    it covers."""
    source = "\n".join("".join(c["source"]) for c in load(notebook_path)["cells"] if c["cell_type"] == "code")
    return {
        i
        for i, ex in EXERCISES.items()
        if re.search(rf"^(class|def) {ex.name}\b", source, re.M)
        and (ex.method is None or re.search(rf"^\s+def {ex.method}\(", source, re.M))
    }


TOY_MODEL = {i for i, ex in EXERCISES.items() if ex.reference_path == "solutions.tms.superposition:ToyModel"}
STATS = "tms.superposition_stats"
VANDAL = """
import os, shutil, signal, socket, subprocess, ctypes

def _attempt(outcomes, name, action):
    try:
        action()
        outcomes[name] = "DONE"
    except BaseException as error:
        outcomes[name] = "blocked:" + type(error).__name__

def _require(ok):
    if not ok:
        raise OSError("refused")

def _fork():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)

class _Sly:  # a path that names the canary the first time it is asked, and a harmless file afterwards
    calls = 0

    def __fspath__(self):
        _Sly.calls += 1
        return {canary!r} if _Sly.calls == 1 else "harmless.txt"

def superposition_stats(W):
    outcomes = {{}}
    _attempt(outcomes, "write_canary", lambda: open({canary!r}, "w").write("pwned"))
    _attempt(outcomes, "write_canary_through_a_path_object", lambda: open(_Sly(), "w").write("pwned"))
    _attempt(outcomes, "remove_canary", lambda: os.remove({canary2!r}))
    _attempt(outcomes, "rename_canary", lambda: os.rename({canary3!r}, {canary3!r} + ".moved"))
    _attempt(outcomes, "rmtree_tests_copy", lambda: shutil.rmtree({tests_copy!r}))
    _attempt(outcomes, "write_out", lambda: open(os.path.join({out!r}, "grades.csv"), "w").write("pwned"))
    _attempt(outcomes, "overwrite_submission", lambda: open({other!r}, "w").write("pwned"))
    _attempt(outcomes, "read_submission", lambda: open({other!r}).read())
    _attempt(outcomes, "read_solutions", lambda: open({solutions!r}).read())
    _attempt(outcomes, "read_etc_passwd", lambda: open("/etc/passwd").read())
    _attempt(outcomes, "system", lambda: _require(os.system("rm -f " + {canary!r}) == 0))
    _attempt(outcomes, "subprocess", lambda: subprocess.run(["rm", "-f", {canary!r}], check=True))
    _attempt(outcomes, "kill_victim", lambda: os.kill({victim}, signal.SIGKILL))
    _attempt(outcomes, "connect", lambda: socket.create_connection(("127.0.0.1", {port}), timeout=2).sendall(b"x"))
    _attempt(outcomes, "ctypes_unlink", lambda: _require(ctypes.CDLL(None).unlink({canary2!r}.encode()) == 0))
    _attempt(outcomes, "fork", _fork)
    _attempt(outcomes, "scratch_file_in_work_folder", lambda: open("scratch.txt", "w").write("fine"))
    raise RuntimeError("VANDAL " + " ".join(k + "=" + v for k, v in outcomes.items()))
"""


class Targets:
    """What a vandal aims at: canary files, a copy of tests/, another submission, a process, a TCP port."""

    def __init__(self, base: Path, other: Path, out: Path):
        base.mkdir(parents=True, exist_ok=True)
        self.canaries = [base / f"canary{i}.txt" for i in range(3)]
        for canary in self.canaries:
            canary.write_text("alive")
        self.tests_copy = base / "tests_copy"
        shutil.copytree(ROOT / "tests", self.tests_copy, ignore=shutil.ignore_patterns("__pycache__"))
        self.other, self.other_text, self.out = other, other.read_text(), out
        self.victim = subprocess.Popen(["sleep", "300"])
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setblocking(False)

    def vandal(self, notebook: dict) -> dict:
        source = VANDAL.format(
            canary=str(self.canaries[0]), canary2=str(self.canaries[1]), canary3=str(self.canaries[2]),
            tests_copy=str(self.tests_copy), out=str(self.out), other=str(self.other),
            solutions=str(ROOT / "solutions" / "tms" / "superposition.py"), victim=self.victim.pid,
            port=self.listener.getsockname()[1],
        )  # fmt: skip
        cell_with(notebook, "def superposition_stats")["source"] = source
        return notebook

    def assert_intact(self) -> None:
        assert [c.read_text() for c in self.canaries] == ["alive"] * 3
        assert (self.tests_copy / "harness.py").read_text() == (ROOT / "tests" / "harness.py").read_text()
        assert self.other.read_text() == self.other_text
        assert self.victim.poll() is None, "the vandal killed a process outside its sandbox"
        with pytest.raises(BlockingIOError):
            self.listener.accept()

    def close(self) -> None:
        self.victim.kill()
        self.victim.wait()
        self.listener.close()


# ----------------------------------------------------------------------------------------- submissions


def build_submissions(folder: Path, out: Path, targets_dir: Path) -> Targets:
    """Write every fixture submission into `folder`."""
    save(load(SOLUTIONS), folder / "solutions.ipynb")
    save(load(STUBS), folder / "exercises.ipynb")
    save(
        edit(load(SOLUTIONS), "class ToyModel", "F.relu(out + self.b_final)", "F.relu(out)"),
        folder / "partially_wrong.ipynb",
    )
    (folder / "invalid.ipynb").write_text('{"cells": [ this is not json')
    (folder / "notes.txt").write_text("my answers are in my head")
    (folder / "empty_folder").mkdir()
    other = {"cells": [code("def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)\n"),
                       code("print(fibonacci(10))")], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}  # fmt: skip
    save(other, folder / "other_course.ipynb")

    # renamed, metadata lost, magics, a cell that does not parse, training and an endless loop at top level
    # (never executed), and megabytes printed while defining the class and inside forward: all must pass
    messy = load(SOLUTIONS)
    messy["metadata"] = {}
    for cell in messy["cells"]:
        cell["metadata"] = {}
    edit(messy, "import einops", "import einops", "%pip install einops\n!ls\nimport einops")
    edit(messy, "class ToyModel", '    W: Float[Tensor, "inst d_hidden feats"]',
         '    print("x" * 20_000_000)\n    W: Float[Tensor, "inst d_hidden feats"]')  # fmt: skip
    edit(messy, "class ToyModel", "        return F.relu(out + self.b_final)",
         '        print("y" * 1_000_000)\n        return F.relu(out + self.b_final)')  # fmt: skip
    messy["cells"] += [
        code("def broken(:\n    pass"),
        code("t = 0.5  # the learner reuses `t` once every check has passed"),
        code("model = ToyModel(ToyModelConfig(n_inst=2))\nmodel.optimize(steps=10**9)"),
        code("while True:\n    pass"),
    ]
    save(messy, folder / "Copy of my work (final) v2.ipynb")

    # the stub cell pasted again after the solved one: the last definition wins, as in a notebook run
    duplicated = load(SOLUTIONS)
    solved = cell_with(duplicated, "class ToyModel")
    stub = json.loads(json.dumps(cell_with(load(STUBS), "class ToyModel")))
    duplicated["cells"].insert(duplicated["cells"].index(solved) + 1, stub)
    save(duplicated, folder / "duplicated.ipynb")

    save(edit(load(SOLUTIONS), "class ToyModel", '    W: Float[Tensor, "inst d_hidden feats"]',
              '    while True:\n        pass\n    W: Float[Tensor, "inst d_hidden feats"]'),
         folder / "hangs_defining_class.ipynb")  # fmt: skip
    hog = edit(load(SOLUTIONS), "class ToyModel", "        hidden = einops.einsum(features",
               "        while True:\n            pass\n        hidden = einops.einsum(features")  # fmt: skip
    # 1 GiB a step: over the memory limit at the second, long before the exercise's time limit under load
    edit(hog, "class ToyModel", "    def generate_batch(self, batch_size: int)",
         "    def generate_batch(self, batch_size: int):\n"
         "        hog = []\n        while True:\n            hog.append(t.ones(2**28))\n"
         "    def _unused(self, batch_size: int)")  # fmt: skip
    save(hog, folder / "hangs_in_forward_hogs_memory.ipynb")

    crash = edit(load(SOLUTIONS), "class ToyModel", "        hidden = einops.einsum(features",
                 "        import faulthandler\n        faulthandler._read_null()\n"
                 "        hidden = einops.einsum(features")  # fmt: skip
    exits = "    def generate_batch(self, batch_size):\n        raise SystemExit(3)\n\n    def calculate_loss("
    edit(crash, "class ToyModel", "    def calculate_loss(", exits)
    save(crash, folder / "crashes_and_exits.ipynb")

    evil = edit(load(SOLUTIONS), "class ToyModel", '    W: Float[Tensor, "inst d_hidden feats"]',
                "    raise ValueError(\"<script>alert('pwned')</script> \\udce9\")")  # fmt: skip
    save(evil, folder / "=SUM(1+1) <img src=x onerror=alert(1)>.ipynb")
    save(load(SOLUTIONS), folder / os.fsdecode(b"caf\xe9 (not UTF-8).ipynb"))

    # monkeypatching the checker, torch and the verdicts inside the child, with a wrong forward
    patch = edit(load(SOLUTIONS), "class ToyModel", "F.relu(out + self.b_final)", "F.relu(out)")
    edit(patch, "class ToyModel", '    W: Float[Tensor, "inst d_hidden feats"]',
         "    import tests, tests.harness, torch\n"
         "    tests.check = lambda *args, **kwargs: None\n"
         "    tests.harness.judge = lambda *args, **kwargs: None\n"
         "    tests.harness.expect_close = lambda *args, **kwargs: None\n"
         "    torch.allclose = lambda *args, **kwargs: True\n"
         "    torch.testing.assert_close = lambda *args, **kwargs: None\n"
         "    for _exercise in tests.EXERCISES.values():\n"
         "        _exercise.verdict = lambda results, context: None\n"
         '    W: Float[Tensor, "inst d_hidden feats"]')  # fmt: skip
    save(patch, folder / "tamper_patch.ipynb")

    # a forward that writes a forged "pass" result on every pipe it can find, and then answers wrongly
    forge = edit(load(SOLUTIONS), "class ToyModel", "        return F.relu(out + self.b_final)",
                 "        import os, json, stat\n"
                 "        from tests.harness import encode_results\n"
                 "        frame = json.dumps({'event': 'result', 'id': 'tms.forward'}).encode() + b'\\n'\n"
                 "        frame += encode_results({'status': 'ok', 'out': out})\n"
                 "        for fd in range(3, 64):\n"
                 "            try:\n"
                 "                if stat.S_ISFIFO(os.fstat(fd).st_mode):\n"
                 "                    os.write(fd, len(frame).to_bytes(8, 'little') + frame)\n"
                 "            except OSError:\n"
                 "                pass\n"
                 "        return F.relu(out)")  # fmt: skip
    save(forge, folder / "tamper_forge.ipynb")

    steal = load(SOLUTIONS)
    cell_with(steal, "class ToyModel")["source"] = "from solutions.tms import ToyModel"
    cell_with(steal, "def superposition_stats")["source"] = (
        "def superposition_stats(W):\n"
        "    import sys\n"
        f"    sys.path.insert(0, {str(ROOT)!r})\n"
        "    namespace = {}\n"
        f"    exec(open({str(ROOT / 'solutions' / 'tms' / 'superposition.py')!r}).read(), namespace)\n"
        "    return namespace['superposition_stats'](W)\n"
    )
    save(steal, folder / "steal.ipynb")

    # a folder with two notebooks (stubs, and a wrong forward) and an old checkpoint that must be ignored
    save(load(STUBS), folder / "two_notebooks" / "part1.ipynb")
    save(edit(load(SOLUTIONS), "class ToyModel", "F.relu(out + self.b_final)", "F.relu(out)"),
         folder / "two_notebooks" / "later" / "part1 (1).ipynb")  # fmt: skip
    save(load(SOLUTIONS), folder / "two_notebooks" / ".ipynb_checkpoints" / "part1-checkpoint.ipynb")

    targets = Targets(targets_dir, other=folder / "solutions.ipynb", out=out)
    save(targets.vandal(load(SOLUTIONS)), folder / "vandal.ipynb")
    return targets


def grade(folder: Path, out: Path, *options: str, wait: bool = True):
    """Run the CLI with its temporary files under `folder`'s parent, so that its processes can be found."""
    command = [sys.executable, "-m", "utils.grade", str(folder), "--out", str(out), *BUDGETS, *options]
    scratch = folder.parent / "tmp"
    scratch.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(scratch)}
    if not wait:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def processes_mentioning(text: str) -> list[int]:
    """Processes whose command line contains `text` (the grader's fork server names its temporary folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("grading")
    folder, out = base / "submissions", base / "out"
    folder.mkdir()
    targets = build_submissions(folder, out, base / "targets")
    try:
        grade(folder, out)
        targets.assert_intact()
    finally:
        targets.close()
    assert processes_mentioning(str(base)) == [], "a grading process outlived the grader"
    reports = {json.loads(p.read_text())["submission"]: json.loads(p.read_text()) for p in out.glob("*.json")}
    with open(out / "grades.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    return {"folder": folder, "out": out, "json": reports, "csv": rows}


def statuses(graded: dict, submission: str) -> dict[str, str]:
    return {i: e["status"] for i, e in graded["json"][submission]["exercises"].items()}


# ------------------------------------------------------------------------------------------ the tests


def test_every_submission_gets_a_row_and_a_json_file(graded):
    entries = sorted(display_name(p.name) for p in graded["folder"].iterdir() if not p.name.startswith("."))
    assert sorted(row["submission"].removeprefix("'") for row in graded["csv"]) == entries
    assert sorted(graded["json"]) == entries
    assert list(graded["csv"][0]) == ["submission", *EXERCISES, "total"]
    for row in graded["csv"]:
        assert int(row["total"]) == sum(int(row[i]) for i in EXERCISES)
    assert (graded["out"] / "report.html").stat().st_size > 0


def test_solutions_pass_and_stubs_are_not_implemented(graded):
    expected = defined_in(SOLUTIONS)
    assert expected >= TOY_MODEL
    not_utf8 = "caf\ufffd (not UTF-8).ipynb"
    for submission, status in [("solutions.ipynb", "pass"), ("exercises.ipynb", "not_implemented"), (not_utf8, "pass")]:
        got = statuses(graded, submission)
        assert got == {i: status if i in expected else "missing" for i in EXERCISES}, graded["json"][submission]
    row = next(row for row in graded["csv"] if row["submission"] == "solutions.ipynb")
    assert int(row["total"]) == sum(EXERCISES[i].points for i in expected)


def test_a_wrong_forward_fails_with_its_hint_and_the_rest_passes(graded):
    report = graded["json"]["partially_wrong.ipynb"]["exercises"]
    assert report["tms.forward"]["status"] == "fail" and "b_final" in report["tms.forward"]["message"]
    assert report["tms.forward"]["points"] == 0
    assert all(report[i]["status"] == "pass" for i in defined_in(SOLUTIONS) - {"tms.forward"})


def test_unreadable_and_foreign_submissions_get_rows_of_missing(graded):
    for submission, note in [("invalid.ipynb", "not valid notebook JSON"), ("notes.txt", "not a .ipynb"),
                             ("empty_folder", "no .ipynb"), ("other_course.ipynb", None)]:  # fmt: skip
        assert set(statuses(graded, submission).values()) == {"missing"}
        if note:
            assert note in " ".join(graded["json"][submission]["notes"])


def test_renamed_notebook_without_metadata_with_magics_and_noise_passes(graded):
    submission = "Copy of my work (final) v2.ipynb"
    assert statuses(graded, submission) == statuses(graded, "solutions.ipynb")
    assert any("does not parse" in note for note in graded["json"][submission]["notes"])


def test_the_last_definition_wins(graded):
    got = statuses(graded, "duplicated.ipynb")
    assert {got[i] for i in TOY_MODEL} == {"not_implemented"}
    assert got[STATS] == statuses(graded, "solutions.ipynb")[STATS]


def test_hanging_and_memory_hungry_code_times_out_or_errors_without_stopping_the_rest(graded):
    got = statuses(graded, "hangs_defining_class.ipynb")
    assert {got[i] for i in TOY_MODEL} == {"timeout"}
    assert got[STATS] == "pass"
    assert any("skipped, still running" in note for note in graded["json"]["hangs_defining_class.ipynb"]["notes"])
    report = graded["json"]["hangs_in_forward_hogs_memory.ipynb"]["exercises"]
    assert report["tms.forward"]["status"] == "timeout"
    assert report["tms.generate_batch"]["status"] == "error"
    assert "memory" in report["tms.generate_batch"]["message"].lower()
    assert report["tms.calculate_loss"]["status"] == report[STATS]["status"] == "pass"


def test_a_crash_or_an_exit_in_one_exercise_leaves_the_others_graded(graded):
    report = graded["json"]["crashes_and_exits.ipynb"]["exercises"]
    assert report["tms.forward"]["status"] == "error" and "SIGSEGV" in report["tms.forward"]["message"]
    assert (
        report["tms.generate_batch"]["status"] == "error" and "SystemExit: 3" in report["tms.generate_batch"]["message"]
    )
    assert report["tms.calculate_loss"]["status"] == report[STATS]["status"] == "pass"


def test_learner_controlled_text_is_escaped_and_defused(graded):
    name = "=SUM(1+1) <img src=x onerror=alert(1)>.ipynb"
    report = graded["json"][name]["exercises"]
    assert {report[i]["status"] for i in TOY_MODEL} == {"error"}
    assert "<script>" in report["tms.forward"]["message"]
    html = (graded["out"] / "report.html").read_text()
    assert "<script" not in html and "<img" not in html and "&lt;img src=x" in html
    assert any(row["submission"] == "'" + name for row in graded["csv"])
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+\.json", p.name) for p in graded["out"].glob("*.json"))


def test_tampering_inside_the_child_earns_nothing_for_wrong_code(graded):
    report = graded["json"]["tamper_forge.ipynb"]["exercises"]
    assert report["tms.forward"]["points"] == 0 and report["tms.forward"]["status"] in ("fail", "error")
    # the rest of the submission still counts (until the grader stopped running the notebook's training cells,
    # whose every forward call forged frames too, an innocent exercise could lose its points under load)
    assert {report[i]["status"] for i in TOY_MODEL - {"tms.forward"}} == {"pass"}, report
    # patching `tests` and `torch` while defining ToyModel is tampering (the grading contract): that class earns nothing
    report = graded["json"]["tamper_patch.ipynb"]["exercises"]
    assert {(report[i]["status"], report[i]["points"]) for i in TOY_MODEL} == {("tampered", 0)}, report
    assert "tests.check" in report["tms.forward"]["message"]


def test_solutions_cannot_be_imported_or_read(graded):
    report = graded["json"]["steal.ipynb"]
    assert report["total"] == 0, report
    assert any("imports from `solutions`" in note for note in report["notes"])


def test_a_folder_is_graded_on_its_best_notebook_and_checkpoints_are_ignored(graded):
    report = graded["json"]["two_notebooks"]["exercises"]
    assert report["tms.forward"]["status"] == "fail"  # not "pass" from the checkpoint
    assert report["tms.forward"]["notebook"] == str(Path("later") / "part1 (1).ipynb")
    assert report["tms.generate_batch"]["status"] == "pass"


def vandal_outcomes(message: str) -> dict[str, str]:
    match = re.search(r"VANDAL (.*)", message)
    assert match, message
    return dict(item.split("=", 1) for item in match.group(1).split())


def test_the_vandal_is_contained_with_every_layer(graded):
    report = graded["json"]["vandal.ipynb"]
    outcomes = vandal_outcomes(report["exercises"][STATS]["message"])
    assert outcomes.pop("scratch_file_in_work_folder") == "DONE"
    assert all(v.startswith("blocked") for v in outcomes.values()), outcomes
    assert {report["exercises"][i]["status"] for i in TOY_MODEL} == {"pass"}
    assert (graded["out"] / "grades.csv").read_text().startswith("submission,")


def test_each_protection_layer_alone_contains_the_vandal(tmp_path):
    """Only the audit hook (portable), or only Landlock (Linux kernel): the vandal still does no harm.

    Both gradings run at once, which also shows that two grading runs do not interfere.
    """
    from utils.grading.sandbox import landlock_abi

    alone = {"audit_hook": ["--no-landlock", "--no-namespaces"], "landlock": ["--no-audit-hook", "--no-namespaces"]}
    if landlock_abi() < 6:
        del alone["landlock"]  # without signal scoping (Linux 6.12) Landlock alone cannot protect other processes
    runs = {}
    for layer, options in alone.items():
        folder, out = tmp_path / layer / "submissions", tmp_path / layer / "out"
        save(load(STUBS), folder / "other.ipynb")
        targets = Targets(tmp_path / layer / "targets", other=folder / "other.ipynb", out=out)
        save(targets.vandal(load(SOLUTIONS)), folder / "vandal.ipynb")
        runs[layer] = (targets, out, grade(folder, out, *options, wait=False))
    for layer, (targets, out, process) in runs.items():
        try:
            assert process.wait(timeout=300) == 0
            targets.assert_intact()
        finally:
            targets.close()
        report = json.loads((out / "vandal.ipynb.json").read_text())
        outcomes = vandal_outcomes(report["exercises"][STATS]["message"])
        assert outcomes.pop("scratch_file_in_work_folder") == "DONE"
        if layer == "landlock":
            outcomes.pop("fork")  # only the audit hook refuses to fork; the forked process is contained all the same
        assert all(v.startswith("blocked") for v in outcomes.values()), (layer, outcomes)
        assert ("audit-hook" in report["sandbox"]) == (layer == "audit_hook")
        assert any(applied.startswith("landlock") for applied in report["sandbox"]) == (layer == "landlock")


# ------------------------------------------------------------------------------------- the extraction


def cells_of(*sources: str) -> list[tuple[int, str]]:
    return list(enumerate(sources))


def test_extraction_keeps_imports_and_needed_definitions_only():
    cells = cells_of(
        "import torch as t\nx = t.zeros(3)",
        "SCALE = 2.0\nUNUSED = t.ones(10**9)",
        "def helper(v):\n    return v * SCALE",
        "def answer(v):\n    return helper(v)",
        "answer(x)\nfor step in range(10**9):\n    pass",
        "def answer(v):\n    return helper(v) + 1",
    )
    plan = plan_notebook(cells, {"answer", "missing_symbol"})
    assert plan.chunks == [(0, 0), (1, 0), (2, 0), (3, 0), (5, 0)]  # x, UNUSED, the call and the loop never run
    assert plan.binders == {"answer": [(3, 0), (5, 0)]}


def test_local_variables_do_not_pull_in_globals_of_the_same_name():
    # The solutions notebooks have `sweep = train_sweep(...)` and `norms = ...` cells, and exercises with local
    # variables of those names: only the globals an exercise really reads may run, never the training.
    cells = cells_of(
        "import torch as t\nsweep = train_for_minutes()\nnorms = sweep.W.norm()\nK = 3",
        "class Model:\n    def stats(self, W):\n        norms = W.norm(dim=1)\n        return [n * K for n in norms]",
        "def helper(sweep):\n    return sweep",
        "def answer(v):\n    def inner(norms):\n        return helper(norms)\n    return inner(v)",
    )
    plan = plan_notebook(cells, {"Model", "answer"})
    assert plan.chunks == [(0, 0), (0, 3), (1, 0), (2, 0), (3, 0)]  # the training and `norms` never run


def test_a_method_filled_in_the_arena_way_is_extracted_with_what_it_uses():
    """ARENA writes a method as a function and assigns it to the class afterwards (`ToySAE.resample_simple = ...`):
    the assignment binds no name, but the class is not complete without it."""
    cells = cells_of(
        "import torch as t\nfrom solutions.sae import toy_sae",
        "class ToySAE(toy_sae.ToySAE):\n    pass",
        "SCALE = 0.5\nsae = ToySAE.train_for_minutes()",
        "def resample_simple(self, frac_active_in_window, resample_scale):\n    return SCALE",
        "ToySAE.resample_simple = resample_simple\nsae.optimize(resample_method='simple')",
    )
    plan = plan_notebook(cells, {"ToySAE"})
    assert plan.chunks == [(0, 0), (0, 1), (1, 0), (2, 0), (3, 0), (4, 0)]  # never the training
    assert plan.members == {"ToySAE": {"resample_simple"}}


def test_names_reused_after_the_last_exercise_do_not_change_what_is_graded():
    cells = cells_of(
        "import torch as t",
        "def answer(v):\n    return t.relu(helper(v))",
        "t = 0.5  # a time step, much later\nimport numpy as t",
        "def helper(v):\n    return v",
    )
    assert plan_notebook(cells, {"answer"}).chunks == [(0, 0), (1, 0), (3, 0)]


def test_extraction_survives_magics_syntax_errors_and_junk(tmp_path):
    assert python_source("%pip install x\n  !ls\nimport os") == "pass\n  pass\nimport os"
    assert python_source("%%time\nx = 1") == "\nx = 1"  # IPython runs its body, as Python
    plan = plan_notebook(cells_of("%matplotlib inline\nimport os", "def f(:\n", "def g():\n    return os"), {"g"})
    assert plan.chunks == [(0, 1), (2, 0)]
    assert any("cell 2" in note and "does not parse" in note for note in plan.notes)
    notebook = tmp_path / "nb.ipynb"
    notebook.write_text(json.dumps({"cells": [code(["def g():\n", "    return 1\n"]), {"cell_type": "code"}, 7]}))
    assert code_cells(notebook) == [(0, "def g():\n    return 1\n"), (1, "")]


def test_killing_the_grader_leaves_no_process_behind(tmp_path):
    folder = tmp_path / "submissions"
    save(
        edit(
            load(SOLUTIONS),
            "class ToyModel",
            "        hidden = einops.einsum(features",
            "        while True:\n            pass\n        hidden = einops.einsum(features",
        ),
        folder / "hang.ipynb",
    )
    process = grade(folder, tmp_path / "out", wait=False)
    deadline = time.monotonic() + 60
    while len(processes_mentioning(str(tmp_path))) < 3 and time.monotonic() < deadline:  # grader, server, child
        time.sleep(0.2)
    assert len(processes_mentioning(str(tmp_path))) >= 3
    process.kill()
    process.wait()
    deadline = time.monotonic() + 10
    while processes_mentioning(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_mentioning(str(tmp_path)) == []


def test_every_solutions_notebook_of_the_course_grades_as_all_pass(tmp_path):
    """A learner folder holding every solutions notebook passes every exercise: sections whose classes subclass an
    earlier section's reference (NeuronModel is a ToyModel) must survive the grader's redaction of references."""
    folder, out = tmp_path / "submissions", tmp_path / "out"
    learner = folder / "complete"
    learner.mkdir(parents=True)
    for path in sorted(ROOT.glob("chapter_*/*_solutions.ipynb")):
        shutil.copy(path, learner / path.name)
    grade(folder, out)
    report = json.loads(next(out.glob("*.json")).read_text())
    failing = {i: (e["status"], e["message"][:200]) for i, e in report["exercises"].items() if e["status"] != "pass"}
    assert not failing, failing
