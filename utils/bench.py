"""How fast `ToyModel.optimize` trains, against the naive loop most toy-model code uses: `python -m utils.bench`.

The naive loop is the ARENA kind: einsum forward, two fresh uniform draws per batch, `torch.optim.AdamW.step()`,
the learning rate set through `param_groups` every step, `.item()` every step, torch's default thread count. Its
maths is identical to ours (same data distribution, same loss, AdamW with the same lr and weight decay), so the
two differ only in how fast a step runs.

Runs alternate (naive, ours, naive, ours, ...) inside one process and every figure is the median over the
repetitions, so a neighbour that loads the machine for a while slows both sides alike. Timings still drift with
load: compare ratios from one run, not milliseconds from different runs.

One more variant runs `optimize` with the public `torch.optim.AdamW(fused=True)` in place of `utils.training.AdamW`,
which calls the same fused kernel directly: that row, and the time it takes a fresh process to create its first
torch.optim optimizer, are the measured reason the course keeps its own thin wrapper.

    python -m utils.bench                     # both problems, 5 repetitions (about a minute)
    python -m utils.bench --quick             # one small step of everything: checks that the benchmark works
    python -m utils.bench --notebook PATH     # also time executing a notebook end to end (nbclient)
    python -m utils.bench --chapter DIR       # also time every solutions notebook of a chapter, and their total
    python -m utils.bench --chapters          # ... of every chapter of the course (what `make bench` runs)
"""

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import einops
import torch as t
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

import utils.training
from solutions.sae.toy_sae import ToySAE, ToySAEConfig
from solutions.sae.toy_sae_experiments import pentagon_directions
from solutions.tms.superposition import ToyModel, ToyModelConfig
from utils.course import CHAPTERS

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Problem:
    """One benchmark setting, with ARENA's importance and feature probabilities for it."""

    name: str
    n_inst: int
    n_features: int
    d_hidden: int
    importance_decay: float  # importance of feature i: decay^i
    sparsity_base: float  # feature probability of instance k: base^(-k / (n_inst - 1))
    steps: int  # per timed run: long enough to amortise setup, short enough for several repetitions

    def model(self, cls: type[ToyModel] = ToyModel, seed: int = 0) -> ToyModel:
        """A fresh model of this problem, of the given class."""
        t.manual_seed(seed)
        importance = self.importance_decay ** t.arange(self.n_features, dtype=t.float32)
        feature_probability = (self.sparsity_base ** -t.linspace(0, 1, self.n_inst)).unsqueeze(1)
        cfg = ToyModelConfig(self.n_inst, self.n_features, self.d_hidden)
        return cls(cfg, feature_probability=feature_probability, importance=importance)


PROBLEMS = [
    Problem("5→2, 8 instances", 8, 5, 2, importance_decay=0.9, sparsity_base=50, steps=200),
    Problem("100→20, 20 instances", 20, 100, 20, importance_decay=100 ** (-1 / 99), sparsity_base=20, steps=10),
]
BATCH_SIZE = 1024
QUICK_BATCH_SIZE = 64
LR = 1e-3
WEIGHT_DECAY = 1e-2


class NaiveToyModel(ToyModel):
    """The same model written the common way: what ARENA's notebook and most toy-model code do each step."""

    def forward(self, features: Float[Tensor, "... inst feats"]) -> Float[Tensor, "... inst feats"]:
        hidden = einops.einsum(features, self.W, "... inst feats, inst d_hidden feats -> ... inst d_hidden")
        out = einops.einsum(hidden, self.W, "... inst d_hidden, inst d_hidden feats -> ... inst feats")
        return F.relu(out + self.b_final)

    def generate_batch(self, batch_size: int) -> Float[Tensor, "batch inst feats"]:
        shape = (batch_size, *self.feature_probability.shape)
        feat = t.rand(shape, device=self.W.device)
        return t.where(t.rand(shape, device=self.W.device) <= self.feature_probability, feat, 0.0)

    def calculate_loss(
        self,
        out: Float[Tensor, "batch inst feats"],
        batch: Float[Tensor, "batch inst feats"],
    ) -> Float[Tensor, ""]:
        error = self.importance * (batch - out) ** 2
        return einops.reduce(error, "batch inst feats -> inst", "mean").sum()


