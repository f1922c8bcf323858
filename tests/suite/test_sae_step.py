"""The hand-written SAE step (`utils.sae_step`) computes exactly what autograd computes for the standard SAE, and
`train_sae` never lets it change what any other SAE, right or wrong, learns: training with it gives what training
on the SAE's own code gives."""

import copy
import warnings

import pytest
import torch as t
import torch.nn.functional as F

import utils.sae_step
import utils.training
from solutions.sae.absorption import MatryoshkaToySAE
from solutions.sae.absorption_experiments import UnitTiedToySAE
from solutions.sae.resampling import ToySAE as ResamplingToySAE
from solutions.sae.toy_sae import ToySAE, ToySAEConfig
from solutions.sae.variants import (
    BatchTopKToySAE,
    GatedToySAE,
    JumpReLUToySAE,
    JumpReLUToySAEConfig,
    TopKToySAE,
    TopKToySAEConfig,
)
from solutions.tms.superposition import ToyModel, ToyModelConfig
from tests import EXERCISES
from tests.suite.test_checks import as_learner_object
from utils.sae_step import StandardSAEStep

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not t.cuda.is_available(), reason="needs CUDA"))]


class Float64ToyModel(ToyModel):
    """A toy model in float64, its batches too (ToyModel draws float32 features whatever its weights)."""

    def generate_batch(self, batch_size: int) -> t.Tensor:
        return super().generate_batch(batch_size).to(self.W.dtype)


def toy_model(n_inst: int, n_features: int, d_in: int, seed: int = 0, device: str = "cpu", cls=ToyModel) -> ToyModel:
    t.manual_seed(seed)
    model = cls(ToyModelConfig(n_inst, n_features, d_in), feature_probability=0.2, device=device)
    with t.no_grad():
        model.W.copy_(F.normalize(t.randn(model.W.shape), dim=1))
    return model


def autograd_gradients(sae: t.nn.Module, h: t.Tensor) -> dict[str, t.Tensor]:
    for param in sae.parameters():
        param.grad = None
    sae(h)[1].mean(0).sum().backward()
    return {name: param.grad.clone() for name, param in sae.named_parameters() if param.requires_grad}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("shape", [(8, 2, 5), (3, 6, 10), (1, 16, 40)])
@pytest.mark.parametrize("contiguous_encoder", [False, True])
def test_the_hand_written_gradients_are_autograds(device, tied, shape, contiguous_encoder):
    """In float64, so that any difference is a wrong formula rather than rounding: biases away from 0, decoder rows
    of any norm, one of them all-zero, a coefficient per instance, and the encoder stored either way round."""
    n_inst, d_in, d_sae = shape
    model = toy_model(n_inst, 2 * d_sae, d_in, device=device, cls=Float64ToyModel).double()
    coeff = t.linspace(0.05, 0.5, n_inst, dtype=t.float64)
    sae = ToySAE(ToySAEConfig(n_inst, d_in, d_sae, coeff, tied_weights=tied), model).double()
    with t.no_grad():
        sae.b_dec.normal_(0, 0.3)
        sae.b_enc.normal_(0, 0.3)
        if contiguous_encoder:
            sae.W_enc.data = sae.W_enc.data.contiguous()
        decoder = sae.W_enc.transpose(1, 2) if tied else sae._W_dec
        decoder.mul_(t.rand(n_inst, d_sae, 1, dtype=t.float64, device=device) * 2)
        decoder[0, 0] = 0
    h = sae.generate_batch(256)
    step = StandardSAEStep.of(sae)
    assert step is not None
    expected = autograd_gradients(sae, h)
    grads, acts = step.gradients(h)
    assert grads.keys() == expected.keys()
    for name, grad in grads.items():
        assert t.allclose(grad, expected[name], rtol=1e-9, atol=1e-12), name
    assert t.allclose(acts, sae(h)[2].detach().permute(1, 2, 0), rtol=1e-9, atol=1e-12)
    fired = step.set_gradients(h)
    assert t.equal(fired, (sae(h)[2] > 0).any(0))
    for name, param in sae.named_parameters():
        if param.requires_grad:
            assert param.grad.stride() == param.stride(), f"{name}'s gradient is not laid out as the parameter"


def variant(cls, cfg_class=ToySAEConfig, **fields):
    return lambda model: cls(cfg_class(3, 2, 5, **fields), model)


NOT_STANDARD = {
    "TopK (a dead-latent buffer)": variant(TopKToySAE, TopKToySAEConfig, k=2),
    "BatchTopK (a threshold buffer)": variant(BatchTopKToySAE, TopKToySAEConfig, k=2),
    "JumpReLU (a threshold parameter)": variant(JumpReLUToySAE, JumpReLUToySAEConfig),
    "Gated (gate parameters)": variant(GatedToySAE),
}


