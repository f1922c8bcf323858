"""Notice, in a grading child, learner code that changes what the probes rely on: torch, numpy, the course's modules.

A probe runs in the same process as the learner's code, so a submission could make a wrong answer look right
by changing the tools the probe measures with: `torch.Tensor.backward` that fills every `.grad`, `torch.allclose`
that says yes, a checker's `probe` that returns the reference's numbers. The verdict, in the grader's process,
only sees what the probe reports. So before any learner code runs, `Guard` records what the probes depend on:

* the namespace of every watched module (torch and the parts of it the probes call, numpy, einops, the
  standard modules they use, and every module of `tests` and `utils`), and of every class defined there
  (`torch.Tensor`, `torch.nn.Module`, `tests.harness.Exercise`, ...): which object each name is bound to, and
  for functions their code and defaults;
* the version tag CPython keeps on every dict (PEP 509: it changes on every write, even one that puts the same
  object back), read through `ctypes` objects made before the learner's code runs, so that a change that is
  undone before the probe ends (a patched `backward` that restores itself) is noticed too;
* the identity of the watched modules' class, so that their `__setattr__`, which refuses a change at once, is
  not swapped away.

It also refuses at once, and reports to the grader before the learner's code can undo anything: new code or
defaults for a watched function (`f.__code__ = ...`, through an audit hook), and rebinding a watched module's
name (`torch.allclose = ...`, through the module's class). `check()` (after every statement of the notebook and
after every probe) names the first difference it finds; the child reports it, and the grader gives that
statement's exercises, or that exercise, the status `tampered`.

What is allowed: a module gaining a new name (importing `torch.distributions` sets it on `torch`), and writes to
the mutable state a module keeps in its containers. Best effort, like the audit hook of `sandbox`: code that digs
into the interpreter (frames, C) can get around it; the kernel layers still keep such code inside its own process.
"""

from __future__ import annotations

import ctypes
import gc
import sys
import types

WATCHED_MODULES = (
    "builtins", "os", "math", "random", "functools", "inspect", "json", "io", "zipfile", "contextlib", "numpy",
    "numpy.linalg", "numpy.random", "numpy.lib.format", "einops", "einops.einops", "torch", "torch.nn",
    "torch.nn.functional", "torch.nn.init", "torch.nn.modules.module", "torch.nn.parameter", "torch._tensor",
    "torch.autograd", "torch.autograd.grad_mode", "torch.linalg", "torch.functional", "torch.random", "torch.testing",
)  # fmt: skip
WATCHED_PACKAGES = ("tests", "utils")  # every module of these, whatever its name
DICT_VERSION_OFFSET = 24  # CPython ≤ 3.11: ob_refcnt, ob_type, ma_used, then ma_version_tag (uint64)


def dict_version_reader(mapping: dict):
    """A ctypes view of a dict's version tag, or None where this interpreter has none we can read (the check then
    compares contents only, and a change undone before the check goes unnoticed)."""
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return None
    probe: dict = {}
    reader = ctypes.c_uint64.from_address(id(probe) + DICT_VERSION_OFFSET)
    before = reader.value
    probe["x"] = 1
    if reader.value == before:
        return None
    return ctypes.c_uint64.from_address(id(mapping) + DICT_VERSION_OFFSET)


def guarded_module_class(report):
    """A module class that refuses to rebind or delete a name, or to change its own class (new names are fine), and
    reports each attempt at once through `report`, so that undoing it later hides nothing."""

    def refuse(module, what):
        name = types.ModuleType.__getattribute__(module, "__dict__").get("__name__", "?")
        report(f"`{name}.{what}`")
        raise PermissionError(f"grading: changing `{name}.{what}` is not allowed")

    class GuardedModule(types.ModuleType):
        def __setattr__(self, name, value, _refuse=refuse, _set=types.ModuleType.__setattr__):
            namespace = types.ModuleType.__getattribute__(self, "__dict__")
            if name == "__class__" or (name in namespace and namespace[name] is not value):
                _refuse(self, name)
            _set(self, name, value)

        def __delattr__(self, name, _refuse=refuse):
            _refuse(self, name)

    return GuardedModule


