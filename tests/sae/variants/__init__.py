"""Checks for chapter 2, section 5 (SAE variants), with their catalogues of mistakes.

The three SAE checks (`sae.topk`, `sae.gated`, `sae.jumprelu`) call the learner's class the way the training loop
does, `sae(h)`, so that a variant written as a few overridden steps and one written as a single `forward` (ARENA's
way) are judged alike. Each records every output and the gradient of a weighted loss with respect to every
parameter, and the verdict compares them with the reference's on the same parameters: a mistake that only shows in a
gradient (a residual or decoder that should be detached and is not, a step function without its straight-through
estimator) is caught there. Decoder rows are of unit norm in every probe, so that decoding with `W_dec` or with
`W_dec_normalized` agree, as they do during training.

`sae.jumprelu_autograd` calls the learner's `Heaviside` and `JumpReLU` on inputs placed away from the edges of the
rectangle kernel and from the jump itself, with a non-uniform upstream gradient and with batch axes to sum over.
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
        title="TopK, and AuxK for the dead latents",
        difficulty=3,
        importance=4,
        minutes="25-40",
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
        title="a gated SAE: which latents fire, and how much",
        difficulty=3,
        importance=4,
        minutes="25-40",
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
        title="straight-through estimators for a threshold",
        difficulty=4,
        importance=4,
        minutes="20-35",
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
        title="a JumpReLU SAE with an L0 penalty",
        difficulty=3,
        importance=4,
        minutes="15-25",
        reference_path=f"{MODULE}:JumpReLUToySAE",
        probe=probe_jumprelu,
        verdict=verdict_jumprelu,
        mistakes=JUMPRELU_MISTAKES,
        alternatives=[jumprelu_sae_arena_style, jumprelu_sae_without_inner_relu],
        stubs=("activation", "loss_terms"),
    ),
]

__all__ = ["EXERCISES", "autograd_arena_style"]
