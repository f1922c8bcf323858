"""The training loop every model of the course shares, toy models and SAEs alike, the optimiser it steps, and the
progress bar it shows.

The loop is the course's hot path. Toy models are so small that a step costs a few dozen tiny kernel calls, so what
matters is per-step overhead, not FLOPs: nothing in the loop synchronises with the device or touches Python objects
per step beyond what the maths needs, logged values go into preallocated tensors, the optimiser's update is one fused
kernel call, and small problems run on one thread (two threads fighting over tiny kernels cost more than they give).
`python -m utils.bench` measures all of this.

`train` knows nothing about the model it trains. Three functions say what a step does:

* `batches(step)` returns the step's data: a fresh batch from a model's `generate_batch`, or the same fixed dataset
  at every step (double descent trains full-batch on datasets drawn once);
* `objective(batch, log)` returns the scalar to minimise (or None, having set every parameter's `.grad` itself) and,
  on the steps where `log` is True, a dict of values to record, one per instance (the loss of each instance; an SAE's
  reconstruction and sparsity losses, L0, ...);
* hooks run after each update: `after_update(step)` at every step (an SAE renormalises its decoder, counts which
  latents fired and tracks what its variant keeps of them), and `every = (n, hook)` after every n-th step (resampling
  dead latents).

This module belongs to the course's runtime library: it imports nothing from `solutions` or `tests`.
"""

import contextlib
import copy
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import torch as t
from jaxtyping import Bool, Float
from torch import Tensor, nn

from utils.batches import toy_batches
from utils.sae_step import Shortcut

# Below this many elements per batch a second CPU thread costs more in synchronisation than it saves. Measured
# with `make bench` on an idle 2-core machine: 5→2 with 8 instances (41k elements) steps ~3× faster on one thread,
# 100→20 with 20 instances (2M) ~1.4× faster on two. On a machine whose cores are busy with other processes one
# thread wins at every size (each parallel op waits for a descheduled thread): pin one thread there, e.g. in CI.
# An SAE's step is dominated by its matrix products, so `train_sae` compares their size, multiply-adds per product
# (batch × inst × d_sae × d_in), with the same threshold. Measured on the idle machine, two threads against one:
# the pentagon SAE (82k) 0.98× the time per step, S1's size (8.4M) 0.78×, 30 SAEs of 64 latents in 16-D (31M) 0.62×.
SINGLE_THREAD_BELOW = 1 << 19


def headless() -> bool:
    """True when nobody is watching: CI, the grader, or a notebook executed by nbclient."""
    return bool(os.environ.get("TQDM_DISABLE") or os.environ.get("COURSE_HEADLESS"))


def progress_bar(total: int, desc: str = "") -> Any:
    """A tqdm bar that renders in JupyterLab, VS Code, Colab and terminals, and stays silent when headless.

    With COURSE_TEXT_PROGRESS set (`make site` executes the notebooks so), a text bar on stdout that redraws only
    when training logs something: a saved notebook's widget bar would read "0%" in a static page; the text bar's
    last state is what the page shows (`utils.website` keeps what follows the last carriage return).
    """
    if os.environ.get("COURSE_TEXT_PROGRESS"):
        from tqdm.std import tqdm as text_tqdm

        return text_tqdm(total=total, desc=desc, file=sys.stdout, mininterval=float("inf"), ascii=False)
    from tqdm.auto import tqdm  # imported when a bar is made: tqdm.auto pulls in ipywidgets, which takes a while

    return tqdm(total=total, desc=desc, disable=headless(), mininterval=0.5)


def one_cpu_thread(device: t.device) -> contextlib.AbstractContextManager[None]:
    """Run the block on one CPU thread (on any other device, change nothing), restoring the caller's setting after.

    For loops of many small kernels: a second thread costs more in hand-offs than it saves, and on a shared machine
    (CI runs two notebooks at once on two cores) it mostly waits for the first.
    """
    return cpu_threads(device, 1)


