"""Checks for `sae.absorption_rate` (row 32), with its catalogue of mistakes and its alternatives.

`absorption_rate` is deterministic. It is probed on activations with exact zeros, tiny positive values and large
ones, a parent latent that differs between instances, masks with parent-only, child-only (without the parent:
masks need not come from hierarchical data), both and neither inputs, an instance with no parent+child input, and a
single instance. When only some instances are wrong, the message names them (kit property 3).

Open in the contract (row 32 states no value for it): the rate of an instance with no parent+child input. The
reference returns NaN (0 / 0: undefined) and the lesson asks for NaN; the check accepts NaN or 0 there, and nothing
else. Kit properties: 3 and 6 (that empty instance; activations exactly 0 against tiny positive ones) apply; 1, 2, 4
and 5 do not (no config, no decoder, nothing differentiable, no parameters).
"""

import einops
import torch as t
from torch import Tensor

from tests.harness import (
    CheckFailed,
    Context,
    Exercise,
    Mistake,
    attempt,
    expect_close,
    mistake_outputs,
    raised,
    reference_of,
)
from tests.kit import expect_close_per_instance

MODULE = "solutions.sae.absorption"


N_INST, BATCH, D_SAE = 4, 40, 5
EMPTY_INSTANCE = 2  # has no input with both parent and child: its rate is NaN


def rate_case(context: Context) -> dict[str, Tensor]:
    """Activations with exact zeros, tiny and large positive values; masks with every combination of the two."""
    g = context.generator(70)
    acts = t.rand((BATCH, N_INST, D_SAE), generator=g) * 2
    acts[t.rand(acts.shape, generator=g) < 0.45] = 0.0
    tiny = t.rand(acts.shape, generator=g) < 0.15
    acts[tiny] = 1e-3 * (1 + t.rand(acts.shape, generator=g)[tiny])
    parent_latent = t.randperm(D_SAE, generator=g)[:N_INST]
    kind = t.randint(0, 4, (BATCH, N_INST), generator=g)  # 0 neither, 1 parent only, 2 child only, 3 both
    kind[:4] = t.tensor([3, 1, 2, 0])[:, None]  # every kind in every instance
    kind[4:8] = 3  # enough parent+child inputs to tell the mistakes apart
    kind[8:16] = 1  # parent-only inputs on which the parent's latent is silent (below): more silent than both
    kind[:, EMPTY_INSTANCE] = t.where(kind[:, EMPTY_INSTANCE] == 3, 1, kind[:, EMPTY_INSTANCE])
    instances = t.arange(N_INST)
    acts[:, 1:, parent_latent[0]] = 0.5 + t.rand((BATCH, N_INST - 1), generator=g)  # another instance's latent fires
    acts[4, instances, parent_latent] = 0.0  # silent on a parent+child input
    acts[5, instances, parent_latent] = 2e-3  # barely firing: still firing
    acts[6, instances, parent_latent] = 1.5
    acts[7] = 1.0
    acts[7, instances, parent_latent] = 0.0  # silent where every other latent fires
    acts[8:16, instances, parent_latent] = 0.0
    return {
        "acts": acts,
        "parent_latent": parent_latent,
        "child_present": (kind == 2) | (kind == 3),
        "parent_present": (kind == 1) | (kind == 3),
    }


def probe_absorption_rate(absorption_rate, context: Context) -> dict:
    case = {name: value.to(context.device) for name, value in rate_case(context).items()}
    single = {name: value[:, 1:2] if value.dim() > 1 else value[1:2] for name, value in case.items()}
    return {
        "rate": attempt(lambda: absorption_rate(**case)),
        "single": attempt(lambda: absorption_rate(**single)),
        "after": case,
    }


def parent_acts(acts, parent_latent):
    return acts[:, t.arange(acts.shape[1]), parent_latent]


def rate_over_parent_inputs(acts, parent_latent, child_present, parent_present):
    silent = parent_acts(acts, parent_latent) == 0
    return (silent & parent_present).sum(0) / parent_present.sum(0)


def rate_over_child_inputs(acts, parent_latent, child_present, parent_present):
    silent = parent_acts(acts, parent_latent) == 0
    return (silent & child_present).sum(0) / child_present.sum(0)


def rate_of_firing(acts, parent_latent, child_present, parent_present):
    both = child_present & parent_present
    return ((parent_acts(acts, parent_latent) > 0) & both).sum(0) / both.sum(0)


def rate_with_threshold(acts, parent_latent, child_present, parent_present):
    both = child_present & parent_present
    return ((parent_acts(acts, parent_latent) < 0.01) & both).sum(0) / both.sum(0)


def rate_averaged_over_instances(acts, parent_latent, child_present, parent_present):
    both = child_present & parent_present
    return (((parent_acts(acts, parent_latent) == 0) & both).sum(0) / both.sum(0)).nanmean()


def rate_over_the_instance_axis(acts, parent_latent, child_present, parent_present):
    both = child_present & parent_present
    return ((parent_acts(acts, parent_latent) == 0) & both).sum(1) / both.sum(1)


