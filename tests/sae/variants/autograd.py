"""The check of `sae.jumprelu_autograd`: `Heaviside` and `JumpReLU`, autograd functions with straight-through
estimators for the threshold, called on inputs placed away from the edges of the rectangle kernel and from the jump
itself, with a non-uniform upstream gradient and with batch axes to sum over."""

from typing import Any

import torch as t
from torch import Tensor

from tests.harness import CheckFailed, Context, Mistake, expect_close, expect_tensor, reference_of
from tests.sae.common import N_INST
from tests.sae.variants.forward import close

EPS = 0.3  # not the SAE's default bandwidth
# Where the probe's z lie, in bandwidths from θ: inside the kernel (|u| < 1/2) and outside, on both sides, never on
# an edge of the kernel; and one exactly on the jump (z = θ + 0 = θ, bit for bit), where the step is 0 (z > θ strictly).
OFFSETS = (-1.7, -0.62, -0.41, -0.13, 0.0, 0.09, 0.27, 0.44, 0.71, 2.3)


def autograd_inputs(context: Context, batch: int, lead: tuple[int, ...]) -> tuple[Tensor, Tensor, Tensor]:
    """θ of shape `lead + (len(OFFSETS),)` in [0.5, 1.5]; z = θ + ε·u for every offset u, each batch row in its own
    order; and an upstream gradient of varied weights."""
    g = context.generator(100 + batch + len(lead))
    n = len(OFFSETS)
    theta = 0.5 + t.rand((*lead, n), generator=g)
    offsets = t.tensor(OFFSETS)[t.stack([t.randperm(n, generator=g) for _ in range(batch)])]  # [batch n]
    offsets = offsets.view(batch, *([1] * len(lead)), n)
    z = theta + EPS * offsets
    upstream = 0.5 + t.rand(z.shape, generator=g)
    return z, theta, upstream


AUTOGRAD_SHAPES = {"batch": (5, ()), "one input": (1, ()), "batch inst": (4, (N_INST,))}


def call_autograd(function: type, z: Tensor, theta: Tensor, upstream: Tensor) -> dict[str, Any]:
    z, theta = z.clone().requires_grad_(True), theta.clone().requires_grad_(True)
    out = function.apply(z, theta, EPS)
    if not isinstance(out, Tensor):
        raise CheckFailed(f"{function.__name__}.apply should return a tensor, got {type(out).__name__}.")
    if not out.requires_grad:
        raise CheckFailed(
            f"{function.__name__}.apply returned a tensor with no gradient: return a new tensor from `forward`, "
            "and let `backward` give the gradients."
        )
    out.backward(upstream)
    return {
        "out": out,
        "grad_z": z.grad if z.grad is not None else t.zeros_like(z),
        "grad_theta": theta.grad if theta.grad is not None else t.zeros_like(theta),
    }


def probe_autograd(functions: tuple[type, type], context: Context) -> dict:
    results = {}
    for name, function in zip(("Heaviside", "JumpReLU"), functions, strict=True):
        for label, (batch, lead) in AUTOGRAD_SHAPES.items():
            z, theta, upstream = autograd_inputs(context, batch, lead)
            results[f"{name}|{label}"] = call_autograd(function, z.to(context.device),
                                                                   theta.to(context.device), upstream.to(context.device))  # fmt: skip
    return results


def verdict_autograd(results: dict, context: Context) -> None:
    hints = {mistake.name: mistake.hint for mistake in AUTOGRAD_MISTAKES}
    expected = probe_autograd(reference_of("sae.jumprelu_autograd"), context)
    mistaken = {}
    for mistake in AUTOGRAD_MISTAKES:
        try:
            mistaken[mistake.name] = probe_autograd(mistake.impl(), context)
        except Exception:
            continue
    names = [name for name in expected]
    outputs = ("out", "grad_z", "grad_theta")
    flat = lambda runs: {f"{n}|{o}": runs[n][o] for n in names for o in outputs}  # noqa: E731
    got_all, expected_all = flat(results), flat(expected)
    if not all(close(got_all[k], expected_all[k]) for k in expected_all):
        for mistake, runs in mistaken.items():
            try:
                candidate = flat(runs)
            except KeyError:
                continue
            if all(close(got_all[k], candidate[k]) for k in expected_all):
                raise CheckFailed(f"{mistake_subject(mistake)} is wrong. {hints[mistake]}.")
    for key in expected_all:
        function, label, output = key.split("|")
        what = {
            "out": f"{function}.apply(z, θ, ε) (z {label})",
            "grad_z": f"{function}'s gradient with respect to z (z {label})",
            "grad_theta": f"{function}'s gradient with respect to θ (z {label}, θ without the batch axis)",
        }[output]
        got = expect_tensor(got_all[key], what, tuple(expected_all[key].shape), "", expected_all[key].dtype)
        candidates = {m: flat(runs).get(key) for m, runs in mistaken.items() if all(n in runs for n in names)}
        expect_close(got, expected_all[key], what, candidates, hints)


