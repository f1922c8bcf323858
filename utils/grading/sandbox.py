"""What a grading child does to itself before it runs a submission's code. Standard library only.

Four layers, each optional so that the grader still works where one is missing (every child reports which
layers it got, and the report shows them):

1. **namespaces** (Linux, unprivileged user namespaces): a new user namespace drops every privilege the grader
   may have in the system (it often runs as root in CI), a new network namespace has no network, and in a new
   PID namespace the child cannot signal any process outside it, and everything it starts dies with it. They do
   not protect files: the child keeps its user id, so it may still write wherever the grader's user may.
2. **rlimits**: address space, CPU seconds, file size, open files, no core dumps; soft = hard, so the learner's
   code cannot raise them again.
3. **Landlock** (Linux ≥ 5.13, no privileges needed, irreversible): the kernel lets the process read only the
   Python installation, the system libraries and the course's copy for children; write only in its own work
   folder (and /dev/null); execute no program; and, where the kernel's ABI has them, open no TCP connection
   (ABI ≥ 4) and signal no process outside itself (ABI ≥ 6). It does not cover connecting to a Unix socket
   that exists on disk.
4. **an audit hook** (PEP 578, portable): refuses the same things at the Python level with a readable message,
   plus creating processes or sockets and loading code through ctypes. It is best effort: code that digs into
   the interpreter or calls C directly can get around it, so on Linux the kernel layers carry the guarantees.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import struct
import sys

CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWPID = 0x10000000, 0x40000000, 0x20000000
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
LANDLOCK_RULE_PATH_BENEATH = 1

# Landlock filesystem rights (linux/landlock.h); bit 13 came with ABI 2, 14 with ABI 3, 15 with ABI 5
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV  # the only rights a rule on a file may hold
MAKE_CHAR, MAKE_BLOCK = 1 << 6, 1 << 11


def libc() -> ctypes.CDLL:
    lib = ctypes.CDLL(None, use_errno=True)
    lib.syscall.restype = ctypes.c_long
    return lib


# --------------------------------------------------------------------------------------------- namespaces


def unshare_namespaces() -> bool:
    """Move into new user and network namespaces, and make the next child PID 1 of a new PID namespace.

    Must run while the process has a single thread. Returns False where the kernel does not allow it.
    """
    return sys.platform == "linux" and libc().unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWPID) == 0


def die_with_parent() -> None:
    """Ask the kernel to kill this process when its parent dies, so that nothing outlives the grader."""
    if sys.platform == "linux":
        libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


# ------------------------------------------------------------------------------------------------ rlimits


def limit_resources(memory_bytes: int, cpu_seconds: int, file_bytes: int, open_files: int) -> None:
    """Soft and hard limits at once: a process can lower its hard limits but never raise them back."""
    for limit, value in [
        (resource.RLIMIT_AS, memory_bytes),
        (resource.RLIMIT_CPU, cpu_seconds),
        (resource.RLIMIT_FSIZE, file_bytes),
        (resource.RLIMIT_NOFILE, open_files),
        (resource.RLIMIT_CORE, 0),
    ]:
        hard = resource.getrlimit(limit)[1]
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(limit, (value, value))


# ----------------------------------------------------------------------------------------------- Landlock


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, or 0 where there is none."""
    if sys.platform != "linux":
        return 0
    version = libc().syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(int(version), 0)


def landlock(readable: list[str], writable: list[str]) -> int:
    """Restrict this thread and everything it later creates; returns the ABI used (0 if unavailable).

    Everything the ruleset "handles" is denied unless a rule allows it: reading below `readable`, reading and
    writing below `writable`, writing to /dev/null. No rule allows executing a file, so `execve` fails; on
    ABI ≥ 4 no TCP bind/connect is allowed; on ABI ≥ 6 signals and abstract unix sockets stay inside.
    """
    abi = landlock_abi()
    if abi < 1:
        return 0
    lib = libc()
    fs_rights = (1 << 13) - 1 | (REFER if abi >= 2 else 0) | (TRUNCATE if abi >= 3 else 0)
    fs_rights |= IOCTL_DEV if abi >= 5 else 0
    net_rights = 0b11 if abi >= 4 else 0  # BIND_TCP | CONNECT_TCP
    scoped = 0b11 if abi >= 6 else 0  # ABSTRACT_UNIX_SOCKET | SIGNAL
    attr = struct.pack("=QQQ", fs_rights, net_rights, scoped)[: 8 if abi < 4 else 16 if abi < 6 else 24]
    buffer = ctypes.create_string_buffer(attr, len(attr))
    ruleset = lib.syscall(SYS_LANDLOCK_CREATE_RULESET, buffer, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0))
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    read = READ_FILE | READ_DIR
    write = fs_rights & ~(EXECUTE | MAKE_CHAR | MAKE_BLOCK | IOCTL_DEV)
    rules = [(path, read) for path in readable] + [(path, write) for path in writable]
    rules.append((os.devnull, WRITE_FILE | READ_FILE | (TRUNCATE if abi >= 3 else 0)))
    try:
        for path, rights in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # a path that does not exist needs no rule
            try:
                if not os.path.isdir(path):
                    rights &= FILE_RIGHTS
                rule = ctypes.create_string_buffer(struct.pack("=Qi", rights & fs_rights, fd), 12)
                if (
                    lib.syscall(
                        SYS_LANDLOCK_ADD_RULE,
                        ctypes.c_int(ruleset),
                        ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH),
                        rule,
                        ctypes.c_uint32(0),
                    )
                    != 0
                ):
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
            finally:
                os.close(fd)
        if lib.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if lib.syscall(SYS_LANDLOCK_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)
    return abi


