"""Grade a folder of submissions: `python -m utils.grade <submissions> --out <folder>` (or `make grade`).

Each entry directly inside `<submissions>` is one learner's submission: a `.ipynb` file, or a folder of that
learner's notebooks (any of the course's, renamed or not). The grader writes

* `<out>/grades.csv`: one row per submission, the points of every exercise, and the total;
* `<out>/<submission>.json` (the name made safe for a file name): for every exercise its status (pass, fail,
  not_implemented, missing, error, timeout, tampered), the checker's message and the points, plus notes for
  the instructor (cells that did not parse, statements that raised or hung, imports from `solutions`);
* `<out>/report.html`: the class at a glance, self-contained, by section, with the submissions that tampered,
  timed out or hit a limit listed apart.

An assignment is graded with `--sections 2.1,2.2` (chapter.section, as the notebooks are numbered, or a module
name such as `sae.toy_sae`) and/or `--exercises sae.init,sae.W_dec`: the CSV, totals and report cover just those.

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
import stat
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from tests import EXERCISES, SECTIONS
from utils.grading.report import Graded, slugs, write_csv, write_html, write_json
from utils.grading.runner import LAYERS, STATUS_RANK, Grader, Result, Settings

MAX_NOTEBOOKS = 20  # per submission folder


def submissions(folder: Path, out: Path) -> list[Path]:
    """Entries of the folder, sorted; hidden files and the output folder (if it is inside) are not submissions."""
    entries = [entry for entry in folder.iterdir() if not entry.name.startswith(".")]
    return sorted((entry for entry in entries if entry.resolve() != out.resolve()), key=lambda entry: entry.name)


def kind_of(path: Path) -> str | None:
    """None for a regular file or a folder; else what it is, in words. Nothing is opened to find out."""
    try:
        mode = os.lstat(path).st_mode
    except OSError as error:
        return f"unreadable ({error.strerror})"
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    kinds = [(stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")]  # fmt: skip
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def notebooks(entry: Path) -> tuple[list[Path], list[str], list[str]]:
    """The notebooks of one submission, notes about what was not graded, and problems: entries that are not
    regular files (FIFOs, sockets, devices, symbolic links), which are never opened and make the row an error."""
    kind = kind_of(entry)
    if kind is not None:
        return [], [], [f"{display_name(entry.name)} is {kind}, not a notebook: never opened, nothing graded"]
    if entry.is_file():
        if entry.suffix.lower() == ".ipynb":
            return [entry], [], []
        return [], [f"not a .ipynb file ({entry.suffix or 'no extension'}): nothing graded"], []
    found, problems = [], []
    for directory, folders, files in os.walk(entry):  # does not follow links to folders
        folders[:] = sorted(name for name in folders if not name.startswith("."))  # skips .ipynb_checkpoints
        path = Path(directory)
        for name in sorted(files):
            if not name.lower().endswith(".ipynb"):
                continue
            kind = kind_of(path / name)
            if kind is None:
                found.append(path / name)
            else:
                relative = display_name(str((path / name).relative_to(entry)))
                problems.append(f"{relative} is {kind}, not a notebook: never opened")
    notes = [] if found or problems else ["no .ipynb file in this folder: nothing graded"]
    if len(found) > MAX_NOTEBOOKS:
        notes.append(f"{len(found)} notebooks: only the first {MAX_NOTEBOOKS} were graded")
    return found[:MAX_NOTEBOOKS], notes, problems


def grade_submission(grader: Grader, entry: Path) -> Graded:
    """Grade every notebook of one submission; for each exercise keep the best result over its notebooks."""
    start = time.monotonic()
    deadline = start + grader.settings.submission_timeout
    paths, notes, problems = notebooks(entry)
    best = {
        i: Result("missing", f"`{EXERCISES[i].what}` is not defined in any notebook of this submission.")
        for i in grader.settings.assigned()
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
    if problems:  # something was there that could not be read: say so on every exercise it may have held
        notes += problems
        message = "; ".join(problems)
        best = {i: Result("error", message) if r.status == "missing" else r for i, r in best.items()}
    return Graded(display_name(entry.name), best, notes, time.monotonic() - start, sandbox=sorted(sandbox))


def display_name(name: str) -> str:
    """A file name as text: bytes that are not UTF-8 (which Linux allows in names) become "�"."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def printable(name: str) -> str:
    """A learner's file name, safe to print on a terminal (no escape sequences)."""
    return repr(name)[1:-1]


