"""The grading children: a fork server, and the sandboxed processes it forks, one per notebook.

Importing torch takes seconds, so the grader starts one **fork server** per run (`serve`): it imports numpy,
torch and the course's checkers (its own copy of `tests`, next to a `solutions` with every exercise's reference
removed), then waits for requests on a Unix socket. For each notebook it forks a process that

1. starts a new session (so that the whole group can be killed), puts stdin/stdout/stderr on /dev/null and
   moves into its own work folder;
2. enters new user, network and PID namespaces where it can, and forks once more: the outer process only
   waits and reports how the inner one ended; the inner one is the only one to run learner code;
3. in the inner process: dies with its parent, sets rlimits, applies Landlock, installs the audit hook (see
   `sandbox`), then executes the notebook's kept statements and runs each exercise's probe.

The fork server never runs learner code, and it kills and reaps its children only when the grader asks, so a
process id is never reused under the grader's feet. Results go back on a pipe, in frames: 8 bytes of length,
a one-line JSON header, a newline and an optional payload (probe results encoded by
`tests.harness.encode_results`: JSON + npz, never pickle). The grader trusts none of it beyond the submission's
own score: it checks the order of events and judges results itself.
"""

from __future__ import annotations
import __future__

import ast
import importlib
import json
import linecache
import os
import signal
import socket
import sys
import tempfile
import traceback
import types

from utils.grading import sandbox
from utils.grading.extract import parse_cell
from utils.grading.guard import Guard

CHANNEL = -1  # the write end of this child's pipe to the grader


def send(header: dict, payload: bytes = b"") -> None:
    frame = json.dumps(header).encode() + b"\n" + payload
    data = memoryview(len(frame).to_bytes(8, "little") + frame)
    while data:
        data = data[os.write(CHANNEL, data) :]


def short_error(error: BaseException) -> str:
    """The exception and its traceback from the learner's cell on (the grader's own frames say nothing)."""
    tb = error.__traceback__
    while tb is not None and not tb.tb_frame.f_code.co_filename.startswith("<cell"):
        tb = tb.tb_next
    frames = traceback.format_exception(type(error), error, tb or error.__traceback__, limit=-5)
    return "".join(frames).strip()[-3000:]


# ------------------------------------------------------------------------------------------ fork server


def serve(socket_fd: int) -> None:
    """Import everything the probes need once, then fork a child for every request of the grader."""
    sandbox.die_with_parent()  # the grader's end is our end, and through us our children's
    import numpy  # noqa: F401
    import torch

    from tests import EXERCISES

    for exercise in EXERCISES.values():  # the (redacted) reference modules, which probes may import
        importlib.import_module(exercise.reference_path.split(":")[0])
    torch.set_num_threads(1)
    server = socket.socket(fileno=socket_fd)
    children = set()
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(server, 65536, 1)
        except OSError:
            break
        if not message:  # the grader closed its end
            break
        command, _, argument = message.decode().partition(" ")
        if command == "spawn":
            pid = os.fork()
            if pid == 0:
                server.close()
                try:
                    run(argument, fds[0])
                finally:
                    os._exit(70)
            for fd in fds:
                os.close(fd)
            children.add(pid)
            server.send(str(pid).encode())
        elif command == "kill" and argument.isdigit() and int(argument) in children:
            pid = int(argument)  # still ours, alive or a zombie, until we reap it here: never a recycled id
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
            os.waitpid(pid, 0)
            children.discard(pid)
            server.send(b"ok")
        else:
            server.send(b"unknown")


# -------------------------------------------------------------------------------------- one notebook


def run(plan_path: str, channel: int) -> None:
    """Everything for one notebook, in a process forked from the server. Never returns."""
    global CHANNEL
    CHANNEL = channel
    os.setsid()
    sandbox.die_with_parent()
    with open(plan_path, encoding="utf-8") as file:
        plan = json.load(file)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1) if plan["show_output"] else (0, 1, 2):
        os.dup2(null, fd)
    os.chdir(plan["work"])
    os.environ.update(HOME=plan["work"], TMPDIR=plan["work"])
    tempfile.tempdir = None  # forget any temporary folder the server may have looked up
    namespaces = plan["layers"].get("namespaces") and sandbox.unshare_namespaces()
    inner = os.fork()  # in new namespaces, the inner process is PID 1 of its own PID namespace
    if inner:
        _, status = os.waitpid(inner, 0)
        send({"event": "exit", "status": status})
        os._exit(0)
    sandbox.die_with_parent()
    report = reporter(channel)
    guard = Guard(report)  # before the sandbox's audit hook, which refuses ctypes (the guard reads dict versions)
    applied, problems = protect(plan)
    if plan["layers"].get("namespaces"):
        applied.append("namespaces") if namespaces else problems.append("namespaces: unshare is not permitted here")
    use_course(plan["course"])
    guard.freeze()
    send({"event": "ready", "layers": applied, "problems": problems})
    main_module = types.ModuleType("__main__")  # the learner's code runs as a notebook's would, in __main__
    sys.modules["__main__"] = main_module
    run_chunks(plan, main_module.__dict__, guard.check, report)
    run_probes(plan, main_module.__dict__, guard.check, report)
    send({"event": "done"})
    os._exit(0)  # skip interpreter shutdown: atexit handlers and finalizers are learner code too


