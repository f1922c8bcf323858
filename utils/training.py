"""The training loop every toy model of the course shares, and the progress bar it shows.

The loop is the course's hot path. Toy models are so small that a step costs a few dozen tiny kernel calls,
so what matters is per-step overhead, not FLOPs: nothing in the loop synchronises with the device or
touches Python objects per step beyond what the maths needs, losses are logged into a preallocated tensor,
and small problems run on one thread (two threads fighting over tiny kernels cost more than they give).
"""

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import torch as t
from torch import Tensor, nn

# Below this many elements per batch a second CPU thread costs more in synchronisation than it saves
# (measured with `make bench`: 5→2 with 8 instances runs faster on one thread, 100→20 with 20 on two).
SINGLE_THREAD_BELOW = 1 << 19


def headless() -> bool:
    """True when nobody is watching: CI, the grader, or a notebook executed by nbclient."""
    return bool(os.environ.get("TQDM_DISABLE") or os.environ.get("COURSE_HEADLESS"))


def progress_bar(total: int, desc: str = "") -> Any:
    """A tqdm bar that renders in JupyterLab, VS Code, Colab and terminals, and stays silent when headless."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=headless(), mininterval=0.5)


@contextlib.contextmanager
def threads_for(n_elements: int, device: t.device) -> Iterator[None]:
    """Run the block on one CPU thread if the problem is small, restoring the caller's setting afterwards."""
    before = t.get_num_threads()
    if device.type == "cpu" and n_elements < SINGLE_THREAD_BELOW:
        t.set_num_threads(1)
    try:
        yield
    finally:
        t.set_num_threads(before)


def make_optimizer(params: list[nn.Parameter], lr: float, weight_decay: float) -> t.optim.Optimizer:
    """AdamW, fused into one kernel per step where this torch build supports it."""
    try:
        return t.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return t.optim.AdamW(params, lr=lr, weight_decay=weight_decay, foreach=True)


def train(
    model: nn.Module,
    batch_size: int,
    steps: int,
    log_freq: int,
    lr: float,
    lr_scale: Callable[[int, int], float],
    weight_decay: float,
) -> dict[str, Tensor]:
    """Train a model that has `generate_batch`, `forward` and `calculate_loss(out, batch, per_instance=True)`.

    Returns {"step": [n_logs], "loss": [n_logs, inst]}: the loss of every instance on the batch of each
    logged step (and of the last step), on the CPU.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, lr, weight_decay)
    device = params[0].device
    log_steps = sorted({*range(0, steps, log_freq), steps - 1})
    losses = t.empty((len(log_steps), model.cfg.n_inst), device=device)
    n_elements = batch_size * model.cfg.n_inst * model.cfg.n_features
    constant = getattr(lr_scale, "__name__", "") == "constant_lr"

    with threads_for(n_elements, device), progress_bar(steps, type(model).__name__) as bar:
        next_log = 0
        for step in range(steps):
            if not constant:
                for group in optimizer.param_groups:
                    group["lr"] = lr * lr_scale(step, steps)
            batch = model.generate_batch(batch_size)
            loss_per_instance = model.calculate_loss(model(batch), batch, per_instance=True)
            optimizer.zero_grad(set_to_none=True)
            loss_per_instance.sum().backward()
            optimizer.step()
            if step == log_steps[next_log]:
                losses[next_log] = loss_per_instance.detach()
                next_log += 1
                if not bar.disable:
                    bar.set_postfix(loss=f"{losses[next_log - 1].mean().item():.3g}", refresh=False)
                    bar.update(step + 1 - bar.n)
        bar.update(steps - bar.n)
    return {"step": t.tensor(log_steps), "loss": losses.cpu()}
