"""Correct code written the ARENA way passes every check and trains with `optimize`.

Learners arrive with ARENA's idioms: a `calculate_loss(out, batch)` that returns the sum over instances and takes no
other argument, `feature_probability` and `importance` kept as plain tensor attributes (not buffers), batches drawn
with `self.cfg` sizes on `self.W.device`, and checkpoints that hold only the parameters. Each test below uses exactly
that shape of code; rejecting any of it would be a bug in the course, as serious as passing a wrong answer.
"""

import einops
import pytest
import torch as t
import torch.nn.functional as F
from torch import nn

from solutions.sae import JumpReLUToySAEConfig, ToySAE, ToySAEConfig
from solutions.sae.toy_sae_experiments import pentagon_model
from solutions.tms import NeuronComputationModel, NeuronModel, ToyModel, ToyModelConfig
from tests import check
from tests.harness import CheckFailed
from tests.sae.variants import autograd_arena_style
from tests.sae.variants.forward import HINT_RAW_W_DEC
from utils.training import per_instance_loss


class ArenaToyModel(nn.Module):
    """The toy model as ARENA writes it: plain attributes for probability and importance, ARENA's defaults."""

    def __init__(self, cfg, feature_probability=0.01, importance=1.0, device="cpu"):
        super().__init__()
        self.cfg = cfg
        if isinstance(feature_probability, float):
            feature_probability = t.tensor(feature_probability)
        self.feature_probability = feature_probability.to(device).broadcast_to((cfg.n_inst, cfg.n_features))
        if isinstance(importance, float):
            importance = t.tensor(importance)
        self.importance = importance.to(device).broadcast_to((cfg.n_inst, cfg.n_features))
        self.W = nn.Parameter(nn.init.xavier_normal_(t.empty((cfg.n_inst, cfg.d_hidden, cfg.n_features))))
        self.b_final = nn.Parameter(t.zeros((cfg.n_inst, cfg.n_features)))
        self.to(device)

    def forward(self, features):
        h = einops.einsum(features, self.W, "... inst feats, inst hidden feats -> ... inst hidden")
        out = einops.einsum(h, self.W, "... inst hidden, inst hidden feats -> ... inst feats")
        return F.relu(out + self.b_final)

    def generate_batch(self, batch_size):
        batch_shape = (batch_size, self.cfg.n_inst, self.cfg.n_features)
        feat_mag = t.rand(batch_shape, device=self.W.device)
        feat_seeds = t.rand(batch_shape, device=self.W.device)
        return t.where(feat_seeds <= self.feature_probability, feat_mag, 0.0)

    def calculate_loss(self, out, batch):
        error = self.importance * ((batch - out) ** 2)
        return einops.reduce(error, "batch inst feats -> inst", "mean").sum()


class ArenaNeuronModel(ArenaToyModel):
    def forward(self, features):
        activations = F.relu(
            einops.einsum(features, self.W, "... inst feats, inst d_hidden feats -> ... inst d_hidden")
        )
        out = F.relu(
            einops.einsum(activations, self.W, "... inst d_hidden, inst d_hidden feats -> ... inst feats")
            + self.b_final
        )
        return out


class ArenaNeuronComputationModel(ArenaToyModel):
    def __init__(self, cfg, feature_probability=1.0, importance=1.0, device="cpu"):
        super().__init__(cfg, feature_probability, importance, device)
        del self.W
        self.W1 = nn.Parameter(nn.init.kaiming_uniform_(t.empty((cfg.n_inst, cfg.d_hidden, cfg.n_features))))
        self.W2 = nn.Parameter(nn.init.kaiming_uniform_(t.empty((cfg.n_inst, cfg.n_features, cfg.d_hidden))))

    def forward(self, features):
        activations = F.relu(
            einops.einsum(features, self.W1, "... inst feats, inst d_hidden feats -> ... inst d_hidden")
        )
        return F.relu(
            einops.einsum(activations, self.W2, "... inst d_hidden, inst feats d_hidden -> ... inst feats")
            + self.b_final
        )

    def generate_batch(self, batch_size):
        shape = (batch_size, self.cfg.n_inst, self.cfg.n_features)
        feat_mag = 2 * t.rand(shape, device=self.W1.device) - 1
        feat_seed = t.rand(shape, device=self.W1.device)
        return t.where(feat_seed < self.feature_probability, feat_mag, 0.0)

    def calculate_loss(self, out, batch):
        error = self.importance * ((batch.abs() - out) ** 2)
        return einops.reduce(error, "batch inst feats -> inst", "mean").sum()


