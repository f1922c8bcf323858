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
import re
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
    notes: list[str] = field(default_factory=list)


def code_cells(path: Path) -> list[tuple[int, str]]:
    """The (position, source) of every code cell; raises NotANotebook with a plain reason."""
    try:
        if path.stat().st_size > MAX_NOTEBOOK_BYTES:
            raise NotANotebook(f"larger than {MAX_NOTEBOOK_BYTES // 2**20} MB")
        notebook = json.loads(path.read_bytes())
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


def python_source(source: str) -> str:
    """The cell as plain Python: IPython line magics and shell escapes (`%pip ...`, `!ls`) become `pass`."""
    if source.lstrip().startswith("%%"):  # a cell magic: the whole cell is not Python
        return ""
    return re.sub(r"(?m)^([ \t]*)[%!].*$", r"\1pass", source)


# CPython 3.11 (seen on 3.11.7) can fail with "AST constructor recursion depth mismatch" when two threads build
# syntax trees at once; the grader's workers are threads, so every parse goes through this lock.
PARSING = threading.Lock()


def parse(source: str) -> ast.Module:
    with PARSING:
        return ast.parse(source)


def parse_cell(source: str) -> ast.Module:
    """Parse a cell as it is, or else with its magics blanked; raises SyntaxError if neither parses."""
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


def statements(cells: list[tuple[int, str]], notes: list[str]) -> tuple[list[Statement], dict[int, str]]:
    """Every top-level statement of every parseable cell; cells that do not parse are skipped, with a note."""
    found, sources = [], {}
    for position, source in cells:
        if len(source) > MAX_CODE_CHARS:
            notes.append(f"cell {position + 1}: skipped, longer than {MAX_CODE_CHARS} characters")
            continue
        try:
            module = parse_cell(source)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
            line = getattr(error, "lineno", None)
            notes.append(
                f"cell {position + 1}: skipped, it does not parse ({type(error).__name__}"
                + (f" at line {line}" if line else "")
                + f": {getattr(error, 'msg', error)})"
            )
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
    found, sources = statements(cells, plan.notes)
    for s in found:
        if "solutions" in imported_packages(s.node):
            plan.notes.append(f"cell {s.cell + 1}: imports from `solutions`, which submissions cannot use while graded")
    # After the last definition of an exercise symbol the learner's checks have run, so a later statement that
    # rebinds an earlier name (`t = 0.5` after `import torch as t`) must not change what is graded; helpers
    # first defined later still count.
    definition = [isinstance(s.node, DEFINITIONS + BLOCKS) for s in found]
    end = max((i for i, s in enumerate(found) if definition[i] and s.binds & symbols), default=-1)
    earlier = set().union(*(s.binds for s in found[: end + 1]))
    eligible = [i <= end or not s.binds & earlier for i, s in enumerate(found)]
    kept = {i for i, s in enumerate(found) if eligible[i] and isinstance(s.node, IMPORTS)}
    needed = set(symbols)
    changed = True
    # `ToySAE.resample_simple = resample_simple` (ARENA's way of filling in a method) binds no name, but completes
    # a needed class: keep it with the definitions it uses
    patches = [isinstance(s.node, ast.Assign) and bool(defined_members(s.node)) for s in found]
    while changed:  # grow the set of needed names until no kept statement needs anything new
        changed = False
        for i, s in enumerate(found):
            patches_needed = patches[i] and any(owner in needed for owner, _ in defined_members(s.node))
            if i not in kept and eligible[i] and (definition[i] and s.binds & needed or patches_needed):
                kept.add(i)
                needed |= s.uses
                changed = True
    for i in sorted(kept):
        s = found[i]
        plan.chunks.append((s.cell, s.index))
        plan.cells[s.cell] = sources[s.cell]
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


def describe(cells: dict[int, str], chunk: tuple[int, int]) -> str:
    """ "cell 9, line 3 (`while True:`)": where a kept statement is, for messages."""
    cell, index = chunk
    line = parse_cell(cells[cell]).body[index].lineno
    text = cells[cell].splitlines()[line - 1].strip()
    return f"cell {cell + 1}, line {line} (`{text[:60]}`)"
