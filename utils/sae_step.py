"""The training step of a standard SAE, its gradients written out by hand: what makes `ToySAE.optimize` fast.

A toy SAE is so small that a training step costs a few dozen tiny kernel calls, and autograd roughly doubles that
count: the forward pass records a graph of ~25 nodes, and backward walks it, each node a few kernels of its own plus
the engine's bookkeeping. For the standard SAE (ReLU latents, L1 penalty, decoder rows at unit norm, tied or untied)
the gradients have a short closed form, one batched matrix product per weight, so `StandardSAEStep` computes them
directly, with every batch-sized tensor laid out [inst, ·, batch] (see `gradients`).

It is only a faster way to compute what the SAE's own code computes. `train_sae` uses it for an SAE only after
checking, on the first batch, that the SAE's own forward pass and autograd give the same latents and gradients
(`agrees`), and checks again on every logged step, falling back to the SAE's own code for good at the
first disagreement. Whatever the SAE's forward is (split into steps, written in one piece as ARENA does, a variant
with another activation or loss) it is trained by its own maths: only one that computes the standard SAE's gets the
hand-written gradients.

The loss is the one `train_sae` minimises: for every instance i, averaged over the B inputs of the batch,

    L_i = mean_b [ mean_d (ĥ − h)² + c_i · Σ_s acts ],   acts = ReLU((h − b_dec) W_enc + b_enc),
    ĥ = acts Ŵ_dec + b_dec,   Ŵ_dec = W_dec / (‖W_dec‖ + ε) row by row,

summed over instances. With r = ∂L/∂ĥ = 2 (ĥ − h) / (B d_in) and g = ∂L/∂pre = (r Ŵ_decᵀ + c/B) · 1[pre > 0]:

    ∂L/∂W_enc = (h − b_dec)ᵀ g      ∂L/∂b_enc = Σ_b g      ∂L/∂b_dec = Σ_b r − W_enc Σ_b g
    ∂L/∂Ŵ_dec = actsᵀ r             ∂L/∂W_dec = (∂L/∂Ŵ_dec − (W_dec / n) ⟨Ŵ_dec, ∂L/∂Ŵ_dec⟩) / (n + ε)

(the last row by row, n = ‖W_dec‖), and a tied SAE adds ∂L/∂W_dec, transposed, to ∂L/∂W_enc.

This module belongs to the course's runtime library: it imports nothing from `solutions` or `tests`.
"""

import warnings
from collections.abc import Callable

import torch as t
from jaxtyping import Bool, Float
from torch import Tensor, nn

from utils.batches import sae_batches, sae_features

# How closely the SAE's own autograd gradients must match the hand-written ones, relative to each gradient's largest
# entry: float32 sums taken in another order differ by ~1e-6 of that; a different loss or forward pass differs by far
# more than 1e-3 (tests/suite/test_sae_step.py measures both).
RELATIVE_TOLERANCE = 1e-3
# what torch and Python raise when the standard step meets an SAE, a model or a batch of another shape or kind
COULD_NOT_COMPUTE = (AttributeError, IndexError, RuntimeError, TypeError, ValueError)
# The class section 2.1 asks learners to write. When one of that name trains on its own code although the shortcut is
# on, the learner is told (once per process): it is most likely a mistake, and it makes `optimize` ~3× slower.
# Variants (other names: Matryoshka, TopK, ...) have losses of their own by design, and train on their code silently.
STANDARD_NAME = "ToySAE"
TOLD: set[str] = set()  # the reasons already told in this process


class SlowTrainingWarning(UserWarning):
    """`optimize` trains a learner's `ToySAE` on its own forward pass and autograd at every step, because that forward
    pass does not compute what the standard SAE computes: slower, and usually a sign of a mistake."""


def tell_slow(sae: nn.Module, reason: str) -> None:
    """Say once per process and reason that `sae`, a learner's ToySAE, trains on the slow path, and why."""
    if type(sae).__name__ != STANDARD_NAME or reason in TOLD:
        return
    TOLD.add(reason)
    warnings.warn(
        f"{reason}, so optimize runs your forward pass and autograd on every step: about 3× slower on section 2.1's "
        "small SAEs than the standard SAE trains (the training itself is what your code computes). If your ToySAE is "
        'meant to be the standard SAE, check("sae.init", ToySAE) and check("sae.forward", ToySAE) name the difference.',
        SlowTrainingWarning,
        stacklevel=2,
    )