CHECKS = [
    ("tms.forward", ArenaToyModel),
    ("tms.generate_batch", ArenaToyModel),
    ("tms.calculate_loss", ArenaToyModel),
    ("tms.neuron_model", ArenaNeuronModel),
    ("tms.neuron_computation.forward", ArenaNeuronComputationModel),
    ("tms.neuron_computation.generate_batch", ArenaNeuronComputationModel),
    ("tms.neuron_computation.calculate_loss", ArenaNeuronComputationModel),
]


@pytest.mark.parametrize("exercise_id, cls", CHECKS, ids=[exercise_id for exercise_id, _ in CHECKS])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_arena_style_classes_pass_every_check(exercise_id, cls, seed):
    t.manual_seed(seed)
    check(exercise_id, cls, seed=seed)


def arena_loss(self, out, batch):
    error = self.importance * ((batch - out) ** 2)
    return einops.reduce(error, "batch inst feats -> inst", "mean").sum()


def loss_with_detached_importance(self, out, batch):
    return (self.importance.detach() * (out - batch) ** 2).mean(dim=(0, 2)).sum()


@pytest.mark.parametrize("loss", [arena_loss, loss_with_detached_importance])
def test_per_instance_losses_come_from_a_scalar_loss_however_written(loss):
    """The course splits the learner's scalar loss into instances itself (by its linearity in the importances)."""
    model = type("Learner", (ToyModel,), {"calculate_loss": loss})(
        ToyModelConfig(3, 4, 2), feature_probability=0.5, importance=t.tensor([1.0, 0.5, 0.3, 0.2])
    )
    batch = model.generate_batch(64)
    out = model(batch)
    expected = (model.importance * (out - batch) ** 2).mean(dim=(0, 2)).detach()
    assert t.allclose(per_instance_loss(model, out, batch), expected, rtol=1e-5, atol=1e-7)
    assert out.grad_fn is not None and not model.importance.requires_grad  # nothing of the model changed


@pytest.mark.parametrize("loss", [arena_loss, loss_with_detached_importance])
def test_optimize_trains_a_class_whose_loss_takes_only_out_and_batch(loss):
    t.manual_seed(0)
    model = type("Learner", (ToyModel,), {"calculate_loss": loss})(ToyModelConfig(4), feature_probability=0.1)
    history = model.optimize(steps=300, log_freq=50, lr=1e-2)
    assert history["loss"].shape == (len(history["step"]), 4)
    assert t.isfinite(history["loss"]).all() and (history["loss"][-1] < history["loss"][0]).all()


@pytest.mark.parametrize("cls", [ToyModel, NeuronModel, NeuronComputationModel])
def test_state_dicts_hold_only_parameters_and_round_trip_the_arena_way(cls):
    cfg = ToyModelConfig(3, 5, 2)
    source = cls(cfg, feature_probability=0.1, importance=0.9 ** t.arange(5.0))
    assert set(source.state_dict()) == {name for name, _ in source.named_parameters()}
    target = cls(cfg, feature_probability=0.1, importance=0.9 ** t.arange(5.0))
    target.load_state_dict(source.state_dict())  # strict, as ARENA's tests load the solution's weights
    features = t.rand(7, 3, 5)
    assert t.equal(target(features), source(features))


def test_an_arena_checkpoint_loads_strictly_into_the_course_model():
    cfg = ToyModelConfig(2, 5, 2)
    arena = ArenaToyModel(cfg)
    ours = ToyModel(cfg)
    ours.load_state_dict(arena.state_dict())
    arena.load_state_dict(ours.state_dict())
    features = t.rand(4, 2, 5)
    assert t.equal(ours(features), arena(features))


