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
    for variant in bench.VARIANTS:  # the SAE loops are timed under the same names as the toy models' they share
        shared = len(bench.SAE_PROBLEMS) if variant in bench.SAE_VARIANTS else 0
        assert printed.count(variant) == len(bench.PROBLEMS) + shared
    assert printed.count("speed-up over the naive loop") == len(bench.PROBLEMS) + len(bench.SAE_PROBLEMS)
    for problem in bench.SAE_PROBLEMS:
        assert problem.name in printed
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


def test_naive_sae_computes_what_the_reference_computes():
    """ARENA's one-piece forward pass and the course's steps: the same latents, reconstruction and losses."""
    naive, reference = (bench.SAE_PROBLEMS[0].sae(cls, seed=1) for cls in (bench.NaiveSAE, bench.ToySAE))
    h = reference.generate_batch(64)
    for a, b in zip(naive(h)[1:], reference(h)[1:], strict=True):
        assert t.allclose(a, b, atol=1e-6)
