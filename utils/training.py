"""The training loop every toy model of the course shares, and the progress bar it shows.

The loop is the course's hot path. Toy models are so small that a step costs a few dozen tiny kernel calls,
so what matters is per-step overhead, not FLOPs: nothing in the loop synchronises with the device or
touches Python objects per step beyond what the maths needs, losses are logged into a preallocated tensor,
the optimiser's update is one fused kernel call, and small problems run on one thread (two threads fighting
over tiny kernels cost more than they give). `python -m utils.bench` measures all of this.
"""

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import torch as t
from jaxtyping import Float
from torch import Tensor, nn

# Below this many elements per batch a second CPU thread costs more in synchronisation than it saves. Measured
# with `make bench` on an idle 2-core machine: 5→2 with 8 instances (41k elements) steps ~3× faster on one thread,
# 100→20 with 20 instances (2M) ~1.4× faster on two. On a machine whose cores are busy with other processes one
# thread wins at every size (each parallel op waits for a descheduled thread): pin one thread there, e.g. in CI.
SINGLE_THREAD_BELOW = 1 << 19


def headless() -> bool:
    """True when nobody is watching: CI, the grader, or a notebook executed by nbclient."""
    return bool(os.environ.get("TQDM_DISABLE") or os.environ.get("COURSE_HEADLESS"))


def progress_bar(total: int, desc: str = "") -> Any:
    """A tqdm bar that renders in JupyterLab, VS Code, Colab and terminals, and stays silent when headless."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=headless(), mininterval=0.5)


@contextlib.contextmanager
def one_cpu_thread(device: t.device) -> Iterator[None]:
    """Run the block on one CPU thread (on any other device, change nothing), restoring the caller's setting after.

    For loops of many small kernels: a second thread costs more in hand-offs than it saves, and on a shared machine
    (CI runs two notebooks at once on two cores) it mostly waits for the first.
    """
    before = t.get_num_threads()
    if device.type == "cpu":
        t.set_num_threads(1)
    try:
        yield
    finally:
        t.set_num_threads(before)


def threads_for(n_elements: int, device: t.device) -> contextlib.AbstractContextManager[None]:
    """One CPU thread if a step touches fewer than SINGLE_THREAD_BELOW elements; torch's own setting otherwise."""
    return one_cpu_thread(device) if n_elements < SINGLE_THREAD_BELOW else contextlib.nullcontext()


def make_optimizer(params: list[nn.Parameter], lr: float, weight_decay: float) -> t.optim.Optimizer:
    """AdamW, fused into one kernel per step where this torch build supports it."""
    try:
        return t.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return t.optim.AdamW(params, lr=lr, weight_decay=weight_decay, foreach=True)


# torch.optim.AdamW's defaults, the hyper-parameters every model of the course trains with
ADAMW_DEFAULTS = dict(beta1=0.9, beta2=0.999, eps=1e-8, amsgrad=False, maximize=False)


def has_fused_adamw(device: t.device) -> bool:
    """Whether this torch build has a fused AdamW kernel for the device (CPU since torch 2.4, CUDA since 2.0)."""
    try:
        x = t.zeros(1, device=device)
        steps = [t.ones((), device=device)]
        t._fused_adamw_(
            [x], [x.clone()], [x.clone()], [x.clone()], [], steps, lr=0.0, weight_decay=0.0, **ADAMW_DEFAULTS
        )
        return True
    except (AttributeError, NotImplementedError, RuntimeError, TypeError):
        return False


