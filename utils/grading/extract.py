"""Read a submitted notebook as data and decide what to execute: nothing here runs learner code.

A notebook run top to bottom would execute training loops, plots and `check` calls. The grader needs much less:
the course's symbols (`ToyModel`, `superposition_stats`, ...) and whatever they need. So every code cell is
parsed with `ast`, split into top-level statements, and the grader keeps

* every top-level `import` (cheap, and the course's code needs `torch as t`, `einops`, ...), and
* every definition (`def`, `class`, assignment, or an `if`/`try`/`with` block) that binds a name some kept
  statement uses, starting from the exercise symbols: the "given" cells such as `ToyModelConfig` are pulled in
  because `ToyModel` mentions them, whatever their metadata says.

Kept statements run in notebook order, so when a symbol is defined twice the last definition wins, as in a
notebook run top to bottom. Expressions, loops and everything else (training, plots, checks) never run.
"""

from __future__ import annotations

import ast
import json
import os
import re
import stat
import symtable
import threading
from dataclasses import dataclass, field
from pathlib import Path

MAX_NOTEBOOK_BYTES = 50 * 2**20
MAX_CODE_CHARS = 2 * 2**20

DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign, ast.AugAssign)
BLOCKS = (ast.If, ast.Try, getattr(ast, "TryStar", ast.Try), ast.With)  # kept only when they bind a needed name
IMPORTS = (ast.Import, ast.ImportFrom)


class NotANotebook(Exception):
    """The file cannot be read as a Jupyter notebook; the message says why, for the instructor."""


@dataclass
class Statement:
    cell: int  # position of the cell in the notebook, from 0
    index: int  # position of the statement in its cell
    node: ast.stmt
    binds: set[str]
    uses: set[str]


@dataclass
class Plan:
    """What to execute for one notebook, and what the analysis found."""

    cells: dict[int, str] = field(default_factory=dict)  # source of each cell that has kept statements
    chunks: list[tuple[int, int]] = field(default_factory=list)  # (cell, statement) to run, in notebook order
    binders: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # symbol -> chunks that bind it
    members: dict[str, set[str]] = field(default_factory=dict)  # class -> attributes the notebook itself defines
    bases: dict[str, set[str]] = field(default_factory=dict)  # class -> names of its bases (for inherited members)
    where: dict[tuple[int, int], str] = field(default_factory=dict)  # chunk -> "cell 9, line 3 (`...`)"
    futures: list[int] = field(default_factory=list)  # cells with `from __future__ import annotations`
    broken: dict[int, str] = field(default_factory=dict)  # cell -> why it does not parse, for cells not planned
    broken_sources: dict[int, str] = field(default_factory=dict)  # the source of each such cell (first 64 kB)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        """The plan as JSON data (the grader plans in a child process: see `utils.grading.planner`)."""
        return {
            "cells": {str(cell): source for cell, source in self.cells.items()},
            "chunks": self.chunks,
            "binders": self.binders,
            "members": {owner: sorted(names) for owner, names in self.members.items()},
            "bases": {owner: sorted(names) for owner, names in self.bases.items()},
            "where": [[cell, index, text] for (cell, index), text in self.where.items()],
            "futures": self.futures,
            "broken": {str(cell): why for cell, why in self.broken.items()},
            "broken_sources": {str(cell): source for cell, source in self.broken_sources.items()},
            "notes": self.notes,
        }

    @classmethod
    def from_json(cls, data: dict) -> Plan:
        return cls(
            cells={int(cell): source for cell, source in data["cells"].items()},
            chunks=[(cell, index) for cell, index in data["chunks"]],
            binders={name: [(cell, index) for cell, index in chunks] for name, chunks in data["binders"].items()},
            members={owner: set(names) for owner, names in data["members"].items()},
            bases={owner: set(names) for owner, names in data["bases"].items()},
            where={(cell, index): text for cell, index, text in data["where"]},
            futures=list(data["futures"]),
            broken={int(cell): why for cell, why in data["broken"].items()},
            broken_sources={int(cell): source for cell, source in data["broken_sources"].items()},
            notes=list(data["notes"]),
        )


def read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of a regular file; anything else (FIFO, socket, device, symbolic link) is refused without blocking:
    it is opened without following links and without waiting for a writer, then checked before any read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotANotebook("not a regular file")
        if info.st_size > limit:
            raise NotANotebook(f"larger than {limit // 2**20} MB")
        with os.fdopen(os.dup(fd), "rb") as file:
            return file.read(limit + 1)
    finally:
        os.close(fd)


