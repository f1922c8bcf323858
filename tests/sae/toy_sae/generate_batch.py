"""Checks for sae.generate_batch: the toy model's hidden activations.

Kit properties: every instance of the probe model has its own weights and probabilities, so an instance that reads
another's weights fails (3); batches of 1000, 7 and 1 (6: a batch of one keeps its axis); an einsum that does not fit
is explained, and a class whose `__init__` copied instance 0 into the model (ARENA's) is sent to sae.init first (7).
generate_batch reads no config field of its own (1), no decoder (2), writes no parameters (5), and its output is data,
not a function of the SAE's parameters (4).
"""

import einops
import torch as t
import torch.nn.functional as F
from torch import Tensor

from tests.harness import (
    CheckFailed,
    Context,
    Exercise,
    Mistake,
    attempt,
    einsum_hint,
    expect_close,
    expect_tensor,
    raised,
)
from tests.sae.common import (
    D_IN,
    N_FEATURES,
    N_INST,
    ProbeToyModel,
    build_sae,
    sae_config,
)
from tests.sae.toy_sae.shared import MODULE

BATCH = 1000


def probe_generate_batch(ToySAE: type, context: Context) -> dict:
    sae = build_sae(ToySAE, sae_config(), ProbeToyModel(context, salt=45).to(context.device))
    with t.no_grad():
        first = sae.generate_batch(BATCH)
        second = attempt(lambda: sae.generate_batch(7))
        single = attempt(lambda: sae.generate_batch(1))
    return {"first": first, "second": second, "single": single}


HINT_MODEL_DATA = (
    "The SAE's data are the toy model's hidden activations: draw a batch with `self.model.generate_batch(batch_size)` "
    "and map it through the model's weights, h = W x (`self.model.W`: [inst d_in feats])"
)
HINT_RETURN_HIDDEN = "Return the hidden activations h = W x (shape [batch inst d_in]), not the features x themselves"
HINT_OWN_INSTANCE = "Every SAE instance reads its own model instance: h[:, i] = W[i] x[:, i], with the model's W[i]"
HINT_NO_BIAS_OR_RELU = (
    "The hidden activation is h = W x, before anything else the model does (no b_final, no ReLU: those belong to the "
    "model's output)"
)
HINT_BATCH_OF_ONE = (
    "generate_batch(1) lost its batch axis: squeeze only the axis you added (e.g. `.squeeze(-1)`), never every axis of "
    "length 1"
)
HINT_FRESH_BATCHES = "Every call must draw a new batch: don't store one batch and return it again, and don't reseed"


def verdict_generate_batch(results: dict, context: Context) -> None:
    model = ProbeToyModel(context, salt=45)
    x_first, x_second = model.generate_batch(BATCH), model.generate_batch(7)
    W = model.W.detach()
    expected = einops.einsum(x_first, W, "batch inst feats, inst d_in feats -> batch inst d_in")
    first = results["first"]
    if isinstance(first, Tensor) and tuple(first.shape) == (BATCH, N_INST, N_FEATURES):
        raise CheckFailed(HINT_RETURN_HIDDEN + ".")
    first = expect_tensor(first, f"generate_batch({BATCH})", (BATCH, N_INST, D_IN), "batch inst d_in")
    second = results["second"]
    if (message := raised(second)) is not None:
        raise CheckFailed(f"a second call, generate_batch(7), raised {message}")
    second = expect_tensor(second, "generate_batch(7)", (7, N_INST, D_IN), "batch inst d_in")
    single = results["single"]
    if (message := raised(single)) is not None:
        raise CheckFailed(f"generate_batch(1) raised {message}{einsum_hint(message)}")
    if isinstance(single, Tensor) and tuple(single.shape) == (N_INST, D_IN):
        raise CheckFailed(HINT_BATCH_OF_ONE + ".")
    expect_tensor(single, "generate_batch(1)", (1, N_INST, D_IN), "batch inst d_in")
    if t.equal(second, first[:7]):
        raise CheckFailed(HINT_FRESH_BATCHES + ".")
    candidates = {
        "W of instance 0": einops.einsum(x_first, W[0], "batch inst feats, d_in feats -> batch inst d_in"),
        "b_final": expected + einops.einsum(model.b_final.detach(), W, "inst feats, inst d_in feats -> inst d_in"),
        "ReLU": F.relu(expected),
    }
    hints = {"W of instance 0": HINT_OWN_INSTANCE, "b_final": HINT_NO_BIAS_OR_RELU, "ReLU": HINT_NO_BIAS_OR_RELU}
    if t.allclose(first, expected, rtol=1e-4, atol=1e-5):
        expected_second = einops.einsum(x_second, W, "batch inst feats, inst d_in feats -> batch inst d_in")
        expect_close(second, expected_second, "a second call, generate_batch(7)")
        return
    for name, candidate in candidates.items():
        if t.allclose(first, candidate, rtol=1e-4, atol=1e-5):
            raise CheckFailed(f"generate_batch is wrong. {hints[name]}.")
    raise CheckFailed(
        f"{HINT_MODEL_DATA}; yours returns other values (largest difference {(first - expected).abs().max():.3g})."
    )


