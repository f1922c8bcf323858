"""The grader's handles on its child processes: the fork server, and one child per notebook.

`ForkServer` starts `child.serve` once per grading run and asks it for a child per notebook (and, later, to
kill and reap it: the server is the child's parent, so the process id cannot have been reused by then).

`Child` reads the child's frames with a deadline for every step and checks that they follow the protocol

    ready, (chunk n, chunk_done n)*, (exercise id, result id)*, done

in order. Anything else (a frame out of turn, too many bytes, a step past its budget, the process dying)
stops the child, and `blame()` names the statement or exercise that was running, or else the last one that
ran: the grader drops that statement, or reports that exercise, and starts a fresh child for the rest.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv[1]); from utils.grading.child import serve; serve(int(sys.argv[2]))"
)
CHILD_ENV = {
    "PATH": "/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "TQDM_DISABLE": "1",
    "COURSE_HEADLESS": "1",
    "MPLBACKEND": "Agg",
    "CUDA_VISIBLE_DEVICES": "",
}  # fmt: skip  (nothing of the grader's own environment, which may hold tokens, reaches learner code)
MAX_FRAME = 32 * 2**20  # one exercise's encoded results
MAX_HEADER = 2**20
MAX_RECEIVED = 256 * 2**20  # everything one child may send


class Stop(Exception):
    """Why a child had to be stopped. kind: "timeout", "deadline" (the submission's), "crash", "protocol",
    "tampered" (learner code changed what the probes rely on) or "limit" (memory or disk)."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind, self.reason = kind, reason


def describe_exit(status: int) -> str:
    """A wait status, in words."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else f"signal {number}"
        hint = {"SIGKILL": " (out of memory?)", "SIGXCPU": " (CPU time limit)"}.get(name, "")
        return f"the Python process was killed by {name}{hint}"
    return f"the Python process exited with code {os.WEXITSTATUS(status) if os.WIFEXITED(status) else status}"


class ForkServer:
    """The process that imported torch and the checkers once, and forks a child per notebook."""

    def __init__(self, course: Path, startup_timeout: float, show_output: bool):
        self.course, self.startup_timeout, self.show_output = course, startup_timeout, show_output
        self.lock = threading.Lock()  # one request and its answer at a time
        self.closed = False
        self.start()

    def start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        output = None if self.show_output else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-B", "-c", BOOTSTRAP, str(self.course), str(theirs.fileno())],
            cwd=self.course,
            env=CHILD_ENV,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            pass_fds=(theirs.fileno(),),
            start_new_session=True,
        )
        theirs.close()
        ours.settimeout(self.startup_timeout)  # the first answer waits for the server's imports
        self.socket = ours

    def request(self, message: str, fds: list[int] | None = None) -> str:
        with self.lock:
            socket.send_fds(self.socket, [message.encode()], fds or [])
            answer = self.socket.recv(64)
        if not answer:
            raise ConnectionError("the fork server stopped")
        return answer.decode()

    def spawn(self, plan_path: Path, channel: int) -> int:
        """Fork a child that runs the plan and writes its frames to `channel`; returns its process id."""
        try:
            return int(self.request(f"spawn {plan_path}", [channel]))
        except (OSError, ValueError):
            if self.closed:  # grading was stopped (Ctrl-C): no new children
                raise
            self.stop()  # the server died (killed from outside?): start a new one, once
            self.start()
            return int(self.request(f"spawn {plan_path}", [channel]))

    def kill(self, pid: int) -> None:
        """Kill a child's process group and reap it; a no-op for a child the server no longer knows."""
        try:
            self.request(f"kill {pid}")
        except (OSError, ValueError):
            pass  # the server is gone, and its children died with it

    def close(self) -> None:
        """Stop the server for good: it exits, and every child it forked dies with it."""
        self.closed = True
        self.stop()

    def stop(self) -> None:
        try:
            self.socket.shutdown(socket.SHUT_RDWR)  # wakes a thread waiting for an answer; the server exits
        except OSError:
            pass
        self.socket.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


POLL_SECONDS = 0.05  # how often the grader measures what a child holds
MAX_WORK_ENTRIES = 10_000  # files and folders in a child's work folder


def descendants(pid: int) -> list[int]:
    """The process and all its descendants (orphans of the child's PID namespace are adopted by its PID 1, which is
    the inner process: they stay in the tree)."""
    found, pending = [], [pid]
    while pending and len(found) < 4096:
        current = pending.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as file:
                    pending += [int(child) for child in file.read().split()]
        except (OSError, ValueError):
            continue
    return found


def memory_held(pids: list[int]) -> int:
    """Bytes of memory the processes hold, however allocated: private and shared memory they map (RssAnon,
    RssShmem), what is swapped out, and files that live in memory or nowhere on disk that they keep open without
    mapping them (memfd, POSIX shared memory, deleted files), each counted once."""
    total, files = 0, set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as file:
                for line in file:
                    if line.startswith(("RssAnon:", "RssShmem:", "VmSwap:")):
                        total += int(line.split()[1]) * 1024
            with os.scandir(f"/proc/{pid}/fd") as entries:
                for entry in entries:
                    try:
                        target = os.readlink(entry.path)
                        if target.startswith(("/memfd:", "/dev/shm/")) or target.endswith(" (deleted)"):
                            info = os.stat(entry.path)
                            if (info.st_dev, info.st_ino) not in files:
                                files.add((info.st_dev, info.st_ino))
                                total += info.st_blocks * 512
                    except OSError:
                        continue
        except OSError:
            continue
    return total


def disk_held(folder: Path) -> tuple[int, int]:
    """Bytes on disk under a folder (blocks really used, each file once) and how many entries it holds (stops
    counting past MAX_WORK_ENTRIES)."""
    total, count, seen, pending = 0, 0, set(), [str(folder)]
    while pending and count <= MAX_WORK_ENTRIES:
        try:
            with os.scandir(pending.pop()) as entries:
                for entry in entries:
                    count += 1
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if (info.st_dev, info.st_ino) not in seen:
                        seen.add((info.st_dev, info.st_ino))
                        total += info.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
        except OSError:
            continue
    return total, count


def over_limits(pid: int, work: Path, limits: dict) -> str | None:
    """Why the child is over its limits, in words, or None."""
    if "memory_bytes" in limits:
        held = memory_held(descendants(pid))
        if held > limits["memory_bytes"]:
            return f"it held {held / 2**20:.0f} MB of memory, over the limit of {limits['memory_bytes'] / 2**20:.0f} MB"
    if "disk_bytes" in limits:
        used, count = disk_held(work)
        if used > limits["disk_bytes"]:
            return f"it wrote {used / 2**20:.0f} MB to disk, over the limit of {limits['disk_bytes'] / 2**20:.0f} MB"
        if count > MAX_WORK_ENTRIES:
            return f"it created more than {MAX_WORK_ENTRIES} files, over the limit"
    return None


class Child:
    """One notebook's child process, and the grader's view of how far it got."""

    def __init__(
        self, server: ForkServer, plan: dict, scratch: Path, budgets: dict[str, float], limits: dict | None = None
    ):
        self.server, self.plan, self.budgets = server, plan, budgets
        self.limits = limits or {}  # "memory_bytes", "disk_bytes": what the child may hold in all, polled
        self.directory = Path(tempfile.mkdtemp(prefix="child-", dir=scratch))
        (self.directory / "work").mkdir()
        plan["work"] = str(self.directory / "work")
        plan["writable"] = [plan["work"]]
        (self.directory / "plan.json").write_text(json.dumps(plan), "utf-8")
        read_fd, write_fd = os.pipe()
        try:
            self.pid = server.spawn(self.directory / "plan.json", write_fd)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self.channel = read_fd
        self.results: dict[str, bytes] = {}  # exercise id -> encoded probe results
        self.errors: dict[int, str] = {}  # position in plan["chunks"] -> what that statement raised
        self.layers: list[str] = []  # the sandbox layers the child could apply, and the ones it could not
        self.problems: list[str] = []
        self.state, self.current = "startup", None  # "between", or running "chunk" n / "exercise" id
        self.last: tuple[str, int | str] | None = None  # the last statement or exercise that ran
        self.next_chunk = self.next_exercise = 0

    def budget(self) -> float:
        return self.budgets.get(self.state, self.budgets["chunk"])

    def blame(self) -> tuple[str, int | str] | None:
        """Who is responsible when the child must be stopped now: what runs, else what ran last."""
        return (self.state, self.current) if self.state in ("chunk", "exercise") else self.last

    def handle(self, header: dict, payload: bytes) -> bool:
        """Advance the protocol by one frame; True when the child has finished. Raises Stop when it cannot."""
        event, chunks, exercises = header.get("event"), self.plan["chunks"], self.plan["exercises"]
        between = self.state == "between"
        if event == "ready" and self.state == "startup":  # sent before any learner code ran
            self.layers = [str(layer) for layer in header.get("layers", [])][:10]
            self.problems = [str(problem)[:300] for problem in header.get("problems", [])][:10]
            self.state = "between"
        elif event == "chunk" and between and header.get("n") == self.next_chunk < len(chunks):
            self.state, self.current = "chunk", self.next_chunk
        elif event == "chunk_done" and self.state == "chunk" and header.get("n") == self.current:
            if header.get("error"):
                self.errors[self.current] = str(header["error"])[:4000]
            self.last, self.state = ("chunk", self.current), "between"
            self.next_chunk += 1
        elif event == "exercise" and between and self.next_chunk == len(chunks) and self.next_exercise < len(exercises):
            if header.get("id") != exercises[self.next_exercise]:
                raise Stop("protocol", "it wrote to the grader's channel out of turn")
            self.state, self.current = "exercise", header["id"]
        elif event == "result" and self.state == "exercise" and header.get("id") == self.current:
            self.results[self.current] = payload
            self.last, self.state = ("exercise", self.current), "between"
            self.next_exercise += 1
        elif event == "done" and between and self.next_exercise == len(exercises):
            return True
        elif event == "exit" and isinstance(header.get("status"), int):  # the outer process: the inner one died
            raise Stop("crash", describe_exit(header["status"]))
        elif event == "tampered" and self.state in ("chunk", "exercise"):  # sent by the child's guard, at once
            raise Stop("tampered", f"it changed {str(header.get('what', 'what the checks rely on'))[:300]}")
        else:
            raise Stop("protocol", "it wrote to the grader's channel out of turn")
        return False

    def run(self, deadline: float) -> Stop | None:
        """Follow the child until it is done (None) or must be stopped (a Stop); then kill it, always."""
        selector = selectors.DefaultSelector()
        selector.register(self.channel, selectors.EVENT_READ)
        buffer, received = bytearray(), 0
        step_deadline = time.monotonic() + self.budget()
        next_poll = time.monotonic()
        try:
            while True:
                now = time.monotonic()
                if now >= deadline:
                    return Stop("deadline", "the submission's time budget ran out")
                if now >= step_deadline:
                    return Stop("timeout", f"still running after {self.budget():g} s")
                if self.limits and now >= next_poll:
                    over = over_limits(self.pid, self.directory / "work", self.limits)
                    if over:
                        return Stop("limit", over)
                    next_poll = now + POLL_SECONDS
                wake = min(step_deadline, deadline, next_poll if self.limits else deadline)
                if not selector.select(max(0.0, wake - now)):
                    continue
                data = os.read(self.channel, 2**20)
                if not data:
                    return Stop("crash", "the Python process ended unexpectedly")
                buffer += data
                received += len(data)
                if received > MAX_RECEIVED:
                    return Stop("protocol", "it sent more than the grader accepts")
                while len(buffer) >= 8:
                    size = int.from_bytes(buffer[:8], "little")
                    if size > MAX_HEADER + MAX_FRAME:
                        return Stop("protocol", "it sent more than the grader accepts")
                    if len(buffer) < 8 + size:
                        break
                    header, _, payload = bytes(buffer[8 : 8 + size]).partition(b"\n")
                    del buffer[: 8 + size]
                    try:
                        parsed = json.loads(header) if len(header) <= MAX_HEADER else None
                    except ValueError:
                        parsed = None
                    if not isinstance(parsed, dict):
                        return Stop("protocol", "it wrote to the grader's channel out of turn")
                    if self.handle(parsed, payload):
                        return None
                    step_deadline = time.monotonic() + self.budget()
        except Stop as stop:
            return stop
        finally:
            selector.close()
            self.server.kill(self.pid)
            os.close(self.channel)
            shutil.rmtree(self.directory, ignore_errors=True)
