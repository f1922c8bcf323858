"""Read and plan one notebook in a child process, within the submission's own time and memory budget.

Reading a notebook and planning it (`extract`) is linear in its size, but a submission can be huge, or not a file
at all: a FIFO named `answers.ipynb` would block whoever opens it. So the grader never opens a learner's file in
its own process: a short-lived Python process (standard library only, no torch) reads it without following links
or waiting for a writer, plans it, and prints the plan as JSON; the grader kills it when the submission's time
runs out, and then reports the submission's exercises as `timeout`. The worst a notebook can cost is its own
learner's time budget, never the class's.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from utils.grading.extract import NotANotebook, Plan, code_cells, plan_notebook

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = "import sys; sys.path.insert(0, sys.argv[1]); from utils.grading.planner import main; main()"
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


class PlanningTimeout(Exception):
    """Reading and planning the notebook ran past the time it had."""


def plan_in_child(path: Path, symbols: set[str], seconds: float, memory_bytes: int) -> Plan:
    """The notebook's plan, worked out in a child process; raises NotANotebook or PlanningTimeout."""
    if seconds <= 0:
        raise PlanningTimeout("no time was left to read it")
    request = json.dumps({"path": os.fsdecode(path), "symbols": sorted(symbols), "memory_bytes": memory_bytes})
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-B", "-c", BOOTSTRAP, str(ROOT)],
            input=request.encode("utf-8", "surrogateescape"),
            capture_output=True,
            timeout=seconds,
            env=ENV,
            cwd="/",
        )
    except subprocess.TimeoutExpired:
        raise PlanningTimeout(f"reading and planning it took more than the {seconds:.0f} s left") from None
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        reason = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise NotANotebook(f"it could not be read ({reason[0][:200]})") from None
    if "error" in answer:
        raise NotANotebook(answer["error"])
    return Plan.from_json(answer["plan"])


def main() -> None:
    request = json.loads(sys.stdin.buffer.read().decode("utf-8", "surrogateescape"))
    limit = request["memory_bytes"]
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        plan = plan_notebook(code_cells(Path(request["path"])), set(request["symbols"]))
        answer = {"plan": plan.to_json()}
    except NotANotebook as error:
        answer = {"error": str(error)}
    except MemoryError:
        answer = {"error": f"reading it needed more than {limit // 2**20} MB of memory"}
    sys.stdout.write(json.dumps(answer))
