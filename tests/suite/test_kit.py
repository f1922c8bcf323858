"""Each property of the check kit (tests/kit.py) can fail: a mistake of its kind, run through the kit, is caught with
the kit's message, and the right thing passes."""

import pytest
import torch as t
from torch import nn

from tests import EXERCISES
from tests.harness import CheckFailed, Context, judge, run_probe
from tests.kit import (
    config_family,
    expect_close_per_instance,
    expect_gradients,
    expect_parameters_kept,
    optimiser_step,
    parameter_record,
    read_attribute,
    sgd_for,
    weighted_gradients,
)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.W_enc = nn.Parameter(t.randn(2, 3, 4))
        self._W_dec = nn.Parameter(t.randn(2, 4, 3))

    @property
    def W_dec_normalized(self):
        return self._W_dec / self._W_dec.norm(dim=-1, keepdim=True)


# -------------------------------------------------------------------------------------------- 1: configs


def test_a_config_family_has_the_defaults_then_each_field_at_each_other_value():
    family = config_family({"eps": 1e-8, "tied": False}, eps=(0.1,), tied=(True,))
    assert family == [
        ("default", {"eps": 1e-8, "tied": False}),
        ("eps=0.1", {"eps": 0.1, "tied": False}),
        ("tied=True", {"eps": 1e-8, "tied": True}),
    ]


def test_a_config_family_refuses_a_default_value_as_a_non_default():
    with pytest.raises(ValueError, match="is the default"):
        config_family({"eps": 1e-8}, eps=(1e-8,))


# ------------------------------------------------------------------------------------------ 4: gradients


def test_gradients_of_the_same_values_computed_outside_autograd_are_caught():
    module = Tiny()
    right = weighted_gradients(module, module.W_dec_normalized, ["_W_dec"])
    detached_norm = module._W_dec / module._W_dec.norm(dim=-1, keepdim=True).detach()
    assert t.allclose(detached_norm, module.W_dec_normalized)  # the same values ...
    wrong = weighted_gradients(module, detached_norm, ["_W_dec"])
    expect_gradients(right, {"_W_dec": right["grad__W_dec"]}, "W_dec_normalized")
    with pytest.raises(CheckFailed, match="right values but the wrong gradient with respect to `_W_dec`"):
        expect_gradients(wrong, {"_W_dec": right["grad__W_dec"]}, "W_dec_normalized")  # ... another gradient


def test_no_gradient_is_caught_and_nothing_is_left_in_grad():
    module = Tiny()
    got = weighted_gradients(module, module.W_dec_normalized.detach(), ["_W_dec", "W_enc"])
    assert got == {"grad__W_dec": None, "grad_W_enc": None}
    with pytest.raises(CheckFailed, match="no gradient reaches `_W_dec`"):
        expect_gradients(got, {"_W_dec": t.zeros(2, 4, 3)}, "W_dec_normalized")
    weighted_gradients(module, module.W_dec_normalized, ["_W_dec"])
    assert module._W_dec.grad is None


# ------------------------------------------------------------------------------------------ 5: parameters


def run_learner_code(module: Tiny, code) -> tuple[dict, dict, dict]:
    before = parameter_record(module)
    optimiser = sgd_for(module)
    with t.no_grad():
        code(module)
    return before, parameter_record(module), optimiser_step(module, optimiser, lr=0.25)


def test_parameters_written_in_place_pass():
    before, after, stepped = run_learner_code(Tiny(), lambda m: m._W_dec.mul_(2))
    expect_parameters_kept(before, after, stepped, "resampling")


def test_a_replaced_parameter_is_caught():
    def replace(module):
        module._W_dec = nn.Parameter(module._W_dec * 2)

    before, after, stepped = run_learner_code(Tiny(), replace)
    with pytest.raises(CheckFailed, match="`_W_dec` is a new object after resampling"):
        expect_parameters_kept(before, after, stepped, "resampling")


