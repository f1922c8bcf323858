"""Checks for chapter 2, section 1 (a toy SAE), one module per exercise, each with its probe, its catalogue of mistakes
and its alternatives.

Every check builds the learner's `ToySAE` on a probe toy model (`ProbeToyModel`) whose axes all differ in length, so
that a transposed tensor shows up in its shape, and sets parameters with non-zero biases and, where it matters,
decoder rows that are not of unit norm. Each mistake is a small wrong implementation written the way a learner
would write it, next to the hint the checker gives when it recognises it.
"""

from tests.sae.toy_sae import forward, generate_batch, init, w_dec, w_dec_normalized

EXERCISES = [init.EXERCISE, w_dec.EXERCISE, w_dec_normalized.EXERCISE, generate_batch.EXERCISE, forward.EXERCISE]