class StandardSAEStep:
    """Gradients of the standard SAE loss for an SAE with `W_enc` [inst d_in d_sae], `b_enc` [inst d_sae], `b_dec`
    [inst d_in] and, untied, `_W_dec` [inst d_sae d_in], read from `sae.cfg` (sparsity_coeff, weight_normalize_eps,
    tied_weights). `StandardSAEStep.of(sae)` is None for an SAE of any other shape."""

    def __init__(self, sae: nn.Module) -> None:
        self.sae = sae
        cfg = sae.cfg
        self.tied = bool(cfg.tied_weights)
        self.eps = float(cfg.weight_normalize_eps)
        coeff = t.as_tensor(cfg.sparsity_coeff, dtype=sae.W_enc.dtype, device=sae.W_enc.device)
        self.coeff_per_input = coeff.expand(cfg.n_inst).reshape(cfg.n_inst, 1, 1)  # one per instance, however given

    @classmethod
    def of(cls, sae: nn.Module) -> "StandardSAEStep | None":
        """The step for `sae` if its parameters and config are those of a standard SAE (shapes included), else None.

        That an SAE has these parameters says nothing about what its forward pass does with them: `agrees` checks."""
        cfg = getattr(sae, "cfg", None)
        names = ("n_inst", "d_in", "d_sae", "sparsity_coeff", "tied_weights", "weight_normalize_eps")
        if cfg is None or not all(hasattr(cfg, name) for name in names):
            return None
        n_inst, d_in, d_sae = cfg.n_inst, cfg.d_in, cfg.d_sae
        expected = {"W_enc": (n_inst, d_in, d_sae), "b_enc": (n_inst, d_sae), "b_dec": (n_inst, d_in)}
        if not cfg.tied_weights:
            expected["_W_dec"] = (n_inst, d_sae, d_in)
        parameters = trainable(sae)
        if {name: tuple(p.shape) for name, p in parameters.items()} != expected:
            return None
        if len({(p.device, p.dtype) for p in parameters.values()}) != 1 or not sae.W_enc.dtype.is_floating_point:
            return None
        coeff = cfg.sparsity_coeff
        if isinstance(coeff, Tensor) and coeff.numel() not in (1, n_inst):
            return None
        model = getattr(sae, "model", None)
        own_buffers = {id(b) for b in sae.buffers()} - {id(b) for b in (model.buffers() if model is not None else [])}
        if own_buffers:  # state the standard step knows nothing of: TopK's dead-latent mask, BatchTopK's threshold
            return None
        return cls(sae)

    @t.no_grad()
    def hidden_batch(
        self, batch_size: int, features: Callable[[int], Tensor] | None = None
    ) -> Float[Tensor, "batch inst d_in"]:
        """h = W x on a fresh batch x of `features` (the toy model's `generate_batch` unless given): what the standard
        SAE's `generate_batch` computes, from the same random numbers, but laid out as `gradients` reads it ([inst d_in
        batch] in memory)."""
        x = (features or self.sae.model.generate_batch)(batch_size)  # [batch inst feats]
        return t.bmm(self.sae.model.W, x.permute(1, 2, 0)).permute(2, 0, 1)

    def first_batch(
        self,
        batch_size: int,
        draw: Callable[[int], Tensor] | None = None,
        features: Callable[[int], Tensor] | None = None,
    ) -> tuple[Float[Tensor, "batch inst d_in"], bool]:
        """The SAE's batch `draw(batch_size)` (its own `generate_batch` unless given), and whether `hidden_batch` of
        `features` draws the same batch from the same state of the random number generator. The generator is left as
        that one draw leaves it, and `draw` is called once, as the training loop would: the check changes nothing
        about training."""
        device = self.sae.W_enc.device
        before = rng_state(device)
        own = (draw or self.sae.generate_batch)(batch_size)
        after = rng_state(device)
        same = False
        if isinstance(own, Tensor) and isinstance(getattr(getattr(self.sae, "model", None), "W", None), Tensor):
            set_rng_state(device, before)
            try:
                ours = self.hidden_batch(batch_size, features)
                same = own.shape == ours.shape and close(ours, own.detach())
            except COULD_NOT_COMPUTE:  # a model unlike ToyModel: no W x
                same = False
            set_rng_state(device, after)
        return own, same

    @t.no_grad()
    def gradients(
        self, h: Float[Tensor, "batch inst d_in"]
    ) -> tuple[dict[str, Tensor], Float[Tensor, "inst d_sae batch"]]:
        """(∂L/∂parameter by parameter name, the latents laid out [inst d_sae batch]).

        Every batch-sized tensor is laid out [inst, ·, batch]: a bias then broadcasts along contiguous memory, a sum
        over the batch reads it, and every matrix product is batch-wide. On the pentagon SAE (an innermost axis of 2
        or 5 entries in the [batch inst ·] layout) that makes each kernel several times faster."""
        batch, _, d_in = h.shape
        x = h.permute(1, 2, 0).contiguous()  # [inst d_in batch]; free when `hidden_batch` drew h
        sae = self.sae  # its parameters, read at every step as its own forward pass reads them
        W_enc, b_dec = sae.W_enc, sae.b_dec
        W_dec = W_enc.transpose(1, 2) if self.tied else sae._W_dec
        norm = t.linalg.vector_norm(W_dec, dim=-1, keepdim=True)
        scale = (norm + self.eps).reciprocal_()
        W_dec_normalized = W_dec * scale  # [inst d_sae d_in]
        # (h − b_dec) W_enc + b_enc, with b_dec folded into the encoder's bias: one batch-sized tensor fewer
        bias = t.baddbmm(sae.b_enc.unsqueeze(2), W_enc.transpose(1, 2), b_dec.unsqueeze(2), alpha=-1)
        acts = t.bmm(W_enc.transpose(1, 2), x).add_(bias).relu_()  # [inst d_sae batch]
        k = 2 / (batch * d_in)
        # r = ∂L/∂ĥ = k (Ŵ_decᵀ acts + b_dec − h)
        r = t.baddbmm(x, W_dec_normalized.transpose(1, 2), acts, beta=-k, alpha=k).add_(b_dec.unsqueeze(2), alpha=k)
        # g = ∂L/∂pre: ∂L/∂acts times ReLU's derivative (0 where acts = 0)
        g = t.ops.aten.threshold_backward(t.bmm(W_dec_normalized, r).add_(self.coeff_per_input / batch), acts, 0)
        g_b_enc = g.sum(-1, keepdim=True)  # [inst d_sae 1]
        g_W_enc = t.baddbmm(t.bmm(x, g.transpose(1, 2)), b_dec.unsqueeze(2), g_b_enc.transpose(1, 2), alpha=-1)
        g_b_dec = t.baddbmm(r.sum(-1, keepdim=True), W_enc, g_b_enc, alpha=-1)
        g_W_dec_normalized = t.bmm(acts, r.transpose(1, 2))  # [inst d_sae d_in]
        # minus the part of ∂L/∂Ŵ_dec along each row, which rescaling the row cannot change: with u = W_dec / n,
        # ∂L/∂W_dec = (∂L/∂Ŵ_dec − u ⟨Ŵ_dec, ∂L/∂Ŵ_dec⟩) / (n + ε); an all-zero row has u = 0, as in autograd's norm
        unit = W_dec / norm.clamp_min(t.finfo(norm.dtype).tiny)
        along = (g_W_dec_normalized * W_dec_normalized).sum(-1, keepdim=True)
        g_W_dec = g_W_dec_normalized.sub_(unit * along).mul_(scale)
        grads = {"W_enc": g_W_enc, "b_enc": g_b_enc.squeeze(2), "b_dec": g_b_dec.squeeze(2)}
        if self.tied:
            grads["W_enc"] = g_W_enc.add_(g_W_dec.transpose(1, 2))
        else:
            grads["_W_dec"] = g_W_dec
        return grads, acts

    def set_gradients(self, h: Float[Tensor, "batch inst d_in"]) -> Bool[Tensor, "inst d_sae"]:
        """Set every parameter's `.grad` for the batch `h`; return which latents fired on some input of it."""
        grads, acts = self.gradients(h)
        for name, grad in grads.items():
            param = getattr(self.sae, name)
            # in the parameter's own memory layout, as autograd leaves gradients: the fused AdamW kernel reads both
            # as flat memory (the reference's W_enc is a transposed copy of the decoder, stored [inst d_sae d_in])
            param.grad = grad if grad.stride() == param.stride() else t.empty_like(param).copy_(grad)
        return acts.sum(-1) > 0  # latents are ≥ 0: a sum over the batch is > 0 exactly when one of them is

    def agrees(
        self, h: Float[Tensor, "batch inst d_in"], acts: Float[Tensor, "batch inst d_sae"], own: dict[str, Tensor]
    ) -> bool:
        """Whether the SAE's own latents `acts` and gradients `own` (by parameter name) on the batch `h` are the
        standard SAE's, within float32 rounding."""
        grads, fused_acts = self.gradients(h)
        acts = acts.detach().permute(1, 2, 0) if isinstance(acts, Tensor) and acts.dim() == 3 else None
        return close(acts, fused_acts) and all(close(own.get(name), grad) for name, grad in grads.items())


