"""Checks for chapter 2, section 5 (SAE variants): one module per exercise, each its probe, its catalogue of mistakes
with their hints, and its alternatives; `forward.py` holds what the three SAE checks share.

The three SAE checks (`sae.topk`, `sae.gated`, `sae.jumprelu`) call the learner's class the way the training loop
does, `sae(h)`, so that a variant written as a few overridden steps and one written as a single `forward` (ARENA's
way) are judged alike. Each records every output and the gradient of a weighted loss with respect to every
parameter, and the verdict compares them with the reference's on the same parameters: a mistake that only shows in a
gradient (a residual or decoder that should be detached and is not, a step function without its straight-through
estimator) is caught there. Untied decoders have unit rows, as the training loop keeps them, and their gradient is
compared on the rows' tangent space (decoding with `W_dec` or `W_dec_normalized` agree there); tied decoders are the
encoder's columns, of norms between 0.3 and 2.3, so that decoding must go through `W_dec_normalized` (every
variant decodes as section 2.1's SAE does) and every gradient is compared whole. Only the catalogue runs when a check
fails: right code never pays it.

`sae.jumprelu_autograd` calls the learner's `Heaviside` and `JumpReLU` on inputs placed away from the edges of the
rectangle kernel, one exactly on the jump, with a non-uniform upstream gradient and with batch axes to sum over.

The check kit's properties (tests/kit.py), per exercise:

| exercise | 1 config fields | 2 tied | 3 instances | 4 gradients | 5 parameters | 6 boundary | 7 messages |
|---|---|---|---|---|---|---|---|
| sae.topk | k, aux_coeff, weight_normalize_eps (sparsity_coeff is unused) | yes | dead latents differ per instance | all | yes | no ties: open | - |
| sae.gated | sparsity_coeff, weight_normalize_eps | yes | gate at 0 in each | all | yes | gate exactly 0 | - |
| sae.jumprelu_autograd | ε = 0.3 (an argument) | no decoder | θ per instance | z, θ | none held | z exactly θ | - |
| sae.jumprelu | ste_epsilon, sparsity_coeff, weight_normalize_eps | yes | z = θ in each | all | yes | z exactly θ | autograd first |

Not probed: `threshold_init` (read only by a given line of `__init__`; ARENA's own `__init__` takes θ from a module
constant, and every probe sets θ itself); TopK ties (the contract leaves which of two equal pre-activations is kept
open: the probes have none, and `topk_relu_first`, which keeps both, is accepted); a non-default
`weight_normalize_eps` untied (there, decoding with ARENA's raw `W_dec`, whose rows the loop keeps at unit norm, is
accepted, and `W_dec_normalized` would differ from it by the epsilon alone).
"""

from tests.harness import Exercise
from tests.sae.variants.autograd import (
    AUTOGRAD_MISTAKES,
    autograd_arena_style,
    autograd_unsummed,
    probe_autograd,
    verdict_autograd,
)
from tests.sae.variants.forward import MODULE
from tests.sae.variants.gated import GATED_MISTAKES, gated_arena_style, gated_with_where, probe_gated, verdict_gated
from tests.sae.variants.jumprelu import (
    JUMPRELU_MISTAKES,
    jumprelu_sae_arena_style,
    jumprelu_sae_without_inner_relu,
    probe_jumprelu,
    verdict_jumprelu,
)
from tests.sae.variants.topk import (
    TOPK_MISTAKES,
    probe_topk,
    topk_aux_relu,
    topk_monolithic,
    topk_relu_first,
    verdict_topk,
)

# ------------------------------------------------------------------------------------------------ registry

EXERCISES = [
    Exercise(
        id="sae.topk",
        name="TopKToySAE",
        method="forward",
        reference_path=f"{MODULE}:TopKToySAE",
        probe=probe_topk,
        verdict=verdict_topk,
        mistakes=TOPK_MISTAKES,
        alternatives=[topk_relu_first, topk_monolithic, topk_aux_relu],
        stubs=("activation", "auxiliary_loss", "loss_terms"),
    ),
    Exercise(
        id="sae.gated",
        name="GatedToySAE",
        method="forward",
        reference_path=f"{MODULE}:GatedToySAE",
        probe=probe_gated,
        verdict=verdict_gated,
        mistakes=GATED_MISTAKES,
        alternatives=[gated_arena_style, gated_with_where],
        stubs=("W_mag", "pre_activations", "activation", "loss_terms"),
    ),
    Exercise(
        id="sae.jumprelu_autograd",
        name="Heaviside",
        also=("JumpReLU",),
        reference_path=f"{MODULE}:Heaviside,JumpReLU",
        probe=probe_autograd,
        verdict=verdict_autograd,
        mistakes=AUTOGRAD_MISTAKES,
        alternatives=[autograd_arena_style, autograd_unsummed],
        stubs=("forward", "backward"),
    ),
    Exercise(
        id="sae.jumprelu",
        name="JumpReLUToySAE",
        method="forward",
        reference_path=f"{MODULE}:JumpReLUToySAE",
        probe=probe_jumprelu,
        verdict=verdict_jumprelu,
        mistakes=JUMPRELU_MISTAKES,
        alternatives=[jumprelu_sae_arena_style, jumprelu_sae_without_inner_relu],
        stubs=("activation", "loss_terms"),
    ),
]

__all__ = ["EXERCISES", "autograd_arena_style"]
