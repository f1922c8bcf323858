"""Learner-facing checks: `from tests import check`, then `check("<exercise id>", obj)` after each exercise.

`EXERCISES` maps every exercise id to its entry (`.id`, `.name`, `.reference`, `.check(obj)`, ...). Sections add
their entries in `tests/<chapter>/<section>.py`; this file only collects them.
"""

from typing import Any

from tests.harness import CheckFailed, Exercise, NotImplementedYet
from tests.tms import superposition as _tms_superposition

EXERCISES: dict[str, Exercise] = {ex.id: ex for ex in [*_tms_superposition.EXERCISES]}


def check(exercise_id: str, obj: Any, **options: Any) -> None:
    """Check the learner's `obj` for one exercise: prints a line if right, raises with a hint if not."""
    if exercise_id not in EXERCISES:
        close = [known for known in EXERCISES if exercise_id.split(".")[-1] in known]
        raise KeyError(f"unknown exercise id {exercise_id!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
    EXERCISES[exercise_id].check(obj, **options)


__all__ = ["EXERCISES", "CheckFailed", "Exercise", "NotImplementedYet", "check"]
