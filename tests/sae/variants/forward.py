"""What the three SAE checks of section 2.5 share: running the learner's forward pass the way the training loop
does, and judging one probe case against the reference's run on the same parameters."""

from collections.abc import Callable
from typing import Any

import einops
import torch as t
from torch import Tensor, nn

from tests.harness import CheckFailed, Context, Mistake, expect_close, expect_tensor
from tests.kit import (
    expect_close_per_instance,
    expect_parameters_kept,
    gradient_weights,
    optimiser_step,
    parameter_record,
    sgd_for,
)
from tests.sae.common import D_IN, N_INST

MODULE = "solutions.sae.variants"
BATCH = 11
SPARSITY_COEFF = 0.3  # not the default, so that a hard-coded coefficient shows
HINT_LOSS_SHAPE = "each loss term is one value per input, [batch inst]: the training loop averages over the batch"


def unit_rows(x: Tensor) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def varied_rows(x: Tensor, g: t.Generator) -> Tensor:
    """Rows of norms between 0.3 and 2.3: a tied decoder's rows are the encoder's columns, which nothing keeps at unit
    norm, so that decoding with `W_dec` and with `W_dec_normalized` differ (by up to a factor 3 here)."""
    return unit_rows(x) * (0.3 + 2 * t.rand((*x.shape[:-1], 1), generator=g))


def bounded_inputs(context: Context, salt: int, radius: float = 1.0) -> Tensor:
    """[batch inst d_in] inputs of norm at most `radius` (so that a bias can bound a pre-activation's sign)."""
    h = t.randn((BATCH, N_INST, D_IN), generator=context.generator(salt))
    return h * (
        radius * t.rand((BATCH, N_INST, 1), generator=context.generator(salt + 1)) / h.norm(dim=-1, keepdim=True)
    )


def weighted_backward(loss: Any) -> None:
    """Backpropagate a fixed weighted sum of the [batch inst] loss, so that every input's gradient counts differently."""
    if isinstance(loss, Tensor) and loss.requires_grad:
        (loss * gradient_weights(loss)).sum().backward()


def run_forward(sae: nn.Module, forward: Callable[[Tensor], Any], h: Tensor, parameters: tuple[str, ...]) -> dict:
    """Everything one forward pass gives: the loss terms, loss, latents, reconstruction, the gradient of the weighted
    loss with respect to each named parameter (None when no gradient reaches it), and which terms autograd can
    differentiate at all (`flags`: a count with no graph and a count through a detached threshold differ only there)."""
    sae.zero_grad(set_to_none=True)
    returned = forward(h)
    if not isinstance(returned, tuple | list) or len(returned) != 4:
        raise CheckFailed(
            f"forward should return a tuple (loss_dict, loss, acts, h_reconstructed), got {type(returned).__name__}."
        )
    loss_dict, loss, acts, h_reconstructed = returned
    if not isinstance(loss_dict, dict):
        raise CheckFailed(f"the first thing forward returns is the dict of loss terms, got {type(loss_dict).__name__}.")
    flags = {name: isinstance(term, Tensor) and term.requires_grad for name, term in loss_dict.items()}
    weighted_backward(loss)
    grads = {f"grad_{name}": getattr(getattr(sae, name, None), "grad", None) for name in parameters}
    grads = {
        k: v.detach().clone() if isinstance(v, Tensor) else v for k, v in grads.items()
    }  # later steps add to .grad
    outputs = {"acts": acts, "h_reconstructed": h_reconstructed, "loss": loss}
    return {"terms": dict(loss_dict), **outputs, "h_after": h, "flags": flags} | grads


LR = 0.25  # the one SGD step's learning rate: a parameter it misses stays put, one it moves twice lands elsewhere


def run_learner(sae: nn.Module, h: Tensor, parameters: tuple[str, ...]) -> dict:
    """`run_forward` of the learner's SAE as the training loop calls it, with who its parameters are before and after
    (the same objects, each with its own memory) and one step of an optimiser built before the forward pass."""
    before, optimiser = parameter_record(sae), sgd_for(sae, LR)
    run = run_forward(sae, sae, h, parameters)
    run["parameters"] = {
        "before": before,
        "after": parameter_record(sae),
        "stepped": optimiser_step(sae, optimiser, LR),
    }
    return run


def judge_parameters(run: dict) -> None:
    """The learner's forward pass kept every trainable parameter (the frozen toy model's are not the SAE's)."""
    own = lambda record: {k: v for k, v in record.items() if not k.startswith("model.")}  # noqa: E731
    records = run.get("parameters")
    if not isinstance(records, dict):
        return
    before, after = ({key: own(value) for key, value in records[which].items()} for which in ("before", "after"))
    expect_parameters_kept(before, after, own(records["stepped"]), "`forward`", LR)


