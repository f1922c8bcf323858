"""Checks for chapter 1, section 7's learning-coefficient exercises: `sgld_step`, `estimate_llc` and `critical_n`.

`sgld_step` is random, and any order of drawing its noise is correct. So its check compares the learner's function
with itself: called twice with generators seeded alike it must give the same points (the noise comes from the
generator), and called at two different inputs with generators seeded alike, the difference of its outputs is the
difference of the deterministic parts exactly (the noise cancels), which is compared with the reference's. What is
left, the output minus the reference's deterministic part, must be N(0, ε) noise, independent between chains: tested
with Chernoff bounds at levels from the verdict's `Budget`. The other two exercises are deterministic.
"""

import math

import torch as t
from torch import Tensor

from tests.harness import CheckFailed, Context, Exercise, Mistake, attempt, raised, reference_of
from tests.stats import Budget
from tests.tms.common import expect_close_to_reference, expect_shaped

MODULE = "solutions.tms.learning_coefficient"

# ------------------------------------------------------------------------------------------------- sgld_step

CHAINS, PARAMS = 8, 3_000
EPSILON, N_BETA, GAMMA = 0.01, 30.0, 5.0  # √ε = 0.1 and ε = 0.01 differ tenfold


def sgld_inputs(context: Context, which: int) -> tuple[Tensor, Tensor, Tensor]:
    g = context.generator(20 + which)
    return (
        0.5 * t.randn((CHAINS, PARAMS), generator=g),
        t.randn((CHAINS, PARAMS), generator=g),
        t.randn(PARAMS, generator=g),
    )


def probe_sgld_step(sgld_step, context: Context) -> dict:
    results = {}
    for name, which in [("first", 1), ("again", 1), ("second", 2)]:
        w, grad, w_star = (tensor.to(context.device) for tensor in sgld_inputs(context, which))
        generator = t.Generator(device=context.device).manual_seed(context.seed + 7)
        results[name] = attempt(lambda: sgld_step(w, grad, w_star, EPSILON, N_BETA, GAMMA, generator))
        results[f"{name}_w_after"] = w
    return results


def deterministic_part(w: Tensor, grad: Tensor, w_star: Tensor) -> Tensor:
    """The reference's step without its noise: its step at (w, grad) minus its step at (w*, 0), which is w* plus the
    same noise (the same generator state)."""
    sgld_step = reference_of("tms.slt.sgld_step")
    steps = []
    for args in [(w, grad, w_star), (w_star.expand_as(w), t.zeros_like(grad), w_star)]:
        steps.append(sgld_step(*args, EPSILON, N_BETA, GAMMA, t.Generator().manual_seed(0)))
    return steps[0] - (steps[1] - w_star)


def step_with(drift_scale, localisation_sign, noise_fn):
    def sgld_step(w, grad, w_star, epsilon, n_beta, gamma, generator=None):
        drift = n_beta * grad + localisation_sign * gamma * (w - w_star)
        return w - drift_scale * epsilon * drift + noise_fn(w, epsilon, n_beta, generator)

    return sgld_step


def gaussian(w, epsilon, n_beta, generator):
    return t.randn(w.shape, generator=generator, device=w.device) * math.sqrt(epsilon)


sgld_noise_scaled_by_epsilon = step_with(0.5, 1, lambda w, e, nb, g: t.randn(w.shape, generator=g) * e)
sgld_localisation_sign = step_with(0.5, -1, gaussian)
sgld_missing_half = step_with(1.0, 1, gaussian)
sgld_n_beta_on_noise = step_with(0.5, 1, lambda w, e, nb, g: t.randn(w.shape, generator=g) * math.sqrt(e * nb))
sgld_noise_shared_across_chains = step_with(
    0.5, 1, lambda w, e, nb, g: t.randn(w.shape[1:], generator=g) * math.sqrt(e)
)
sgld_global_generator = step_with(0.5, 1, lambda w, e, nb, g: t.randn(w.shape) * math.sqrt(e))
sgld_uniform_noise = step_with(0.5, 1, lambda w, e, nb, g: t.rand(w.shape, generator=g) * math.sqrt(e))
for function, name in [
    (sgld_noise_scaled_by_epsilon, "sgld_noise_scaled_by_epsilon"),
    (sgld_localisation_sign, "sgld_localisation_sign"),
    (sgld_missing_half, "sgld_missing_half"),
    (sgld_n_beta_on_noise, "sgld_n_beta_on_noise"),
    (sgld_noise_shared_across_chains, "sgld_noise_shared_across_chains"),
    (sgld_global_generator, "sgld_global_generator"),
    (sgld_uniform_noise, "sgld_uniform_noise"),
]:
    function.__name__ = name


