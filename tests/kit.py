"""The check kit: the properties every check of both chapters probes wherever the exercise gives them.

A section's probes and verdicts are built from these pieces, so that a kind of mistake is caught wherever it can
occur, not only where a catalogued mistake happens to show it:

1. **Every config field at a non-default value**: `config_family` gives the defaults and then each field the
   exercise reads at a value of its own, one field at a time (`tied_weights` is such a field: property 2).
2. **Tied and untied** for every exercise that touches the decoder: a config family's `tied_weights` axis.
3. **Every instance can fail on its own**: probes plant what they test (a dead latent, a threshold, a row) in every
   instance, and `expect_close_per_instance` names the instance that differs.
4. **Gradients compared with the reference's**: `weighted_gradients` in the probe, `expect_gradients` in the verdict.
5. **Parameters stay the parameters**: `parameter_record` before and after the learner's code, and one step of an
   optimiser built before it (`optimiser_step`), judged by `expect_parameters_kept`.
6. **Degenerate and boundary inputs** are each section's own (listed in its module docstring).
7. **Named messages stay right**: `read_attribute` surfaces the error a property raised (nn.Module's attribute lookup
   hides it); in the harness, `einsum_hint` explains an einsum whose pattern does not fit, and an exercise's
   `requires` names the earlier exercise to fix first when a check fails because of it.

Like every probe helper, nothing here imports `solutions`.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from typing import Any

import torch as t
from torch import Tensor, nn

from tests.harness import CheckFailed

# ------------------------------------------------------------------------------------- 1, 2: config families


def config_family(defaults: dict[str, Any], **non_defaults: Sequence[Any]) -> list[tuple[str, dict[str, Any]]]:
    """The defaults first, then each named field at each of its non-default values, one field at a time.

    Each entry is `(label, fields)`; the label ("default", "weight_normalize_eps=0.1", ...) keys the probe's results
    and names the setting in a verdict's message."""
    family = [("default", dict(defaults))]
    for name, values in non_defaults.items():
        for value in values:
            if defaults.get(name, object()) == value:
                raise ValueError(f"{name}={value!r} is the default: a family's other values must differ from it")
            family.append((f"{name}={value!r}", dict(defaults) | {name: value}))
    return family


def setting(label: str) -> str:
    """How a verdict names a family member in a message: nothing for the defaults."""
    return "" if label == "default" else f" (with {label})"


# ------------------------------------------------------------------------------------------- 4: gradients


def gradient_weights(out: Tensor) -> Tensor:
    """Fixed, unequal weights for a scalar of the output, so that the gradient sees every output entry."""
    return t.linspace(0.5, 1.5, out.numel(), device=out.device, dtype=out.dtype).view(out.shape)


def weighted_gradients(module: nn.Module, out: Any, names: Iterable[str]) -> dict[str, Tensor | None]:
    """`grad_<name>` for each named parameter of `module`: the gradient of a fixed weighted sum of `out`, or None when
    no gradient reaches it. Computed with `torch.autograd.grad`, so that nothing is left in the parameters' `.grad`."""
    names = list(names)
    found = {name: getattr(module, name, None) for name in names}
    wanted = [name for name, p in found.items() if isinstance(p, Tensor) and p.requires_grad]
    grads: dict[str, Tensor | None] = {f"grad_{name}": None for name in names}
    if not (isinstance(out, Tensor) and out.requires_grad and wanted):
        return grads
    computed = t.autograd.grad((out * gradient_weights(out)).sum(), [found[name] for name in wanted], allow_unused=True)
    return grads | {f"grad_{name}": grad for name, grad in zip(wanted, computed, strict=True)}