def rate_first_instance_latent(acts, parent_latent, child_present, parent_present):
    both = child_present & parent_present
    return ((acts[..., parent_latent[0]] == 0) & both).sum(0) / both.sum(0)


def rate_over_all_inputs(acts, parent_latent, child_present, parent_present):
    both = child_present & parent_present
    return ((parent_acts(acts, parent_latent) == 0) & both).float().mean(0)


def rate_among_silent_inputs(acts, parent_latent, child_present, parent_present):
    silent = parent_acts(acts, parent_latent) == 0
    return (silent & child_present & parent_present).sum(0) / silent.sum(0)


def rate_child_without_parent(acts, parent_latent, child_present, parent_present):
    inputs = child_present & ~parent_present
    return ((parent_acts(acts, parent_latent) == 0) & inputs).sum(0) / inputs.sum(0)


HINT_PARENT_INPUTS = (
    "Count only the inputs where both the parent and the child are present (`child_present & parent_present`), not "
    "every input with the parent: on parent-only inputs the parent's latent should fire"
)
HINT_CHILD_INPUTS = (
    "Count only the inputs where both the parent and the child are present: `child_present & parent_present`. The "
    "masks can have the child without the parent, and those inputs do not count"
)
HINT_FIRING = "The rate counts the inputs where the parent's latent is *silent* (activation 0), not where it fires"
HINT_THRESHOLD = (
    "A latent is silent only when its activation is exactly 0 (`acts == 0`, or `<= 0`): a small positive activation "
    "is still firing, so don't use a threshold"
)
HINT_ONE_PER_INSTANCE = "Return one rate per instance, shape [inst]: don't average over the instances"
HINT_AXIS = "Count over the batch axis (dim 0) for every instance, giving [inst]: yours reduces over the instances"
HINT_LATENT_PER_INSTANCE = (
    "Every instance has its own parent latent: instance i reads `acts[:, i, parent_latent[i]]` (e.g. "
    "`acts[:, t.arange(n_inst), parent_latent]`), not the first instance's latent for all"
)
HINT_DENOMINATOR = "Divide by the number of parent+child inputs of the instance, not by the batch size"
HINT_NAN = (
    "An instance with no parent+child input has no rate: return NaN there (0 / 0; 0 is accepted too), not another value"
)
HINT_EVERY_INSTANCE = "Every instance has its own rate, computed alike: don't stop before the last instance"
HINT_EMPTY = (
    "An instance can have no input with both the parent and the child; its rate is then undefined: return NaN there "
    "(tensor division 0 / 0 gives it; in Python, test for 0 before dividing)"
)
HINT_CONDITION = (
    "The rate is P(parent's latent silent | parent and child present): divide by the parent+child inputs, not by "
    "the inputs where the latent is silent"
)
HINT_CHILD_ONLY = "Count the inputs where the child *and* the parent are present, not those with the child alone"


def rate_loop_skips_last_instance(acts, parent_latent, child_present, parent_present):
    # kind 3: an off-by-one in the loop over instances leaves the last rate at its initial 0
    rates = t.zeros(acts.shape[1])
    for i in range(acts.shape[1] - 1):
        both = child_present[:, i] & parent_present[:, i]
        rates[i] = ((acts[:, i, parent_latent[i]] == 0) & both).sum() / both.sum()
    return rates


def rate_divides_in_python(acts, parent_latent, child_present, parent_present):
    # kind 6: Python division, which raises on an instance without parent+child inputs
    rates = []
    for i in range(acts.shape[1]):
        both = child_present[:, i] & parent_present[:, i]
        rates.append(int(((acts[:, i, parent_latent[i]] == 0) & both).sum()) / int(both.sum()))
    return t.tensor(rates)


RATE_MISTAKES = [
    Mistake(rate_over_parent_inputs, HINT_PARENT_INPUTS),
    Mistake(rate_over_child_inputs, HINT_CHILD_INPUTS),
    Mistake(rate_of_firing, HINT_FIRING),
    Mistake(rate_with_threshold, HINT_THRESHOLD),
    Mistake(rate_averaged_over_instances, HINT_ONE_PER_INSTANCE),
    Mistake(rate_over_the_instance_axis, HINT_AXIS),
    Mistake(rate_first_instance_latent, HINT_LATENT_PER_INSTANCE),
    Mistake(rate_over_all_inputs, HINT_DENOMINATOR),
    Mistake(rate_loop_skips_last_instance, HINT_EVERY_INSTANCE),
    Mistake(rate_divides_in_python, HINT_EMPTY),
    Mistake(rate_among_silent_inputs, HINT_CONDITION),
    Mistake(rate_child_without_parent, HINT_CHILD_ONLY),
]


def undefined_as_nan(rate: Tensor, expected: Tensor) -> Tensor:
    """The rate with a 0 where the reference's is undefined read as NaN: the contract leaves that value open."""
    return t.where(expected.isnan() & (rate == 0), t.nan, rate) if rate.shape == expected.shape else rate