@contextlib.contextmanager
def cpu_threads(device: t.device, n_threads: int) -> Iterator[None]:
    """Run the block on `n_threads` CPU threads (on any other device, change nothing), restoring the caller's
    setting after. A thread started inside the block takes that count as its own."""
    before = t.get_num_threads()
    if device.type == "cpu":
        t.set_num_threads(n_threads)
    try:
        yield
    finally:
        t.set_num_threads(before)


def threads_for(n_elements: int, device: t.device) -> contextlib.AbstractContextManager[None]:
    """One CPU thread if a step touches fewer than SINGLE_THREAD_BELOW elements; torch's own setting otherwise."""
    return one_cpu_thread(device) if n_elements < SINGLE_THREAD_BELOW else contextlib.nullcontext()


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


class AdamW:
    """`torch.optim.AdamW(params, weight_decay=...)`, stepped with the learning rate of each step, that can also forget
    what it has learned about some entries of a parameter (`reset`: resampled SAE latents start afresh).

    Where torch has a fused AdamW kernel for the device, `step` calls that kernel directly on moment estimates of its
    own: the same kernel, and so the same numbers, as `torch.optim.AdamW(fused=True).step()`, without what surrounds
    it there. `make bench` measures why: on the 5→2 model `Optimizer.step()`'s bookkeeping (hooks, regrouping tensors
    by device) costs ~10 % of a whole training step, and creating the first torch.optim optimizer of a process imports
    torch._dynamo (~2 s). Elsewhere `step` sets the learning rate of a torch.optim.AdamW and steps it.
    """

    def __init__(self, params: list[nn.Parameter], weight_decay: float):
        self.params = list(params)
        self.weight_decay = weight_decay
        device = self.params[0].device
        self.fused = has_fused_adamw(device) and all(
            p.device == device and p.dtype.is_floating_point for p in self.params
        )
        if self.fused:  # per parameter: AdamW's two moment estimates and its step count
            self.state = {p: (t.zeros_like(p), t.zeros_like(p), t.zeros((), device=device)) for p in self.params}
        else:
            self.optimizer = t.optim.AdamW(self.params, lr=0.0, weight_decay=weight_decay, foreach=True)

    def step(self, lr: float) -> None:
        """One AdamW update of every parameter that has a gradient (as torch.optim, skip the others)."""
        if not self.fused:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.optimizer.step()
            return
        stepping = [p for p in self.params if p.grad is not None]
        if not stepping:
            return
        exp_avgs, exp_avg_sqs, steps = (list(column) for column in zip(*(self.state[p] for p in stepping), strict=True))
        t._foreach_add_(steps, 1)
        grads = [p.grad for p in stepping]
        t._fused_adamw_(
            stepping, grads, exp_avgs, exp_avg_sqs, [], steps, lr=lr, weight_decay=self.weight_decay, **ADAMW_DEFAULTS
        )

    @t.no_grad()
    def reset(self, param: nn.Parameter, where: Bool[Tensor, "..."]) -> None:
        """Zero both moment estimates of `param` where `where` is True (it broadcasts against `param`).

        The step count is shared by the whole tensor and stays: the bias correction it drives only rescales the
        moments, and with zeroed moments the next updates of those entries are small, as at the start of training.
        """
        moments = self.state[param][:2] if self.fused else self.optimizer.state.get(param, {}).values()
        for moment in moments:
            if isinstance(moment, Tensor) and moment.shape == param.shape:
                moment.masked_fill_(where, 0.0)


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
    objective: Callable[[Any, bool], tuple[Tensor | None, dict[str, Tensor] | None]],
    batches: Callable[[int], Any],
    optimizer: AdamW,
    *,
    steps: int,
    lr: float,
    log_freq: int,
    lr_scale: Callable[[int, int], float] = lambda step, steps: 1.0,
    desc: str = "",
    single_thread: bool | None = None,
    after_update: Callable[[int], None] | None = None,
    every: tuple[int, Callable[[int], None]] | None = None,
) -> dict[str, Tensor]:
    """Minimise `objective(batches(step), log)` for `steps` AdamW updates at learning rate `lr * lr_scale(step, steps)`.

    The values `objective` returns on logged steps (every `log_freq` steps, and the last) are recorded: the result is
    {"step": [n_logs], name: [n_logs, ...] for each of them}, on the CPU. One CPU thread is used when a batch has fewer
    than SINGLE_THREAD_BELOW elements; `single_thread` overrides that (and must be given when batches are not tensors).
    """
    device = optimizer.params[0].device
    log_steps = sorted({*range(0, steps, log_freq), steps - 1})
    logs: dict[str, Tensor] = {}
    batch = batches(0)
    if single_thread is None:
        threads = threads_for(batch.numel(), device)
    else:
        threads = one_cpu_thread(device) if single_thread else contextlib.nullcontext()
    with threads, progress_bar(steps, desc) as bar:
        next_log = 0
        for step in range(steps):
            if step > 0:
                batch = batches(step)
            logged = step == log_steps[next_log]
            for param in optimizer.params:  # what optimizer.zero_grad() does, without its ~50 µs of bookkeeping
                param.grad = None
            loss, values = objective(batch, logged)
            if loss is not None:  # None: the objective has set the gradients itself
                loss.backward()
            optimizer.step(lr * lr_scale(step, steps))
            if after_update is not None:
                after_update(step)
            if every is not None and (step + 1) % every[0] == 0:
                every[1](step)
            if logged:
                for name, value in (values or {}).items():
                    if name not in logs:
                        logs[name] = t.empty((len(log_steps), *value.shape), dtype=value.dtype, device=value.device)
                    logs[name][next_log] = value.detach()
                next_log += 1
                if not bar.disable:
                    # one number: every logged value would squeeze the bar itself out of view
                    if shown := "loss" if "loss" in logs else next(iter(logs), None):
                        bar.set_postfix({shown: f"{logs[shown][next_log - 1].float().mean():.3g}"})
                    bar.update(step + 1 - bar.n)
        bar.update(steps - bar.n)
    return {"step": t.tensor(log_steps), **{name: log.cpu() for name, log in logs.items()}}


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