def mistake_subject(name: str) -> str:
    return "JumpReLU" if name.startswith("jumprelu") else "Heaviside"


def rect(x: Tensor) -> Tensor:
    return (x.abs() < 0.5).float()


def make_functions(heaviside: dict | None = None, jumprelu: dict | None = None) -> tuple[type, type]:
    """Heaviside and JumpReLU autograd functions built from formulas (the reference's, with some replaced)."""
    h_formulas = {
        "forward": lambda z, th: (z > th).float(),
        "grad_z": lambda z, th, eps, g: t.zeros_like(z),
        "grad_theta": lambda z, th, eps, g: -(1.0 / eps) * rect((z - th) / eps) * g,
    } | (heaviside or {})
    j_formulas = {
        "forward": lambda z, th: z * (z > th).float(),
        "grad_z": lambda z, th, eps, g: (z > th).float() * g,
        "grad_theta": lambda z, th, eps, g: -(th / eps) * rect((z - th) / eps) * g,
    } | (jumprelu or {})

    def function(name: str, formulas: dict) -> type:
        def forward(ctx, z, theta, eps):
            ctx.save_for_backward(z, theta)
            ctx.eps = eps
            return formulas["forward"](z, theta)

        def backward(ctx, grad_output):
            z, theta = ctx.saved_tensors
            grad_theta = formulas["grad_theta"](z, theta, ctx.eps, grad_output)
            return formulas["grad_z"](z, theta, ctx.eps, grad_output), grad_theta.sum_to_size(theta.shape), None

        return type(
            name, (t.autograd.Function,), {"forward": staticmethod(forward), "backward": staticmethod(backward)}
        )

    return function("Heaviside", h_formulas), function("JumpReLU", j_formulas)


def heaviside_positive_gradient():
    return make_functions(heaviside={"grad_theta": lambda z, th, eps, g: (1.0 / eps) * rect((z - th) / eps) * g})


def heaviside_without_one_over_eps():
    return make_functions(heaviside={"grad_theta": lambda z, th, eps, g: -rect((z - th) / eps) * g})


def heaviside_kernel_not_scaled():
    return make_functions(heaviside={"grad_theta": lambda z, th, eps, g: -(1.0 / eps) * rect(z - th) * g})


def heaviside_kernel_at_z():
    return make_functions(heaviside={"grad_theta": lambda z, th, eps, g: -(1.0 / eps) * rect(z / eps) * g})


def heaviside_ignores_grad_output():
    return make_functions(heaviside={"grad_theta": lambda z, th, eps, g: -(1.0 / eps) * rect((z - th) / eps)})


def heaviside_straight_through_z():
    return make_functions(heaviside={"grad_z": lambda z, th, eps, g: g})


def heaviside_mean_over_batch():
    return make_functions(
        heaviside={"grad_theta": lambda z, th, eps, g: -(1.0 / eps) * rect((z - th) / eps) * g / z.shape[0]}
    )


def jumprelu_grad_z_everywhere():
    return make_functions(jumprelu={"grad_z": lambda z, th, eps, g: g})


def jumprelu_without_theta():
    return make_functions(jumprelu={"grad_theta": lambda z, th, eps, g: -(1.0 / eps) * rect((z - th) / eps) * g})


def jumprelu_z_instead_of_theta():
    return make_functions(jumprelu={"grad_theta": lambda z, th, eps, g: -(z / eps) * rect((z - th) / eps) * g})


def jumprelu_subtracts_theta():
    return make_functions(
        jumprelu={
            "forward": lambda z, th: (z - th) * (z > th).float(),
            "grad_theta": lambda z, th, eps, g: -(z > th).float() * g,
        }
    )


def jumprelu_positive_gradient():
    return make_functions(jumprelu={"grad_theta": lambda z, th, eps, g: (th / eps) * rect((z - th) / eps) * g})


def jumprelu_ignores_grad_output():
    return make_functions(jumprelu={"grad_theta": lambda z, th, eps, g: -(th / eps) * rect((z - th) / eps)})


def heaviside_fires_at_threshold():
    return make_functions(heaviside={"forward": lambda z, th: (z >= th).float()})


def jumprelu_fires_at_threshold():
    return make_functions(
        jumprelu={
            "forward": lambda z, th: z * (z >= th).float(),
            "grad_z": lambda z, th, eps, g: (z >= th).float() * g,
        }
    )