def test_a_parameter_sharing_memory_with_another_is_caught():
    module = Tiny()
    module._W_dec = nn.Parameter(module.W_enc.transpose(-1, -2))  # a view: the untied SAE trains as a tied one
    with pytest.raises(CheckFailed, match="`W_enc` and `_W_dec` share memory|`_W_dec` and `W_enc` share memory"):
        expect_parameters_kept(parameter_record(module), parameter_record(module), None, "__init__")


def test_a_parameter_the_optimiser_no_longer_trains_is_caught_by_one_step():
    def freeze(module):
        module._W_dec.requires_grad_(False)

    before, after, stepped = run_learner_code(Tiny(), freeze)
    with pytest.raises(CheckFailed, match="one optimiser step does not move `_W_dec`"):
        expect_parameters_kept(before, after, stepped, "resampling")


# ------------------------------------------------------------------------------------------ 3: instances


def test_one_wrong_instance_is_named():
    expected = t.randn(4, 3, 5)
    got = expected.clone()
    got[2] += 1
    with pytest.raises(CheckFailed, match="wrong for instance 2 of 4"):
        expect_close_per_instance(got, expected, "resample", inst_axis=0)
    expect_close_per_instance(got + 1, expected, "resample", inst_axis=0)  # all wrong: left to the caller's message


# ------------------------------------------------------------------------------------------- 7: messages


def test_an_attribute_error_inside_a_property_surfaces_as_itself():
    class Tied(Tiny):
        @property
        def W_dec(self):
            return self._W_dec_missing.transpose(-1, -2)

    module = Tied()
    with pytest.raises(AttributeError, match="W_dec"):
        module.W_dec  # noqa: B018 (nn.Module hides the real error: "no attribute 'W_dec'")
    with pytest.raises(AttributeError, match="inside the property `W_dec`.*_W_dec_missing"):
        read_attribute(module, "W_dec")


def test_a_check_that_fails_because_of_a_required_exercise_names_it():
    """A `forward` that is right, on a class whose `W_dec_normalized` is wrong, is told to fix that first."""
    exercise = EXERCISES["sae.forward"]
    assert "sae.W_dec_normalized" in exercise.requires
    reference = exercise.reference

    class Learner(reference):
        @property
        def W_dec_normalized(self):
            return self.W_dec / self.W_dec.norm(dim=0, keepdim=True)

    context = Context()
    with pytest.raises(CheckFailed, match="fails because `ToySAE.W_dec_normalized`.*fix that first"):
        judge(exercise, run_probe(exercise, Learner, context), context)


def test_an_einsum_that_does_not_fit_is_explained():
    exercise = EXERCISES["sae.generate_batch"]

    class Learner(exercise.reference):
        def generate_batch(self, batch_size):
            return t.einsum("bif,ifd->bid", self.model.generate_batch(batch_size), self.model.W)

    context = Context()
    with pytest.raises(CheckFailed, match="einsum whose pattern does not fit"):
        judge(exercise, run_probe(exercise, Learner, context), context)


# ------------------------------------------------------- 5 (addition): PlainSGD steps as torch's SGD does


def test_plain_sgd_steps_as_torch_sgd_and_misses_a_replaced_parameter():
    module = Tiny()
    twin = Tiny()
    twin.load_state_dict(module.state_dict())
    torch_step = optimiser_step(module, t.optim.SGD(module.parameters(), lr=0.25), lr=0.25)
    plain_step = optimiser_step(twin, sgd_for(twin), lr=0.25)
    assert all(t.allclose(torch_step[name], plain_step[name]) for name in torch_step)

    def replace(module):
        module._W_dec = nn.Parameter(module._W_dec * 2)

    module = Tiny()
    before, optimiser = parameter_record(module), sgd_for(module)
    replace(module)
    stepped = optimiser_step(module, optimiser, lr=0.25)
    with pytest.raises(CheckFailed, match="one optimiser step does not move `_W_dec`"):
        expect_parameters_kept({"ids": {}, "spans": {}}, parameter_record(module), stepped, "resampling")
    with pytest.raises(CheckFailed, match="`_W_dec` is a new object"):
        expect_parameters_kept(before, parameter_record(module), stepped, "resampling")
