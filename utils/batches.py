"""Where the course's own batches come from: evaluation batches that leave the caller's random state alone, and the
toy model's sparse features drawn fast in training.

* `seeded(seed, device)` runs a block on torch's generator seeded with `seed` and then puts the caller's random state
  back, so that measuring or plotting never changes what training draws next; `seeded_batch` draws one batch so.
* Section 1.1's batch (feature f of instance i present with probability p[i, f], magnitude U[0, 1]) is written for
  learners with two draws, one for presence and one for magnitudes (`sparse_uniform`, what `ToyModel.generate_batch`
  does). `sparse_uniform_one_draw` gets the same distribution from one draw, laid out as the model's matrix products
  read it: the faster training step that section 1.1's "going further" block measures, and the random stream every
  result of the course was measured with. `toy_batches(model)` gives training that sampler exactly when the model's
  own `generate_batch` draws what `sparse_uniform` draws (seen on a small batch of a stream of its own); any other
  `generate_batch`, a learner's written another way included, is used as it is. `sae_batches(sae)` does the same
  for an SAE whose `generate_batch` is h = W x of such a model's batch.

This module belongs to the course's runtime library: it imports nothing from `solutions` or `tests`.
"""

import contextlib
from collections.abc import Callable, Iterator
from typing import TypeVar

import einops
import torch as t
from jaxtyping import Float
from torch import Tensor, nn

T = TypeVar("T")

# rows of the batch on which a model's `generate_batch` is compared with `sparse_uniform`: any other order or count of
# draws gives other numbers on the first row already
PROBE_BATCH = 4


@contextlib.contextmanager
def seeded(seed: int, device: t.device | str | None = None) -> Iterator[None]:
    """Draws inside the block come from torch's generators seeded with `seed`; after it, the CPU's and `device`'s
    generators are as the caller left them."""
    device = t.device(device if device is not None else "cpu")
    with t.random.fork_rng(devices=[device] if device.type != "cpu" else [], device_type=device.type):
        t.manual_seed(seed)
        yield


def seeded_batch(draw: Callable[[int], T], batch_size: int, seed: int, device: t.device | str | None = None) -> T:
    """`draw(batch_size)` from a stream of its own, seeded with `seed`, without gradients; the caller's random state is
    left as it was."""
    with seeded(seed, device), t.no_grad():
        return draw(batch_size)


# ------------------------------------------------------------------------------------ the toy model's features


def sparse_uniform(p: Float[Tensor, "inst feats"], batch_size: int) -> Float[Tensor, "batch inst feats"]:
    """Every feature present independently with its probability p, magnitude U[0, 1]: one draw decides presence, a
    second the magnitudes. The draws of the reference `ToyModel.generate_batch`, in the same order."""
    present = t.rand((batch_size, *p.shape), device=p.device) < p
    magnitudes = t.rand((batch_size, *p.shape), device=p.device)
    return t.where(present, magnitudes, 0.0)


def sparse_uniform_one_draw(p: Float[Tensor, "inst feats"], batch_size: int) -> Float[Tensor, "batch inst feats"]:
    """`sparse_uniform`'s distribution from one uniform number per entry, laid out instance by instance in memory.

    With v = 1 - u, uniform on (0, 1], the feature is present when v < p, and given that, 1 - v/p is uniform on
    [0, 1): relu(1 - v/p) is the sample (v, not u: v is never 0, so p = 0 gives relu(-inf) = 0 rather than 0/0). u is
    drawn [inst batch feats] and returned as a [batch inst feats] view, so each instance's data is one block of memory,
    which the model's per-instance matrix products read as it is.
    """
    u = t.rand((p.shape[0], batch_size, p.shape[1]), device=p.device)
    u = einops.rearrange(u, "inst batch feats -> batch inst feats")
    return u.sub_(1).div_(p).add_(1).relu_()  # relu(1 - (1 - u)/p), in place: no new batch-sized tensors


def same_draws(draw: Callable[[int], Tensor], expected: Callable[[int], Tensor], device: t.device) -> bool:
    """Whether `draw` gives exactly what `expected` gives, from the same seeded state (the caller's is untouched)."""
    try:
        theirs = seeded_batch(draw, PROBE_BATCH, 0, device)
    except Exception:  # noqa: BLE001 (a stub or a broken method: training calls it itself, and reports what it raises)
        return False
    ours = seeded_batch(expected, PROBE_BATCH, 0, device)
    if not isinstance(theirs, Tensor) or theirs.shape != ours.shape or theirs.dtype != ours.dtype:
        return False
    return t.equal(theirs, ours)


def draws_like_reference(model: nn.Module) -> bool:
    """Whether `model.generate_batch` draws exactly what `sparse_uniform` draws from its `feature_probability`."""
    p = getattr(model, "feature_probability", None)
    if not isinstance(p, Tensor) or p.dim() != 2 or not hasattr(model, "generate_batch"):
        return False
    return same_draws(model.generate_batch, lambda batch_size: sparse_uniform(p, batch_size), p.device)


def toy_batches(model: nn.Module) -> Callable[[int], Float[Tensor, "batch inst feats"]]:
    """The toy model's batches for training and evaluation: `sparse_uniform_one_draw` when the model's own
    `generate_batch` draws as the reference does, otherwise `model.generate_batch` itself."""
    if draws_like_reference(model):
        return lambda batch_size: sparse_uniform_one_draw(model.feature_probability, batch_size)
    return model.generate_batch


def hidden(model: nn.Module, features: Float[Tensor, "batch inst feats"]) -> Float[Tensor, "batch inst d_in"]:
    """h = W x for every instance: the standard SAE's `generate_batch` applied to a batch of features."""
    return einops.einsum(features, model.W, "batch inst feats, inst d_in feats -> batch inst d_in")


def sae_features(sae: nn.Module) -> Callable[[int], Float[Tensor, "batch inst feats"]] | None:
    """The toy model's fast sampler when the SAE's `generate_batch` is h = W x of a batch of a toy model that draws as
    the reference does (both seen on a small batch); None otherwise."""
    model = getattr(sae, "model", None)
    if model is None or not isinstance(getattr(model, "W", None), Tensor) or not draws_like_reference(model):
        return None
    own = lambda batch_size: hidden(model, model.generate_batch(batch_size))
    if not same_draws(sae.generate_batch, own, model.feature_probability.device):
        return None
    return lambda batch_size: sparse_uniform_one_draw(model.feature_probability, batch_size)


def sae_batches(sae: nn.Module) -> Callable[[int], Float[Tensor, "batch inst d_in"]]:
    """The SAE's batches for training and evaluation: h = W x of the fast sampler's features where `sae_features`
    finds it, otherwise `sae.generate_batch` itself."""
    features = sae_features(sae)
    if features is None:
        return sae.generate_batch
    return lambda batch_size: hidden(sae.model, features(batch_size))
