"""Grading one notebook, from the grader's side: plan, run children within budgets, judge what they send.

The grader process never runs learner code. For each notebook it asks the fork server for a child that runs
the kept statements (see `extract`) and then every exercise's probe, and follows it step by step:

* a statement that runs past the cell budget, crashes the interpreter or interferes with the channel is
  dropped, and a fresh child starts without it (the exercises it defined then report "timeout" or "error");
* an exercise whose probe runs past the exercise budget is reported as "timeout", and a fresh child carries on
  with the exercises after it;
* a submission has a budget too, after which whatever is left is reported as "timeout"; reading and planning
  the notebook count against it (`planner`);
* a statement or probe that changes what the probes rely on (torch, numpy, the course's modules; see `guard`)
  is reported by the child at once: its exercises get the status "tampered" and no points;
* a child that holds more memory or disk than allowed, however it allocates, is stopped ("error", and the
  report lists the submission as having hit a limit).

Every restart either drops a statement or settles an exercise, so grading a notebook always ends. Results are
decoded without pickle and judged here, with the course's verdicts and the run's secret seed: patching
`torch`, `tests` or `check` inside a child changes nothing but that child's own results.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import shutil
import site
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests import EXERCISES
from tests.harness import CheckFailed, Context, NotImplementedYet, decode_results, judge
from utils.grading.extract import NotANotebook, Plan, bound_names, describe, inherited_members, parse
from utils.grading.planner import PlanningTimeout, plan_in_child
from utils.grading.processes import Child, ForkServer, Stop

ROOT = Path(__file__).resolve().parents[2]
# best first, when a folder's notebooks disagree; "tampered" wins over everything: trying earns nothing
STATUS_RANK = {"tampered": -1, "pass": 0, "fail": 1, "error": 2, "timeout": 3, "not_implemented": 4, "missing": 5}
STOP_STATUS = {"timeout": "timeout", "tampered": "tampered"}  # how a stopped child's statement or exercise ends
MAX_MESSAGE = 4000
# Not /dev, /proc or /sys as a whole: as root, a raw disk (/dev/sda) or /proc/kcore would bypass every path rule.
SYSTEM_READABLE = ["/usr", "/lib", "/lib32", "/lib64", "/bin", "/etc/ld.so.cache", "/etc/localtime", "/dev/null",
                   "/dev/zero", "/dev/random", "/dev/urandom", "/proc/cpuinfo", "/proc/meminfo",
                   "/sys/devices/system/cpu"]  # fmt: skip
OWN_PROC = "/proc/self"  # resolved by each child to its own process
LAYERS = ("namespaces", "rlimits", "landlock", "audit_hook")


@dataclass
class Settings:
    cell_timeout: float = 30.0  # seconds for one kept statement of a notebook
    exercise_timeout: float = 30.0  # seconds for one exercise's probe
    submission_timeout: float = 600.0  # seconds for everything of one submission
    startup_timeout: float = 120.0  # seconds for the fork server to import torch, or a child to start
    memory_mb: int = 4096  # address space of a child, and all the memory it may hold (memfd, shared memory...)
    disk_mb: int = 256  # everything a child may write in its work folder
    workers: int = 2  # submissions graded at once
    seed: int | None = None  # None: a fresh secret seed for every grading run
    layers: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(LAYERS, True))
    show_child_output: bool = False  # for debugging the grader itself: children write to the grader's stderr
    exercises: list[str] | None = None  # the assignment: these exercise ids only (None: the whole course)

    def assigned(self) -> list[str]:
        return [i for i in EXERCISES if self.exercises is None or i in self.exercises]


@dataclass
class Result:
    status: str  # pass / fail / not_implemented / missing / error / timeout / tampered
    message: str
    points: int = 0
    notebook: str = ""  # which of the submission's notebooks it comes from


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    return text if len(text) <= limit else text[: limit - 20] + "\n… (truncated)"


# ---------------------------------------------------------------------------------- what a child sees


def inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def readable_roots(protected: list[str]) -> list[str]:
    """System libraries, Python and its packages, minus every protected folder (the course, submissions, ...).

    A candidate that contains a protected folder is replaced by its other entries, recursively, because a
    Landlock rule (and the audit hook's list) can only allow whole trees.
    """
    python = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *site.getsitepackages()]
    elsewhere = [p for p in sys.path if p and not any(inside(os.path.realpath(p), q) for q in protected)]
    roots: list[str] = []

    def add(path: str) -> None:
        if path in protected or path in roots or not os.path.exists(path):
            return
        if not any(inside(p, path) for p in protected):
            roots.append(path)
        elif os.path.isdir(path):
            for entry in sorted(os.listdir(path)):
                add(os.path.join(path, entry))

    for candidate in [*SYSTEM_READABLE, *python, *elsewhere]:
        add(os.path.realpath(candidate))
    return [*roots, OWN_PROC]


PLACEHOLDER = '''
def {name}(*args, **kwargs):
    """Removed while grading: a submission is graded on its own code."""
    raise RuntimeError("`{name}` from `solutions` is not available while grading: write your own.")
'''


def redact(node: ast.stmt, whole: set[str], methods: dict[str, set[str]]) -> list[ast.stmt]:
    """A top-level statement with every exercise's answer replaced by a function that raises.

    Functions are replaced whole. Classes keep everything but their exercise methods, because later sections
    subclass them (NeuronModel is a ToyModel) and learners build on the given parts.
    """
    if isinstance(node, ast.ClassDef) and node.name in methods:
        node.body = [
            parse(PLACEHOLDER.format(name=item.name)).body[0]
            if isinstance(item, ast.FunctionDef) and item.name in methods[node.name]
            else item
            for item in node.body
        ]
        return [node]
    stubs = [parse(PLACEHOLDER.format(name=name)).body[0] for name in sorted(bound_names(node) & whole)]
    return stubs or [node]


def answers_in_tests() -> dict[str, set[str]]:
    """Module file (relative to the course) -> top-level functions of the check modules that are answers or
    verdicts: the checks' alternative correct implementations, catalogued mistakes, verdicts (which rebuild the
    reference's answer), and every function only these use. What the probes use (and the classes and data they
    need) stays. Names are followed across modules (a probe in one module calls helpers of `common`), by name only,
    which keeps more rather than less."""
    functions: dict[str, list[tuple[str, ast.FunctionDef]]] = {}
    needed: set[str] = set()
    for path in check_modules():
        relative = str(path.relative_to(ROOT))
        for node in parse(path.read_text("utf-8")).body:
            if isinstance(node, ast.FunctionDef):
                functions.setdefault(node.name, []).append((relative, node))
            else:
                needed |= names_outside_answers(node)
    pending = list(needed)
    while pending:
        for _, node in functions.get(pending.pop(), []):
            fresh = names_outside_answers(node) - needed
            needed |= fresh
            pending += fresh
    answers: dict[str, set[str]] = {}
    for name, definitions in functions.items():
        if name not in needed:
            for relative, _ in definitions:
                answers.setdefault(relative, set()).add(name)
    return answers


ANSWER_KEYWORDS = ("verdict", "alternatives", "mistakes")


def check_modules() -> list[Path]:
    """The sections' check modules (`tests/<chapter>/...`, packages included), not the harness, the kit, nor the
    course's own test suite."""
    tests = ROOT / "tests"
    return sorted(
        path
        for path in tests.rglob("*.py")
        if len(path.relative_to(tests).parts) > 1
        and path.relative_to(tests).parts[0] not in ("suite", "saelens")
        and not any(part.startswith(".") for part in path.relative_to(tests).parts)
    )


