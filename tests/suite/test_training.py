"""The one training loop (`utils.training`) does what it says, whatever it trains: toy models, SAEs, fixed datasets."""

import pytest
import torch as t
from torch import nn

from solutions.sae import ToySAE, ToySAEConfig
from solutions.sae.toy_sae_experiments import pentagon_model
from solutions.tms.superposition import ToyModel, ToyModelConfig
from utils.training import SINGLE_THREAD_BELOW, AdamW, model_at, one_cpu_thread, threads_for, train


class Quadratic(nn.Module):
    """Two instances of a tiny model whose per-instance loss is known in closed form."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(t.tensor([[1.0, -2.0], [0.5, 3.0]]))

    def losses(self, batch: t.Tensor) -> t.Tensor:
        return ((batch[:, None, :] - self.w) ** 2).mean(dim=(0, 2))  # [inst]


def test_the_loop_takes_the_steps_of_torch_adamw_and_logs_what_the_objective_returns():
    g = t.Generator().manual_seed(0)
    data = [t.randn(16, 2, generator=g) for _ in range(30)]
    ours, reference = Quadratic(), Quadratic()
    seen = []

    def objective(batch, log):
        losses = ours.losses(batch)
        return losses.sum(), ({"loss": losses, "w0": ours.w[:, 0] * 1.0} if log else None)

    def batches(step):
        seen.append(step)
        return data[step]

    lr_scale = lambda step, steps: 1 - step / steps  # noqa: E731
    log = train(objective, batches, AdamW([ours.w], 1e-2), steps=30, lr=0.1, lr_scale=lr_scale, log_freq=7)
    optimizer = t.optim.AdamW([reference.w], lr=0.1, weight_decay=1e-2)
    expected_log = []
    for step in range(30):
        for group in optimizer.param_groups:
            group["lr"] = 0.1 * lr_scale(step, 30)
        optimizer.zero_grad()
        losses = reference.losses(data[step])
        if step in (0, 7, 14, 21, 28, 29):
            expected_log.append(losses.detach())
        losses.sum().backward()
        optimizer.step()
    assert seen == list(range(30)), "one batch per step, in order"
    assert t.allclose(ours.w, reference.w, atol=1e-6)
    assert log["step"].tolist() == [0, 7, 14, 21, 28, 29]
    assert log["loss"].shape == (6, 2) and log["w0"].shape == (6, 2)
    assert t.allclose(log["loss"], t.stack(expected_log), atol=1e-5)


def test_hooks_run_after_every_update_and_every_n_steps():
    model = Quadratic()
    calls = []
    w_after = []

    def after_update(step):
        calls.append(("after", step))
        w_after.append(model.w.detach().clone())

    train(
        lambda batch, log: (model.losses(batch).sum(), None),
        lambda step: t.zeros(4, 2),
        AdamW([model.w], 0.0),
        steps=10,
        lr=0.1,
        log_freq=5,
        after_update=after_update,
        every=(4, lambda step: calls.append(("every", step))),
    )
    assert [step for kind, step in calls if kind == "after"] == list(range(10))
    assert [step for kind, step in calls if kind == "every"] == [3, 7]
    assert calls.index(("every", 3)) == calls.index(("after", 3)) + 1, "the periodic hook follows the update's hooks"
    assert not t.equal(w_after[0], t.tensor([[1.0, -2.0], [0.5, 3.0]])), "after_update sees the updated weights"


def test_reset_forgets_the_moments_of_the_chosen_entries_only():
    g = t.Generator().manual_seed(1)
    w = nn.Parameter(t.randn(3, 4, generator=g))
    optimizer = AdamW([w], 0.0)
    for _ in range(5):
        w.grad = t.randn(3, 4, generator=g)
        optimizer.step(1e-2)
    moments = [
        m.clone() for m in (optimizer.state[w][:2] if optimizer.fused else optimizer.optimizer.state[w].values())
    ]
    assert sum(m.shape == w.shape and bool((m != 0).all()) for m in moments) == 2, "two moments, learned"
    where = t.tensor([True, False, True])[:, None]
    optimizer.reset(w, where)
    after = optimizer.state[w][:2] if optimizer.fused else list(optimizer.optimizer.state[w].values())
    for before, now in zip(moments, after, strict=False):
        if before.shape != w.shape:
            continue
        assert (now[[0, 2]] == 0).all() and t.equal(now[1], before[1])


@pytest.mark.parametrize("elements, threads", [(SINGLE_THREAD_BELOW - 1, 1), (SINGLE_THREAD_BELOW, 2)])
def test_small_batches_train_on_one_thread(elements, threads):
    before = t.get_num_threads()
    seen = []
    w = nn.Parameter(t.zeros(()))
    try:
        t.set_num_threads(2)

        def objective(batch, log):
            seen.append(t.get_num_threads())
            return (w - 1) ** 2, None

        train(objective, lambda step: t.empty(elements), AdamW([w], 0.0), steps=2, lr=0.1, log_freq=1)
        assert seen == [threads, threads] and t.get_num_threads() == 2
    finally:
        t.set_num_threads(before)


def test_the_fused_update_takes_the_same_steps_as_torch_adamw():
    """`utils.training.AdamW` calls torch's fused kernel directly: it must match torch.optim.AdamW step for step."""
    g = t.Generator().manual_seed(0)
    start = [t.randn(3, 4, generator=g), t.randn(5, generator=g)]
    ours = [nn.Parameter(p.clone()) for p in start]
    theirs = [nn.Parameter(p.clone()) for p in start]
    update = AdamW(ours, weight_decay=1e-2)
    optimizer = t.optim.AdamW(theirs, lr=1e-2, weight_decay=1e-2)
    for step in range(20):
        grads = [t.randn(p.shape, generator=g) for p in start]
        for params in (ours, theirs):
            for param, grad in zip(params, grads, strict=True):
                param.grad = grad.clone()
        lr_scale = 1 - step / 20
        update.step(1e-2 * lr_scale)
        for group in optimizer.param_groups:
            group["lr"] = 1e-2 * lr_scale
        optimizer.step()
    for a, b in zip(ours, theirs, strict=True):
        assert t.allclose(a, b, atol=1e-6), (a - b).abs().max()