@pytest.mark.parametrize("name", NOT_STANDARD)
def test_saes_with_parameters_or_state_of_their_own_never_get_the_hand_written_step(name):
    assert StandardSAEStep.of(NOT_STANDARD[name](toy_model(3, 5, 2))) is None
    assert StandardSAEStep.of(t.nn.Linear(2, 3)) is None


def test_the_first_batch_is_the_saes_own_and_leaves_the_random_numbers_as_one_call_does():
    sae = ToySAE(ToySAEConfig(3, 2, 5), toy_model(3, 5, 2))
    step = StandardSAEStep.of(sae)
    t.manual_seed(1)
    own = sae.generate_batch(64)
    after_own = t.rand(4)
    t.manual_seed(1)
    first, same = step.first_batch(64)
    assert same and t.equal(first, own)
    assert t.equal(t.rand(4), after_own)
    t.manual_seed(2)
    hidden = step.hidden_batch(64)
    t.manual_seed(2)
    assert t.allclose(hidden, sae.generate_batch(64), atol=1e-6)


class Spy:
    """Counts the steps on which the hand-written gradients were used."""

    def __init__(self, monkeypatch):
        self.calls = 0
        original = StandardSAEStep.set_gradients

        def set_gradients(step, h):
            self.calls += 1
            return original(step, h)

        monkeypatch.setattr(StandardSAEStep, "set_gradients", set_gradients)


def train_twice(make, monkeypatch, steps: int = 30, **optimize) -> tuple[int, t.nn.Module, dict, t.nn.Module, dict]:
    """(steps on the hand-written gradients, SAE and log trained with the shortcut, the same without it)."""
    spy = Spy(monkeypatch)
    t.manual_seed(5)
    fast = make()
    fast_log = fast.optimize(batch_size=128, steps=steps, log_freq=10, **optimize)
    used = spy.calls
    with monkeypatch.context() as patch:
        patch.setattr(StandardSAEStep, "of", classmethod(lambda cls, sae: None))
        patch.setattr(utils.sae_step, "tell_slow", lambda sae, reason: None)  # slow on purpose: nothing to tell
        t.manual_seed(5)
        slow = make()
        slow_log = slow.optimize(batch_size=128, steps=steps, log_freq=10, **optimize)
    return used, fast, fast_log, slow, slow_log


def assert_trained_alike(fast, fast_log, slow, slow_log, what: str) -> None:
    for (name, a), b in zip(fast.named_parameters(), slow.parameters(), strict=True):
        assert t.allclose(a, b, atol=1e-5, equal_nan=True), f"{what}: {name} differs"
    assert fast_log.keys() == slow_log.keys()
    for name, value in fast_log.items():
        assert t.allclose(value.double(), slow_log[name].double(), atol=1e-5, equal_nan=True), f"{what}: log {name}"


def learner_saes():
    """Every way of writing the SAE that section 2.1's checks know: each exercise's reference, its alternatives
    (right, written otherwise) and its mistakes (wrong), as a learner's class with that one piece in it."""
    for exercise_id in ("sae.init", "sae.W_dec", "sae.W_dec_normalized", "sae.generate_batch", "sae.forward"):
        exercise = EXERCISES[exercise_id]
        kinds = [("alternative", impl) for impl in exercise.alternatives]
        if exercise_id != "sae.init":  # a wrong __init__ gives an SAE without parameters to train, or the wrong ones
            kinds += [("mistake", mistake.impl) for mistake in exercise.mistakes]
        for kind, impl in kinds:
            yield pytest.param(kind, as_learner_object(exercise, impl), id=f"{exercise_id}: {impl.__name__}")
    yield pytest.param("reference", ToySAE, id="reference")


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("kind, cls", list(learner_saes()))
def test_training_with_the_shortcut_gives_what_the_saes_own_code_gives(kind, cls, tied, monkeypatch):
    """Right code gets the shortcut, wrong code trains on its own maths, and either way the result is the same."""

    def make():
        return cls(ToySAEConfig(3, 2, 5, sparsity_coeff=0.15, tied_weights=tied), toy_model(3, 5, 2))

    try:
        used, *trained = train_twice(make, monkeypatch)
    except Exception as error:  # a mistake that cannot train at all fails alike either way
        assert kind == "mistake", error
        return
    assert_trained_alike(*trained, f"{cls.__name__}")
    if kind != "mistake":
        assert used == 30 - 4, "the reference and every alternative train on the hand-written step between logs"