def names_outside_answers(node: ast.AST) -> set[str]:
    """Names (and attribute names) a statement uses, leaving out what it gives an Exercise as its verdict,
    alternatives or mistakes, and the implementations of Mistake(...)."""
    found: set[str] = set()
    pending = [node]
    while pending:
        current = pending.pop()
        if isinstance(current, ast.Import | ast.ImportFrom):  # importing a function is no use of it
            continue
        if isinstance(current, ast.Call):
            callee = current.func.id if isinstance(current.func, ast.Name) else getattr(current.func, "attr", "")
            if callee == "Mistake":
                continue
            pending.append(current.func)
            pending += current.args
            pending += [keyword.value for keyword in current.keywords if keyword.arg not in ANSWER_KEYWORDS]
            continue
        if isinstance(current, ast.Name):
            found.add(current.id)
        elif isinstance(current, ast.Attribute):
            found.add(current.attr)
        elif isinstance(current, ast.alias):
            found.add((current.asname or current.name).split(".")[0])
            found.add(current.name.split(".")[-1])
        pending += list(ast.iter_child_nodes(current))
    return found


ANSWER_PLACEHOLDER = '''
def {name}(*args, **kwargs):
    """Removed while grading: the checks' answers are not available to the code being graded."""
    raise RuntimeError("`{name}` is part of the checks' answers, which are not available while grading.")
'''