def sgld_n_beta_on_localisation(w, grad, w_star, epsilon, n_beta, gamma, generator=None):
    return w - (epsilon / 2) * n_beta * (grad + gamma * (w - w_star)) + gaussian(w, epsilon, n_beta, generator)


def sgld_gradient_ascent(w, grad, w_star, epsilon, n_beta, gamma, generator=None):
    return w + (epsilon / 2) * (n_beta * grad + gamma * (w - w_star)) + gaussian(w, epsilon, n_beta, generator)


def sgld_in_place(w, grad, w_star, epsilon, n_beta, gamma, generator=None):
    w -= (epsilon / 2) * (n_beta * grad + gamma * (w - w_star))
    return w.add_(gaussian(w, epsilon, n_beta, generator))


HINT_NOISE_SCALE = (
    "The noise is N(0, ε), with variance ε: its standard deviation is √ε (`t.randn(...) * ε ** 0.5`), not ε"
)
HINT_NOISE_N_BETA = "nβ multiplies the gradient only, not the noise: the noise is N(0, ε) whatever the temperature"
HINT_SHARED = "Every chain needs its own noise: draw one number per entry of w, [chains params], not one set broadcast over the chains"
HINT_STEP_GENERATOR = "Draw the noise from `generator` (`t.randn(w.shape, generator=generator)`): two calls with generators seeded alike must give the same step"
HINT_GAUSSIAN = "The noise is Gaussian and centred, N(0, ε): `t.randn`, not `t.rand`"
HINT_IN_PLACE = "Return a new tensor and leave `w` as it was: don't update it in place (`-=`, `add_`)"
SGLD_MISTAKES = [
    Mistake(sgld_noise_scaled_by_epsilon, HINT_NOISE_SCALE),
    Mistake(
        sgld_localisation_sign,
        "The localisation term pulls w back towards w*: + γ (w − w*) inside the bracket, which is subtracted.",
    ),
    Mistake(sgld_missing_half, "The drift is scaled by ε/2, not ε: w − (ε/2)(nβ ∇L + γ (w − w*))."),
    Mistake(sgld_n_beta_on_noise, HINT_NOISE_N_BETA),
    Mistake(
        sgld_n_beta_on_localisation,
        "nβ multiplies the gradient only: (ε/2)(nβ ∇L + γ (w − w*)), not (ε/2) nβ (∇L + γ (w − w*)).",
    ),
    Mistake(sgld_noise_shared_across_chains, HINT_SHARED),
    Mistake(sgld_global_generator, HINT_STEP_GENERATOR),
    Mistake(sgld_gradient_ascent, "Step *down* the loss: w − (ε/2)(…), not w + (ε/2)(…)."),
    Mistake(sgld_in_place, HINT_IN_PLACE),
    Mistake(sgld_uniform_noise, HINT_GAUSSIAN),
]