AXES = {"acts": "batch inst d_sae", "h_reconstructed": "batch inst d_in"}


VALUE_TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}
# Gradients are sums of terms of either sign, some of them tens of times the result: float32 rounding then shows at
# 1e-5, while every catalogued mistake moves a gradient by 1e-2 or more.
GRADIENT_TOLERANCE = {"rtol": 1e-3, "atol": 1e-4}


def tolerance(name: str) -> dict[str, float]:
    return GRADIENT_TOLERANCE if name.startswith("grad_") else VALUE_TOLERANCE


def close(a: Any, b: Any, name: str = "") -> bool:
    if isinstance(b, bool):
        return a == b
    return (
        isinstance(a, Tensor)
        and a.shape == b.shape
        and a.dtype == b.dtype
        and t.allclose(a, b, equal_nan=True, **tolerance(name))
    )


def tangent(grad: Any, rows: Tensor) -> Any:
    """A decoder's gradient without its component along each (unit) row: decoding with `W_dec` or with
    `W_dec_normalized` gives the same gradient but for that component, which the renormalisation after every step
    undoes anyway."""
    if not isinstance(grad, Tensor) or grad.shape != rows.shape:
        return grad
    return grad - (grad * rows).sum(-1, keepdim=True) * rows


def decoder_rows(sae: nn.Module, tied: bool) -> dict[str, Tensor]:
    """An untied decoder's unit rows, keyed by its gradient's name: `judge_runs` compares that gradient on the rows'
    tangent space, where decoding with `W_dec` and with `W_dec_normalized` agree. Tied, nothing: the encoder's columns
    have norms of their own, decoding must go through `W_dec_normalized`, and every gradient is compared whole."""
    return {} if tied else {"grad__W_dec": sae._W_dec.detach().cpu()}


def flatten(run: dict, terms: tuple[str, ...], rows: dict[str, Tensor]) -> dict[str, Any]:
    """One dict of everything judged: the named loss terms, the outputs, the gradients (an untied decoder's on the
    tangent space of its unit rows) and, under "flag|<term>", whether autograd can differentiate each term."""
    flat = {name: run["terms"].get(name) for name in terms}
    flat |= {k: v for k, v in run.items() if k not in ("terms", "h_after", "flags", "parameters")}
    flat |= {f"flag|{name}": bool((run.get("flags") or {}).get(name, False)) for name in terms}
    for name, unit in rows.items():
        flat[name] = tangent(flat.get(name), unit)
    return flat


def choose_reference(got: dict, accepted: list[dict], terms: tuple[str, ...], rows: dict[str, Tensor]) -> dict:
    """Of the runs of correct implementations (the reference's first, then each other choice the contract leaves
    open), the one the learner's run agrees with in the most entries: the one to judge it against."""
    flat_got = flatten(got, terms, rows)

    def agreement(run: dict) -> int:
        flat = flatten(run, terms, rows)
        return sum(close(flat_got.get(name), value, name) for name, value in flat.items() if value is not None)

    return max(accepted, key=agreement)  # the first of the best: the reference's on a tie