def copy_course(destination: Path, redacted: list[str]) -> None:
    """What children import: `tests` (the probes), `utils`, and `solutions` without the answers of `redacted`.

    Every function that is one of those exercises' reference, and every such exercise method of a reference class,
    is replaced by a function that raises, so `from solutions.tms import ToyModel` in a submission gets nothing that
    could pass. Exercises of other sections keep their references: later sections build on earlier ones.
    """
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "suite", ".*")
    for package in ("tests", "utils", "solutions"):
        shutil.copytree(ROOT / package, destination / package, ignore=ignore)
    for relative, source in WITHOUT_ANSWERS.items():  # the checks' own answers: alternatives, mistakes, verdicts
        (destination / relative).write_text(source, "utf-8")
    whole: dict[Path, set[str]] = {}
    methods: dict[Path, dict[str, set[str]]] = {}
    for exercise in (EXERCISES[i] for i in redacted):
        module_name, attributes = exercise.reference_path.split(":")
        members = {exercise.method, *exercise.stubs} - {None}  # the methods the learner writes, if a class
        for attribute in attributes.split(","):
            reference = getattr(importlib.import_module(module_name), attribute)
            source = Path(sys.modules[getattr(reference, "__module__", module_name)].__file__).resolve()
            name = getattr(reference, "__name__", attribute)
            if members:
                methods.setdefault(source, {}).setdefault(name, set()).update(members)
            else:
                whole.setdefault(source, set()).add(name)
    for source in {*whole, *methods}:
        target = destination / source.relative_to(ROOT)
        body = []
        for node in parse(target.read_text("utf-8")).body:
            body += redact(node, whole.get(source, set()), methods.get(source, {}))
        target.write_text(ast.unparse(ast.Module(body=body, type_ignores=[])), "utf-8")


# ------------------------------------------------------------------------------------- judging results


def verdict(exercise_id: str, results: dict, context: Context) -> Result:
    """The course's own verdict on probe results: the learner's exceptions are "error", wrong answers "fail"."""
    exercise = EXERCISES[exercise_id]
    if results.get("status") == "missing":  # e.g. a ToyModel from an earlier section, without this method
        return Result("missing", clip(f"{exercise_id}: {results.get('message', '')}"))
    try:
        judge(exercise, results, context)
    except NotImplementedYet as error:
        return Result("not_implemented", clip(str(error)))
    except CheckFailed as error:
        return Result("error" if results.get("status") == "error" else "fail", clip(str(error)))
    except Exception as error:  # results the verdict cannot read: forged, or a bug in the verdict
        return Result("error", clip(f"{exercise_id}: the grader could not judge the results ({error!r})"))
    return Result("pass", f"{exercise_id}: `{exercise.what}` is correct.", exercise.points)


# ------------------------------------------------------------------------------------------ the grader


def without_answers(answers: dict[str, set[str]]) -> dict[str, str]:
    """The source of each check module with its answers replaced by functions that raise; worked out once, at
    import, in one thread (CPython 3.11 can fail when threads build syntax trees at once)."""
    sources = {}
    for relative, names in answers.items():
        body = [
            parse(ANSWER_PLACEHOLDER.format(name=node.name)).body[0]
            if isinstance(node, ast.FunctionDef) and node.name in names
            else node
            for node in parse((ROOT / relative).read_text("utf-8")).body
        ]
        sources[relative] = ast.unparse(ast.Module(body=body, type_ignores=[]))
    return sources


ANSWERS = answers_in_tests()
WITHOUT_ANSWERS = without_answers(ANSWERS)