def noise_diagnosis(z: Tensor) -> str:
    """Name the mistake behind noise that failed a test (only once a test has failed; not a test itself)."""
    sigma = math.sqrt(EPSILON)
    ratio = float(z.std()) / sigma
    if t.allclose(z[0], z[1], atol=1e-5):
        return HINT_SHARED
    if (z > 0).float().mean() > 0.9:
        return HINT_GAUSSIAN
    if abs(ratio - sigma) < 0.2 * sigma:
        return HINT_NOISE_SCALE
    if any(abs(ratio - scale) < 0.2 * scale for scale in (N_BETA, math.sqrt(N_BETA))):
        return HINT_NOISE_N_BETA
    return f"The noise must be N(0, ε) (standard deviation √ε = {sigma:g}), independent for every entry and chain"


def verdict_sgld_step(results: dict, context: Context) -> None:
    inputs = {name: sgld_inputs(context, which) for name, which in [("first", 1), ("again", 1), ("second", 2)]}
    outputs = {}
    for name, (w, _, _) in inputs.items():
        if not t.equal(results[f"{name}_w_after"], w):
            raise CheckFailed(f"{HINT_IN_PLACE}.")
        outputs[name] = expect_shaped(
            results[name], "sgld_step(w, grad, w_star, ...)", (CHAINS, PARAMS), "chains params"
        )
    if not t.equal(outputs["first"], outputs["again"]):
        raise CheckFailed(f"{HINT_STEP_GENERATOR}.")
    difference = outputs["first"] - outputs["second"]
    expected = deterministic_part(*inputs["first"]) - deterministic_part(*inputs["second"])

    def run(impl):
        steps = []
        for name in ("first", "second"):
            generator = t.Generator().manual_seed(context.seed + 7)
            steps.append(impl(*(tensor.clone() for tensor in inputs[name]), EPSILON, N_BETA, GAMMA, generator))
        return steps[0] - steps[1]

    what = "The deterministic part of your step, w − (ε/2)(nβ ∇L + γ (w − w*)),"
    expect_close_to_reference(difference, expected, what, SGLD_MISTAKES, run, rtol=1e-4, atol=1e-4)
    z = outputs["first"] - deterministic_part(*inputs["first"])
    sigma, n = math.sqrt(EPSILON), z.numel()
    budget = Budget(4)
    half = CHAINS // 2
    agree = (z[0::2].sign() == z[1::2].sign()).float().mean()
    for what, frequency, probability, trials in [
        ("positive", (z > 0).float().mean(), 0.5, n),
        ("within √ε of 0", (z.abs() < sigma).float().mean(), math.erf(1 / math.sqrt(2)), n),
        ("within 2√ε of 0", (z.abs() < 2 * sigma).float().mean(), math.erf(2 / math.sqrt(2)), n),
        ("of the same sign in two chains", agree, 0.5, half * PARAMS),
    ]:
        low, high = budget.binomial_range(trials, probability)
        if not low <= float(frequency) <= high:
            raise CheckFailed(
                f"{noise_diagnosis(z)}. The noise of your step (its output minus the deterministic part) is {what} "
                f"{float(frequency):.3f} of the time; N(0, ε) noise gives {probability:.3f}."
            )


def sgld_with_normal(w, grad, w_star, epsilon, n_beta, gamma, generator=None):
    noise = t.normal(0.0, epsilon**0.5, size=w.shape, generator=generator)
    localisation = gamma * (w - w_star)
    return w + noise - epsilon / 2 * localisation - epsilon / 2 * n_beta * grad


def sgld_noise_first(w, grad, w_star, epsilon, n_beta, gamma, generator=None):
    new = t.empty_like(w).normal_(generator=generator).mul_(math.sqrt(epsilon)).add_(w)
    return new.sub_((epsilon / 2) * (n_beta * grad + gamma * (w - w_star)))


# ---------------------------------------------------------------------------------------------- estimate_llc

LLC_CHAINS, DRAWS, N, BURN_IN = 5, 40, 1234, 7


def llc_inputs(context: Context) -> tuple[Tensor, Tensor]:
    g = context.generator(30)
    level = 0.05 + 0.1 * t.rand((LLC_CHAINS, 1), generator=g)
    return level + 0.02 * t.rand((LLC_CHAINS, DRAWS), generator=g), 0.04 + 0.01 * t.rand(LLC_CHAINS, generator=g)


