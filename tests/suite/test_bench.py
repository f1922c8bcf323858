"""`make bench` keeps working: one step of every benchmarked loop, timings printed but never asserted."""

import pytest
import torch as t

from utils import bench


@pytest.mark.slow
def test_quick_benchmark_runs_every_loop_on_both_problems(capsys, tmp_path):
    assert bench.main(["--quick", "--notebook", str(tmp_path / "missing.ipynb"), "--chapter", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    for problem in bench.PROBLEMS:
        assert problem.name in printed
    for variant in bench.VARIANTS:
        assert printed.count(variant) == len(bench.PROBLEMS)
    assert printed.count("speed-up over the naive loop") == len(bench.PROBLEMS)
    assert printed.count("instead of the kernel") == len(bench.PROBLEMS) and "first torch.optim optimizer" in printed
    assert "missing.ipynb: skipped" in printed
    assert "has no solutions notebooks" in printed


def test_naive_model_computes_what_the_reference_computes():
    """Same outputs, loss and gradients on the same batch: the two loops differ in speed only."""
    naive, reference = bench.PROBLEMS[0].model(bench.NaiveToyModel), bench.PROBLEMS[0].model()
    batch = reference.generate_batch(64)
    for model in (naive, reference):
        model.calculate_loss(model(batch), batch).backward()
    assert t.allclose(naive(batch), reference(batch))
    assert t.allclose(naive.calculate_loss(naive(batch), batch), reference.calculate_loss(reference(batch), batch))
    assert t.allclose(naive.W.grad, reference.W.grad, atol=1e-7)
    assert t.allclose(naive.b_final.grad, reference.b_final.grad, atol=1e-7)


def test_the_fused_update_takes_the_same_steps_as_torch_adamw():
    """`utils.training.AdamW` calls torch's fused kernel directly: it must match torch.optim.AdamW step for step."""
    from utils.training import AdamW

    g = t.Generator().manual_seed(0)
    start = [t.randn(3, 4, generator=g), t.randn(5, generator=g)]
    ours = [t.nn.Parameter(p.clone()) for p in start]
    theirs = [t.nn.Parameter(p.clone()) for p in start]
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
    from utils.training import SINGLE_THREAD_BELOW, one_cpu_thread, threads_for

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
