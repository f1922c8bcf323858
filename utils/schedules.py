"""Learning-rate schedules: `lr_scale(step, steps)` multipliers of the learning rate, for `optimize` in every chapter.

Section 1.1 introduces them with `ToyModel.optimize`; the SAEs of chapter 2 train with the same ones. (Section 1.6's
warm-up-then-cosine schedule is an exercise of its own, in `solutions/tms/double_descent.py`.)
"""


def constant_lr(step: int, steps: int) -> float:
    """Learning-rate multiplier that never changes."""
    return 1.0


def linear_lr(step: int, steps: int) -> float:
    """Learning-rate multiplier decaying linearly from 1 to 0."""
    return 1 - step / steps