def adamw(params: list[nn.Parameter], lr: float, weight_decay: float) -> Callable[[float], None]:
    """A function `update(lr)` taking one step of `torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)`.

    Where torch has a fused AdamW kernel for the device, `update` calls it directly on moment estimates of its own:
    the same kernel, and so the same numbers, as `AdamW(fused=True).step()`, without what surrounds it there.
    `Optimizer.step()` spends ~130 µs per call on bookkeeping (hooks, regrouping tensors by device), several
    times the kernel's own cost on a toy model, and creating any torch.optim optimizer first imports
    torch._dynamo (1-4 s). Elsewhere `update` sets the learning rate of a torch.optim.AdamW and steps it.
    """
    device = params[0].device
    if not (has_fused_adamw(device) and all(p.device == device and p.dtype.is_floating_point for p in params)):
        optimizer = make_optimizer(params, lr, weight_decay)

        def update_with_optimizer(lr: float) -> None:
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.step()

        return update_with_optimizer

    # per parameter: the parameter, AdamW's two moment estimates, and its step count
    state = [(p, t.zeros_like(p), t.zeros_like(p), t.zeros((), device=device)) for p in params]

    def update_fused(lr: float) -> None:
        stepping = [s for s in state if s[0].grad is not None]  # as torch.optim, skip parameters without a gradient
        if not stepping:
            return
        ps, exp_avgs, exp_avg_sqs, steps = (list(column) for column in zip(*stepping, strict=True))
        t._foreach_add_(steps, 1)
        grads = [p.grad for p in ps]
        t._fused_adamw_(ps, grads, exp_avgs, exp_avg_sqs, [], steps, lr=lr, weight_decay=weight_decay, **ADAMW_DEFAULTS)

    return update_fused


def per_instance_loss(
    model: nn.Module, out: Float[Tensor, "batch inst feats"], batch: Float[Tensor, "batch inst feats"]
) -> Float[Tensor, " inst"]:
    """Each instance's term of `model.calculate_loss(out, batch)`, a scalar summed over instances, however written.

    The loss is importance-weighted, L = Σ_i Σ_f I_if e_if, so it is linear in the importances and each instance's
    term is L_i = Σ_f I_if ∂L/∂I_if (Euler's theorem for homogeneous functions): one backward pass splits it. If no
    gradient reaches the importances (a loss that detaches them), linearity still gives each term as L minus the loss
    with that instance's importances set to 0, one call per instance. Nothing flows back into `out`.
    """
    importance = model.importance
    out = out.detach()
    weights = importance.detach().clone().requires_grad_(True)
    try:
        model.importance = weights
        with t.enable_grad():
            loss = model.calculate_loss(out, batch)
            (grad,) = t.autograd.grad(loss, weights, allow_unused=True) if loss.requires_grad else (None,)
        if grad is not None:
            return (grad * weights).sum(-1).detach()
        terms = []
        with t.no_grad():
            for i in range(weights.shape[0]):
                without_i = importance.detach().clone()
                without_i[i] = 0
                model.importance = without_i
                terms.append(loss.detach() - model.calculate_loss(out, batch))
        return t.stack(terms)
    finally:
        model.importance = importance


def train(
    model: nn.Module,
    batch_size: int,
    steps: int,
    log_freq: int,
    lr: float,
    lr_scale: Callable[[int, int], float],
    weight_decay: float,
) -> dict[str, Tensor]:
    """Train a model that has `generate_batch`, `forward` and `calculate_loss(out, batch) -> scalar`.

    Returns {"step": [n_logs], "loss": [n_logs, inst]}: the loss of every instance on the batch of each
    logged step (and of the last step), on the CPU.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    update = adamw(params, lr, weight_decay)
    device = params[0].device
    log_steps = sorted({*range(0, steps, log_freq), steps - 1})
    losses = t.empty((len(log_steps), model.cfg.n_inst), device=device)
    n_elements = batch_size * model.cfg.n_inst * model.cfg.n_features

    with threads_for(n_elements, device), progress_bar(steps, type(model).__name__) as bar:
        next_log = 0
        for step in range(steps):
            batch = model.generate_batch(batch_size)
            out = model(batch)
            loss = model.calculate_loss(out, batch)
            for param in params:  # what optimizer.zero_grad() does, without its ~50 µs of bookkeeping
                param.grad = None
            loss.backward()
            update(lr * lr_scale(step, steps))
            if step == log_steps[next_log]:
                losses[next_log] = per_instance_loss(model, out, batch)
                next_log += 1
                if not bar.disable:
                    bar.set_postfix(loss=f"{losses[next_log - 1].mean().item():.3g}", refresh=False)
                    bar.update(step + 1 - bar.n)
        bar.update(steps - bar.n)
    return {"step": t.tensor(log_steps), "loss": losses.cpu()}
