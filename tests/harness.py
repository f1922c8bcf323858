"""How an exercise is checked: the machinery behind `tests.check` and the grader.

Every check has two halves:

* a **probe** calls the learner's object on seeded inputs and returns what came back (tensors, numbers,
  strings), never a verdict;
* a **verdict** rebuilds the same inputs from the seed, computes what the reference gives, and raises
  `CheckFailed` with a hint in the learner's terms when the probe's results are wrong.

In a notebook both halves run in one process. The grader runs the probe in a sandboxed child process and the
verdict in the grader's own process, which never runs learner code, so a submission that patches `torch` or
`tests` can change only its own results, never how they are judged. Probes therefore never import `solutions`:
the grader's children have no working references.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import json
import random
import traceback
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch as t
from torch import Tensor

DEFAULT_SEED = 1234


class CheckFailed(AssertionError):
    """The learner's code ran but gave a wrong answer; the message says what is wrong and how to fix it."""

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of a stack trace
        return [f"\x1b[31m✗ {self}\x1b[0m"]


class MethodMissing(CheckFailed):
    """The learner's class has no method for this exercise (e.g. a class from an earlier section)."""


class NotImplementedYet(NotImplementedError):
    """The exercise still holds its stub."""

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[33m… {self}\x1b[0m"]


@dataclass(frozen=True)
class Mistake:
    """A realistic wrong implementation, and the hint the checker gives when it recognises it."""

    impl: Callable[..., Any]
    hint: str

    @property
    def name(self) -> str:
        return self.impl.__name__


@dataclass(frozen=True)
class Context:
    """What a probe and its verdict share: the seed that fixes every input, and the device to run on."""

    seed: int = DEFAULT_SEED
    device: str = "cpu"

    def generator(self, salt: int = 0) -> t.Generator:
        """A CPU generator for inputs, independent of every global random state."""
        return t.Generator().manual_seed(self.seed * 1_000_003 + salt)


@dataclass
class Exercise:
    """One exercise: where its reference lives and how it is checked. How it is presented (title, difficulty,
    importance, time) belongs to the lesson: its marker in the section's source (`utils.notebooks`)."""

    id: str
    name: str  # the symbol the learner defines in the notebook
    reference_path: str  # "module:attribute"
    probe: Callable[[Any, Context], dict[str, Any]]
    verdict: Callable[[dict[str, Any], Context], None]
    method: str | None = None  # the method the check calls, for class exercises
    stubs: tuple[str, ...] = ()  # the methods whose bodies the learner writes, when not just `method`
    signature: tuple[str, ...] = ()  # required positional parameters of a function exercise
    mistakes: list[Mistake] = field(default_factory=list)
    alternatives: list[Callable[..., Any]] = field(default_factory=list)  # correct, but written differently
    points: int = 1
    # further classes the learner defines for this exercise, passed to `check` after `name` (its probe, mistakes and
    # alternatives then take and give a tuple with one class per name; the reference path names them all, "m:A,B")
    also: tuple[str, ...] = ()
    # earlier exercises on the same object whose code this one runs (e.g. `forward` reads `W_dec_normalized`): when
    # this check fails and one of them is not right, the message says to fix that one first
    requires: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.also)

    @property
    def reference(self) -> Any:
        module, attributes = self.reference_path.split(":")
        found = tuple(getattr(importlib.import_module(module), attribute) for attribute in attributes.split(","))
        return found if self.also else found[0]

    @property
    def what(self) -> str:
        if self.also:
            return " and ".join(self.names)
        return f"{self.name}.{self.method}" if self.method else self.name

    def check(self, *objs: Any, seed: int = DEFAULT_SEED, device: str = "cpu") -> None:
        if not objs:
            raise TypeError(f"check({self.id!r}, ...) needs the {' and '.join(self.names)} to check")
        context = Context(seed, device)
        if self.also and len(objs) == 1 and isinstance(objs[0], tuple):  # the classes given as one tuple
            objs = objs[0]
        judge(self, run_probe(self, objs if self.also else objs[0] if len(objs) == 1 else objs, context), context)
        print(f"✓ {self.id}: {self.what} {'are' if self.also else 'is'} correct.")


# ----------------------------------------------------------------------------------------------- probing


@contextlib.contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Seed every global generator for the block, then put back the learner's states untouched."""
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = list(range(t.cuda.device_count())) if t.cuda.is_available() else []
    with t.random.fork_rng(devices=devices):
        t.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def validate_kind(exercise: Exercise, obj: Any) -> None:
    """Refuse, in plain words, an object of the wrong kind before calling anything."""
    name = exercise.name
    if exercise.also:
        wanted = ", ".join(exercise.names)
        given_objects = obj if isinstance(obj, tuple) else (obj,)
        for expected, given in zip(exercise.names, given_objects, strict=False):
            if given is None:
                raise CheckFailed(f"got None instead of `{expected}`: run the cell that defines `{expected}` first.")
        if len(given_objects) != len(exercise.names):
            raise CheckFailed(f"pass the classes {wanted}, in that order: check({exercise.id!r}, {wanted}).")
        for expected, given in zip(exercise.names, given_objects, strict=True):
            if not isinstance(given, type):
                raise CheckFailed(f"expected the class `{expected}`, got {type(given).__name__} {given!r:.60}.")
        return
    if obj is None:
        raise CheckFailed(f"got None instead of `{name}`: run the cell that defines `{name}` first.")
    if exercise.method is not None:
        if not isinstance(obj, type):
            if isinstance(obj, t.nn.Module):
                raise CheckFailed(
                    f"got an instance of {type(obj).__name__}; pass the class itself: check(..., {name})."
                )
            raise CheckFailed(f"expected the class `{name}`, got {type(obj).__name__} {obj!r:.60}.")
        member = inspect.getattr_static(obj, exercise.method, None)
        if not (callable(member) or isinstance(member, property | staticmethod | classmethod)):
            raise MethodMissing(f"class {obj.__name__} has no method `{exercise.method}`.")
        return
    if isinstance(obj, type) or not callable(obj):
        raise CheckFailed(f"expected the function `{name}`, got {type(obj).__name__} {obj!r:.60}.")
    try:
        inspect.signature(obj).bind(*exercise.signature)
    except TypeError:
        wanted = ", ".join(exercise.signature)
        raise CheckFailed(
            f"`{name}` should take ({wanted}); yours has the signature {inspect.signature(obj)}."
        ) from None
    except ValueError:  # builtins without a signature: let the call decide
        pass


def learner_traceback(error: BaseException, limit: int = 3) -> str:
    """The last few frames of an exception, which is where the learner's own code is."""
    frames = traceback.format_exception(type(error), error, error.__traceback__, limit=-limit)
    return "".join(frames).strip()


def run_probe(exercise: Exercise, obj: Any, context: Context) -> dict[str, Any]:
    """Run the exercise's probe on the learner's object, and the probes of the exercises it `requires` (their results
    under "requires"); never raises, whatever the object does."""
    results = run_own_probe(exercise, obj, context)
    if exercise.requires and results.get("status") != "not_implemented":
        from tests import EXERCISES

        results["requires"] = {
            required: run_own_probe(EXERCISES[required], obj, context) for required in exercise.requires
        }
    return results


def run_own_probe(exercise: Exercise, obj: Any, context: Context) -> dict[str, Any]:
    try:
        validate_kind(exercise, obj)
        with isolated_rng(context.seed):
            results = exercise.probe(obj, context)
        return {"status": "ok", **to_cpu(results)}
    except MethodMissing as error:
        return {"status": "missing", "message": str(error)}
    except CheckFailed as error:
        return {"status": "fail", "message": str(error)}
    except NotImplementedError as error:
        return {"status": "not_implemented", "message": str(error)}
    except (Exception, SystemExit) as error:  # the learner's code raised (or called exit()): report it
        return {"status": "error", "message": f"{type(error).__name__}: {error}", "trace": learner_traceback(error)}


def attempt(call: Callable[[], Any]) -> Any:
    """Run one learner call inside a probe, recording an exception as a result instead of aborting.

    A stub's NotImplementedError still propagates, so the exercise is reported as not implemented.
    """
    try:
        return call()
    except NotImplementedError:
        raise
    except Exception as error:
        return {"raised": f"{type(error).__name__}: {error}"}


def raised(value: Any) -> str | None:
    """The exception message recorded by `attempt`, or None if the call returned normally."""
    return value["raised"] if isinstance(value, dict) and set(value) == {"raised"} else None


def judge(exercise: Exercise, results: dict[str, Any], context: Context) -> None:
    """Turn probe results into a verdict: return if right, raise CheckFailed / NotImplementedYet if not."""
    status = results.get("status")
    if status == "not_implemented":
        raise NotImplementedYet(
            f"{exercise.id}: `{exercise.what}` is not implemented yet: replace the "
            f"`raise NotImplementedError(...)` line with your code, re-run that cell, then this one."
        )
    try:
        if status in ("fail", "missing"):
            raise CheckFailed(results["message"])
        if status == "error":
            message = results["message"]
            trace = results.get("trace", "")
            raise CheckFailed(f"your `{exercise.what}` raised {message}{einsum_hint(message)}\n\n{trace}")
        with isolated_rng(context.seed):  # the verdict builds reference models: keep the learner's RNG untouched
            exercise.verdict(results, context)
    except CheckFailed as error:
        if status != "missing":  # a class without this method: nothing upstream to blame
            blame_requirement(exercise, results, context)
        raise CheckFailed(f"{exercise.id}: {error}") from None


def blame_requirement(exercise: Exercise, results: dict[str, Any], context: Context) -> None:
    """After `exercise` failed: if an exercise it requires is not right either, say to fix that one first."""
    from tests import EXERCISES

    for required, required_results in (results.get("requires") or {}).items():
        try:
            judge(EXERCISES[required], required_results, context)
        except NotImplementedYet:
            raise CheckFailed(
                f"{exercise.id}: your `{exercise.what}` uses `{EXERCISES[required].what}`, which is not implemented "
                f"yet: write it first (exercise {required})."
            ) from None
        except CheckFailed as failure:
            raise CheckFailed(
                f"{exercise.id} fails because `{EXERCISES[required].what}`, which it uses, is not right yet: fix that "
                f"first, then re-run this check. check({required!r}, ...) says:\n  {failure}"
            ) from None
        except Exception:  # results that cannot be judged (from a hostile child, say) blame nothing
            continue


def reference_of(exercise_id: str) -> Any:
    """The reference object of an exercise (its `Exercise.reference`): how a verdict gets the code it rebuilds the
    expected answer with. Only verdicts call it; probes, which the grader runs where references are redacted, never
    do."""
    from tests import EXERCISES  # the registry imports every section's checks, which import this module

    return EXERCISES[exercise_id].reference


def einsum_hint(message: str) -> str:
    """A plain explanation for the errors torch's and einops' einsum raise when a pattern does not fit its operands."""
    lowered = message.lower()
    if not any(word in lowered for word in ("einsum", "subscript", "einops")):
        return ""
    return (
        "\nThat error comes from an einsum whose pattern does not fit its tensors: each operand needs as many axes as "
        "its part of the pattern, in the same order, with the same length wherever a name is shared (print `.shape` of "
        "each operand)."
    )


# ------------------------------------------------------------------------------- comparing with hints


def describe_shape(shape: tuple[int, ...], axes: str) -> str:
    names = axes.split()
    if len(names) == len(shape):
        return "(" + ", ".join(names) + ") = " + str(tuple(shape))
    return str(tuple(shape))


def expect_tensor(got: Any, what: str, shape: tuple[int, ...], axes: str, dtype: t.dtype = t.float32) -> Tensor:
    """Check type, shape and dtype first, with a message that names the axes."""
    if (message := raised(got)) is not None:
        raise CheckFailed(f"{what} raised {message}")
    if not isinstance(got, Tensor):
        raise CheckFailed(
            f"{what} should return a tensor of shape {describe_shape(shape, axes)}, got {type(got).__name__}."
        )
    if tuple(got.shape) != tuple(shape):
        raise CheckFailed(f"{what} should return shape {describe_shape(shape, axes)}, got {tuple(got.shape)}.")
    if got.dtype != dtype:
        raise CheckFailed(f"{what} should return {dtype}, got {got.dtype}.")
    return got


def expect_close(
    got: Tensor,
    expected: Tensor,
    what: str,
    candidates: dict[str, Tensor] | None = None,
    hints: dict[str, str] | None = None,
    rtol: float = 1e-4,
    atol: float = 1e-5,
) -> None:
    """Compare values; when they differ, name the known mistake whose output the learner's matches."""
    if not t.isfinite(got).all() and t.isfinite(expected).all():
        raise CheckFailed(f"{what} contains NaN or inf values where the reference has none.")
    if t.allclose(got, expected, rtol=rtol, atol=atol):
        return
    for name, output in (candidates or {}).items():
        if isinstance(output, Tensor) and output.shape == got.shape and t.allclose(got, output, rtol=rtol, atol=atol):
            raise CheckFailed(f"{what} is wrong. {(hints or {})[name]}")
    diff = (got - expected).abs()
    where = tuple(int(i) for i in np.unravel_index(int(diff.argmax()), diff.shape))
    raise CheckFailed(
        f"{what} is wrong: largest difference {diff.max():.3g} at index {where} "
        f"(expected {expected[where]:.5g}, got {got[where]:.5g})."
    )


def mistake_outputs(mistakes: list[Mistake], run: Callable[[Callable[..., Any]], Any]) -> tuple[dict, dict]:
    """Outputs of every catalogued mistake on the check's inputs, and their hints, keyed by name."""
    outputs, hints = {}, {}
    for mistake in mistakes:
        try:
            outputs[mistake.name] = run(mistake.impl)
        except Exception:  # a mistake that cannot run on these inputs cannot be the learner's
            continue
        hints[mistake.name] = mistake.hint
    return outputs, hints


# ------------------------------------------------------------------------------ moving results around


def to_cpu(value: Any) -> Any:
    """Detach tensors and move them to the CPU, recursively, so results can be compared and serialised."""
    if isinstance(value, Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {str(k): to_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_cpu(v) for v in value]
    return value


def encode_results(results: dict[str, Any]) -> bytes:
    """Serialise probe results without pickle: a JSON skeleton plus an .npz of the arrays."""
    arrays: dict[str, np.ndarray] = {}

    def encode(value: Any) -> Any:
        if isinstance(value, Tensor):
            key = f"a{len(arrays)}"
            arrays[key] = (
                value.detach().cpu().float().numpy() if value.dtype == t.bfloat16 else value.detach().cpu().numpy()
            )
            return {"__tensor__": key, "dtype": str(value.dtype).removeprefix("torch.")}
        if isinstance(value, dict):
            return {"__dict__": {str(k): encode(v) for k, v in value.items()}}
        if isinstance(value, list | tuple):
            return [encode(v) for v in value]
        if value is None or isinstance(value, bool | int | float | str):
            return value
        return {"__repr__": repr(value)[:200]}

    skeleton = json.dumps(encode(results)).encode()
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return len(skeleton).to_bytes(8, "little") + skeleton + buffer.getvalue()


MAX_SKELETON_BYTES = 1 << 20
MAX_ARRAY_BYTES = 256 << 20
DTYPES = {
    name: getattr(t, name)
    for name in (
        "float16",
        "bfloat16",
        "float32",
        "float64",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "bool",
        "complex64",
    )
}


def check_archive(data: bytes) -> None:
    """Refuse results whose sizes could exhaust memory: compressed members (zip bombs) or .npy headers that promise
    more data than they hold. Results may come from a process running hostile code."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            if info.compress_type != zipfile.ZIP_STORED or info.file_size > MAX_ARRAY_BYTES:
                raise ValueError("malformed results")
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                read_header = (
                    np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read_header(member)
                if np.prod(shape, dtype=np.float64) * dtype.itemsize > info.file_size:
                    raise ValueError("malformed results")


def decode_results(data: bytes) -> dict[str, Any]:
    """Inverse of `encode_results`; never unpickles anything, and raises ValueError on malformed input."""
    size = int.from_bytes(data[:8], "little")
    if size > MAX_SKELETON_BYTES or 8 + size > len(data):
        raise ValueError("malformed results")
    skeleton = json.loads(data[8 : 8 + size])
    check_archive(data[8 + size :])
    arrays = np.load(io.BytesIO(data[8 + size :]), allow_pickle=False)

    def decode(value: Any) -> Any:
        if isinstance(value, list):
            return [decode(v) for v in value]
        if not isinstance(value, dict):
            return value
        if "__tensor__" in value:
            if value.get("dtype") not in DTYPES:
                raise ValueError("malformed results")
            return t.from_numpy(arrays[value["__tensor__"]].copy()).to(DTYPES[value["dtype"]])
        if "__dict__" in value:
            return {k: decode(v) for k, v in value["__dict__"].items()}
        return f"<{value.get('__repr__', 'object')}>"

    results = decode(skeleton)
    if not isinstance(results, dict):
        raise ValueError("malformed results")
    return results