def code_cells(path: Path) -> list[tuple[int, str]]:
    """The (position, source) of every code cell; raises NotANotebook with a plain reason."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            raise NotANotebook("not a regular file (a FIFO, socket, device or link): never opened")
        notebook = json.loads(read_regular_file(path, MAX_NOTEBOOK_BYTES))
    except NotANotebook:
        raise
    except (OSError, ValueError, RecursionError) as error:
        raise NotANotebook(f"not valid notebook JSON ({type(error).__name__}: {str(error)[:200]})") from None
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if not isinstance(cells, list):
        raise NotANotebook("no list of cells (not a Jupyter notebook in nbformat 4)")
    found = []
    for position, cell in enumerate(cells):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        if isinstance(source, list) and all(isinstance(line, str) for line in source):
            source = "".join(source)
        if isinstance(source, str):
            found.append((position, source))
    return found


# Cell magics whose body IPython runs as Python in the notebook's namespace, keeping its definitions (`%%timeit`
# runs it inside a function, so nothing stays defined; `%%bash`, `%%writefile`, ... are not Python at all).
PYTHON_CELL_MAGICS = ("time", "capture", "prun")


def python_source(source: str) -> str:
    """The cell as plain Python: IPython line magics and shell escapes (`%pip ...`, `!ls`) become `pass`; a cell
    magic line that runs its body as Python (`%%time`, `%%capture out`) becomes an empty line, so that line numbers
    stay those of the notebook; any other cell magic makes the whole cell "" (not Python)."""
    lines = source.split("\n")
    start = 0
    while start < len(lines) and not lines[start].strip():
        start += 1
    while start < len(lines) and lines[start].lstrip().startswith("%%"):
        magic = lines[start].lstrip()[2:].split(maxsplit=1)
        if not magic or magic[0] not in PYTHON_CELL_MAGICS:
            return ""
        lines[start] = ""
        start += 1
    return re.sub(r"(?m)^([ \t]*)[%!].*$", r"\1pass", "\n".join(lines))


# CPython 3.11 (seen on 3.11.7) can fail with "AST constructor recursion depth mismatch" when two threads build
# syntax trees at once; the grader's workers are threads, so every parse goes through this lock.
PARSING = threading.Lock()


def parse(source: str) -> ast.Module:
    with PARSING:
        return ast.parse(source)


def parse_cell(source: str) -> ast.Module:
    """Parse a cell as it is, or else with its magics blanked; raises SyntaxError if neither parses. The error is
    the one of the cell as IPython would run it (its magics blanked), so its line number is the learner's."""
    try:
        return parse(source)
    except SyntaxError:
        return parse(python_source(source))