class Snapshots:
    """Copies of a model's weights on the logged steps, for the animations of training: `take()` on each logged step
    (before that step's update, like the logged losses), `stacked()` once training is over.

    A copy costs one small kernel call per weight on a logged step only (every `log_freq` steps): nothing changes on
    the steps between logs. The course's largest SAE (S1: 2 × 64 × 256 weights, 51 logs) keeps ~7 MB of them.
    """

    def __init__(self, model: nn.Module, extra: Callable[[], dict[str, Tensor]] | None = None):
        self.weights = {name: p for name, p in model.named_parameters() if p.requires_grad}
        self.extra = extra
        self.taken: list[dict[str, Tensor]] = []

    def take(self) -> None:
        weights = {name: p.detach().clone() for name, p in self.weights.items()}
        if self.extra is not None:
            weights |= {name: w.detach().clone() for name, w in self.extra().items()}
        self.taken.append(weights)

    def stacked(self) -> dict[str, Tensor]:
        """{name: [n_logs, ...]} on the CPU, one entry per weight."""
        if not self.taken:
            return {}
        return {name: t.stack([taken[name] for taken in self.taken]).cpu() for name in self.taken[0]}


def train_toy_model(
    model: nn.Module,
    batch_size: int,
    steps: int,
    log_freq: int,
    lr: float,
    lr_scale: Callable[[int, int], float],
    weight_decay: float,
) -> dict[str, Tensor]:
    """Train a toy model: anything with `generate_batch`, `forward`, `calculate_loss(out, batch) -> scalar` and an
    `importance`, on a fresh batch at every step.

    The batches are the model's own, or, when its `generate_batch` draws exactly as section 1.1's reference does, the
    same distribution from one draw (`utils.batches.toy_batches`: a faster step, and the stream the course's results
    were measured with). Returns {"step": [n_logs], "loss": [n_logs, inst]}: the loss of every instance on the batch
    of each logged step, and a snapshot of every trainable weight at those steps under its own name ("W":
    [n_logs, inst, d_hidden, feats], "b_final": [n_logs, inst, feats]), taken before the step's update as the loss is.
    """
    snapshots = Snapshots(model)

    def objective(batch: Tensor, log: bool) -> tuple[Tensor, dict[str, Tensor] | None]:
        out = model(batch)
        loss = model.calculate_loss(out, batch)
        if not log:
            return loss, None
        snapshots.take()
        return loss, {"loss": per_instance_loss(model, out, batch)}

    draw = toy_batches(model)
    history = train(
        objective,
        lambda step: draw(batch_size),
        AdamW(trainable_parameters(model), weight_decay),
        steps=steps,
        lr=lr,
        lr_scale=lr_scale,
        log_freq=log_freq,
        desc=type(model).__name__,
    )
    return history | snapshots.stacked()