def llc_calls(context: Context) -> list[tuple[str, tuple, dict]]:
    losses, init = llc_inputs(context)
    return [
        ("with the default nβ", (losses, float(init[0]), N, BURN_IN), {}),
        ("with n_beta = 37.5 and one L_n(w*) per chain", (losses, init, N, BURN_IN), {"n_beta": 37.5}),
        ("with burn_in = 0", (losses, float(init[1]), 500, 0), {}),
    ]


def probe_estimate_llc(estimate_llc, context: Context) -> dict:
    found = {}
    for name, args, kwargs in llc_calls(context):
        found[name] = attempt(lambda: list(estimate_llc(*args, **kwargs)))
    return {"calls": found, "losses_after": llc_inputs(context)[0]}


def llc_with(keep, n_beta_of, subtract=True):
    def estimate_llc(losses, init_loss, n, burn_in, n_beta=None):
        n_beta = n_beta_of(n, n_beta)
        kept = keep(losses, burn_in)
        per_chain = n_beta * (kept.mean(1) - (init_loss if subtract else 0))
        return per_chain.mean(), per_chain

    return estimate_llc


def default_n_beta(n, n_beta):
    return n / math.log(n) if n_beta is None else n_beta


def after_burn_in(losses, burn_in):
    return losses[:, burn_in:]


llc_burn_in_kept = llc_with(lambda losses, burn_in: losses, default_n_beta)
llc_burn_in_from_the_end = llc_with(lambda losses, burn_in: losses[:, : losses.shape[1] - burn_in], default_n_beta)
llc_n_beta_is_n = llc_with(after_burn_in, lambda n, nb: n if nb is None else nb)
llc_log10 = llc_with(after_burn_in, lambda n, nb: n / math.log10(n) if nb is None else nb)
llc_n_beta_ignored = llc_with(after_burn_in, lambda n, nb: n / math.log(n))
llc_init_not_subtracted = llc_with(after_burn_in, default_n_beta, subtract=False)
for function, name in [
    (llc_burn_in_kept, "llc_burn_in_kept"),
    (llc_burn_in_from_the_end, "llc_burn_in_from_the_end"),
    (llc_n_beta_is_n, "llc_n_beta_is_n"),
    (llc_log10, "llc_log10"),
    (llc_n_beta_ignored, "llc_n_beta_ignored"),
    (llc_init_not_subtracted, "llc_init_not_subtracted"),
]:
    function.__name__ = name


def llc_init_averaged_over_chains(losses, init_loss, n, burn_in, n_beta=None):
    n_beta = default_n_beta(n, n_beta)
    per_chain = n_beta * (losses[:, burn_in:].mean(1) - t.as_tensor(init_loss).mean())
    return per_chain.mean(), per_chain


def llc_per_chain_without_n_beta(losses, init_loss, n, burn_in, n_beta=None):
    per_chain = losses[:, burn_in:].mean(1) - init_loss
    return default_n_beta(n, n_beta) * per_chain.mean(), per_chain


def llc_mean_over_chains_first(losses, init_loss, n, burn_in, n_beta=None):
    per_draw = default_n_beta(n, n_beta) * (losses[:, burn_in:] - init_loss).mean(0)
    return per_draw.mean(), per_draw