def same_with_nans(got: Tensor, expected: Tensor) -> bool:
    return bool(t.equal(got.isnan(), expected.isnan()) and t.allclose(got.nan_to_num(-1.0), expected.nan_to_num(-1.0)))


def judge_rate(got, expected: Tensor, what: str, outputs: dict, hints: dict) -> None:
    if (message := raised(got)) is not None:
        hint = f"{HINT_EMPTY}; " if "division by zero" in message else ""
        raise CheckFailed(f"{hint}{what} raised {message}")
    if not isinstance(got, Tensor):
        raise CheckFailed(f"{what} should return a tensor of shape [inst], got {type(got).__name__}.")
    n_inst = expected.shape[0]
    if got.dim() == 0:
        raise CheckFailed(f"{what} returned a single number. {HINT_ONE_PER_INSTANCE}.")
    if tuple(got.shape) == (BATCH,) and n_inst != BATCH:
        raise CheckFailed(f"{what} returned shape {tuple(got.shape)}. {HINT_AXIS}.")
    if tuple(got.shape) != (n_inst,):
        raise CheckFailed(f"{what} should return shape (inst,) = ({n_inst},), got {tuple(got.shape)}.")
    if not got.is_floating_point():
        raise CheckFailed(f"{what} should return a float tensor (a fraction), got {got.dtype}.")
    got = undefined_as_nan(got.float(), expected)
    if same_with_nans(got, expected):
        return
    for name, output in outputs.items():
        if isinstance(output, Tensor) and output.shape == got.shape:
            if same_with_nans(got, undefined_as_nan(output.float(), expected)):
                raise CheckFailed(f"{what} is wrong. {hints[name]}.")
    if expected.isnan().any() and not got.isnan()[expected.isnan()].all():
        raise CheckFailed(f"{what} is wrong. {HINT_NAN}.")
    try:
        expect_close_per_instance(got.nan_to_num(-1.0), expected.nan_to_num(-1.0), what)
    except CheckFailed as failure:
        raise CheckFailed(
            f"{str(failure).split(' (the others')[0]} (the others are right). {HINT_EVERY_INSTANCE}."
        ) from None
    expect_close(got.nan_to_num(-1.0), expected.nan_to_num(-1.0), what)


def verdict_absorption_rate(results: dict, context: Context) -> None:
    absorption_rate = reference_of("sae.absorption_rate")
    case = rate_case(context)
    if not all(t.equal(results["after"][name], value) for name, value in case.items()):
        raise CheckFailed("absorption_rate changed its inputs in place; compute new tensors instead.")
    expected = absorption_rate(**case)
    assert expected.isnan()[EMPTY_INSTANCE] and not expected.isnan().sum() > 1, "own case"
    outputs, hints = mistake_outputs(RATE_MISTAKES, lambda impl: impl(**case))
    judge_rate(results["rate"], expected, "absorption_rate(acts, parent_latent, child_present, parent_present)",
               outputs, hints)  # fmt: skip
    single = {name: value[:, 1:2] if value.dim() > 1 else value[1:2] for name, value in case.items()}
    outputs, hints = mistake_outputs(RATE_MISTAKES, lambda impl: impl(**single))
    judge_rate(results["single"], absorption_rate(**single), "absorption_rate on one instance", outputs, hints)


def rate_with_loops(acts, parent_latent, child_present, parent_present):
    rates = []
    for i in range(acts.shape[1]):
        silent = both = 0
        for b in range(acts.shape[0]):
            if child_present[b, i] and parent_present[b, i]:
                both += 1
                silent += int(acts[b, i, parent_latent[i]] == 0)
        rates.append(silent / both if both else float("nan"))
    return t.tensor(rates)


def rate_zero_when_undefined(acts, parent_latent, child_present, parent_present):
    # 0 where no input has both (the contract leaves that value open; NaN is the reference's)
    both = child_present & parent_present
    return (((parent_acts(acts, parent_latent) == 0) & both).sum(0) / both.sum(0)).nan_to_num(0.0)


def rate_with_gather_and_one_hot(acts, parent_latent, child_present, parent_present):
    one_hot = t.nn.functional.one_hot(parent_latent, acts.shape[-1]).to(acts.dtype)  # [inst d_sae]
    latent = einops.einsum(acts, one_hot, "batch inst d_sae, inst d_sae -> batch inst")
    both = (child_present & parent_present).float()
    return ((latent <= 0).float() * both).sum(0) / both.sum(0)


EXERCISE = Exercise(
    id="sae.absorption_rate",
    name="absorption_rate",
    signature=("acts", "parent_latent", "child_present", "parent_present"),
    reference_path=f"{MODULE}:absorption_rate",
    probe=probe_absorption_rate,
    verdict=verdict_absorption_rate,
    mistakes=RATE_MISTAKES,
    alternatives=[rate_with_loops, rate_with_gather_and_one_hot, rate_zero_when_undefined],
)