def model_at(model: nn.Module, history: dict[str, Tensor], index: int) -> nn.Module:
    """A copy of `model` with the weights its training `history` snapshotted at logged step number `index` (its step
    is `history["step"][index]`): to measure anything about the model as it was during training."""
    past = copy.deepcopy(model)
    with t.no_grad():
        for name, param in past.named_parameters():
            if name in history:
                param.copy_(history[name][index])
    return past


def train_sae(
    sae: nn.Module,
    batch_size: int,
    steps: int,
    log_freq: int,
    lr: float,
    lr_scale: Callable[[int, int], float],
    method: str | None,
    freq: int,
    window: int,
    scale: float,
    shortcut: bool = True,
) -> dict[str, Tensor]:
    """Train an SAE with Adam: anything with `cfg` (n_inst, d_sae), `generate_batch`, `forward(h) -> (loss_dict,
    loss [batch inst], acts [batch inst d_sae], h_reconstructed)`, and section 2.1's training hooks: `after_update()`,
    `track_latents(acts)`, `latent_axes()` and `uses_dead_latents`.

    Every step minimises the loss averaged over the batch and summed over instances, then applies the SAE's
    `after_update` constraint, hands the step's latents to its `track_latents` (when its own forward pass ran) and
    records which latents fired in the last `window` steps. With a resampling `method`, every `freq` steps the SAE's
    `resample_<method>` gets that window (and `scale`), and the optimiser forgets what it knew about the latents that
    were dead in it. An SAE that `uses_dead_latents` has its `dead_latents` buffer kept up to date: True for the
    latents that fired on no input in the last `window` steps.

    Besides the logged values, the result holds a snapshot of every trainable weight on each logged step under its
    own name ("W_enc", "b_enc", ...: [n_logs, ...]), and "W_dec" as the SAE decodes with it; with resampling, also
    "resampled_latents" [n_resamples, inst, d_sae], True for the latents each resampling step gave a new start.

    With `shortcut` (the default), the steps of a standard SAE between logs run on hand-written gradients
    (`utils.sae_step`, ~3× faster on the pentagon SAE), however its code is written, once the SAE's own forward pass
    and autograd are seen to give the same gradients: on the first step, and again on every logged step. The SAE's
    own `forward` then runs on the first and the logged steps only. Any other SAE, or any SAE with `shortcut=False`,
    trains on its own code at every step. Small SAEs train on one CPU thread, as in `train`, judged by the
    multiply-adds of one matrix product.
    """
    resample = None
    if method is not None:
        resample = getattr(sae, f"resample_{method}", None)
        if resample is None:
            raise ValueError(f"{type(sae).__name__} has no method resample_{method}")
        if window > freq:
            raise ValueError(f"the resampling window ({window} steps) must not exceed its period ({freq} steps)")
    optimizer = AdamW(trainable_parameters(sae), weight_decay=0.0)
    n_inst, d_sae = sae.cfg.n_inst, sae.cfg.d_sae
    device = optimizer.params[0].device
    # fired[k]: which latents fired on some input of the batch, at one of the last `window` steps
    fired = t.zeros((window, n_inst, d_sae), dtype=t.bool, device=device)
    last = {}
    # the standard SAE's gradients written out by hand (utils/sae_step.py), used on the steps that log nothing once
    # the SAE's own forward pass has been seen to compute the same: on the first step, and again on every logged one
    big = n_inst * batch_size * d_sae * sae.cfg.d_in >= SINGLE_THREAD_BELOW
    shortcut = Shortcut(sae, batch_size, enabled=shortcut)
    # the weights on every logged step, and the decoder as the SAE uses it (`W_dec`: the encoder transposed if tied)
    snapshots = Snapshots(sae, extra=lambda: {"W_dec": sae.W_dec})

    def objective(h: Tensor, log: bool) -> tuple[Tensor | None, dict[str, Tensor] | None]:
        fired_now = shortcut.gradients_set(h, log)
        if fired_now is not None:
            last["fired"], last["acts"] = fired_now, None
            return None, None
        loss_dict, loss, acts, _ = sae(h)
        last["fired"], last["acts"] = (acts.detach() != 0).any(0), acts.detach()
        total = loss.mean(0).sum()
        if shortcut.checking:
            total.backward()
            shortcut.check(h, acts, {name: p.grad for name, p in sae.named_parameters() if p.requires_grad})
            total = None  # the gradients are set
        if not log:
            return total, None
        snapshots.take()
        values = {"loss": loss.mean(0), **{name: term.mean(0) for name, term in loss_dict.items()}}
        values["l0"] = (acts != 0).float().sum(-1).mean(0)
        values["frac_active"] = (acts.detach() != 0).float().mean(0)
        values["frac_alive"] = fired.any(0).float().mean(-1)
        return total, values

    # an SAE that uses dead latents (TopK's auxiliary loss trains them) learns in its `dead_latents` buffer [inst d_sae]
    # after every step which latents have fired on no input for the last `window` steps
    steps_since_fired = t.zeros((n_inst, d_sae), dtype=t.long, device=fired.device)

    def after_update(step: int) -> None:
        sae.after_update()
        if last["acts"] is not None:
            sae.track_latents(last["acts"])
        fired[step % window] = last["fired"]
        if sae.uses_dead_latents:
            steps_since_fired.add_(1).masked_fill_(last["fired"], 0)
            sae.dead_latents.copy_(steps_since_fired >= window)

    resampled: list[Tensor] = []  # which latents each resampling step gave a new start [inst d_sae]

    def resample_dead_latents(step: int) -> None:
        dead = ~fired.any(0)  # [inst d_sae]: active in none of the window's steps
        resampled.append(dead)
        # the resampling methods take the fraction of each step's batch on which each latent fired; all they use is
        # whether it is 0, so the window passes 1 for "fired" (storing fractions would cost a reduction per step)
        activity = fired.float()
        if method == "advanced":
            resample(activity, scale, batch_size)
        else:
            resample(activity, scale)
        parameters = dict(sae.named_parameters())
        for name, axis in sae.latent_axes().items():
            param = parameters[name]
            shape = [n_inst] + [1] * (param.dim() - 1)
            shape[axis] = d_sae
            optimizer.reset(param, dead.view(shape))

    history = train(
        objective,
        shortcut.batch,
        optimizer,
        steps=steps,
        lr=lr,
        lr_scale=lr_scale,
        log_freq=log_freq,
        desc=type(sae).__name__,
        single_thread=not big,
        after_update=after_update,
        every=(freq, resample_dead_latents) if resample is not None else None,
    )
    if resample is not None:
        history["resample_step"] = t.arange(freq - 1, steps, freq)[: len(resampled)]
        latents = t.stack(resampled).cpu() if resampled else t.zeros((0, n_inst, d_sae), dtype=t.bool)
        history["resampled"] = latents.sum(-1)
        history["resampled_latents"] = latents
    return history | snapshots.stacked()