HINT_NO_GRADIENT = (
    "no gradient reaches `{name}` through {what}: don't detach anything (`.detach()`, `.data`, `.item()`, "
    "`torch.no_grad()`), or the optimiser cannot train `{name}`"
)
HINT_WRONG_GRADIENT = (
    "{what} gives the right values but the wrong gradient with respect to `{name}` (largest difference {diff:.3g}): "
    "part of the computation is hidden from autograd (a `.detach()`, `.data` or a value computed under "
    "`torch.no_grad()`), so training would follow a different direction than the maths says"
)


def expect_gradients(
    got: dict[str, Any], expected: dict[str, Tensor], what: str, rtol: float = 1e-3, atol: float = 1e-4
) -> None:
    """Compare `grad_<name>` results of `weighted_gradients` with the reference's, for every name in `expected`.

    Call it after the values are judged: its message says the values are right. Gradients are sums of terms of
    either sign, so their float32 rounding shows at 1e-5 while a mistake moves them by 1e-2 or more."""
    for name, reference in expected.items():
        grad = got.get(f"grad_{name}")
        if grad is None:
            raise CheckFailed(HINT_NO_GRADIENT.format(name=name, what=what) + ".")
        if not isinstance(grad, Tensor) or grad.shape != reference.shape:
            raise CheckFailed(f"the gradient with respect to `{name}` has the wrong shape: is `{name}` replaced?")
        if not t.allclose(grad, reference, rtol=rtol, atol=atol):
            diff = float((grad - reference).abs().max())
            raise CheckFailed(HINT_WRONG_GRADIENT.format(name=name, what=what, diff=diff) + ".")


# ------------------------------------------------------------------------------ 5: parameters stay parameters


def parameter_record(module: nn.Module) -> dict[str, Any]:
    """Who each parameter is: its object's identity and the memory it occupies, keyed by name (probe side).

    `ids` are only compared within one probe run, so they may come from a child process."""
    params = dict(module.named_parameters(remove_duplicate=False))
    spans = {}
    for name, p in params.items():
        start = p.untyped_storage().data_ptr() + p.storage_offset() * p.element_size()
        spans[name] = [start, start + max(p.numel(), 1) * p.element_size()]
    return {"ids": {name: id(p) for name, p in params.items()}, "spans": spans}


def optimiser_step(module: nn.Module, optimiser: "PlainSGD | t.optim.Optimizer", lr: float) -> dict[str, Tensor]:
    """One SGD step of `optimiser` (built with `lr` before the learner's code ran) on a fixed linear loss of every
    parameter the module has now; returns every parameter after it. The verdict knows where each must land:
    value − lr · weights. A parameter the optimiser no longer holds does not move; two that share memory move twice."""
    before = {name: p.detach().clone() for name, p in module.named_parameters()}
    optimiser.zero_grad(set_to_none=True)
    loss = sum((p * gradient_weights(p)).sum() for p in module.parameters() if p.requires_grad)
    if isinstance(loss, Tensor):
        loss.backward()
    optimiser.step()
    return {name: p.detach().clone() for name, p in module.named_parameters()} | {
        f"before_step.{name}": value for name, value in before.items()
    }


class PlainSGD:
    """Plain SGD over the parameters a module has when it is built, for `optimiser_step`: the same step as
    `torch.optim.SGD` (p ← p − lr · grad), without its first-use cost (building the first torch optimiser in a process
    imports torch._dynamo: seconds, in every grader child). Like any optimiser it holds the parameter objects it was
    given, so a parameter replaced afterwards is not moved."""

    def __init__(self, params: Iterable[nn.Parameter], lr: float) -> None:
        self.params, self.lr = list(params), lr

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @t.no_grad()
    def step(self) -> None:
        for p in self.params:
            if p.grad is not None:
                p.sub_(self.lr * p.grad)


def sgd_for(module: nn.Module, lr: float = 0.25) -> PlainSGD:
    """The optimiser `optimiser_step` uses: plain SGD over the module's parameters as they are now."""
    return PlainSGD(module.parameters(), lr)