HINT_LOG = "nβ defaults to n / ln n, with the natural logarithm (`math.log(n)`)"
LLC_MISTAKES = [
    Mistake(
        llc_burn_in_kept, "Drop the first `burn_in` draws of every chain (`losses[:, burn_in:]`) before averaging."
    ),
    Mistake(
        llc_burn_in_from_the_end,
        "The burn-in is the *first* `burn_in` draws, while the chain moves away from w*: keep `losses[:, burn_in:]`.",
    ),
    Mistake(llc_n_beta_is_n, "The default inverse temperature is nβ = n / ln n (β = 1/ln n), not n."),
    Mistake(llc_log10, HINT_LOG),
    Mistake(llc_n_beta_ignored, "Use the `n_beta` you are given when it is not None; n / ln n is only its default."),
    Mistake(
        llc_init_not_subtracted,
        "λ̂ measures the loss *above* the minimum: subtract L_n(w*), `init_loss`, from the chains' mean loss.",
    ),
    Mistake(
        llc_init_averaged_over_chains,
        "When `init_loss` has one value per chain, subtract each chain's own value: broadcast it over the draws (`init_loss[:, None]` or `.unsqueeze(1)`), don't average it.",
    ),
    Mistake(
        llc_per_chain_without_n_beta,
        "Each chain's λ̂_c is nβ times its mean excess loss too, so that λ̂ is the mean of the per-chain values.",
    ),
    Mistake(
        llc_mean_over_chains_first,
        "The per-chain values are one per chain, shape [chains]: average over the draws (axis 1), not over the chains.",
    ),
]


def verdict_estimate_llc(results: dict, context: Context) -> None:
    estimate_llc = reference_of("tms.slt.estimate_llc")

    if not t.equal(results["losses_after"], llc_inputs(context)[0]):
        raise CheckFailed("estimate_llc changed `losses` in place; compute new tensors instead.")
    for name, args, kwargs in llc_calls(context):
        got, what = results["calls"][name], f"estimate_llc {name}"
        if (message := raised(got)) is not None:
            raise CheckFailed(f"{what} raised {message}")
        if not isinstance(got, list) or len(got) != 2:
            raise CheckFailed(f"{what} should return a tuple (λ̂, λ̂ per chain).")
        llc, per_chain = got
        if isinstance(per_chain, Tensor) and tuple(per_chain.shape) == (args[0].shape[1] - args[3],):
            raise CheckFailed(f"{LLC_MISTAKES[-1].hint} ({what} returned shape {tuple(per_chain.shape)}.)")
        per_chain = expect_shaped(per_chain, f"the per-chain values of {what}", (LLC_CHAINS,), "chains")
        if not isinstance(llc, Tensor | float) or (isinstance(llc, Tensor) and llc.numel() != 1):
            raise CheckFailed(f"{what}: λ̂ should be a single number (a 0-dimensional tensor or a float).")
        expected_llc, expected_per_chain = estimate_llc(*args, **kwargs)
        got_all = t.cat([t.as_tensor(llc, dtype=t.float32).reshape(1), per_chain.float()])
        expected = t.cat([expected_llc.reshape(1), expected_per_chain])

        def run(impl, args=args, kwargs=kwargs):
            llc, per_chain = impl(*args, **kwargs)
            return t.cat([t.as_tensor(llc, dtype=t.float32).reshape(1), per_chain])

        expect_close_to_reference(got_all, expected, f"(λ̂, λ̂ per chain) of {what}", LLC_MISTAKES, run)


def llc_with_loops(losses, init_loss, n, burn_in, n_beta=None):
    if n_beta is None:
        n_beta = n / math.log(n)
    init = t.as_tensor(init_loss).expand(losses.shape[0])
    per_chain = t.stack(
        [n_beta * (chain[burn_in:].sum() / (len(chain) - burn_in) - init[c]) for c, chain in enumerate(losses)]
    )
    return per_chain.mean(), per_chain


# ------------------------------------------------------------------------------------------------ critical_n

CRITICAL_CASES = [  # loss_a, llc_a, loss_b, llc_b, constant_a, constant_b: the paper's 5 → 6 crossing, and others
    (0.06874, 7.0, 0.04819, 8.5, 0.0, 0.0),
    (0.06874, 7.0, 0.04819, 8.5, 0.0, 2.7535),
    (0.10417, 4.0, 0.0618, 8.5, 1.3, -0.4),
    (0.3, 2.5, 0.05, 9.0, 0.0, 0.0),
    (0.1, 9.0, 0.05, 6.0, 0.0, 0.0),  # b has the lower loss *and* the lower λ: preferred at every n
]


