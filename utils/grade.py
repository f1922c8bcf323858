"""Grade a folder of submissions: `python -m utils.grade <submissions> --out <folder>` (or `make grade`).

Each entry directly inside `<submissions>` is one learner's submission: a `.ipynb` file, or a folder of that
learner's notebooks (any of the course's, renamed or not). The grader writes

* `<out>/grades.csv`: one row per submission, the points of every exercise, and the total;
* `<out>/<submission>.json` (the name made safe for a file name): for every exercise its status (pass, fail,
  not_implemented, missing, error, timeout), the checker's message and the points, plus notes for the
  instructor (cells that did not parse, statements that raised or hung, imports from `solutions`);
* `<out>/report.html`: the class at a glance, self-contained.

How (details in `utils/grading/`): notebooks are never executed as a whole. The grader finds each exercise's
symbol (`ToyModel`, `superposition_stats`, ...) in the code cells with `ast`, keeps the imports and the
definitions those symbols need, and runs just these in a sandboxed child process per notebook, which then
runs each exercise's probe. The grader, which never runs learner code, judges the probes' results with the
course's verdicts and a secret seed drawn for the run. Every submission gets its row, whatever it contains.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from tests import EXERCISES
from utils.grading.report import Graded, slugs, write_csv, write_html, write_json
from utils.grading.runner import LAYERS, STATUS_RANK, Grader, Result, Settings

MAX_NOTEBOOKS = 20  # per submission folder


def submissions(folder: Path, out: Path) -> list[Path]:
    """Entries of the folder, sorted; hidden files and the output folder (if it is inside) are not submissions."""
    entries = [entry for entry in folder.iterdir() if not entry.name.startswith(".")]
    return sorted((entry for entry in entries if entry.resolve() != out.resolve()), key=lambda entry: entry.name)


def notebooks(entry: Path) -> tuple[list[Path], list[str]]:
    """The notebooks of one submission, and notes about what was not graded. Symbolic links are not followed."""
    if entry.is_symlink():
        return [], ["a symbolic link, not a notebook: nothing graded"]
    if entry.is_file():
        if entry.suffix.lower() == ".ipynb":
            return [entry], []
        return [], [f"not a .ipynb file ({entry.suffix or 'no extension'}): nothing graded"]
    found = []
    for directory, folders, files in os.walk(entry):  # does not follow links to folders
        folders[:] = sorted(name for name in folders if not name.startswith("."))  # skips .ipynb_checkpoints
        path = Path(directory)
        found += [
            path / name for name in sorted(files) if name.lower().endswith(".ipynb") and not (path / name).is_symlink()
        ]
    notes = [] if found else ["no .ipynb file in this folder: nothing graded"]
    if len(found) > MAX_NOTEBOOKS:
        notes.append(f"{len(found)} notebooks: only the first {MAX_NOTEBOOKS} were graded")
    return found[:MAX_NOTEBOOKS], notes


def grade_submission(grader: Grader, entry: Path) -> Graded:
    """Grade every notebook of one submission; for each exercise keep the best result over its notebooks."""
    start = time.monotonic()
    deadline = start + grader.settings.submission_timeout
    paths, notes = notebooks(entry)
    best = {
        exercise_id: Result("missing", f"`{exercise.what}` is not defined in any notebook of this submission.")
        for exercise_id, exercise in EXERCISES.items()
    }
    sandbox: set[str] = set()
    for path in paths:
        name = display_name(str(path.relative_to(entry)) if path != entry else entry.name)
        results, nb_notes, layers = grader.grade_notebook(path, name, deadline)
        notes += nb_notes
        sandbox |= layers
        for exercise_id, result in results.items():
            if STATUS_RANK[result.status] < STATUS_RANK[best[exercise_id].status]:
                best[exercise_id] = result
    return Graded(display_name(entry.name), best, notes, time.monotonic() - start, sandbox=sorted(sandbox))


def display_name(name: str) -> str:
    """A file name as text: bytes that are not UTF-8 (which Linux allows in names) become "�"."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def printable(name: str) -> str:
    """A learner's file name, safe to print on a terminal (no escape sequences)."""
    return repr(name)[1:-1]