HINT_REPLACED = (
    "`{name}` is a new object after {what}: write into the existing parameter (under `torch.no_grad()`, e.g. "
    "`self.{name}[...] = ...` or `self.{name}.copy_(...)`, or `.data[...] =`) instead of assigning a new "
    "`nn.Parameter`; the optimiser still holds the old one and would never train the new one"
)
HINT_SHARED = (
    "`{a}` and `{b}` share memory: each parameter needs storage of its own (an untied decoder that is a view of the "
    "encoder makes the SAE train as a tied one). Use `.clone()` when one is made from the other"
)
HINT_NOT_STEPPED = (
    "after {what}, one optimiser step does not move `{name}` as it should (largest difference {diff:.3g}): the "
    "optimiser built before it no longer trains that parameter (replaced, made to not require a gradient, or "
    "sharing memory with another parameter)"
)


def expect_parameters_kept(
    before: dict[str, Any], after: dict[str, Any], stepped: dict[str, Tensor] | None, what: str, lr: float = 0.25
) -> None:
    """The verdict on parameters: the same objects by name as before the learner's code ran, each with memory of its
    own, and (given `optimiser_step`'s results) each moved by exactly one SGD step of the optimiser built before."""
    for name, identity in before["ids"].items():
        if name in after["ids"] and after["ids"][name] != identity:
            raise CheckFailed(HINT_REPLACED.format(name=name, what=what) + ".")
    spans = sorted((start, end, name) for name, (start, end) in after["spans"].items())
    for (_, end, a), (start, _, b) in zip(spans, spans[1:], strict=False):
        if start < end:
            raise CheckFailed(HINT_SHARED.format(a=a, b=b) + ".")
    if stepped is None:
        return
    for name in after["ids"]:
        value, moved = stepped.get(f"before_step.{name}"), stepped.get(name)
        if not isinstance(value, Tensor) or not isinstance(moved, Tensor):
            continue
        expected = value - lr * gradient_weights(value)
        if not t.allclose(moved, expected, rtol=1e-5, atol=1e-6):
            diff = float((moved - expected).abs().max())
            raise CheckFailed(HINT_NOT_STEPPED.format(name=name, what=what, diff=diff) + ".")


# --------------------------------------------------------------------------------------- 3: every instance


def expect_close_per_instance(
    got: Tensor, expected: Tensor, what: str, inst_axis: int = 0, rtol: float = 1e-4, atol: float = 1e-5
) -> None:
    """When only some instances differ, say which: "instance 2 is wrong (the others are right)". Call it after the
    values were found to differ and no catalogued mistake explained them."""
    if got.shape != expected.shape or got.dim() == 0:
        return
    n = got.shape[inst_axis]
    wrong = [
        i
        for i in range(n)
        if not t.allclose(got.select(inst_axis, i), expected.select(inst_axis, i), rtol=rtol, atol=atol, equal_nan=True)
    ]
    if wrong and len(wrong) < n:
        listed = ", ".join(map(str, wrong))
        raise CheckFailed(
            f"{what} is wrong for instance{'s' if len(wrong) > 1 else ''} {listed} of {n} (the others are right): "
            "every instance is an independent model, so treat each one alike; don't handle instance 0 (or the first "
            "few) on their own"
        )


# ------------------------------------------------------------------------------------------- 7: messages


def read_attribute(obj: Any, name: str) -> Any:
    """`getattr(obj, name)`, except that an AttributeError raised inside a property surfaces as itself.

    nn.Module answers a property that raises AttributeError with "no attribute '<the property>'", which hides the
    learner's real error (e.g. reading `_W_dec` when it is None); calling the property's getter directly does not."""
    member = inspect.getattr_static(type(obj), name, None)
    if isinstance(member, property) and member.fget is not None:
        try:
            return member.fget(obj)
        except AttributeError as error:
            raise AttributeError(f"inside the property `{name}`: {error}") from None
    return getattr(obj, name)