def bound_names(node: ast.stmt) -> set[str]:
    """Names a top-level statement may bind (over-approximated for blocks: harmless, it only keeps more)."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {node.name}
    names = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
            names.add(child.id)
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(child.name)
        elif isinstance(child, ast.alias):
            names.add((child.asname or child.name).split(".")[0])
    return names


def used_names(node: ast.stmt) -> set[str]:
    """The global names the statement reads: in its body, decorators, defaults and annotations, but not the local
    variables of the functions and classes it defines. A learner's `def stats(W): norms = W.norm(dim=1)` does not
    need the notebook's global `norms = ...` (nor the training loop that global is computed from)."""
    try:
        with PARSING:
            table = symtable.symtable(ast.unparse(node), "<statement>", "exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # never seen; keep more rather than fail
        return {child.id for child in ast.walk(node) if isinstance(child, ast.Name)}
    names, pending = set(), [table]
    while pending:
        scope = pending.pop()
        pending.extend(scope.get_children())
        top = scope.get_type() == "module"  # a str before Python 3.13, a StrEnum since
        for symbol in scope.get_symbols():
            if symbol.is_referenced() and (top or symbol.is_global()):
                names.add(symbol.get_name())
    return names


def statements(cells: list[tuple[int, str]], plan: Plan) -> tuple[list[Statement], dict[int, str]]:
    """Every top-level statement of every parseable cell; cells that do not parse are skipped, with a note (and in
    `plan.broken`, so that an exercise defined only there is reported as an error with its line)."""
    found, sources = [], {}
    for position, source in cells:
        if len(source) > MAX_CODE_CHARS:
            plan.notes.append(f"cell {position + 1}: skipped, longer than {MAX_CODE_CHARS} characters")
            continue
        try:
            module = parse_cell(source)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
            line = getattr(error, "lineno", None)
            why = f"{type(error).__name__}" + (f" at line {line}" if line else "") + f": {getattr(error, 'msg', error)}"
            plan.notes.append(f"cell {position + 1}: skipped, it does not parse ({why})")
            plan.broken[position] = why
            plan.broken_sources[position] = source[: 64 * 1024]
            continue
        sources[position] = source
        for index, node in enumerate(module.body):
            found.append(Statement(position, index, node, bound_names(node), used_names(node)))
    return found, sources


def imported_packages(node: ast.stmt) -> set[str]:
    if isinstance(node, ast.ImportFrom):
        return {(node.module or "").split(".")[0]}
    return {alias.name.split(".")[0] for alias in node.names} if isinstance(node, ast.Import) else set()


def plan_notebook(cells: list[tuple[int, str]], symbols: set[str]) -> Plan:
    """Which statements to execute so that `symbols` get defined as a top-to-bottom run would define them."""
    plan = Plan()
    found, sources = statements(cells, plan)
    for s in found:  # the course's own cells import given code from `solutions`: only an exercise's symbol is news
        if "solutions" in imported_packages(s.node) and s.binds & symbols:
            names = ", ".join(f"`{name}`" for name in sorted(s.binds & symbols))
            plan.notes.append(
                f"cell {s.cell + 1}: imports from `solutions` ({names}), which submissions cannot use while graded"
            )
    # After the last definition of an exercise symbol the learner's checks have run, so a later statement that
    # rebinds an earlier name (`t = 0.5` after `import torch as t`) must not change what is graded; helpers
    # first defined later still count.
    definition = [isinstance(s.node, DEFINITIONS + BLOCKS) for s in found]
    end = max((i for i, s in enumerate(found) if definition[i] and s.binds & symbols), default=-1)
    earlier = set().union(*(s.binds for s in found[: end + 1]))
    eligible = [i <= end or not s.binds & earlier for i, s in enumerate(found)]
    kept = {i for i, s in enumerate(found) if eligible[i] and isinstance(s.node, IMPORTS)}
    # `ToySAE.resample_simple = resample_simple` (ARENA's way of filling in a method) binds no name, but completes
    # a needed class: keep it with the definitions it uses
    binding: dict[str, list[int]] = {}  # name -> eligible definitions that bind it
    patching: dict[str, list[int]] = {}  # class name -> eligible statements that fill in one of its attributes
    for i, s in enumerate(found):
        if not eligible[i] or i in kept:
            continue
        if definition[i]:
            for name in s.binds:
                binding.setdefault(name, []).append(i)
        if isinstance(s.node, ast.Assign):
            for owner in {owner for owner, _ in defined_members(s.node)}:
                patching.setdefault(owner, []).append(i)
    # grow the set of needed names until no kept statement needs anything new: a worklist, so each name and each
    # statement is handled once (linear in the notebook's size, however long its chains of definitions)
    needed = set(symbols)
    pending = list(needed)
    while pending:
        name = pending.pop()
        for i in binding.get(name, []) + patching.get(name, []):
            if i not in kept:
                kept.add(i)
                fresh = found[i].uses - needed
                needed |= fresh
                pending.extend(fresh)
    lines: dict[int, list[str]] = {}  # each kept cell split into lines once, for the descriptions
    for i in sorted(kept):
        s = found[i]
        plan.chunks.append((s.cell, s.index))
        plan.cells[s.cell] = sources[s.cell]
        if s.cell not in lines:
            lines[s.cell] = sources[s.cell].splitlines()
        text = lines[s.cell][s.node.lineno - 1].strip() if s.node.lineno <= len(lines[s.cell]) else ""
        plan.where[(s.cell, s.index)] = f"cell {s.cell + 1}, line {s.node.lineno} (`{text[:60]}`)"
        if is_future_annotations(s.node) and s.cell not in plan.futures:
            plan.futures.append(s.cell)
        if isinstance(s.node, ast.ClassDef):
            plan.bases.setdefault(s.node.name, set()).update(
                base.id for base in s.node.bases if isinstance(base, ast.Name)
            )
        if "solutions" in imported_packages(s.node):
            continue  # importing the course's own answer does not define the learner's
        for symbol in s.binds & symbols:
            plan.binders.setdefault(symbol, []).append((s.cell, s.index))
        for owner, attribute in defined_members(s.node):
            plan.members.setdefault(owner, set()).add(attribute)
    return plan


def defined_members(node: ast.stmt) -> list[tuple[str, str]]:
    """(class, attribute) for what a statement defines on a class: the methods and names of a class body, or an
    attribute assigned from outside (`ToyModel.forward = forward`, ARENA's way of filling in a method)."""
    if isinstance(node, ast.ClassDef):
        found = []
        for item in node.body:
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                found.append((node.name, item.name))
            elif isinstance(item, ast.Assign | ast.AnnAssign):
                targets = item.targets if isinstance(item, ast.Assign) else [item.target]
                found += [(node.name, target.id) for target in targets if isinstance(target, ast.Name)]
        return found
    if isinstance(node, ast.Assign):
        return [
            (target.value.id, target.attr)
            for target in node.targets
            if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
        ]
    return []


def is_future_annotations(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.ImportFrom)
        and node.module == "__future__"
        and any(alias.name == "annotations" for alias in node.names)
    )


def describe(plan: Plan, chunk: tuple[int, int]) -> str:
    """ "cell 9, line 3 (`while True:`)": where a kept statement is, for messages (worked out once, when planning)."""
    return plan.where.get(chunk, f"cell {chunk[0] + 1}, statement {chunk[1] + 1}")


def inherited_members(plan: Plan, name: str) -> set[str]:
    """The attributes a class of the notebook defines itself or inherits from the notebook's own classes (a
    learner's `class ToyModel(MyBase)` with `forward` written in `MyBase`, an earlier cell)."""
    found, seen, pending = set(), set(), [name]
    while pending:
        owner = pending.pop()
        if owner in seen:
            continue
        seen.add(owner)
        found |= plan.members.get(owner, set())
        pending.extend(plan.bases.get(owner, set()))
    return found