def judge_runs(
    got: dict,
    expected: dict,
    mistaken: Callable[[], dict[str, dict]],
    hints: dict[str, str],
    what: str,
    terms: tuple[str, ...],
    rows: dict[str, Tensor],
    after_outputs: str = "",
) -> None:
    """Compare one probe case with the reference: the loss terms first, then the outputs, then the gradients. When
    something differs, a catalogued mistake that explains everything at once names the cause (`mistaken` runs them
    only then: right code never pays for the catalogue); else the instance that differs, or the numbers."""
    if set(terms) - set(got["terms"]):
        raise CheckFailed(
            f"{what}: loss_dict should have the entries {', '.join(terms)}; yours has {', '.join(sorted(got['terms']))}."
        )
    flat_got, flat_expected = flatten(got, terms, rows), flatten(expected, terms, rows)
    names = [name for name, value in flat_expected.items() if value is not None]
    if all(close(flat_got[name], flat_expected[name], name) for name in names):
        return
    runs = {mistake: flatten(run, terms, rows) for mistake, run in mistaken().items()}
    for mistake, flat in runs.items():
        if all(flat[name] is not None and close(flat_got[name], flat[name], name) for name in names):
            raise CheckFailed(f"{what} is wrong. {hints[mistake]}.")
    for name in names:
        if name.startswith("flag|"):  # only tells mistakes apart: a term's value and gradients are what count
            continue
        got_value, expected_value = flat_got[name], flat_expected[name]
        if name.startswith("grad_"):
            if got_value is None:
                raise CheckFailed(
                    f"{what}: no gradient reaches `{name.removeprefix('grad_')}` through your loss: "
                    "detach only what the exercise says to."
                )
            label = f"{what}: the gradient of the loss with respect to {name.removeprefix('grad_')}"
            if after_outputs:
                label += f" ({after_outputs})"
        else:
            label = f"{what}: {name}"
            if isinstance(got_value, Tensor) and got_value.dim() == 1 and AXES.get(name, "batch inst") == "batch inst":
                raise CheckFailed(f"{label} has shape {tuple(got_value.shape)}; {HINT_LOSS_SHAPE}.")
        got_value = expect_tensor(
            got_value, label, tuple(expected_value.shape), AXES.get(name, "batch inst"), expected_value.dtype
        )
        if close(got_value, expected_value, name):
            continue
        candidates = {m: flat.get(name) for m, flat in runs.items()}
        if not any(close(got_value, c, name) for c in candidates.values() if isinstance(c, Tensor)):
            expect_close_per_instance(got_value, expected_value, label, 0 if name.startswith("grad_") else 1,
                                      **tolerance(name))  # fmt: skip
        expect_close(got_value, expected_value, label, candidates, hints, **tolerance(name))


def mistaken_runs(
    mistakes: list[Mistake], build: Callable[[], tuple[nn.Module, Tensor]], parameters
) -> Callable[[], dict[str, dict]]:
    """The catalogued mistakes' runs on the case that `build` makes, keyed by name: run when first asked for."""
    cache: dict[str, dict[str, dict]] = {}

    def runs() -> dict[str, dict]:
        if "runs" not in cache:
            cache["runs"] = {}
            for mistake in mistakes:
                try:
                    sae, h = build()
                    cache["runs"][mistake.name] = run_forward(
                        sae, lambda h, sae=sae: mistake.impl(sae, h), h, parameters
                    )
                except Exception:  # a mistake that cannot run on these inputs cannot be the learner's
                    continue
        return cache["runs"]

    return runs


def check_input_untouched(r: dict, h: Tensor) -> None:
    if not t.equal(r["h_after"], h):
        raise CheckFailed("forward changed its input `h` in place; compute new tensors instead.")


def centred_encode(h: Tensor, b_dec: Tensor, W: Tensor, b: Tensor) -> Tensor:
    return einops.einsum(h - b_dec, W, "batch inst d_in, inst d_in d_sae -> batch inst d_sae") + b


def decode_with(acts: Tensor, W_dec: Tensor, b_dec: Tensor | float) -> Tensor:
    return einops.einsum(acts, W_dec, "batch inst d_sae, inst d_sae d_in -> batch inst d_in") + b_dec


def mse(h: Tensor, h_reconstructed: Tensor) -> Tensor:
    return (h_reconstructed - h).pow(2).mean(-1)


# ----------------------------------------------------------------------- decoding, as the three SAEs' mistakes do it

HINT_RAW_W_DEC = (
    "Decode with `self.W_dec_normalized`, tied or not: tied, the decoder is `{encoder}` transposed and nothing keeps "
    "its rows at unit norm, so the raw `W_dec` decodes with rows of whatever length the encoder's columns have, a "
    "different model (untied, the training loop puts `_W_dec`'s rows back at unit norm after every step, which is why "
    "the two agree there)"
)
HINT_EPS_HARD_CODED = (
    "Normalise the decoder with `self.W_dec_normalized`, which adds `cfg.weight_normalize_eps` to the row norms: a "
    "fixed epsilon ignores the config"
)
HINT_NORM_DETACHED = (
    "Decode with `self.W_dec_normalized`: dividing by a detached norm (or one taken from `.data`) gives the same values "
    "but hides the normalisation from autograd, so a tied encoder gets the wrong gradient"
)


def decoder_as(sae: nn.Module, how: str) -> Tensor:
    """The decoder a forward pass uses: the right one ("normalized"), the raw `W_dec`, or normalised with a fixed
    epsilon or a detached norm."""
    W_dec = sae.W_dec
    return {
        "normalized": lambda: sae.W_dec_normalized,
        "raw": lambda: W_dec,
        "eps": lambda: W_dec / (W_dec.norm(dim=-1, keepdim=True) + 1e-8),
        "detached_norm": lambda: W_dec / (W_dec.norm(dim=-1, keepdim=True).detach() + sae.cfg.weight_normalize_eps),
    }[how]()