def naive_train(model: ToyModel, steps: int, batch_size: int) -> list[float]:
    """ARENA's `optimize` with AdamW(lr, weight_decay) and a `.item()` log every step, headless."""
    optimizer = t.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    log = []
    for _ in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = LR * 1.0  # constant_lr, set every step as in ARENA
        optimizer.zero_grad()
        batch = model.generate_batch(batch_size)
        loss = model.calculate_loss(model(batch), batch)
        loss.backward()
        optimizer.step()
        log.append(loss.item() / model.cfg.n_inst)
    return log


def optimized_train(model: ToyModel, steps: int, batch_size: int) -> None:
    model.optimize(batch_size=batch_size, steps=steps, log_freq=max(1, steps // 10), lr=LR, weight_decay=WEIGHT_DECAY)


class PublicAdamW(utils.training.AdamW):
    """`utils.training.AdamW`'s interface over the public `torch.optim.AdamW(fused=True)`: the same kernel, stepped
    through `Optimizer.step()`."""

    def __init__(self, params: list[t.nn.Parameter], weight_decay: float):
        self.params, self.fused = list(params), False
        self.optimizer = t.optim.AdamW(self.params, lr=0.0, weight_decay=weight_decay, fused=True)


def with_public_adamw(loop: "Loop") -> "Loop":
    """`loop` with the training loop's optimiser swapped for `PublicAdamW`."""

    def run(model: ToyModel, steps: int, batch_size: int) -> None:
        ours, utils.training.AdamW = utils.training.AdamW, PublicAdamW
        try:
            loop(model, steps, batch_size)
        finally:
            utils.training.AdamW = ours

    return run


def first_optimizer_seconds(repetitions: int = 3) -> float:
    """Median time a fresh process takes to create and step its first torch.optim.AdamW (it imports torch._dynamo)."""
    code = (
        "import time, torch; p = [torch.nn.Parameter(torch.zeros(3))]; p[0].grad = torch.ones(3); "
        "start = time.perf_counter(); torch.optim.AdamW(p, fused=True).step(); print(time.perf_counter() - start)"
    )
    command = [sys.executable, "-c", code]
    runs = [subprocess.run(command, capture_output=True, text=True, check=True) for _ in range(repetitions)]
    return statistics.median(float(run.stdout) for run in runs)


DEFAULT_THREADS = t.get_num_threads()
Loop = Callable[[ToyModel, int, int], object]


def on_threads(n_threads: int, loop: Loop, loop_may_reduce: bool = False) -> Loop:
    """`loop` run with `n_threads` CPU threads; `loop_may_reduce`: let the training loop go down to one thread."""

    def run(model: ToyModel, steps: int, batch_size: int) -> None:
        before, threshold = t.get_num_threads(), utils.training.SINGLE_THREAD_BELOW
        t.set_num_threads(n_threads)
        if not loop_may_reduce:
            utils.training.SINGLE_THREAD_BELOW = 0
        try:
            loop(model, steps, batch_size)
        finally:
            t.set_num_threads(before)
            utils.training.SINGLE_THREAD_BELOW = threshold

    return run


NAIVE = f"naive, default threads ({DEFAULT_THREADS})"
NAIVE_1 = "naive, 1 thread"
OURS = "optimize (threads by problem size)"
OURS_1 = "optimize, 1 thread"
OURS_DEFAULT = f"optimize, default threads ({DEFAULT_THREADS})"
OURS_PUBLIC = "optimize, torch.optim.AdamW(fused=True)"
VARIANTS: dict[str, tuple[type[ToyModel], Loop]] = {
    NAIVE: (NaiveToyModel, on_threads(DEFAULT_THREADS, naive_train)),
    NAIVE_1: (NaiveToyModel, on_threads(1, naive_train)),
    OURS: (ToyModel, on_threads(DEFAULT_THREADS, optimized_train, loop_may_reduce=True)),
    OURS_1: (ToyModel, on_threads(1, optimized_train)),
    OURS_DEFAULT: (ToyModel, on_threads(DEFAULT_THREADS, optimized_train)),
    OURS_PUBLIC: (ToyModel, on_threads(DEFAULT_THREADS, with_public_adamw(optimized_train), loop_may_reduce=True)),
}


def time_runs(
    build: Callable[[type, int], nn.Module],
    variants: dict[str, tuple[type, Loop]],
    steps: int,
    batch_size: int,
    reps: int,
) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) ms per step of every variant, each run in turn, `reps` rounds after a shorter untimed round.

    `build(cls, seed)` makes a fresh model of the variant's class. The untimed round warms up the allocator, MKL and
    the code paths; a single step (`--quick`) skips it. CPU time counts every thread of the process, so it exceeds
    wall time when two threads are busy (or spinning).
    """
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for rep in range(0 if steps > 1 else 1, reps + 1):
        for name, (cls, run) in variants.items():
            model = build(cls, rep)
            n_steps = steps if rep else max(1, steps // 10)
            wall, cpu = time.perf_counter(), time.process_time()
            run(model, n_steps, batch_size)
            if rep:
                times[name].append(
                    ((time.perf_counter() - wall) * 1e3 / n_steps, (time.process_time() - cpu) * 1e3 / n_steps)
                )
    return times


def print_times(times: dict[str, list[tuple[float, float]]]) -> dict[str, float]:
    """One line per variant (median wall time, its range, median CPU time); returns the medians."""
    median = {}
    for name, samples in times.items():
        walls, cpus = zip(*samples, strict=True)
        median[name] = statistics.median(walls)
        spread = f"({min(walls):.2f}–{max(walls):.2f})"
        print(f"  {name:<40}{median[name]:8.2f} ms/step {spread:<19} CPU {statistics.median(cpus):7.2f} ms/step")
    return median


def bench_training(reps: int, quick: bool) -> None:
    os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bar in the timed loops
    for problem in PROBLEMS:
        # --quick checks that everything runs, on one small step: its timings mean nothing
        steps, batch_size = (1, QUICK_BATCH_SIZE) if quick else (problem.steps, BATCH_SIZE)
        n_elements = batch_size * problem.n_inst * problem.n_features
        threads = 1 if n_elements < utils.training.SINGLE_THREAD_BELOW else DEFAULT_THREADS
        print(f"\n{problem.name}, batch {batch_size}: {n_elements:,} elements, optimize picks {threads} thread(s)")
        print(f"  median over {reps} alternating runs of {steps} steps: wall time (its range), CPU time")
        times = time_runs(problem.model, VARIANTS, steps, batch_size, reps)
        median = print_times(times)
        print(f"  speed-up over the naive loop: {median[NAIVE] / median[OURS]:.1f}×")
        print(f"  speed-up with both on 1 thread: {median[NAIVE_1] / median[OURS_1]:.1f}×")
        slower = median[OURS_DEFAULT] / median[OURS_1]
        print(f"  optimize on {DEFAULT_THREADS} threads instead of 1: {slower:.2f}× the time per step")
        public = median[OURS_PUBLIC] / median[OURS]
        print(
            f"  optimize stepping torch.optim.AdamW(fused=True) instead of the kernel: {public:.2f}× the time per step"
        )
    print(
        f"\ncreating the first torch.optim optimizer of a process: {first_optimizer_seconds(1 if quick else 3):.2f} s"
    )


# ------------------------------------------------------------------------------------------------ SAEs


class NaiveSAE(ToySAE):
    """The same SAE written ARENA's way: the forward pass in one piece (identical maths)."""

    def forward(self, h: Float[Tensor, "batch inst d_in"]) -> tuple:
        h_cent = h - self.b_dec
        acts_pre = (
            einops.einsum(h_cent, self.W_enc, "batch inst d_in, inst d_in d_sae -> batch inst d_sae") + self.b_enc
        )
        acts_post = F.relu(acts_pre)
        h_reconstructed = (
            einops.einsum(acts_post, self.W_dec_normalized, "batch inst d_sae, inst d_sae d_in -> batch inst d_in")
            + self.b_dec
        )
        L_reconstruction = (h_reconstructed - h).pow(2).mean(-1)
        L_sparsity = acts_post.abs().sum(-1)
        loss_dict = {"L_reconstruction": L_reconstruction, "L_sparsity": L_sparsity}
        return loss_dict, L_reconstruction + self.cfg.sparsity_coeff * L_sparsity, acts_post, h_reconstructed


def naive_sae_train(sae: ToySAE, steps: int, batch_size: int, log_freq: int = 100) -> None:
    """ARENA's `ToySAE.optimize`: Adam, the learning rate set every step, the decoder renormalised through `.data`,
    every step's fraction of active latents kept in a list, and on logged steps `.item()`s, a forward pass on 256
    samples and a copy of every parameter for the animations."""
    optimizer = t.optim.Adam(sae.parameters(), lr=LR)
    frac_active_list, data_log = [], []
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = LR
        with t.inference_mode():
            h = sae.generate_batch(batch_size)
        loss_dict, loss, acts, _ = sae.forward(h)
        loss.mean(0).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
        if not sae.cfg.tied_weights:
            sae.W_dec.data = sae.W_dec_normalized.data
        frac_active_list.append((acts.abs() > 1e-8).float().mean(0))
        if step % log_freq == 0 or step + 1 == steps:
            _ = [loss.mean(0).sum().item(), frac_active_list[-1].mean().item()]
            _ += [term.mean(0).sum().item() for term in loss_dict.values()]
            with t.inference_mode():
                sae.forward(sample := sae.generate_batch(256))
            data_log.append({"h": sample.cpu(), **{n: p.detach().cpu() for n, p in sae.named_parameters()}})


def optimized_sae_train(sae: ToySAE, steps: int, batch_size: int) -> None:
    sae.optimize(batch_size=batch_size, steps=steps, log_freq=100, lr=LR)


@dataclass(frozen=True)
class SAEProblem:
    """One SAE benchmark setting: its toy model (features, dimensions, directions) and the SAE's size."""

    name: str
    n_inst: int
    n_features: int
    d_in: int
    d_sae: int
    feature_probability: float
    steps: int

    def sae(self, cls: type[ToySAE] = ToySAE, seed: int = 0) -> ToySAE:
        """A fresh SAE of this problem; the naive one reads a toy model that draws its data the naive way."""
        t.manual_seed(seed)
        model_class = NaiveToyModel if cls is NaiveSAE else ToyModel
        model = model_class(ToyModelConfig(self.n_inst, self.n_features, self.d_in), self.feature_probability)
        with t.no_grad():
            if self.d_in == 2 and self.n_features == 5:
                model.W.copy_(pentagon_directions().expand_as(model.W))
            else:
                model.W.copy_(F.normalize(t.randn(model.W.shape), dim=1))
        return cls(ToySAEConfig(self.n_inst, self.d_in, self.d_sae), model)


# 200 steps each: both loops log on steps 0, 100 and 199, about as often as in a real run (every 100 of 10,000
# steps), where `optimize` runs the SAE's own forward pass and autograd to check its hand-written step
SAE_PROBLEMS = [
    SAEProblem("pentagon SAE, 8 instances, 5 latents", 8, 5, 2, 5, feature_probability=0.025, steps=200),
    SAEProblem("S1's size: 128 features in 64-D, 128 latents", 1, 128, 64, 128, feature_probability=0.022, steps=200),
]


def optimized_sae_train_without_shortcut(sae: ToySAE, steps: int, batch_size: int) -> None:
    """`optimize` with its hand-written step switched off: every step runs the SAE's forward and autograd."""
    sae.optimize(batch_size=batch_size, steps=steps, log_freq=100, lr=LR, shortcut=False)


OURS_AUTOGRAD = "optimize without its hand-written step"
SAE_VARIANTS: dict[str, tuple[type, Loop]] = {
    NAIVE: (NaiveSAE, on_threads(DEFAULT_THREADS, naive_sae_train)),
    NAIVE_1: (NaiveSAE, on_threads(1, naive_sae_train)),
    OURS: (ToySAE, on_threads(DEFAULT_THREADS, optimized_sae_train, loop_may_reduce=True)),
    OURS_1: (ToySAE, on_threads(1, optimized_sae_train)),
    OURS_AUTOGRAD: (ToySAE, on_threads(DEFAULT_THREADS, optimized_sae_train_without_shortcut, loop_may_reduce=True)),
}


def bench_sae(reps: int, quick: bool) -> None:
    for problem in SAE_PROBLEMS:
        steps, batch_size = (1, QUICK_BATCH_SIZE) if quick else (problem.steps, BATCH_SIZE)
        print(f"\n{problem.name}, batch {batch_size}: ToySAE.optimize against ARENA's loop")
        print(f"  median over {reps} alternating runs of {steps} steps: wall time (its range), CPU time")
        median = print_times(time_runs(problem.sae, SAE_VARIANTS, steps, batch_size, reps))
        print(f"  speed-up over the naive loop: {median[NAIVE] / median[OURS]:.1f}×")
        print(f"  speed-up with both on 1 thread: {median[NAIVE_1] / median[OURS_1]:.1f}×")
        print(f"  of which the hand-written step (utils/sae_step.py): {median[OURS_AUTOGRAD] / median[OURS]:.1f}×")


def bench_notebook(path: Path) -> float:
    """Execute a notebook end to end in a fresh kernel, as a learner's "Run all" would; returns the seconds taken."""
    if not path.exists():
        print(f"\nnotebook {path}: skipped, it does not exist (yet)")
        return 0.0
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    os.environ.update(TQDM_DISABLE="1", COURSE_HEADLESS="1")
    start = time.perf_counter()
    NotebookClient(notebook, timeout=1800, resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    print(f"\nnotebook {path}: executed end to end in {seconds:.1f} s", flush=True)
    return seconds


def bench_chapter(folder: Path) -> None:
    """Time every solutions notebook of a chapter one after the other; the goal is under ten minutes in all."""
    notebooks = sorted(folder.glob("*_solutions.ipynb"))
    if not notebooks:
        print(f"\nchapter {folder}: skipped, it has no solutions notebooks")
        return
    total = sum(bench_notebook(path) for path in notebooks)
    load = f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "n/a"
    minutes = f"{total:.0f} s ({total / 60:.1f} min; load average now {load})"
    print(f"\nchapter {folder}: {len(notebooks)} solutions notebooks in {minutes}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one step of everything: a smoke test, not timings")
    parser.add_argument("--reps", type=int, default=5, help="alternating repetitions per problem (default 5)")
    parser.add_argument("--notebook", type=Path, action="append", default=[], help="also time executing this notebook")
    parser.add_argument("--chapter", type=Path, action="append", default=[], help="also time a chapter's notebooks")
    parser.add_argument("--chapters", action="store_true", help="also time the notebooks of every chapter")
    args = parser.parse_args(argv)
    if args.chapters:
        args.chapter += [ROOT / chapter.folder for chapter in CHAPTERS]
    reps = 1 if args.quick else args.reps
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    print(
        f"torch {t.__version__}, {platform.machine()} with {os.cpu_count()} CPUs, {DEFAULT_THREADS} threads by default"
    )
    print(f"load average {load}: other processes running slow everything down, the naive loop's threads most")
    bench_training(reps, args.quick)
    bench_sae(reps, args.quick)
    for path in args.notebook:
        bench_notebook(path)
    for folder in args.chapter:
        bench_chapter(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