@pytest.mark.parametrize(
    "make",
    [
        lambda model: MatryoshkaToySAE(ToySAEConfig(3, 2, 5), model),
        lambda model: UnitTiedToySAE(ToySAEConfig(3, 2, 5, tied_weights=True), model),
        *NOT_STANDARD.values(),
    ],
    ids=["Matryoshka", "tied, unit encoder", *NOT_STANDARD],
)
def test_the_other_saes_of_the_course_train_on_their_own_code(make, monkeypatch):
    used, *trained = train_twice(lambda: make(toy_model(3, 5, 2)), monkeypatch)
    assert used == 0
    assert_trained_alike(*trained, "variant")


def with_dead_latents() -> ResamplingToySAE:
    sae = ResamplingToySAE(ToySAEConfig(3, 2, 8), toy_model(3, 5, 2))
    with t.no_grad():
        sae.b_enc[:, :3] = -10  # three latents per instance that never fire until resampled
    return sae


@pytest.mark.parametrize("method", ["simple", "advanced"])
def test_resampling_keeps_the_shortcut(method, monkeypatch):
    resampling = dict(resample_method=method, resample_freq=20, resample_window=10)
    used, *trained = train_twice(with_dead_latents, monkeypatch, steps=60, **resampling)
    assert used == 60 - 7
    assert_trained_alike(*trained, "resampled")
    assert trained[1]["resampled"][0].sum() == 9, "the dead latents were resampled"


class ChangesItsLoss(ToySAE):
    """An SAE whose forward pass stops being the standard one after it has run twice."""

    calls = 0

    def forward(self, h):
        self.calls += 1
        loss_dict, loss, acts, h_reconstructed = super().forward(h)
        return loss_dict, loss * (1 if self.calls <= 2 else 3), acts, h_reconstructed


def test_a_forward_pass_that_stops_agreeing_loses_the_shortcut_at_the_next_logged_step(monkeypatch):
    spy = Spy(monkeypatch)
    sae = ChangesItsLoss(ToySAEConfig(3, 2, 5), toy_model(3, 5, 2))
    sae.optimize(batch_size=64, steps=50, log_freq=10)
    # logged steps 0, 10, 20, ...: it agrees on the first two, disagrees on the third, then runs on every step
    assert sae.calls == 3 + 29, "its own forward ran on steps 0, 10 and 20, and on every step after that"
    assert spy.calls == 18, "the shortcut ran between the first three logged steps only"


def test_float64_saes_and_instances_of_one_coefficient_each(monkeypatch):
    model = toy_model(4, 5, 2, cls=Float64ToyModel).double()
    make = lambda: ToySAE(ToySAEConfig(4, 2, 5, sparsity_coeff=t.tensor([0.0, 0.1, 0.2, 0.3])), model).double()  # noqa: E731
    used, *trained = train_twice(make, monkeypatch)
    assert used == 26
    assert_trained_alike(*trained, "float64")


def test_the_tolerance_separates_rounding_from_a_different_loss():
    """float32 against float64 autograd differs by far less than the tolerance; halving the sparsity coefficient, a
    small change of loss, by far more."""
    sae = ToySAE(ToySAEConfig(8, 2, 5), toy_model(8, 5, 2))
    h = sae.generate_batch(1024)
    grads = StandardSAEStep.of(sae).gradients(h)[0]
    precise = autograd_gradients(copy.deepcopy(sae).double(), h.double())
    for name, grad in grads.items():
        error = (grad.double() - precise[name]).abs().max() / precise[name].abs().max()
        assert error < utils.sae_step.RELATIVE_TOLERANCE / 100, name
    sae.cfg.sparsity_coeff /= 2
    halved = StandardSAEStep.of(sae).gradients(h)[0]
    assert not all(utils.sae_step.close(halved[name], grads[name]) for name in grads)


def test_a_step_that_cannot_compute_leaves_the_sae_to_its_own_code(monkeypatch):
    def cannot(step, h):
        raise RuntimeError("an input of another shape")

    monkeypatch.setattr(StandardSAEStep, "gradients", cannot)
    used, *trained = train_twice(lambda: ToySAE(ToySAEConfig(3, 2, 5), toy_model(3, 5, 2)), monkeypatch)
    assert used == 0
    assert_trained_alike(*trained, "fallback")


# ------------------------------------------------------------------------------------------- the switch


class CountsForwards(ToySAE):
    calls = 0

    def forward(self, h):
        self.calls += 1
        return super().forward(h)


