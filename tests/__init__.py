"""Learner-facing checks: `from tests import check`, then `check("<exercise id>", obj)` after each exercise.

`EXERCISES` maps every exercise id to its entry (`.id`, `.name`, `.reference`, `.check(obj)`, ...). Each section
keeps its checks in `tests/<chapter>/<section>.py` with a module-level `EXERCISES` list; `SECTIONS` below puts
them in course order.
"""

import importlib
from typing import Any

from tests.harness import CheckFailed, Exercise, NotImplementedYet

# Course order. A section appears here once its module exists.
SECTIONS = [
    "tms.superposition",
    "tms.phase_diagrams",
    "tms.correlated",
    "tms.privileged_basis",
    "tms.feature_geometry",
    "tms.double_descent",
    "tms.slt",
    "sae.toy_sae",
    "sae.measuring_recovery",
    "sae.resampling",
    "sae.variants",
    "sae.absorption",
]

EXERCISES: dict[str, Exercise] = {
    exercise.id: exercise for section in SECTIONS for exercise in importlib.import_module(f"tests.{section}").EXERCISES
}


def check(exercise_id: str, *objs: Any, **options: Any) -> None:
    """Check the learner's object for one exercise (or objects, for an exercise that defines several, in the order of
    its `names`): prints a line if right, raises with a hint if not."""
    if exercise_id not in EXERCISES:
        close = [known for known in EXERCISES if exercise_id.split(".")[-1] in known]
        raise KeyError(f"unknown exercise id {exercise_id!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
    EXERCISES[exercise_id].check(*objs, **options)


__all__ = ["EXERCISES", "CheckFailed", "Exercise", "NotImplementedYet", "check"]
