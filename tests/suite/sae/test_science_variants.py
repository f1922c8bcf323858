"""Section 2.5's claims, asserted: the straight-through estimators are the published formulas (the θ-derivative of a
step smoothed over a window of width ε, checked by finite differences), TopK's L0 is at most k and exactly k wherever k
pre-activations are positive, JumpReLU's L0 falls as its coefficient rises, the L1 penalty shrinks reconstructions and
the variants do not, and each variant lies above the standard SAE's L0 / explained-variance frontier. Numbers measured
at the notebook's budget (1,000 steps, seed 0) are in the notebook's text; the margins here are several times the
seed-to-seed spread we measured."""

import functools

import pytest
import torch as t

from solutions.sae import variants_experiments as ex
from solutions.sae.variants import Heaviside, JumpReLU

EPS = 0.1


def ramp(z: t.Tensor, theta: t.Tensor, eps: float) -> t.Tensor:
    """The step H(z − θ) smoothed over a window of width ε: E[H(z − θ + εU)] for U uniform on [−1/2, 1/2]."""
    return ((z - theta) / eps + 0.5).clamp(0, 1)


def points(seed: int = 0) -> tuple[t.Tensor, t.Tensor]:
    """z in [0, 2] for a [batch n] grid against θ in [0.5, 1.5] per column, away from the ramp's corners."""
    g = t.Generator().manual_seed(seed)
    theta = (0.5 + t.rand(7, generator=g, dtype=t.float64)).requires_grad_(True)
    z = 2 * t.rand((64, 7), generator=g, dtype=t.float64)
    corners = ((z - theta.detach()).abs() - EPS / 2).abs() < 1e-3
    return z.masked_fill(corners, 3.0).requires_grad_(True), theta


def test_heaviside_estimator_is_the_derivative_of_the_smoothed_step():
    z, theta = points()
    Heaviside.apply(z, theta, EPS).sum().backward()
    delta = 1e-6
    with t.no_grad():
        numerical = (ramp(z, theta + delta, EPS) - ramp(z, theta - delta, EPS)).sum(0) / (2 * delta)
    assert t.allclose(theta.grad, numerical, atol=1e-6), (theta.grad, numerical)
    assert (theta.grad != 0).all() and (z.grad == 0).all()


def test_jumprelu_estimator_is_theta_times_the_steps_and_exact_in_z():
    z, theta = points(1)
    JumpReLU.apply(z, theta, EPS).sum().backward()
    z2, theta2 = z.detach().clone().requires_grad_(True), theta.detach().clone().requires_grad_(True)
    Heaviside.apply(z2, theta2, EPS).sum().backward()
    step_theta = theta2.grad
    # ∂J/∂θ = −(θ/ε) K((z − θ)/ε) summed over the batch: θ times the step's estimator, column by column
    assert t.allclose(theta.grad, theta.detach() * step_theta)
    # and within the window |z − θ| < ε/2, so it approximates the derivative of z times the smoothed step, to within
    # a relative ε / (2θ − ε)
    with t.no_grad():
        delta = 1e-6
        smooth = (z * ramp(z, theta + delta, EPS) - z * ramp(z, theta - delta, EPS)).sum(0) / (2 * delta)
        bound = EPS / (2 * theta - EPS) * smooth.abs() + 1e-6
    assert ((theta.grad - smooth).abs() <= bound).all()
    # ∂J/∂z is exact away from the jump: the central difference of J in z
    with t.no_grad():
        delta = 1e-6
        exact = (JumpReLU.apply(z + delta, theta, EPS) - JumpReLU.apply(z - delta, theta, EPS)) / (2 * delta)
    far = ((z - theta).abs() > 1e-4).detach()
    assert t.allclose(z.grad[far], exact[far], atol=1e-6)


def test_theta_gradient_sums_over_every_batch_axis():
    z, theta = points(2)
    z3 = z.detach().view(8, 8, 7)  # [batch, batch2, n]: θ broadcast along two axes
    theta.grad = None
    Heaviside.apply(z3, theta, EPS).sum().backward()
    stacked = theta.grad.clone()
    theta.grad = None
    Heaviside.apply(z.detach(), theta, EPS).sum().backward()
    assert t.allclose(stacked, theta.grad)


@functools.cache
def trained(name: str, tied: bool = False):
    architecture = next(a for a in ex.ARCHITECTURES if a.name == name)
    sae = ex.train_architecture(architecture, tied)
    return sae, ex.measure(sae)


@pytest.mark.slow
def test_topk_keeps_at_most_k_latents_and_exactly_k_where_k_are_positive():
    sae, metrics = trained("topk")
    counts = ex.topk_counts(sae)
    ks = t.tensor(ex.KS)
    assert (counts["most_active"] <= ks).all() and (counts["explained"] == 1).all()
    # The general claim is the line above. How near L0 comes to k depends on the data (4.93 at k = 5 on a model where
    # 5 % of inputs have fewer than 5 positive pre-activations); on this section's data it is within 0.02.
    assert (counts["exactly_k"] > 0.98).all() and ((metrics["l0"] - ks).abs() < 0.02).all()


@pytest.mark.slow
def test_batch_topk_keeps_k_per_input_on_average_with_its_threshold():
    sae, metrics = trained("batchtopk")
    assert ((metrics["l0"] - t.tensor(ex.KS)).abs() / t.tensor(ex.KS) < 0.05).all(), metrics["l0"]


@pytest.mark.slow
def test_jumprelu_l0_falls_as_its_coefficient_rises():
    _, metrics = trained("jumprelu")
    assert (metrics["l0"].diff() < 0).all(), metrics["l0"]
    assert metrics["l0"][0] > 10 and metrics["l0"][-1] < 1  # measured: 12.1 down to 0.38


@pytest.mark.slow
def test_l1_shrinks_reconstructions_and_the_variants_do_not():
    _, standard = trained("standard")
    assert (standard["shrinkage"][2:5] < 0.9).all() and standard["shrinkage"][4] < 0.7  # measured 0.886, 0.811, 0.651
    for name in ("jumprelu", "topk"):
        assert (trained(name)[1]["shrinkage"] - 1).abs().max() < 0.01, name


@pytest.mark.slow
def test_variants_explain_more_variance_than_the_standard_sae_at_its_l0():
    table = {f"{name} untied": trained(name)[1] for name in ("standard", "jumprelu", "topk")}
    for name in ("jumprelu", "topk"):
        gain = ex.frontier_gain(table, f"{name} untied", "standard untied")
        inside = gain[~gain.isnan()]
        assert len(inside) >= 2 and (inside > 0.03).all(), (name, gain)  # measured: 0.05 to 0.40