class Grader:
    """What a grading run shares: settings, the secret seed, the course copy, the fork server, the policy."""

    def __init__(self, settings: Settings, protected: list[Path]):
        self.settings = settings
        seed = settings.seed if settings.seed is not None else int.from_bytes(os.urandom(4), "little") % 2**31
        self.context = Context(seed)
        self.scratch = Path(tempfile.mkdtemp(prefix="course-grade-"))
        self.course = self.scratch / "course"
        copy_course(self.course, list(EXERCISES))  # the fork server's own copy: every answer removed
        self.courses: dict[tuple[str, ...], Path] = {}  # per set of graded exercises, see `course_for`
        self.copying = threading.Lock()
        protected_paths = [str(Path(p).resolve()) for p in [ROOT, *protected, self.scratch]]
        self.readable = [*readable_roots(protected_paths), str(self.course)]
        self.server = ForkServer(self.course, settings.startup_timeout, settings.show_child_output)
        self.budgets = {"startup": settings.startup_timeout, "chunk": settings.cell_timeout,
                        "exercise": settings.exercise_timeout}  # fmt: skip
        self.limits = {"memory_bytes": settings.memory_mb * 2**20, "disk_bytes": settings.disk_mb * 2**20}
        self.judging = threading.Lock()  # verdicts were written for one thread at a time
        self.layers: set[str] = set()  # sandbox layers the children applied, and problems they reported
        self.problems: set[str] = set()

    def close(self) -> None:
        self.server.close()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def course_for(self, exercises: list[str]) -> Path:
        """A course copy with exactly these exercises' answers removed, made once per set."""
        key = tuple(sorted(exercises))
        with self.copying:
            if key not in self.courses:
                self.courses[key] = self.scratch / f"course-{len(self.courses)}"
                copy_course(self.courses[key], list(key))
            return self.courses[key]

    def child_plan(self, plan: Plan, chunks: list[tuple[int, int]], exercises: list[str]) -> dict:
        settings = self.settings
        course = self.course_for(exercises)
        limits = {
            "memory_bytes": settings.memory_mb * 2**20,
            "cpu_seconds": int(settings.submission_timeout) + 60,
            "file_bytes": 64 * 2**20,
            "open_files": 256,
        }
        return {
            "seed": self.context.seed,
            "device": self.context.device,
            "layers": settings.layers,
            "limits": limits,
            "course": str(course),
            "readable": [*self.readable, str(course)],
            "show_output": settings.show_child_output,
            "cells": {str(cell): source for cell, source in plan.cells.items()},
            "futures": plan.futures,
            "chunks": chunks,
            "exercises": exercises,
        }

    def grade_notebook(self, path: Path, name: str, deadline: float) -> tuple[dict[str, Result], list[str], set[str]]:
        """Results for the exercises this notebook defines, notes for the instructor, and the sandbox layers used."""
        assigned = self.settings.assigned()
        symbols = {symbol for i in assigned for symbol in EXERCISES[i].names}
        try:
            plan = plan_in_child(path, symbols, deadline - time.monotonic(), self.settings.memory_mb * 2**20)
        except NotANotebook as error:
            return {}, [f"{name}: {error}; nothing graded"], set()
        except PlanningTimeout as error:
            message = f"this notebook was not graded: {error}, within the submission's time budget"
            return {i: Result("timeout", message, notebook=name) for i in assigned}, [f"{name}: {message}"], set()
        notes = [f"{name}: {note}" for note in plan.notes]
        pending = [i for i in assigned if defines(plan, EXERCISES[i])]
        dropped: dict[tuple[int, int], Stop] = {}  # statements that hung, crashed or meddled, and why
        errors: dict[tuple[int, int], str] = {}  # statements that raised, and what
        settled: dict[str, bytes | Result] = {}  # exercise id -> probe results to judge, or a result already
        settled |= {i: result for i in assigned if i not in pending and (result := unparsed(plan, EXERCISES[i]))}
        layers: set[str] = set()
        while pending:
            if time.monotonic() >= deadline:
                budget = f"the submission's time budget ({self.settings.submission_timeout:g} s) ran out first"
                settled |= {i: Result("timeout", budget) for i in pending}
                break
            chunks = [chunk for chunk in plan.chunks if chunk not in dropped]
            child = Child(self.server, self.child_plan(plan, chunks, pending), self.scratch, self.budgets, self.limits)
            stop = child.run(deadline)
            layers.update(child.layers)
            self.layers.update(child.layers)
            self.problems.update(child.problems)
            errors |= {chunks[n]: error for n, error in child.errors.items()}
            settled |= child.results
            pending = [i for i in pending if i not in child.results]
            if stop is None or stop.kind == "deadline":
                continue
            blamed = child.blame()
            if blamed is None:  # nothing of the learner's ran yet: the grader's own problem
                settled |= {i: Result("error", f"the grader could not start a child: {stop.reason}") for i in pending}
                break
            kind, what = blamed
            if kind == "chunk":
                dropped[chunks[what]] = stop
                notes.append(f"{name}: {describe(plan, chunks[what])}: skipped, {stop.reason}")
            else:
                status = STOP_STATUS.get(stop.kind, "error")
                settled[what] = Result(status, f"{what}: your code stopped the check: {stop.reason}.")
                pending = [i for i in pending if i != what]  # it may have sent (forged) results already
        raised = list(errors.items())
        notes += [f"{name}: {describe(plan, chunk)} raised:\n{error}" for chunk, error in raised[:MAX_RAISED_NOTES]]
        if len(raised) > MAX_RAISED_NOTES:
            notes.append(f"{name}: {len(raised) - MAX_RAISED_NOTES} more statements raised (not listed)")
        results = {}
        for exercise_id, value in settled.items():
            result = value if isinstance(value, Result) else self.judge(exercise_id, value, plan, dropped, errors)
            result.notebook = name
            results[exercise_id] = result
        return results, notes, layers

    def judge(self, exercise_id: str, payload: bytes, plan: Plan, dropped: dict, errors: dict) -> Result:
        try:
            results = decode_results(payload)
        except Exception as error:
            return Result("error", f"{exercise_id}: the results could not be read ({type(error).__name__}).")
        if results.get("status") == "undefined":
            names = EXERCISES[exercise_id].names
            return undefined(next((n for n in names if n not in plan.binders), names[-1]), plan, dropped, errors)
        with self.judging:
            return verdict(exercise_id, results, self.context)


