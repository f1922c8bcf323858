"""Probing and judging `calculate_loss` (sections 1 and 4), and the mistakes every such loss can make."""

from collections.abc import Callable

import einops
import torch as t
from torch import Tensor

from tests.harness import CheckFailed, Context, Mistake, expect_close, mistake_outputs
from tests.kit import expect_close_per_instance, expect_gradients
from tests.tms.common.basics import HINT_EVERY_INSTANCE, build

# -------------------------------------------------------------------------------------- calculate_loss

HINT_SCALAR = "calculate_loss must return a 0-dimensional tensor that still has its gradient: don't call `.item()` or `float()` on it"
HINT_SUM_INSTANCES = (
    "calculate_loss returns one number: sum the per-instance losses (shape ()), don't return one loss per instance"
)


HINT_LOSS_NO_GRADIENT = (
    "your loss has the right value, but no gradient reaches `out` through it, so the model could never learn from it: "
    "don't detach anything (`.detach()`, `.data`, `torch.no_grad()`, or a new `torch.tensor(...)` made of values)"
)
WHAT_PER_INSTANCE = "calculate_loss(out, batch), seen through its gradient with respect to each instance's `out`,"


def probe_loss(cls: type, cfg: dict, case: dict[str, Tensor], context: Context) -> dict:
    """The learner's loss on the case's `out` and `batch`, and its gradient."""
    model = build(cls, cfg, context.device, importance=case["importance"].to(context.device))
    out = case["out"].to(context.device).requires_grad_(True)
    batch = case["batch"].to(context.device)
    loss = model.calculate_loss(out, batch)
    results = {"loss": loss, "out_after": out.detach(), "batch_after": batch}
    if isinstance(loss, Tensor) and loss.requires_grad and loss.numel() == 1:
        results["grad_out"] = t.autograd.grad(loss.sum(), out, allow_unused=True)[0]
    return results


def loss_mistakes(target: Callable[[Tensor], Tensor], error: str) -> list[Mistake]:
    """The mistakes of any `calculate_loss` that weights the squared error of `out` against `target(batch)` (written
    `error` in the hints) by importance, with their hints."""

    def loss_mean_over_instances(self, out, batch):
        return einops.reduce(self.importance * (target(batch) - out) ** 2, "batch inst feats -> inst", "mean").mean()

    def loss_summed_over_batch(self, out, batch):
        return (self.importance * (target(batch) - out) ** 2).sum(0).mean(-1).sum()

    def loss_summed_over_features(self, out, batch):
        return (self.importance * (target(batch) - out) ** 2).mean(0).sum(-1).sum()

    def loss_without_importance(self, out, batch):
        return einops.reduce((target(batch) - out) ** 2, "batch inst feats -> inst", "mean").sum()

    def loss_importance_inside_square(self, out, batch):
        return einops.reduce((self.importance * (target(batch) - out)) ** 2, "batch inst feats -> inst", "mean").sum()

    def loss_absolute_error(self, out, batch):
        return einops.reduce(self.importance * (target(batch) - out).abs(), "batch inst feats -> inst", "mean").sum()

    def loss_one_per_instance(self, out, batch):
        return einops.reduce(self.importance * (target(batch) - out) ** 2, "batch inst feats -> inst", "mean")

    def loss_first_instance_importance(self, out, batch):
        # the importance of instance 0 broadcast over every instance
        return einops.reduce(self.importance[0] * (target(batch) - out) ** 2, "batch inst feats -> inst", "mean").sum()

    def loss_detached_output(self, out, batch):
        return einops.reduce(
            self.importance * (target(batch) - out.detach()) ** 2, "batch inst feats -> inst", "mean"
        ).sum()

    def loss_returns_float(self, out, batch):
        return (
            einops.reduce(self.importance * (target(batch) - out) ** 2, "batch inst feats -> inst", "mean").sum().item()
        )

    return [
        Mistake(
            loss_mean_over_instances,
            "Sum the per-instance losses, don't average them: each instance is its own model, and averaging would "
            "divide every instance's gradient by n_inst.",
        ),
        Mistake(
            loss_summed_over_batch,
            "Average over the batch axis, don't sum it (mean over batch and features, then sum over instances).",
        ),
        Mistake(
            loss_summed_over_features,
            "Average over the feature axis, don't sum it (mean over batch and features, then sum over instances).",
        ),
        Mistake(loss_without_importance, "Weight each feature's squared error by `self.importance`."),
        Mistake(
            loss_importance_inside_square,
            f"Multiply the squared error by importance: I·({error})², not (I·({error}))².",
        ),
        Mistake(loss_absolute_error, f"Use the squared error ({error})², not the absolute error."),
        Mistake(loss_one_per_instance, HINT_SUM_INSTANCES),
        Mistake(loss_returns_float, HINT_SCALAR),
        Mistake(loss_first_instance_importance, HINT_EVERY_INSTANCE),
        Mistake(loss_detached_output, HINT_LOSS_NO_GRADIENT),
    ]


def judge_loss(results: dict, model: t.nn.Module, out: Tensor, batch: Tensor, mistakes: list[Mistake]) -> None:
    """The verdict on a `calculate_loss(out, batch)` exercise, given the reference model it is compared with
    (section 4's NeuronComputationModel uses it too): a scalar with a gradient, inputs untouched, the right value."""
    loss = results["loss"]
    if not isinstance(loss, Tensor) or loss.numel() != 1 or loss.dim() != 0:
        if isinstance(loss, float | int) or (isinstance(loss, Tensor) and loss.numel() == 1):
            raise CheckFailed(HINT_SCALAR + ".")
        if isinstance(loss, Tensor) and tuple(loss.shape) == (out.shape[1],):
            raise CheckFailed(HINT_SUM_INSTANCES + ".")
        shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise CheckFailed(f"calculate_loss(out, batch) should return a scalar (shape ()), got {shape}.")
    if not (t.equal(results["out_after"], out) and t.equal(results["batch_after"], batch)):
        raise CheckFailed("calculate_loss changed `out` or `batch` in place; compute new tensors instead.")
    outputs, hints = mistake_outputs(mistakes, lambda impl: t.as_tensor(impl(model, out, batch)))
    out = out.clone().requires_grad_(True)
    expected = model.calculate_loss(out, batch)
    (expected_grad,) = t.autograd.grad(expected, out)
    try:
        expect_close(loss, expected.detach(), "calculate_loss(out, batch)", outputs, hints)
    except CheckFailed as error:  # a value no catalogued mistake explains: name the instances whose terms differ
        grad = results.get("grad_out")
        if isinstance(grad, Tensor) and not any(known in str(error) for known in hints.values()):
            expect_close_per_instance(grad, expected_grad, WHAT_PER_INSTANCE, inst_axis=1)
        raise
    if results.get("grad_out") is None:
        raise CheckFailed(HINT_LOSS_NO_GRADIENT + ".")
    expect_gradients(results, {"out": expected_grad}, "your loss")