AUTOGRAD_MISTAKES = [
    Mistake(
        heaviside_positive_gradient,
        "∂H/∂θ is negative: raising θ switches the step off, so dH/dθ = −(1/ε)·K((z − θ)/ε)",
    ),
    Mistake(heaviside_without_one_over_eps, "∂H/∂θ = −(1/ε)·K((z − θ)/ε): divide by the bandwidth ε"),
    Mistake(
        heaviside_kernel_not_scaled,
        "Evaluate the kernel at (z − θ)/ε, so that its window around θ has width ε: K((z − θ)/ε), not K(z − θ)",
    ),
    Mistake(
        heaviside_kernel_at_z,
        "The kernel is centred on the threshold: K((z − θ)/ε), not K(z/ε) (a misprint in some versions of ARENA's "
        "docstring)",
    ),
    Mistake(
        heaviside_ignores_grad_output,
        "Multiply by `grad_output` (the chain rule): backward returns ∂L/∂θ = ∂L/∂H · ∂H/∂θ",
    ),
    Mistake(
        heaviside_straight_through_z,
        "The step has no gradient with respect to z (∂H/∂z = 0): only θ gets a straight-through estimate",
    ),
    Mistake(
        heaviside_mean_over_batch,
        "Sum θ's gradient over the batch (each input adds its own), don't average it",
    ),
    Mistake(
        jumprelu_grad_z_everywhere,
        "∂J/∂z = 1[z > θ]: below the threshold the output is 0 whatever z is, so no gradient reaches z there",
    ),
    Mistake(
        jumprelu_without_theta,
        "JumpReLU jumps by θ at the threshold, so its θ-gradient is −(θ/ε)·K((z − θ)/ε): Heaviside's times θ",
    ),
    Mistake(jumprelu_z_instead_of_theta, "∂J/∂θ = −(θ/ε)·K((z − θ)/ε), with θ (the jump's height), not z"),
    Mistake(
        jumprelu_subtracts_theta,
        "JumpReLU keeps z itself above the threshold, J(z, θ) = z·1[z > θ]; subtracting θ gives a soft threshold",
    ),
    Mistake(jumprelu_positive_gradient, "∂J/∂θ is negative: raising θ switches outputs off"),
    Mistake(jumprelu_ignores_grad_output, "Multiply JumpReLU's θ-gradient by `grad_output` (the chain rule)"),
]


AUTOGRAD_MISTAKES += [
    Mistake(
        heaviside_fires_at_threshold,
        "H(z, θ) = 1[z > θ], strictly: at z = θ exactly the step is still 0 (`z > theta`, not `z >= theta`)",
    ),
    Mistake(
        jumprelu_fires_at_threshold,
        "J(z, θ) = z·1[z > θ], strictly: at z = θ exactly the output (and the gradient reaching z) is 0 "
        "(`z > theta`, not `z >= theta`)",
    ),
]


def autograd_arena_style():
    """ARENA's functions: 0·grad_output for z, θ's gradient summed over dim 0, .float() outputs."""

    class Heaviside(t.autograd.Function):
        @staticmethod
        def forward(ctx, z, theta, eps):
            ctx.save_for_backward(z, theta)
            ctx.eps = eps
            return (z > theta).float()

        @staticmethod
        def backward(ctx, grad_output):
            (z, theta) = ctx.saved_tensors
            grad_theta = -(1.0 / ctx.eps) * rect((z - theta) / ctx.eps) * grad_output
            return 0.0 * grad_output, grad_theta.sum(dim=0), None

    class JumpReLU(t.autograd.Function):
        @staticmethod
        def forward(ctx, z, theta, eps):
            ctx.save_for_backward(z, theta)
            ctx.eps = eps
            return z * (z > theta).float()

        @staticmethod
        def backward(ctx, grad_output):
            (z, theta) = ctx.saved_tensors
            grad_theta = -(theta / ctx.eps) * rect((z - theta) / ctx.eps) * grad_output
            return (z > theta).float() * grad_output, grad_theta.sum(dim=0), None

    return Heaviside, JumpReLU


def autograd_unsummed():
    """θ's gradient returned with the batch axes (autograd sums it to θ's shape), None for z, and ctx attributes."""

    class Heaviside(t.autograd.Function):
        @staticmethod
        def forward(ctx, z, theta, eps):
            ctx.z, ctx.theta, ctx.eps = z, theta, eps
            return t.where(z > theta, 1.0, 0.0)

        @staticmethod
        def backward(ctx, grad_output):
            window = ((ctx.z - ctx.theta).abs() < ctx.eps / 2).to(grad_output.dtype)
            return None, -window * grad_output / ctx.eps, None

    class JumpReLU(t.autograd.Function):
        @staticmethod
        def forward(ctx, z, theta, eps):
            ctx.save_for_backward(z, theta)
            ctx.eps = eps
            return t.where(z > theta, z, t.zeros_like(z))

        @staticmethod
        def backward(ctx, grad_output):
            z, theta = ctx.saved_tensors
            window = ((z - theta).abs() < ctx.eps / 2).to(grad_output.dtype)
            return (z > theta) * grad_output, -theta * window * grad_output / ctx.eps, None

    return Heaviside, JumpReLU