def probe_critical_n(critical_n, context: Context) -> dict:
    found = [attempt(lambda case=case: critical_n(*case[:4])) for case in CRITICAL_CASES if case[4:] == (0.0, 0.0)]
    with_constants = [attempt(lambda case=case: critical_n(*case)) for case in CRITICAL_CASES]
    return {"plain": found, "with_constants": with_constants}


def larger_root(gap, loss_gap, llc_gap):
    low = max(1.0, llc_gap / loss_gap)
    if gap(low) >= 0:
        return 1.0
    high = 2 * low
    while gap(high) < 0:
        high *= 2
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if gap(middle) < 0 else (low, middle)
    return high


def crossing_with(log=math.log, constant_sign=1, llc_scale=1.0):
    def critical_n(loss_a, llc_a, loss_b, llc_b, constant_a=0.0, constant_b=0.0):
        loss_gap, llc_gap = loss_a - loss_b, llc_scale * (llc_b - llc_a)
        gap = lambda n: n * loss_gap - llc_gap * log(n) + constant_sign * (constant_a - constant_b)
        return larger_root(gap, loss_gap, llc_gap)

    return critical_n


critical_n_log10 = crossing_with(log=math.log10)
critical_n_constant_sign = crossing_with(constant_sign=-1)
critical_n_constants_ignored = crossing_with(constant_sign=0)
critical_n_llc_swapped = crossing_with(llc_scale=-1.0)
critical_n_half_llc = crossing_with(llc_scale=0.5)
for function, name in [
    (critical_n_log10, "critical_n_log10"),
    (critical_n_constant_sign, "critical_n_constant_sign"),
    (critical_n_constants_ignored, "critical_n_constants_ignored"),
    (critical_n_llc_swapped, "critical_n_llc_swapped"),
    (critical_n_half_llc, "critical_n_half_llc"),
]:
    function.__name__ = name


def critical_n_smaller_root(loss_a, llc_a, loss_b, llc_b, constant_a=0.0, constant_b=0.0):
    loss_gap, llc_gap, constant_gap = loss_a - loss_b, llc_b - llc_a, constant_a - constant_b
    low, high = 1.0, max(1.0, llc_gap / loss_gap)
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (
            (low, middle) if middle * loss_gap - llc_gap * math.log(middle) + constant_gap < 0 else (middle, high)
        )
    return high


def critical_n_without_log(loss_a, llc_a, loss_b, llc_b, constant_a=0.0, constant_b=0.0):
    return max(1.0, ((llc_b - llc_a) - (constant_a - constant_b)) / (loss_a - loss_b))


def critical_n_rounded(loss_a, llc_a, loss_b, llc_b, constant_a=0.0, constant_b=0.0):
    return float(round(crossing_with()(loss_a, llc_a, loss_b, llc_b, constant_a, constant_b)))


CRITICAL_MISTAKES = [
    Mistake(
        critical_n_smaller_root,
        "n·ΔL − Δλ·ln n + Δc has two roots; the switch to the lower-loss point is the *larger* one (beyond the minimum at n = Δλ/ΔL), after which it is preferred for good.",
    ),
    Mistake(critical_n_log10, "The free energy uses the natural logarithm: λ·ln n (`math.log`)."),
    Mistake(
        critical_n_constant_sign,
        "Each constant adds to its own point's free energy: F_a − F_b = n(L_a − L_b) + (λ_a − λ_b) ln n + (constant_a − constant_b).",
    ),
    Mistake(
        critical_n_constants_ignored, "Include the optional constants: F = n·L + λ·ln n + constant for each point."
    ),
    Mistake(
        critical_n_without_log,
        "λ multiplies ln n, not n: solve n(L_a − L_b) = (λ_b − λ_a) ln n − Δc, which has no closed form in elementary functions (bisect or iterate).",
    ),
    Mistake(
        critical_n_llc_swapped,
        "The lower-loss point b usually has the *higher* λ: its free energy pays (λ_b − λ_a) ln n more, so F_a − F_b = n ΔL − (λ_b − λ_a) ln n + Δc.",
    ),
    Mistake(
        critical_n_half_llc,
        "The free energy is n·L + λ·ln n with λ itself, not λ/2 (λ is already d/2 for a regular model).",
    ),
    Mistake(critical_n_rounded, "Don't round: return the real n at which the free energies cross."),
]