# ------------------------------------------------------------------------------------------- audit hook

FORBIDDEN_EVENTS = frozenset({
    "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "subprocess.Popen",
    "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill", "resource.setrlimit", "resource.prlimit",
    "gc.get_objects", "gc.get_referrers", "sys._current_frames", "webbrowser.open",
})  # fmt: skip
FORBIDDEN_PREFIXES = ("ctypes.", "socket.", "sqlite3.", "winreg.")
# event -> (positions of path arguments, positions of dir_fd arguments)
PATH_EVENTS = {
    "os.remove": ((0,), (1,)), "os.rmdir": ((0,), (1,)), "os.mkdir": ((0,), (2,)),
    "os.rename": ((0, 1), (2, 3)), "os.link": ((0, 1), (2, 3)), "os.symlink": ((0, 1), (2,)),
    "os.chmod": ((0,), (2,)), "os.chown": ((0,), (3,)), "os.utime": ((0,), (3,)), "os.truncate": ((0,), ()),
    "os.setxattr": ((0,), ()), "os.removexattr": ((0,), ()), "shutil.rmtree": ((0,), (1,)),
    "os.chflags": ((0,), ()), "os.lchflags": ((0,), ()), "os.mkfifo": ((0,), (2,)), "os.mknod": ((0,), (3,)),
}  # fmt: skip
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


def install_audit_hook(readable: list[str], writable: list[str]) -> None:
    """Refuse, from now on, process creation, signals, sockets, ctypes and file access outside the policy.

    What the hook consults is bound as default arguments when it is created, not looked up in a module at call
    time, so that rebinding e.g. `sandbox.FORBIDDEN_EVENTS` changes nothing (the functions it calls, such as
    `os.path.realpath`, still use their own modules: best effort, as said above).
    """

    def hook(
        event, args,
        _forbidden=FORBIDDEN_EVENTS, _prefixes=FORBIDDEN_PREFIXES, _path_events=PATH_EVENTS,
        _readable=tuple(readable), _writable=tuple(writable), _devnull=os.devnull, _write_flags=WRITE_FLAGS,
        _realpath=os.path.realpath, _isdir=os.path.isdir, _sep=os.sep, _type=type, _str=str, _bytes=bytes,
        _int=int, _error=PermissionError,
    ):  # fmt: skip
        def inside(path, roots):
            # CPython hands the hook the path it will use, as str or bytes; anything else is refused rather than
            # converted here a second time (a learner's __fspath__ could answer differently each time)
            kind = _type(path)
            if kind is _int:
                return True  # an open descriptor: it passed this hook when it was opened
            if kind is not _str and kind is not _bytes:
                return False
            path = _realpath(path)
            if kind is _bytes:
                path = path.decode(errors="replace")
            return path == _devnull or any(path == root or path.startswith(root + _sep) for root in roots)

        if event in _forbidden or event.startswith(_prefixes):
            raise _error(f"grading sandbox: `{event}` is not allowed while grading")
        if event == "open":
            path, mode, flags = args
            writes = (mode is not None and any(c in _str(mode) for c in "wax+")) or (flags or 0) & _write_flags
            if not inside(path, _writable if writes else _readable + _writable):
                raise _error(f"grading sandbox: cannot {'write' if writes else 'read'} {path!r} while grading")
            if mode is None and _type(path) is not _int and _isdir(path) and not inside(path, _writable):
                raise _error("grading sandbox: os.open on a folder outside the work folder is not allowed (dir_fd)")
        elif event in ("os.listdir", "os.scandir"):
            if args[0] is not None and not inside(args[0], _readable + _writable):
                raise _error(f"grading sandbox: cannot list {args[0]!r} while grading")
        elif event in _path_events:
            paths, dir_fds = _path_events[event]
            if any(i < len(args) and args[i] not in (None, -1) for i in dir_fds):
                raise _error(f"grading sandbox: `{event}` with dir_fd is not allowed while grading")
            for i in paths:
                if i < len(args) and args[i] is not None and not inside(args[i], _writable):
                    raise _error(f"grading sandbox: cannot change {args[i]!r} while grading")

    sys.addaudithook(hook)