def trainable(sae: nn.Module) -> dict[str, nn.Parameter]:
    """The parameters an optimiser trains, by name (the SAE's frozen toy model has none)."""
    return {name: param for name, param in sae.named_parameters() if param.requires_grad}


def close(got: Tensor | None, expected: Tensor) -> bool:
    """Whether `got` is `expected` within float32 rounding: same shape, finite, and nowhere further from it than
    RELATIVE_TOLERANCE of its largest entry."""
    if not isinstance(got, Tensor) or got.shape != expected.shape or not bool(t.isfinite(got).all()):
        return False
    return bool((got - expected).abs().max() <= RELATIVE_TOLERANCE * expected.abs().max() + 1e-12)


def rng_state(device: t.device) -> tuple[Tensor, Tensor | None]:
    """The state of torch's random number generators that draw on `device`: the CPU's, and the device's own."""
    return t.random.get_rng_state(), t.cuda.get_rng_state(device) if device.type == "cuda" else None


def set_rng_state(device: t.device, state: tuple[Tensor, Tensor | None]) -> None:
    t.random.set_rng_state(state[0])
    if state[1] is not None:
        t.cuda.set_rng_state(state[1], device)


class Shortcut:
    """What `train_sae` asks of the hand-written step, and when it may use it (never when `enabled` is False).

    `batch(step)` gives each step's data: the SAE's own first batch, then, when `hidden_batch` was seen to draw the
    same, its batches. (Where `utils.batches.sae_features` finds the toy model drawing as the reference does, both
    draw the toy model's features with its fast sampler, as `sae_batches` does for any SAE.) `gradients_set(h, log)`
    sets the gradients for `h` itself (and says which latents fired) on the steps that log nothing, once the SAE's
    own forward pass and autograd have agreed with it on the first step.
    On a logged step the SAE's own code runs (its values are what the log records), and `check(h, acts, own)` then
    compares the hand-written gradients with its own: at the first disagreement the shortcut is off for good.
    """

    def __init__(self, sae: nn.Module, batch_size: int, enabled: bool = True) -> None:
        try:
            self.step = StandardSAEStep.of(sae) if enabled else None
        except COULD_NOT_COMPUTE:  # a config the standard step cannot read (a coefficient of another kind, ...)
            self.step = None
        if enabled and self.step is None:
            tell_slow(sae, "Your ToySAE's parameters or config are not the standard SAE's (names, shapes, one dtype)")
        self.trusted = False
        self.sae, self.batch_size = sae, batch_size
        self.features = sae_features(sae)  # None: the SAE's own batches, from its toy model's own draws
        self.own_draw = sae.generate_batch if self.features is None else sae_batches(sae)
        self.draw = self.own_draw

    def batch(self, step: int) -> Tensor:
        if step == 0 and self.step is not None:
            first, same = self.step.first_batch(self.batch_size, self.draw, self.features)
            if same:
                self.draw = lambda batch_size: self.step.hidden_batch(batch_size, self.features)
            return first
        return self.draw(self.batch_size)

    @property
    def checking(self) -> bool:
        """Whether the SAE's own gradients are still compared with the hand-written ones."""
        return self.step is not None

    def gradients_set(self, h: Tensor, log: bool) -> Bool[Tensor, "inst d_sae"] | None:
        """Which latents fired on `h`, having set the gradients; None when the SAE's own code must run instead."""
        if not self.trusted or log:
            return None
        return self.step.set_gradients(h)

    def check(self, h: Tensor, acts: Tensor, own: dict[str, Tensor]) -> None:
        reason = "Your ToySAE's forward pass gives other latents or gradients than the standard SAE's"
        try:
            self.trusted = self.step.agrees(h, acts, own)
        except COULD_NOT_COMPUTE:  # inputs the SAE's own code takes and the standard step cannot: not the standard SAE
            self.trusted = False
            reason = "Your ToySAE's forward pass returns latents or gradients of other shapes than the standard SAE's"
        if not self.trusted:
            tell_slow(self.sae, reason)
            self.step = None
            self.draw = self.own_draw