def reporter(channel: int):
    """A function that tells the grader at once that learner code changed what the probes rely on; everything it
    uses is bound now, before learner code runs. The grader then stops this child and blames what was running."""

    def report(what, _write=os.write, _dumps=json.dumps, _str=str, _channel=channel):
        frame = _dumps({"event": "tampered", "what": _str(what)[:300]}).encode() + b"\n"
        try:
            _write(_channel, len(frame).to_bytes(8, "little") + frame)
        except OSError:
            pass

    return report


def stop_if_tampered(check, report, _exit=os._exit) -> None:
    """After learner code ran: if it changed what the probes rely on, report it and end this child."""
    what = check()
    if what is not None:
        report(what)
        _exit(0)


def protect(plan: dict) -> tuple[list[str], list[str]]:
    """Apply the sandbox layers the plan asks for; a layer that cannot be applied is reported, not fatal."""
    layers, applied, problems = plan["layers"], [], []
    readable = [os.path.realpath(path) for path in plan["readable"]]  # /proc/self becomes this process's
    if layers.get("rlimits"):
        sandbox.limit_resources(**plan["limits"])
        applied.append("rlimits")
    if layers.get("landlock"):
        try:
            abi = sandbox.landlock(readable, plan["writable"])
            applied.append(f"landlock-abi{abi}") if abi else problems.append("landlock: not supported here")
        except OSError as error:
            problems.append(f"landlock: {error}")
    if layers.get("audit_hook"):
        sandbox.install_audit_hook(readable, plan["writable"])
        applied.append("audit-hook")
    return applied, problems


def use_course(course: str) -> None:
    """Make `solutions` resolve to this notebook's course copy, where only its own exercises' answers are removed
    (later sections build on earlier references: a DoubleDescentModel is a ToyModel with its generate_batch)."""
    sys.path.insert(0, course)
    for name in [m for m in sys.modules if m == "solutions" or m.startswith("solutions.")]:
        del sys.modules[name]
    importlib.invalidate_caches()


def run_chunks(plan: dict, namespace: dict, check, report) -> None:
    """Execute each kept statement on its own, in notebook order, with the cell's name in tracebacks.

    As in IPython, `from __future__ import annotations` applies to its whole cell and to every cell run after it."""
    modules, futures, future = {}, set(plan.get("futures", [])), False
    for n, (cell, index) in enumerate(plan["chunks"]):
        send({"event": "chunk", "n": n})
        error = None
        try:
            source, filename = plan["cells"][str(cell)], f"<cell {cell + 1}>"
            if cell not in modules:
                modules[cell] = parse_cell(source)
                linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
            body = modules[cell].body
            future = future or cell in futures
            code = compile(
                ast.Module(body=[body[index]], type_ignores=[]), filename, "exec",
                flags=__future__.annotations.compiler_flag if future else 0, dont_inherit=True,
            )  # fmt: skip
            exec(code, namespace)
        except BaseException as caught:  # SystemExit and KeyboardInterrupt included: the learner's code raised
            error = short_error(caught)
        stop_if_tampered(check, report)
        send({"event": "chunk_done", "n": n, "error": error})


def run_probes(plan: dict, namespace: dict, check, report) -> None:
    from tests import EXERCISES
    from tests.harness import Context, encode_results, run_probe

    context = Context(plan["seed"], plan["device"])
    for exercise_id in plan["exercises"]:
        send({"event": "exercise", "id": exercise_id})
        try:
            exercise = EXERCISES[exercise_id]
            if all(name in namespace for name in exercise.names):
                objs = tuple(namespace[name] for name in exercise.names)
                payload = encode_results(run_probe(exercise, objs if exercise.also else objs[0], context))
            else:
                payload = encode_results({"status": "undefined"})
        except BaseException as caught:  # the probe stops at Exception; learner code can also exit (SystemExit)
            message = f"{type(caught).__name__}: {caught}"[:1000]
            payload = encode_results({"status": "error", "message": message, "trace": short_error(caught)})
        stop_if_tampered(check, report)
        send({"event": "result", "id": exercise_id}, payload)