def grade_folder(folder: Path, out: Path, settings: Settings) -> list[Graded]:
    """Grade every submission in `folder` and write the outputs to `out`; returns the rows, in folder order."""
    out.mkdir(parents=True, exist_ok=True)
    entries = submissions(folder, out)
    file_names = dict(zip(entries, slugs([display_name(entry.name) for entry in entries]), strict=True))
    grader = Grader(settings, protected=[folder.resolve(), out.resolve()])
    info = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "seed": grader.context.seed,
        "budgets (s)": f"cell {settings.cell_timeout:g}, exercise {settings.exercise_timeout:g}, "
        f"submission {settings.submission_timeout:g}",
        "memory (MB)": settings.memory_mb,
    }
    rows: dict[Path, Graded] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, settings.workers))
    try:
        futures = {pool.submit(grade_submission, grader, entry): entry for entry in entries}
        for future in as_completed(futures):
            entry = futures[future]
            try:
                graded = future.result()
            except Exception as error:  # a bug of the grader's own: the row must exist all the same
                message = f"the grader failed on this submission: {type(error).__name__}: {error}"
                results = {i: Result("error", message) for i in EXERCISES}
                graded = Graded(display_name(entry.name), results, [message])
            graded.slug = file_names[entry]
            write_json(out, graded, EXERCISES, info)
            rows[entry] = graded
            print(f"{printable(graded.name)}: {graded.total} points ({graded.seconds:.1f} s)", flush=True)
    finally:  # on Ctrl-C too: closing the fork server kills every child, so running workers return at once
        pool.shutdown(wait=False, cancel_futures=True)
        grader.server.close()
        pool.shutdown(wait=True)
        grader.close()
    ordered = [rows[entry] for entry in entries]
    info["sandbox"] = ", ".join(sorted(grader.layers)) or "none"
    if grader.problems:
        info["sandbox problems"] = "; ".join(sorted(grader.problems))
    write_csv(out, ordered, EXERCISES)
    write_html(out, ordered, EXERCISES, info)
    return ordered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.grade", description=__doc__.split("\n\n")[0])
    parser.add_argument("submissions", type=Path, help="folder with one .ipynb file or folder per learner")
    parser.add_argument("--out", type=Path, required=True, help="folder for grades.csv, report.html and JSON files")
    defaults = Settings()
    parser.add_argument("--workers", type=int, default=defaults.workers, help="submissions graded in parallel")
    parser.add_argument("--cell-timeout", type=float, default=defaults.cell_timeout, help="seconds per kept statement")
    parser.add_argument("--exercise-timeout", type=float, default=defaults.exercise_timeout, help="seconds per check")
    parser.add_argument(
        "--submission-timeout", type=float, default=defaults.submission_timeout, help="seconds per submission"
    )
    parser.add_argument("--memory-mb", type=int, default=defaults.memory_mb, help="address-space limit per child")
    parser.add_argument("--seed", type=int, default=None, help="seed of the checks' inputs (default: secret, random)")
    for layer in LAYERS:
        parser.add_argument(f"--no-{layer.replace('_', '-')}", action="store_true", help=f"disable the {layer} layer")
    parser.add_argument("--show-child-output", action="store_true", help="debug the grader: children print to stderr")
    args = parser.parse_args(argv)
    if not args.submissions.is_dir():
        parser.error(f"{args.submissions} is not a folder")
    if args.out.resolve() == args.submissions.resolve():
        parser.error("--out must be another folder than the submissions")
    settings = Settings(
        cell_timeout=args.cell_timeout,
        exercise_timeout=args.exercise_timeout,
        submission_timeout=args.submission_timeout,
        memory_mb=args.memory_mb,
        workers=args.workers,
        seed=args.seed,
        layers={layer: not getattr(args, f"no_{layer}") for layer in LAYERS},
        show_child_output=args.show_child_output,
    )
    import torch

    torch.set_num_threads(1)  # the grader's own work (verdicts) is small; leave the cores to the children
    rows = grade_folder(args.submissions, args.out, settings)
    print(f"graded {len(rows)} submissions: {args.out / 'grades.csv'}, {args.out / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