MAX_RAISED_NOTES = 50  # notes about statements that raised, per notebook


def unparsed(plan: Plan, exercise) -> Result | None:
    """An error with its line when the exercise's symbol is defined only in a cell that does not parse (it would
    otherwise look "missing", with the cause in a note)."""
    for name in exercise.names:
        if name in plan.binders:
            continue
        symbol = re.escape(name)
        pattern = re.compile(rf"^[ \t]*(?:(?:async[ \t]+)?def|class)[ \t]+{symbol}\b|^{symbol}[ \t]*=", re.M)
        for cell, source in sorted(plan.broken_sources.items()):
            if pattern.search(source):
                return Result(
                    "error",
                    f"{exercise.id}: `{name}` is defined in cell {cell + 1}, which does not parse "
                    f"({plan.broken[cell]}): fix that cell so that it runs.",
                )
    return None


def defines(plan: Plan, exercise) -> bool:
    """Whether a notebook defines this exercise: its symbol, and for a method, that method itself (or one of the
    methods the exercise has the learner write). A class that only inherits the method from an earlier section's
    reference is not graded on it, and that reference stays available to it (section 2.4's ToySAE builds with
    section 2.1's __init__)."""
    if any(name not in plan.binders for name in exercise.names):
        return False
    if exercise.method is None:
        return True
    return bool(inherited_members(plan, exercise.name) & {exercise.method, *exercise.stubs})


def undefined(name: str, plan: Plan, dropped: dict, errors: dict) -> Result:
    """The symbol has a definition that did not run: say which statement stopped it, and how."""
    for chunk in reversed(plan.binders[name]):
        where = describe(plan, chunk)
        if chunk in dropped:
            stop = dropped[chunk]
            status = STOP_STATUS.get(stop.kind, "error")
            return Result(status, f"`{name}` was never defined: {where} stopped: {stop.reason}.")
        if chunk in errors:
            return Result("error", clip(f"`{name}` was never defined: {where} raised:\n{errors[chunk]}"))
    return Result("error", f"`{name}` was not defined when its cell ran.")