def batch_random_hidden(self, batch_size):
    return t.randn((batch_size, self.cfg.n_inst, self.cfg.d_in))


def batch_returns_features(self, batch_size):
    return self.model.generate_batch(batch_size)


def batch_first_instance_weights(self, batch_size):
    return einops.einsum(self.model.generate_batch(batch_size), self.model.W[0], "b i f, d f -> b i d")


def batch_with_output_bias(self, batch_size):
    x = self.model.generate_batch(batch_size)
    return einops.einsum(x, self.model.W, "b i f, i d f -> b i d") + einops.einsum(
        self.model.b_final, self.model.W, "i f, i d f -> i d"
    )


def batch_with_relu(self, batch_size):
    return F.relu(einops.einsum(self.model.generate_batch(batch_size), self.model.W, "b i f, i d f -> b i d"))


def batch_cached(self, batch_size):
    if not hasattr(self, "_cached"):
        self._cached = einops.einsum(self.model.generate_batch(1000), self.model.W, "b i f, i d f -> b i d")
    return self._cached[:batch_size]


def batch_dense_features(self, batch_size):
    x = t.rand((batch_size, self.cfg.n_inst, self.model.cfg.n_features))
    return einops.einsum(x, self.model.W, "b i f, i d f -> b i d")


def batch_squeezes_every_axis(self, batch_size):
    x = self.model.generate_batch(batch_size)
    return (self.model.W @ x.unsqueeze(-1)).squeeze()


def batch_einsum_axes_in_the_wrong_order(self, batch_size):
    return t.einsum("bif,ifd->bid", self.model.generate_batch(batch_size), self.model.W)


GENERATE_BATCH_MISTAKES = [
    Mistake(batch_random_hidden, HINT_MODEL_DATA),
    Mistake(batch_returns_features, HINT_RETURN_HIDDEN),
    Mistake(batch_first_instance_weights, HINT_OWN_INSTANCE),
    Mistake(batch_with_output_bias, HINT_NO_BIAS_OR_RELU),
    Mistake(batch_with_relu, HINT_NO_BIAS_OR_RELU),
    Mistake(batch_cached, HINT_FRESH_BATCHES),
    Mistake(batch_dense_features, HINT_MODEL_DATA),
    Mistake(batch_squeezes_every_axis, HINT_BATCH_OF_ONE),  # kind 6
    Mistake(batch_einsum_axes_in_the_wrong_order, "That error comes from an einsum whose pattern does not fit"),  # 7
]


def batch_with_matmul(self, batch_size):
    x = self.model.generate_batch(batch_size)
    return (self.model.W @ x.unsqueeze(-1)).squeeze(-1)


def batch_under_no_grad(self, batch_size):
    with t.no_grad():
        return t.einsum("bif,idf->bid", self.model.generate_batch(batch_size), self.model.W)


EXERCISE = Exercise(
    id="sae.generate_batch",
    name="ToySAE",
    method="generate_batch",
    reference_path=f"{MODULE}:ToySAE",
    probe=probe_generate_batch,
    verdict=verdict_generate_batch,
    mistakes=GENERATE_BATCH_MISTAKES,
    alternatives=[batch_with_matmul, batch_under_no_grad],
    requires=("sae.init",),
)