def test_buffers_still_follow_the_model_to_another_dtype_or_device():
    model = ToyModel(ToyModelConfig(2), feature_probability=0.3).to(t.float64)
    assert model.feature_probability.dtype == model.importance.dtype == t.float64


def test_without_a_feature_probability_every_feature_is_always_present():
    """The course's choice (ARENA's ToyModel defaults to p = 0.01): no sparsity unless one is asked for."""
    model = ToyModel(ToyModelConfig(2))
    assert (model.feature_probability == 1).all() and (model.importance == 1).all()
    assert (model.generate_batch(100) > 0).all()


# --------------------------------------------------------------------------------- chapter 2's variants, ARENA's way


# ARENA's autograd functions (`.float()` outputs, 0 · grad_output for z, θ's gradient summed over dim 0): the
# check's own alternative of that name, so that the two are one piece of code.
ArenaHeaviside, ArenaJumpReLU = autograd_arena_style()


class ArenaSAEBase(ToySAE):
    """ARENA's variant constructors: skip ToySAE.__init__, keep the caller's model (frozen, not copied), Kaiming
    uniform weights, and decode with the raw W_dec (its optimiser renormalises the rows after every step)."""

    def __init__(self, cfg, model):
        super(ToySAE, self).__init__()
        self.cfg = cfg
        self.model = model.requires_grad_(False)
        kaiming = lambda *shape: nn.Parameter(nn.init.kaiming_uniform_(t.empty(shape)))  # noqa: E731
        self._W_dec = None if cfg.tied_weights else kaiming(cfg.n_inst, cfg.d_sae, cfg.d_in)
        self.b_dec = nn.Parameter(t.zeros(cfg.n_inst, cfg.d_in))
        self.build(cfg, kaiming)
        self.to(model.W.device)


class ArenaGatedToySAE(ArenaSAEBase):
    def build(self, cfg, kaiming):
        self.W_gate = kaiming(cfg.n_inst, cfg.d_in, cfg.d_sae)
        self.b_gate = nn.Parameter(t.zeros(cfg.n_inst, cfg.d_sae))
        self.r_mag = nn.Parameter(t.zeros(cfg.n_inst, cfg.d_sae))
        self.b_mag = nn.Parameter(t.zeros(cfg.n_inst, cfg.d_sae))

    @property
    def W_dec(self):
        return self._W_dec if self._W_dec is not None else self.W_gate.transpose(-1, -2)

    @property
    def W_mag(self):
        return self.r_mag.exp().unsqueeze(1) * self.W_gate

    def forward(self, h):
        h_cent = h - self.b_dec
        gate_pre = einops.einsum(h_cent, self.W_gate, "batch inst d_in, inst d_in d_sae -> batch inst d_sae")
        gate_pre = gate_pre + self.b_gate
        mag_pre = einops.einsum(h_cent, self.W_mag, "batch inst d_in, inst d_in d_sae -> batch inst d_sae") + self.b_mag
        acts = (gate_pre > 0).float() * F.relu(mag_pre)
        h_rec = einops.einsum(acts, self.W_dec, "batch inst d_sae, inst d_sae d_in -> batch inst d_in") + self.b_dec
        gate_post = F.relu(gate_pre)
        via_gate = einops.einsum(gate_post, self.W_dec.detach(), "batch inst d_sae, inst d_sae d_in -> batch inst d_in")
        loss_dict = {
            "L_reconstruction": (h_rec - h).pow(2).mean(-1),
            "L_sparsity": gate_post.sum(-1),
            "L_aux": (via_gate + self.b_dec.detach() - h).pow(2).sum(-1),
        }
        loss = loss_dict["L_reconstruction"] + self.cfg.sparsity_coeff * loss_dict["L_sparsity"] + loss_dict["L_aux"]
        return loss_dict, loss, acts, h_rec