def test_thread_settings_apply_inside_the_block_only():
    before = t.get_num_threads()
    try:
        t.set_num_threads(2)
        with one_cpu_thread(t.device("cpu")):
            assert t.get_num_threads() == 1
        assert t.get_num_threads() == 2
        with threads_for(SINGLE_THREAD_BELOW - 1, t.device("cpu")):
            assert t.get_num_threads() == 1
        with threads_for(SINGLE_THREAD_BELOW, t.device("cpu")):
            assert t.get_num_threads() == 2  # big enough to split: torch's own setting
        with one_cpu_thread(t.device("meta")):  # another device: CPU threads are not its business
            assert t.get_num_threads() == 2
        assert t.get_num_threads() == 2
    finally:
        t.set_num_threads(before)


def snapshot_runs() -> list:
    """(build a model from seed 0, the names it snapshots): a toy model, and a tied SAE (its W_dec is W_enc's)."""

    def toy() -> nn.Module:
        t.manual_seed(0)
        return ToyModel(ToyModelConfig(3, 5, 2), feature_probability=t.full((3, 1), 0.1))

    def sae() -> nn.Module:
        t.manual_seed(0)
        return ToySAE(ToySAEConfig(2, 2, 4, tied_weights=True), pentagon_model(2))

    return [(toy, ["W", "b_final"]), (sae, ["W_enc", "b_enc", "b_dec", "W_dec"])]


@pytest.mark.parametrize("build, names", snapshot_runs(), ids=["toy model", "tied SAE"])
def test_logs_hold_the_weights_of_every_logged_step_before_its_update(build, names):
    """A snapshot at logged step s holds the weights after s updates: those of the same run stopped after s steps
    (on the same batches, drawn from the same seed)."""
    log = build().optimize(batch_size=64, steps=10, log_freq=4)
    assert log["step"].tolist() == [0, 4, 8, 9]
    for index, step in enumerate(log["step"].tolist()):
        model = build()
        if step:
            model.optimize(batch_size=64, steps=step, log_freq=4)
        for name in names:
            assert log[name].shape[0] == 4
            # close, not equal: a logged step of the SAE runs its own code, the others hand-written gradients
            t.testing.assert_close(log[name][index], getattr(model, name).detach(), msg=f"{name} at step {step}")


def test_model_at_loads_a_logged_snapshot_into_a_copy():
    build = snapshot_runs()[0][0]
    model = build()
    log = model.optimize(batch_size=64, steps=8, log_freq=4)
    final = model.W.detach().clone()
    past = model_at(model, log, 1)
    assert t.equal(past.W, log["W"][1]) and t.equal(past.b_final, log["b_final"][1])
    assert t.equal(model.W, final) and not t.equal(past.W, final)