def section_numbers() -> dict[str, str]:
    """ "1.1" -> "tms.superposition", ...: chapter and section numbers as the notebooks are numbered (chapters in
    course order, sections in order within their chapter)."""
    chapters: list[str] = []
    numbers = {}
    for section in SECTIONS:
        chapter = section.split(".")[0]
        if chapter not in chapters:
            chapters.append(chapter)
        within = [s for s in SECTIONS if s.split(".")[0] == chapter].index(section)
        numbers[f"{chapters.index(chapter) + 1}.{within + 1}"] = section
    return numbers


def section_of(exercise_id: str) -> str:
    """The section module (`tms.superposition`) an exercise's check lives in."""
    return EXERCISES[exercise_id].probe.__module__.removeprefix("tests.")


def assignment(sections: str | None, exercises: str | None) -> list[str] | None:
    """The exercise ids an instructor assigned (None: the whole course); raises ValueError on an unknown name."""
    if not sections and not exercises:
        return None
    numbers, chosen = section_numbers(), set()
    for item in filter(None, (part.strip() for part in (sections or "").split(","))):
        section = numbers.get(item) or next((s for s in SECTIONS if item in (s, s.split(".")[-1])), None)
        if section is None:
            known = ", ".join(f"{number} ({name})" for number, name in numbers.items())
            raise ValueError(f"unknown section {item!r}; the sections are {known}")
        chosen |= {i for i in EXERCISES if section_of(i) == section}
    for item in filter(None, (part.strip() for part in (exercises or "").split(","))):
        if item not in EXERCISES:
            raise ValueError(f"unknown exercise id {item!r}")
        chosen.add(item)
    return [i for i in EXERCISES if i in chosen]


def grade_folder(folder: Path, out: Path, settings: Settings) -> list[Graded]:
    """Grade every submission in `folder` and write the outputs to `out`; returns the rows, in folder order."""
    out.mkdir(parents=True, exist_ok=True)
    exercises = {i: EXERCISES[i] for i in settings.assigned()}
    entries = submissions(folder, out)
    file_names = dict(zip(entries, slugs([display_name(entry.name) for entry in entries]), strict=True))
    grader = Grader(settings, protected=[folder.resolve(), out.resolve()])
    info = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "seed": grader.context.seed,
        "budgets (s)": f"cell {settings.cell_timeout:g}, exercise {settings.exercise_timeout:g}, "
        f"submission {settings.submission_timeout:g}",
        "memory (MB)": settings.memory_mb,
        "disk (MB)": settings.disk_mb,
        "assignment": "the whole course" if settings.exercises is None else f"{len(exercises)} exercises",
        "solutions": "imports from `solutions` (the course's given code) never grade as the learner's answer",
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
                results = {i: Result("error", message) for i in exercises}
                graded = Graded(display_name(entry.name), results, [message])
            graded.slug = file_names[entry]
            write_json(out, graded, exercises, info)
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
    write_csv(out, ordered, exercises)
    sections = {i: section_of(i) for i in exercises}
    write_html(out, ordered, exercises, info, sections, {v: k for k, v in section_numbers().items()})
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
    parser.add_argument("--memory-mb", type=int, default=defaults.memory_mb, help="memory limit per child, in all")
    parser.add_argument("--disk-mb", type=int, default=defaults.disk_mb, help="disk limit per child, in all")
    parser.add_argument("--sections", default=None, help="the assignment: sections such as 2.1,2.2 (default: all)")
    parser.add_argument("--exercises", default=None, help="the assignment: exercise ids, comma-separated")
    parser.add_argument("--seed", type=int, default=None, help="seed of the checks' inputs (default: secret, random)")
    for layer in LAYERS:
        parser.add_argument(f"--no-{layer.replace('_', '-')}", action="store_true", help=f"disable the {layer} layer")
    parser.add_argument("--show-child-output", action="store_true", help="debug the grader: children print to stderr")
    args = parser.parse_args(argv)
    if not args.submissions.is_dir():
        parser.error(f"{args.submissions} is not a folder")
    if args.out.resolve() == args.submissions.resolve():
        parser.error("--out must be another folder than the submissions")
    try:
        assigned = assignment(args.sections, args.exercises)
    except ValueError as error:
        parser.error(str(error))
    settings = Settings(
        cell_timeout=args.cell_timeout,
        exercise_timeout=args.exercise_timeout,
        submission_timeout=args.submission_timeout,
        memory_mb=args.memory_mb,
        disk_mb=args.disk_mb,
        exercises=assigned,
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
