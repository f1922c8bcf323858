"""Checks for chapter 1, section 2 (phase diagrams), with their catalogues of mistakes.

Both exercises are deterministic functions, so their checks compare with the reference on seeded inputs chosen
to separate every catalogued mistake: importance ratios on both sides of 1, densities from 0.001 to 1, inputs of
every shape the contract allows (0-d, [1], broadcasting), and trained-looking weights of all three phases with both
signs and realistic biases, the edges of every phase (neither feature represented among them), and a single instance.

One module per exercise: `phase_losses` and `classify_phase`.
"""

from tests.harness import Exercise
from tests.tms.phase_diagrams.classify_phase import (
    CLASSIFY_MISTAKES,
    classify_from_column_norms,
    classify_with_squared_weights,
    probe_classify_phase,
    verdict_classify_phase,
)
from tests.tms.phase_diagrams.phase_losses import (
    LABELS,
    MODULE,
    PHASE_LOSSES_MISTAKES,
    phase_losses_factored_with_cat,
    phase_losses_from_moments,
    phase_losses_in_float64,
    probe_phase_losses,
    verdict_phase_losses,
)

__all__ = ["EXERCISES", "LABELS", "MODULE"]

EXERCISES = [
    Exercise(
        id="tms.phase_losses",
        name="phase_losses",
        signature=("importance_ratio", "density"),
        reference_path=f"{MODULE}:phase_losses",
        probe=probe_phase_losses,
        verdict=verdict_phase_losses,
        mistakes=PHASE_LOSSES_MISTAKES,
        alternatives=[phase_losses_from_moments, phase_losses_factored_with_cat, phase_losses_in_float64],
    ),
    Exercise(
        id="tms.classify_phase",
        name="classify_phase",
        signature=("W", "b_final"),
        reference_path=f"{MODULE}:classify_phase",
        probe=probe_classify_phase,
        verdict=verdict_classify_phase,
        mistakes=CLASSIFY_MISTAKES,
        alternatives=[classify_with_squared_weights, classify_from_column_norms],
    ),
]