class ArenaJumpReLUToySAE(ArenaSAEBase):
    def build(self, cfg, kaiming):
        self.W_enc = kaiming(cfg.n_inst, cfg.d_in, cfg.d_sae)
        self.b_enc = nn.Parameter(t.zeros(cfg.n_inst, cfg.d_sae))
        self.log_theta = nn.Parameter(t.full((cfg.n_inst, cfg.d_sae), t.log(t.tensor(0.1))))

    @property
    def theta(self):
        return self.log_theta.exp()

    def forward(self, h):
        pre = einops.einsum(h - self.b_dec, self.W_enc, "batch inst d_in, inst d_in d_sae -> batch inst d_sae")
        relu = F.relu(pre + self.b_enc)
        acts = ArenaJumpReLU.apply(relu, self.theta, self.cfg.ste_epsilon)
        h_rec = einops.einsum(acts, self.W_dec, "batch inst d_sae, inst d_sae d_in -> batch inst d_in") + self.b_dec
        loss_dict = {
            "L_reconstruction": (h_rec - h).pow(2).mean(-1),
            "L_sparsity": ArenaHeaviside.apply(relu, self.theta, self.cfg.ste_epsilon).sum(-1),
        }
        return loss_dict, loss_dict["L_reconstruction"] + self.cfg.sparsity_coeff * loss_dict["L_sparsity"], acts, h_rec


def normalised_when_tied(cls: type) -> type:
    """ARENA's class with one change: tied, its `W_dec` is the encoder transposed with unit rows (`W_dec_normalized`),
    as every variant decodes (section 2.1's `decode`); untied, it is ARENA's raw `_W_dec`, untouched."""

    def W_dec(self):
        if self._W_dec is not None:
            return self._W_dec
        encoder = (self.W_gate if cls is ArenaGatedToySAE else self.W_enc).transpose(-1, -2)
        return encoder / (encoder.norm(dim=-1, keepdim=True) + self.cfg.weight_normalize_eps)

    return type(cls.__name__, (cls,), {"W_dec": property(W_dec)})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_arena_style_variants_pass_every_check(seed):
    """Untied, ARENA's gated and JumpReLU SAEs decode with the raw `W_dec`, whose rows are kept at unit norm: they pass.
    Tied, they decode with the raw `W_enc`ᵀ (`W_gate`ᵀ), whose rows have free norms: a different model from the
    contract's (rows 28 and 30), which fails with the hint that names it; changing only that passes every check."""
    check("sae.jumprelu_autograd", ArenaHeaviside, ArenaJumpReLU, seed=seed)
    for cls, encoder in ((ArenaGatedToySAE, "W_gate"), (ArenaJumpReLUToySAE, "W_enc")):
        exercise_id = "sae.gated" if cls is ArenaGatedToySAE else "sae.jumprelu"
        with pytest.raises(CheckFailed) as failure:
            check(exercise_id, cls, seed=seed)
        assert "forward (tied weights)" in str(failure.value)  # the untied settings, judged first, passed
        assert HINT_RAW_W_DEC.format(encoder=encoder) in str(failure.value)
        check(exercise_id, normalised_when_tied(cls), seed=seed)


@pytest.mark.parametrize("cls", [ArenaGatedToySAE, ArenaJumpReLUToySAE], ids=lambda c: c.__name__)
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_optimize_trains_arena_style_variants(cls, tied):
    """`optimize` trains them: every parameter moves and the losses stay finite; untied, every instance's loss falls.
    (ARENA's tied JumpReLU, decoding with its raw, unnormalised W_enc transposed, can climb early from a Kaiming start:
    measured here, two of four instances end 300 steps with L0 ≈ 1 on mostly empty inputs, and one still at 2,000.
    That is its formulation's behaviour, which the loop must run as it is, not a failure to train.)"""
    t.manual_seed(0)
    config = JumpReLUToySAEConfig if cls is ArenaJumpReLUToySAE else ToySAEConfig
    sae = cls(config(4, 2, 5, sparsity_coeff=0.05, tied_weights=tied), pentagon_model(4))
    before = {name: p.detach().clone() for name, p in sae.named_parameters() if not name.startswith("model.")}
    log = sae.optimize(steps=300, log_freq=50)
    assert t.isfinite(log["loss"]).all()
    assert all(not t.equal(p, before[name]) for name, p in sae.named_parameters() if name in before)
    if not tied:
        assert (log["loss"][-1] < log["loss"][0]).all()