def verdict_critical_n(results: dict, context: Context) -> None:
    critical_n = reference_of("tms.slt.critical_n")

    plain_cases = [case[:4] for case in CRITICAL_CASES if case[4:] == (0.0, 0.0)]
    calls = list(zip(plain_cases, results["plain"], strict=True))
    calls += list(zip(CRITICAL_CASES, results["with_constants"], strict=True))
    for args, got in calls:
        what = f"critical_n{tuple(args)}"
        if (message := raised(got)) is not None:
            raise CheckFailed(f"{what} raised {message}")
        if isinstance(got, Tensor) and got.numel() == 1:
            got = float(got)
        if not isinstance(got, float | int):
            raise CheckFailed(f"{what} should return a number, got {type(got).__name__}.")
        expected = t.tensor([critical_n(*args)], dtype=t.float64)
        expect_close_to_reference(
            t.tensor([float(got)], dtype=t.float64),
            expected,
            what,
            CRITICAL_MISTAKES,
            lambda impl, args=args: t.tensor([float(impl(*args))], dtype=t.float64),
            rtol=1e-5,
            atol=1e-6,
        )


def critical_n_by_newton(loss_a, llc_a, loss_b, llc_b, constant_a=0.0, constant_b=0.0):
    a, c, d = loss_a - loss_b, llc_b - llc_a, constant_a - constant_b
    f = lambda n: n * a - c * math.log(n) + d
    start = max(1.0, c / a)
    if f(start) >= 0:
        return 1.0
    n = max(10 * start, 10.0)
    while f(n) < 0:
        n *= 2
    for _ in range(100):  # Newton from the right converges monotonically to the larger root (f is convex)
        n -= f(n) / (a - c / n)
    return n


def critical_n_by_fixed_point(loss_a, llc_a, loss_b, llc_b, constant_a=0.0, constant_b=0.0):
    slope, llc_gap, constant_gap = loss_a - loss_b, llc_b - llc_a, constant_a - constant_b
    start = max(1.0, llc_gap / slope)
    if start * slope - llc_gap * math.log(start) + constant_gap >= 0:
        return 1.0
    n = 1e6 * start
    for _ in range(10_000):  # n = (Δλ ln n − Δc) / ΔL contracts towards the larger root from above
        n = (llc_gap * math.log(n) - constant_gap) / slope
    return n


SGLD_STEP = Exercise(
    id="tms.slt.sgld_step",
    name="sgld_step",
    signature=("w", "grad", "w_star", "epsilon", "n_beta", "gamma", "generator"),
    reference_path=f"{MODULE}:sgld_step",
    probe=probe_sgld_step,
    verdict=verdict_sgld_step,
    mistakes=SGLD_MISTAKES,
    alternatives=[sgld_with_normal, sgld_noise_first],
)
ESTIMATE_LLC = Exercise(
    id="tms.slt.estimate_llc",
    name="estimate_llc",
    signature=("losses", "init_loss", "n", "burn_in"),
    reference_path=f"{MODULE}:estimate_llc",
    probe=probe_estimate_llc,
    verdict=verdict_estimate_llc,
    mistakes=LLC_MISTAKES,
    alternatives=[llc_with_loops],
)
CRITICAL_N = Exercise(
    id="tms.slt.critical_n",
    name="critical_n",
    signature=("loss_a", "llc_a", "loss_b", "llc_b"),
    reference_path=f"{MODULE}:critical_n",
    probe=probe_critical_n,
    verdict=verdict_critical_n,
    mistakes=CRITICAL_MISTAKES,
    alternatives=[critical_n_by_newton, critical_n_by_fixed_point],
)