def test_without_the_shortcut_forward_runs_on_every_step_and_trains_the_same(monkeypatch):
    spy = Spy(monkeypatch)
    t.manual_seed(5)
    slow = CountsForwards(ToySAEConfig(3, 2, 5), toy_model(3, 5, 2))
    slow_log = slow.optimize(batch_size=64, steps=30, log_freq=10, shortcut=False)
    assert spy.calls == 0 and slow.calls == 30, "forward and autograd on every step, no hand-written gradient"
    t.manual_seed(5)
    fast = CountsForwards(ToySAEConfig(3, 2, 5), toy_model(3, 5, 2))
    fast_log = fast.optimize(batch_size=64, steps=30, log_freq=10)
    assert spy.calls == 26 and fast.calls == 4, "forward on the logged steps only (0, 10, 20 and the last)"
    assert_trained_alike(fast, fast_log, slow, slow_log, "shortcut on and off")


# ------------------------------------------------------------------------------------------- telling the learner


def slow_warnings(train) -> list[str]:
    """The SlowTrainingWarnings `train()` raised, every one recorded (Python's own once-per-place filter off)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train()
    return [str(w.message) for w in caught if issubclass(w.category, utils.sae_step.SlowTrainingWarning)]


def forward_mistakes():
    """section 2.1's catalogued forward mistakes that train, as a learner's ToySAE"""
    exercise = EXERCISES["sae.forward"]
    return [pytest.param(as_learner_object(exercise, m.impl), id=m.impl.__name__) for m in exercise.mistakes]


@pytest.mark.parametrize("cls", forward_mistakes())
def test_a_learners_toysae_on_the_slow_path_is_told_why_once(cls, monkeypatch):
    monkeypatch.setattr(utils.sae_step, "TOLD", set())
    make = lambda: cls(ToySAEConfig(3, 2, 5, sparsity_coeff=0.15), toy_model(3, 5, 2))  # noqa: E731
    spy = Spy(monkeypatch)
    try:
        first = slow_warnings(lambda: make().optimize(batch_size=64, steps=12, log_freq=5))
    except Exception:  # noqa: BLE001 (a mistake that cannot train at all says so itself)
        return
    if spy.calls:  # a mistake the standard step cannot see (it changes no latent or gradient): nothing to tell
        assert first == []
        return
    assert len(first) == 1 and "forward pass" in first[0] and 'check("sae.forward", ToySAE)' in first[0], first
    assert slow_warnings(lambda: make().optimize(batch_size=64, steps=12, log_freq=5)) == [], "once per process"


@pytest.mark.parametrize(
    "make",
    [
        lambda: ToySAE(ToySAEConfig(3, 2, 5), toy_model(3, 5, 2)),
        lambda: ToySAE(ToySAEConfig(3, 2, 5, tied_weights=True), toy_model(3, 5, 2)),
        lambda: with_dead_latents(),
        lambda: MatryoshkaToySAE(ToySAEConfig(3, 2, 5), toy_model(3, 5, 2)),
        lambda: UnitTiedToySAE(ToySAEConfig(3, 2, 5, tied_weights=True), toy_model(3, 5, 2)),
        *(lambda make=make: make(toy_model(3, 5, 2)) for make in NOT_STANDARD.values()),
    ],
    ids=["reference", "reference, tied", "resampling", "Matryoshka", "tied, unit encoder", *NOT_STANDARD],
)
def test_the_course_s_own_saes_and_variants_train_without_a_word(make, monkeypatch):
    monkeypatch.setattr(utils.sae_step, "TOLD", set())
    assert slow_warnings(lambda: make().optimize(batch_size=64, steps=12, log_freq=5)) == []


def test_a_learners_toysae_with_other_parameters_is_told_and_shortcut_off_says_nothing(monkeypatch):
    monkeypatch.setattr(utils.sae_step, "TOLD", set())

    class ToySAE(ToySAEWithExtraBuffer):
        pass

    told = slow_warnings(lambda: ToySAE(ToySAEConfig(3, 2, 5), toy_model(3, 5, 2)).optimize(batch_size=64, steps=5))
    assert len(told) == 1 and "parameters or config" in told[0], told
    monkeypatch.setattr(utils.sae_step, "TOLD", set())
    quiet = ToySAE(ToySAEConfig(3, 2, 5), toy_model(3, 5, 2))
    assert slow_warnings(lambda: quiet.optimize(batch_size=64, steps=5, shortcut=False)) == []


class ToySAEWithExtraBuffer(ToySAE):
    """A learner's SAE that keeps a buffer of its own: state the standard step knows nothing of."""

    def __init__(self, cfg, model):
        super().__init__(cfg, model)
        self.register_buffer("seen", t.zeros(cfg.n_inst))
