"""Section 2.1's checks say what is wrong where the mistake is, not where it shows (issue 15, kind 7): a check that
fails because an earlier exercise is wrong names that exercise, and a forward pass is judged upstream first."""

import copy

import einops
import pytest

from solutions.sae.toy_sae import ToySAE
from tests import EXERCISES
from tests.harness import CheckFailed, Context, judge, run_probe


def verdict_of(exercise_id: str, cls: type) -> str:
    exercise, context = EXERCISES[exercise_id], Context()
    with pytest.raises(CheckFailed) as failure:
        judge(exercise, run_probe(exercise, cls, context), context)
    return str(failure.value)


class ArenaInit(ToySAE):
    """ARENA's __init__ copies instance 0 of the model into every instance (here on the SAE's own copy)."""

    def __init__(self, cfg, model):
        super().__init__(cfg, model)
        self.model = copy.deepcopy(self.model)
        self.model.W.data[1:] = self.model.W.data[0]


def test_generate_batch_after_arenas_init_points_to_sae_init():
    message = verdict_of("sae.generate_batch", ArenaInit)
    assert "fails because `ToySAE.__init__`" in message and "check('sae.init', ...)" in message, message
    assert "don't copy instance 0 into the others" in message, message


class DecoderWithDotT(ToySAE):
    @property
    def W_dec(self):
        return self.W_enc.T if self.cfg.tied_weights else self._W_dec  # .T reverses the instance axis too


@pytest.mark.parametrize("exercise_id", ["sae.W_dec_normalized", "sae.forward"])
def test_a_decoder_written_with_dot_t_is_named_by_the_later_checks(exercise_id):
    message = verdict_of(exercise_id, DecoderWithDotT)
    assert "fails because `ToySAE.W_dec`" in message and "fix that first" in message, message
    assert "`.T` on a 3-D tensor reverses every axis" in message, message


class TiedDecoderReadsNone(ToySAE):
    @property
    def W_dec(self):
        return self._W_dec if self._W_dec.numel() else self.W_enc.transpose(-1, -2)


def test_an_error_inside_the_decoder_property_surfaces_in_the_checks_that_use_it():
    message = verdict_of("sae.W_dec_normalized", TiedDecoderReadsNone)
    assert "inside the property `W_dec`: 'NoneType' object has no attribute 'numel'" in message, message
    assert "fix that first" in message, message


class LatentsShifted(ToySAE):
    """Not in the catalogue: b_enc subtracted instead of added."""

    def pre_activations(self, h):
        return einops.einsum(h - self.b_dec, self.W_enc, "b i d, i d s -> b i s") - self.b_enc


def test_a_forward_whose_latents_differ_is_told_so_before_its_losses():
    message = verdict_of("sae.forward", LatentsShifted)
    assert "acts (the latents" in message and "L_reconstruction" not in message, message


class LastInstanceUncentred(ToySAE):
    """Not in the catalogue: the last instance's input is not centred."""

    def pre_activations(self, h):
        b_dec = self.b_dec.clone()
        b_dec[-1] = 0
        return einops.einsum(h - b_dec, self.W_enc, "b i d, i d s -> b i s") + self.b_enc


def test_a_forward_wrong_in_one_instance_names_it():
    message = verdict_of("sae.forward", LastInstanceUncentred)
    assert "wrong for instance 2 of 3 (the others are right)" in message, message