class Guard:
    """What the probes depend on, as it was before learner code ran; `check()` says what changed since.

    `report(what)` tells the grader at once about a change that was refused (it must not raise)."""

    def __init__(self, report) -> None:
        self.report = report
        modules = [sys.modules[name] for name in WATCHED_MODULES if name in sys.modules]
        modules += [
            module
            for name, module in list(sys.modules.items())
            if name.split(".")[0] in WATCHED_PACKAGES and isinstance(module, types.ModuleType)
        ]
        self.watched: list[tuple[str, dict, dict, object]] = []  # (what, namespace, copy, version reader)
        self.function_ids: set[int] = set()  # refused new code or defaults by the audit hook, at once
        self.modules: list[tuple[types.ModuleType, type]] = []
        seen: set[int] = set()
        for module in modules:
            if id(module) in seen:
                continue
            seen.add(id(module))
            self.watch(module.__name__, vars(module))
            for value in list(vars(module).values()):
                if isinstance(value, type) and id(value) not in seen and self.owned(value):
                    seen.add(id(value))
                    self.watch(f"{value.__module__}.{value.__qualname__}", gc.get_referents(value.__dict__)[0])
            self.modules.append((module, type(module)))
        self.versions: list[int | None] = []

    @staticmethod
    def owned(cls: type) -> bool:
        return str(getattr(cls, "__module__", "")).split(".")[0] in ("torch", "numpy", "einops", *WATCHED_PACKAGES)

    def watch(self, what: str, namespace: dict) -> None:
        if not isinstance(namespace, dict):
            return
        self.watched.append((what, namespace, dict(namespace), dict_version_reader(namespace)))
        for value in namespace.values():
            function = value.__func__ if isinstance(value, staticmethod | classmethod) else value
            if isinstance(function, types.FunctionType):
                self.function_ids.add(id(function))  # alive as long as the namespace copy holds it

    def freeze(self) -> None:
        """From now on, refuse changes: watched modules get a class that refuses them, and an audit hook refuses new
        code or defaults for a watched function and a new class for a watched module. Then record the versions."""
        guarded = guarded_module_class(self.report)
        for n, (module, cls) in enumerate(self.modules):
            if cls is types.ModuleType:
                try:
                    module.__class__ = guarded
                    self.modules[n] = (module, guarded)
                except TypeError:
                    pass
        functions, modules = frozenset(self.function_ids), frozenset(id(module) for module, _ in self.modules)
        report, error = self.report, PermissionError

        def hook(event, args, _functions=functions, _modules=modules, _report=report, _error=error, _id=id):
            if event == "object.__setattr__" and (
                _id(args[0]) in _functions or (_id(args[0]) in _modules and args[1] == "__class__")
            ):
                _report(f"`{getattr(args[0], '__qualname__', getattr(args[0], '__name__', '?'))}.{args[1]}`")
                raise _error(f"grading: changing `{args[1]}` of a course or library object is not allowed")

        sys.addaudithook(hook)
        self.versions = [reader.value if reader is not None else None for _, _, _, reader in self.watched]

    def check(self) -> str | None:
        """The first change to what the probes depend on, in words, or None."""
        for module, cls in self.modules:
            if type(module) is not cls:
                return f"the class of module `{module.__name__}` was replaced"
        for n, (what, namespace, copy, reader) in enumerate(self.watched):
            if reader is not None and reader.value == self.versions[n]:
                continue
            for name, value in copy.items():
                if namespace.get(name, copy) is not value:
                    return f"`{what}.{name}` was changed"
            if reader is not None and len(namespace) == len(copy):
                return f"`{what}` was changed and put back"
            if reader is not None:  # new names only (an import of a submodule): fine, from now on
                copy.update(namespace)
                self.versions[n] = reader.value
        return None
