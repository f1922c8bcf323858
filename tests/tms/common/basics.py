"""Building the learner's model, shapes with their hints, comparing with the reference while naming a catalogued
mistake, and weights of a known geometry: what every chapter 1 section's checks use."""

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch as t
from torch import Tensor

from tests.harness import CheckFailed, Mistake, expect_close, expect_tensor, mistake_outputs, raised
from tests.kit import expect_close_per_instance

# ---------------------------------------------------------------------------------------------- models


def toy_model_config(**fields) -> SimpleNamespace:
    """The fields of the notebook's ToyModelConfig, without importing `solutions` (probes never do)."""
    return SimpleNamespace(**{"n_correlated_pairs": 0, "n_anticorrelated_pairs": 0, **fields})


def build(cls: type, cfg_kwargs: dict, device: str, **kwargs) -> t.nn.Module:
    """Instantiate the learner's class the way the notebook does, with a plain message if that fails."""
    try:
        return cls(toy_model_config(**cfg_kwargs), device=device, **kwargs)
    except NotImplementedError:
        raise
    except Exception as error:
        raise CheckFailed(
            f"could not build {cls.__name__}(cfg, ...): {type(error).__name__}: {error}. "
            "Keep the __init__ the notebook gives you."
        ) from None


def set_parameter(model: t.nn.Module, name: str, value: Tensor) -> None:
    param = getattr(model, name, None)
    if not isinstance(param, Tensor):
        raise CheckFailed(f"{type(model).__name__} has no tensor attribute `{name}`.")
    if param.shape != value.shape:
        raise CheckFailed(f"`{name}` should have shape {tuple(value.shape)}, got {tuple(param.shape)}.")
    with t.no_grad():
        param.copy_(value.to(param.device))


def sparse(g: t.Generator, shape: tuple[int, ...], low: float) -> Tensor:
    """Uniform values on [low, 1], each present with probability 0.6 (else 0)."""
    return (low + (1 - low) * t.rand(shape, generator=g)) * (t.rand(shape, generator=g) < 0.6)


# --------------------------------------------------------------------------------------------- forward

HINT_LEADING_AXES = (
    "forward must accept any number of leading axes, none included (`features: [... inst feats]`, so "
    "[inst feats] and [a b inst feats] too): use `...` in your einsum patterns, and index the instance axis from "
    "the end (`features[..., i, :]`), not as axis 1"
)
HINT_SQUEEZE = (
    "Keep every axis, even one of size 1 (an input axis of size 1, n_inst = 1 or d_hidden = 1): `.squeeze()` with "
    "no argument drops all of them, so name the axis you mean, `.squeeze(dim)`"
)


def dropped_size_one_axes(got: tuple[int, ...], expected: tuple[int, ...]) -> bool:
    """Whether shape `got` is `expected` with some of its size-1 axes removed, as `.squeeze()` leaves it."""
    return len(got) < len(expected) and [n for n in got if n != 1] == [n for n in expected if n != 1]


def expect_shaped(got: Any, what: str, shape: tuple[int, ...], axes: str, hint: str | None = None) -> Tensor:
    """`expect_tensor`, naming `.squeeze()` when the result lost size-1 axes, and prefixing `hint` to any other
    failure (what the learner is told about the input that went wrong)."""
    if isinstance(got, Tensor) and dropped_size_one_axes(tuple(got.shape), tuple(shape)):
        raise CheckFailed(f"{HINT_SQUEEZE}. {what} should have shape {tuple(shape)}, got {tuple(got.shape)}.")
    try:
        return expect_tensor(got, what, shape, axes)
    except CheckFailed as error:
        if hint is None:
            raise
        raise CheckFailed(f"{hint}. ({error})") from None


# what the kit's `expect_close_per_instance` says when only some instances are wrong: the hint of the catalogued
# mistakes that handle one instance unlike the others
HINT_EVERY_INSTANCE = "every instance is an independent model, so treat each one alike"


def expect_close_to_reference(
    got: Tensor,
    expected: Tensor,
    what: str,
    mistakes: list[Mistake],
    run: Callable[[Callable[..., Any]], Any],
    hint: str | None = None,
    rtol: float = 1e-4,
    atol: float = 1e-5,
    inst_axis: int | None = None,
) -> None:
    """`expect_close`, naming the catalogued mistake whose output (`run(impl)`) the learner's matches; the mistakes
    run only when the learner's output is wrong. A difference that no catalogued mistake explains names the instances
    that differ when only some do (given the instance axis, `inst_axis`), else is reported with `hint`, if given."""
    if t.allclose(got, expected, rtol=rtol, atol=atol):  # NaN is never close: expect_close then names it
        return
    outputs, hints = mistake_outputs(mistakes, run)
    try:
        expect_close(got, expected, what, outputs, hints, rtol=rtol, atol=atol)
    except CheckFailed as error:
        if any(known in str(error) for known in hints.values()):
            raise
        if inst_axis is not None:
            expect_close_per_instance(got, expected, what, inst_axis, rtol=rtol, atol=atol)
        if hint is None:
            raise
        raise CheckFailed(f"{hint}. ({error})") from None


# ------------------------------------------------------------------------------------ functions of the weights


def rotation(g: t.Generator, d: int) -> Tensor:
    """A random orthogonal [d, d] matrix."""
    q, r = t.linalg.qr(t.randn((d, d), generator=g))
    return q * r.diagonal().sign()


def planted_instance(g: t.Generator, d_hidden: int, n_features: int, columns: dict[int, tuple[int, float]]) -> Tensor:
    """One instance's W [d_hidden, feats] with a known geometry: feature f lies along hidden axis a with signed norm
    s for every `f: (a, s)` in `columns`, every other feature is dead (a zero column), and the hidden space is then
    turned by a random rotation, so that nothing is axis-aligned."""
    W = t.zeros((d_hidden, n_features))
    for feature, (axis, norm) in columns.items():
        W[axis, feature] = norm
    return rotation(g, d_hidden) @ W


def size_one_weights(g: t.Generator, d_hidden: int, n_features: int) -> dict[str, Tensor]:
    """Random weights of varied norms with the size-1 axes the contract allows: one instance, one hidden dimension."""
    shapes = {"a single instance": (1, d_hidden, n_features), "a single hidden dimension": (2, 1, n_features)}
    return {
        name: t.randn(shape, generator=g) * (0.3 + 2 * t.rand((shape[0], 1, n_features), generator=g))
        for name, shape in shapes.items()
    }


def judge_size_one(got: Any, expected: Tensor, what: str, axes: str) -> None:
    """A function of W on weights with size-1 axes: it must keep them, and give the reference's values."""
    if (message := raised(got)) is not None:
        raise CheckFailed(f"{HINT_SQUEEZE}. ({what} raised {message})")
    got = expect_shaped(got, what, tuple(expected.shape), axes, HINT_SQUEEZE)
    expect_close_to_reference(got, expected, what, [], lambda impl: None, HINT_SQUEEZE)
