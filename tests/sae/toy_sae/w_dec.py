"""Checks for sae.W_dec: the decoder, tied or untied.

Kit properties: `tied_weights` at both values (1, 2); values compared on every instance (3); the gradient of a fixed
weighted sum of W_dec compared with the reference's (4); an error raised inside the property surfaces as itself, with
the hint for reading `_W_dec` (None) when tied (7). W_dec writes no parameters (5) and has no inputs (6).
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
    expect_tensor,
    raised,
)
from tests.kit import expect_gradients, gradient_weights, read_attribute, weighted_gradients
from tests.sae.common import (
    ProbeToyModel,
    build_sae,
    parameter_case,
    sae_config,
    set_parameters,
)
from tests.sae.toy_sae.shared import DECODER_SHAPE, HINT_TIED_NONE, MODULE, raised_with_hint


def probe_W_dec(ToySAE: type, context: Context) -> dict:
    results = {}
    for tied in (False, True):
        sae = build_sae(ToySAE, sae_config(tied_weights=tied), ProbeToyModel(context, salt=41).to(context.device))
        set_parameters(sae, parameter_case(context, 42, tied, unit_decoder=False))
        W_dec = attempt(lambda sae=sae: read_attribute(sae, "W_dec"))
        key = "tied" if tied else "untied"
        results[key] = {"W_dec": W_dec} | weighted_gradients(sae, W_dec, ("W_enc", "_W_dec"))
    return results


HINT_TRANSPOSE = (
    "With tied weights the decoder is W_enc with its last two axes swapped, [inst d_in d_sae] -> [inst d_sae d_in]: "
    "`self.W_enc.transpose(-1, -2)` (`.T` on a 3-D tensor reverses every axis, instances included)"
)
HINT_TIED_DECODER_IS_ENCODER = (
    "When `cfg.tied_weights` is True there is no `_W_dec`: the decoder is the encoder transposed"
)
HINT_UNTIED_OWN_DECODER = (
    "When the weights are untied, W_dec is the SAE's own decoder `self._W_dec`, not W_enc transposed"
)
HINT_KEEP_GRADIENT = (
    "W_dec must stay connected to the parameters (no `.detach()`, `.data` or `.clone().detach()`): the loss trains the "
    "decoder through it"
)
HINT_RAW_DECODER = "W_dec is the decoder as it is; normalising its rows is the job of `W_dec_normalized`"


def verdict_W_dec(results: dict, context: Context) -> None:
    for key, tied in (("untied", False), ("tied", True)):
        r = results[key]
        case = parameter_case(context, 42, tied, unit_decoder=False)
        expected = case["W_enc"].transpose(-1, -2) if tied else case["_W_dec"]
        got = r["W_dec"]
        if (message := raised(got)) is not None:
            raise CheckFailed(f"W_dec ({key} weights) raised {raised_with_hint(message, tied)}")
        if got is None:
            raise CheckFailed(HINT_TIED_DECODER_IS_ENCODER + ".")
        if isinstance(got, Tensor) and tuple(got.shape) != DECODER_SHAPE and got.numel() == expected.numel():
            raise CheckFailed(
                f"W_dec has shape {tuple(got.shape)}, not [inst d_sae d_in] = {DECODER_SHAPE}. {HINT_TRANSPOSE}."
            )
        got = expect_tensor(got, f"W_dec ({key} weights)", DECODER_SHAPE, "inst d_sae d_in")
        if not tied and t.allclose(got, case["W_enc"].transpose(-1, -2)):
            raise CheckFailed(HINT_UNTIED_OWN_DECODER + ".")
        if t.allclose(got, expected / expected.norm(dim=-1, keepdim=True), atol=1e-5) and not t.allclose(got, expected):
            raise CheckFailed(HINT_RAW_DECODER + ".")
        expect_close(got, expected, f"W_dec ({key} weights)")
        source = "W_enc" if tied else "_W_dec"
        if r[f"grad_{source}"] is None:
            raise CheckFailed(HINT_KEEP_GRADIENT + ".")
        weights = gradient_weights(expected)
        expect_gradients(r, {source: weights.transpose(-1, -2) if tied else weights}, f"W_dec ({key} weights)")


def W_dec_not_transposed(self):
    return self._W_dec if self._W_dec is not None else self.W_enc


def W_dec_reverses_every_axis(self):
    return self._W_dec if self._W_dec is not None else self.W_enc.permute(2, 1, 0)


def W_dec_transposes_the_instance_axis(self):
    return self._W_dec if self._W_dec is not None else self.W_enc.transpose(0, 1)


def W_dec_always_tied(self):
    return self.W_enc.transpose(-1, -2)


def W_dec_always_untied(self):
    return self._W_dec


def W_dec_detached(self):
    return self._W_dec.detach() if self._W_dec is not None else self.W_enc.detach().transpose(-1, -2)


def W_dec_normalised(self):
    W = self._W_dec if self._W_dec is not None else self.W_enc.transpose(-1, -2)
    return W / W.norm(dim=-1, keepdim=True)


def W_dec_on_the_decoders_device(self):
    W = self.W_enc.transpose(-1, -2) if self.cfg.tied_weights else self._W_dec
    return W.to(self._W_dec.device)


W_DEC_MISTAKES = [
    Mistake(W_dec_not_transposed, HINT_TRANSPOSE),
    Mistake(W_dec_reverses_every_axis, HINT_TRANSPOSE),
    Mistake(W_dec_transposes_the_instance_axis, HINT_TRANSPOSE),
    Mistake(W_dec_always_tied, HINT_UNTIED_OWN_DECODER),
    Mistake(W_dec_always_untied, HINT_TIED_DECODER_IS_ENCODER),
    Mistake(W_dec_detached, HINT_KEEP_GRADIENT),
    Mistake(W_dec_normalised, HINT_RAW_DECODER),
    Mistake(W_dec_on_the_decoders_device, HINT_TIED_NONE),  # kind 7: the property's own error, and its cause
]


def W_dec_with_rearrange(self):
    if self.cfg.tied_weights:
        return einops.rearrange(self.W_enc, "inst d_in d_sae -> inst d_sae d_in")
    return self._W_dec


def W_dec_with_mT(self):
    return self.W_enc.mT if self._W_dec is None else self._W_dec


EXERCISE = Exercise(
    id="sae.W_dec",
    name="ToySAE",
    method="W_dec",
    reference_path=f"{MODULE}:ToySAE",
    probe=probe_W_dec,
    verdict=verdict_W_dec,
    mistakes=W_DEC_MISTAKES,
    alternatives=[W_dec_with_rearrange, W_dec_with_mT],
    requires=("sae.init",),
)
