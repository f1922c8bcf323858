"""Checks for chapter 1, section 6 (superposition, memorisation and double descent), with their catalogues of mistakes.

`generate_dataset` is random, so its check tests the distribution of what it returns (every test at a level that
keeps a correct implementation's failure rate below FALSE_FAILURE_RATE); `warmup_cosine_lr` is deterministic and is
compared with the reference at every step of a few schedules, including the edge cases.
"""

import math

import torch as t
from torch import Tensor

from tests.harness import CheckFailed, Context, Exercise, Mistake, attempt, expect_tensor, raised, reference_of
from tests.stats import Budget
from tests.tms.common import (
    HINT_MAGNITUDE_INDEPENDENCE,
    HINT_MAGNITUDES_ACROSS_INSTANCES,
    HINT_ONE_COLUMN,
    HINT_ONE_INSTANCE,
    disjoint_neighbours,
    frequency_mistake,
    independent_pairings,
    judge_frequency,
    judge_magnitudes_independent,
    toy_model_config,
)

MODULE = "solutions.tms.double_descent"

# ---------------------------------------------------------------------------------------- generate_dataset

DATASET_CFG = dict(n_inst=4, n_features=5, d_hidden=2)
N_POINTS = 8000
SMALL = 7


def dataset_probabilities() -> Tensor:
    """Different per instance and per feature, low enough that about 3 % of points are empty (all zeros)."""
    row = t.tensor([0.05, 0.15, 0.3, 0.6, 0.85])
    return t.stack([row.roll(i) for i in range(DATASET_CFG["n_inst"])])


def probe_generate_dataset(DoubleDescentModel: type, context: Context) -> dict:
    try:
        model = DoubleDescentModel(
            toy_model_config(**DATASET_CFG),
            feature_probability=dataset_probabilities().to(context.device),
            device=context.device,
        )
    except NotImplementedError:
        raise
    except Exception as error:
        raise CheckFailed(
            f"could not build {DoubleDescentModel.__name__}(cfg, feature_probability=...): "
            f"{type(error).__name__}: {error}. Keep the class as the notebook gives it."
        ) from None
    with t.no_grad():
        points = model.generate_dataset(N_POINTS)
        small = attempt(lambda: model.generate_dataset(SMALL))
        small_again = attempt(lambda: model.generate_dataset(SMALL))
    return {"points": points, "small": small, "small_again": small_again}


def dataset_not_normalised(self, n_points):
    return self.generate_batch(n_points)


def dataset_normalised_over_points(self, n_points):
    points = self.generate_batch(n_points)
    return points / points.norm(dim=0, keepdim=True).clamp_min(1e-12)


def dataset_normalised_over_instances(self, n_points):
    points = self.generate_batch(n_points)
    return points / points.norm(dim=1, keepdim=True).clamp_min(1e-12)


def dataset_nan_for_empty_points(self, n_points):
    points = self.generate_batch(n_points)
    return points / points.norm(dim=-1, keepdim=True)


def dataset_sum_to_one(self, n_points):
    points = self.generate_batch(n_points)
    return points / points.sum(dim=-1, keepdim=True).clamp_min(1e-12)


def dataset_max_to_one(self, n_points):
    points = self.generate_batch(n_points)
    return points / points.amax(dim=-1, keepdim=True).clamp_min(1e-12)


def dataset_divided_by_squared_norm(self, n_points):
    points = self.generate_batch(n_points)
    return points / (points**2).sum(dim=-1, keepdim=True).clamp_min(1e-12)


def dataset_cached(self, n_points):
    if not hasattr(self, "_dataset"):
        points = self.generate_batch(n_points)
        self._dataset = points / points.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return self._dataset


def dataset_fixed_seed(self, n_points):
    t.manual_seed(0)
    points = self.generate_batch(n_points)
    return points / points.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def dataset_without_empty_points(self, n_points):
    points = self.generate_batch(n_points)
    empty = points.norm(dim=-1) == 0
    while empty.any():  # redraw the empty points until every point has a feature
        points[empty] = self.generate_batch(n_points)[empty]
        empty = points.norm(dim=-1) == 0
    return points / points.norm(dim=-1, keepdim=True)


def dataset_binary_features(self, n_points):
    present = (self.generate_batch(n_points) > 0).float()
    return present / present.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def dataset_first_instance_probability(self, n_points):
    p = self.feature_probability[:1]
    shape = (n_points, *self.feature_probability.shape)
    points = t.where(t.rand(shape) < p, t.rand(shape), 0.0)
    return points / points.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def dataset_first_feature_probability(self, n_points):
    p = self.feature_probability[:, :1]
    shape = (n_points, *self.feature_probability.shape)
    points = t.where(t.rand(shape) < p, t.rand(shape), 0.0)
    return points / points.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def dataset_magnitudes_shared_across_instances(self, n_points):
    n_inst, n_features = self.feature_probability.shape
    present = t.rand((n_points, n_inst, n_features)) < self.feature_probability
    points = t.where(present, t.rand((n_points, 1, n_features)), 0.0)
    return points / points.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def dataset_normalised_before_masking(self, n_points):
    shape = (n_points, *self.feature_probability.shape)
    magnitudes = t.rand(shape)
    magnitudes = magnitudes / magnitudes.norm(dim=-1, keepdim=True)
    return t.where(t.rand(shape) < self.feature_probability, magnitudes, 0.0)


HINT_UNIT_NORM = "Rescale every point to unit length: divide each row [point, inst, :] by its L2 norm (`.norm(dim=-1, keepdim=True)`)"
HINT_AXIS = "Normalise each point over its features (the last axis, dim=-1); yours normalises over another axis"
HINT_EMPTY_NAN = "A point with no feature present has norm 0: keep it all zeros instead of dividing 0 by 0 (NaN). Clamp the norm, e.g. `.clamp_min(1e-12)`"
HINT_L1 = (
    "Use the L2 norm (square root of the sum of squares), not the sum of the entries: each point must have length 1"
)
HINT_MAX = "Divide by the L2 norm of the point, not by its largest entry: each point must have length 1"
HINT_SQUARED = "Divide by the norm ‖x‖, not by the squared norm ‖x‖²"
HINT_CACHED = "Every call must draw a new dataset of `n_points` points; don't store the first one and return it again (the caller keeps the training set fixed)"
HINT_RESEEDED = "Two calls returned the same points: don't reseed the random generator inside generate_dataset (train and test sets would be identical)"
HINT_EMPTY_KEPT = "Keep the points in which no feature is present (all zeros): the points must follow generate_batch's distribution, which makes a point empty with probability Π_f (1 − p_f)"
HINT_MAGNITUDES = "Start from generate_batch's points (magnitudes uniform on [0, 1]), then rescale: present features must keep their random magnitudes"
HINT_NORMALISE_AFTER = "Normalise after deciding which features are present (zero out the absent ones first), so that the point itself has length 1"

DATASET_MISTAKES = [
    Mistake(dataset_not_normalised, HINT_UNIT_NORM),
    Mistake(dataset_normalised_over_points, HINT_AXIS),
    Mistake(dataset_normalised_over_instances, HINT_AXIS),
    Mistake(dataset_nan_for_empty_points, HINT_EMPTY_NAN),
    Mistake(dataset_sum_to_one, HINT_L1),
    Mistake(dataset_max_to_one, HINT_MAX),
    Mistake(dataset_divided_by_squared_norm, HINT_SQUARED),
    Mistake(dataset_cached, HINT_CACHED),
    Mistake(dataset_fixed_seed, HINT_RESEEDED),
    Mistake(dataset_without_empty_points, HINT_EMPTY_KEPT),
    Mistake(dataset_binary_features, HINT_MAGNITUDES),
    Mistake(dataset_first_instance_probability, HINT_ONE_INSTANCE),
    Mistake(dataset_first_feature_probability, HINT_ONE_COLUMN),
    Mistake(dataset_magnitudes_shared_across_instances, HINT_MAGNITUDES_ACROSS_INSTANCES),
    Mistake(dataset_normalised_before_masking, HINT_NORMALISE_AFTER),
]


def diagnose_norms(points: Tensor) -> None:
    """Every non-empty point must have norm 1; name the likely mistake when they do not."""
    present = points != 0
    nonempty = present.any(-1)
    norms = points.norm(dim=-1)
    if (norms[nonempty] - 1).abs().max() <= 1e-4:
        return
    ones = lambda x: bool(((x[x > 0] - 1).abs() <= 1e-4).all())  # noqa: E731  (all-zero slices stay zero)
    if ones(points.norm(dim=0)):
        raise CheckFailed(HINT_AXIS + " (the points axis: your columns have norm 1).")
    if ones(points.norm(dim=1)):
        raise CheckFailed(HINT_AXIS + " (the instances axis: your norms over `inst` are 1).")
    if ones(points.sum(-1)[nonempty]):
        raise CheckFailed(HINT_L1 + ".")
    if ones(points.amax(-1)[nonempty]):
        raise CheckFailed(HINT_MAX + ".")
    single = nonempty & (present.sum(-1) == 1)
    single_values = points.sum(-1)[single]
    if single_values.numel() and single_values.min() >= 1 - 1e-4 and single_values.max() > 1 + 1e-4:
        raise CheckFailed(
            HINT_SQUARED
            + f": a point with one feature present should be exactly 1, yours are ≥ {single_values.min():.3g}."
        )
    spread = f"your points have norms from {norms[nonempty].min():.3g} to {norms[nonempty].max():.3g}"
    if norms[nonempty].max() <= 1 + 1e-4:  # none longer than 1: rescaled before the absent features were zeroed
        raise CheckFailed(f"{HINT_NORMALISE_AFTER}: {spread}.")
    raise CheckFailed(f"{HINT_UNIT_NORM}: {spread}.")


def verdict_generate_dataset(results: dict, context: Context) -> None:
    """Shape, then norms, then distribution tests, each at level FALSE_FAILURE_RATE / (number of tests)."""
    p = dataset_probabilities()
    n_inst, n_features = p.shape
    shape = (N_POINTS, n_inst, n_features)
    points = expect_tensor(results["points"], f"generate_dataset({N_POINTS})", shape, "n_points inst feats")
    small, small_again = results["small"], results["small_again"]
    if isinstance(small, Tensor) and t.equal(small, points):
        raise CheckFailed(
            HINT_CACHED + f": generate_dataset({SMALL}) returned the {N_POINTS} points of the first call."
        )
    small = expect_tensor(small, f"generate_dataset({SMALL})", (SMALL, n_inst, n_features), "n_points inst feats")
    if isinstance(small_again, Tensor) and t.equal(small, small_again):
        raise CheckFailed(HINT_RESEEDED + ".")
    if not t.isfinite(points).all():
        raise CheckFailed(HINT_EMPTY_NAN + ".")
    if points.min() < 0:
        raise CheckFailed(f"{HINT_MAGNITUDES}: yours has negative values (min {points.min():.3g}).")
    diagnose_norms(points)

    present = points > 0
    # Magnitudes independent across points, instances and features, through a statistic that normalising cannot
    # change (it divides a whole row by one positive number): the order of the two values of the disjoint feature
    # pairs (2j, 2j + 1), ±1 where both are present, which is ±1 with probability 1/2 each, independently of the
    # presence pattern, of other pairs, instances and points.
    first, second = disjoint_neighbours(points, -1)
    order = t.where((first > 0) & (second > 0), t.sign(first - second), 0.0)
    pairings = independent_pairings(order, -1, HINT_MAGNITUDE_INDEPENDENCE)
    n_pairs = n_inst * (n_features - 1) + (n_inst - 1) * n_features
    budget = Budget(n_inst * n_features + 2 * n_inst * n_features + n_pairs + 2 * n_inst + len(pairings))
    empty = (~present).all(-1).sum(0)
    p_empty = (1 - p).prod(-1)
    if bad := budget.binomial_outliers(empty.unsqueeze(-1), N_POINTS, p_empty.unsqueeze(-1)):
        if (known := frequency_mistake(present, p)) is not None:  # the wrong probabilities make empty points wrong too
            raise CheckFailed(f"{known}.")
        i = bad[0][0]
        raise CheckFailed(
            f"{HINT_EMPTY_KEPT}. In instance {i}, {int(empty[i])} of {N_POINTS} points are empty; "
            f"expected about {float(p_empty[i]) * N_POINTS:.0f}."
        )
    judge_frequency(present, p, budget)
    half = N_POINTS // 2
    halves = (present[:half] & present[half:]).sum(0)
    if bad := budget.binomial_outliers(halves, half, p * p):
        raise CheckFailed(
            f"Points must be independent of each other; yours repeat (instance {bad[0][0]}, feature {bad[0][1]})."
        )
    for what, together, expected in [
        ("features", (present[:, :, :-1] & present[:, :, 1:]).sum(0), p[:, :-1] * p[:, 1:]),
        ("instances", (present[:, :-1] & present[:, 1:]).sum(0), p[:-1] * p[1:]),
    ]:
        if bad := budget.binomial_outliers(together, N_POINTS, expected):
            raise CheckFailed(
                f"Different {what} must be present independently of each other (pair {bad[0]} was present together "
                f"in {float(together[bad[0]]) / N_POINTS:.4f} of points; independent draws give {float(expected[bad[0]]):.4f})."
            )
    # Magnitudes, through a statistic normalisation cannot change: in a point with exactly two features present,
    # min/max of the two values is the ratio of two independent U[0, 1] draws' min and max, itself uniform on [0, 1].
    two = present.sum(-1) == 2
    for i in range(n_inst):
        pairs = points[:, i][two[:, i]]
        pairs = pairs[pairs > 0].view(-1, 2)
        ratios = (pairs.amin(-1) / pairs.amax(-1)).clamp(0, 1)
        if (ks_distance := budget.not_uniform(ratios, 0.0, 1.0, bins=1000)) is not None:
            raise CheckFailed(
                f"{HINT_MAGNITUDES}. In instance {i}, the ratio between the two values of a point with two features "
                f"should be uniform on [0, 1] (KS distance {ks_distance:.3f})."
            )
    judge_magnitudes_independent(pairings, centre=0.0, width=2.0, budget=budget)  # products of orders ∈ [−1, 1]


# ---------------------------------------------------------------------------------------- warmup_cosine_lr

# (steps, warmup_steps): a realistic schedule, tiny ones where an off-by-one shows, and both edges of warmup_steps: no
# warm-up at all, and a warm-up that lasts the whole run (steps − warmup_steps = 0: the cosine is never reached)
SCHEDULES = [(1000, 100), (10, 2), (7, 3), (50, 0), (400, 300), (6, 6)]


def probe_warmup_cosine_lr(warmup_cosine_lr, context: Context) -> dict:
    values = {}
    for steps, warmup_steps in SCHEDULES:

        def schedule(steps=steps, warmup_steps=warmup_steps):
            return t.tensor([float(warmup_cosine_lr(s, steps, warmup_steps)) for s in range(steps)], dtype=t.float64)

        values[f"{steps},{warmup_steps}"] = attempt(schedule)
    return values


def lr_warmup_off_by_one(step, steps, warmup_steps):
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / (steps - warmup_steps)))


def lr_decays_to_floor(step, steps, warmup_steps):
    if step < warmup_steps:
        return step / warmup_steps
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / (steps - warmup_steps)))


def lr_cosine_over_all_steps(step, steps, warmup_steps):
    if step < warmup_steps:
        return step / warmup_steps
    return 0.5 * (1 + math.cos(math.pi * step / steps))


def lr_no_warmup_ramp(step, steps, warmup_steps):
    if step < warmup_steps:
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / (steps - warmup_steps)))


def lr_quarter_cosine(step, steps, warmup_steps):
    if step < warmup_steps:
        return step / warmup_steps
    return math.cos(0.5 * math.pi * (step - warmup_steps) / (steps - warmup_steps))


def lr_linear_decay(step, steps, warmup_steps):
    if step < warmup_steps:
        return step / warmup_steps
    return 1 - (step - warmup_steps) / (steps - warmup_steps)


def lr_cosine_without_shift(step, steps, warmup_steps):
    if step < warmup_steps:
        return step / warmup_steps
    return math.cos(math.pi * (step - warmup_steps) / (steps - warmup_steps))


def lr_integer_division(step, steps, warmup_steps):
    if step < warmup_steps:
        return step // warmup_steps
    return 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / (steps - warmup_steps)))


def lr_zero_at_last_step(step, steps, warmup_steps):
    if step < warmup_steps:
        return step / warmup_steps
    return 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / (steps - 1 - warmup_steps)))


def lr_quarter_cosine_to_last_step(step, steps, warmup_steps):
    if step < warmup_steps:
        return step / warmup_steps
    return math.cos(0.5 * math.pi * (step - warmup_steps) / (steps - 1 - warmup_steps))


def lr_returns_learning_rate(step, steps, warmup_steps):
    if step < warmup_steps:
        return 1e-3 * step / warmup_steps
    return 1e-3 * 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / (steps - warmup_steps)))


def lr_cosine_computed_first(step, steps, warmup_steps):
    # both pieces computed up front, then the right one picked: divides by steps − warmup_steps = 0 when they are equal
    progress = (step - warmup_steps) / (steps - warmup_steps)
    if step < warmup_steps:
        return step / warmup_steps
    return 0.5 * (1 + math.cos(math.pi * progress))


def lr_fails_without_warmup(step, steps, warmup_steps):
    warmup = step / warmup_steps
    if step < warmup_steps:
        return warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / (steps - warmup_steps)))


HINT_OFF_BY_ONE = "The warm-up starts at 0: at step 0 the multiplier is 0/warmup_steps = 0, and it reaches 1 exactly at step = warmup_steps (use step / warmup_steps, not (step + 1) / warmup_steps)"
HINT_FLOOR = "Decay all the way to 0, not to a floor: ½ (1 + cos(π · progress)) with progress going from 0 to 1"
HINT_ALL_STEPS = "The cosine starts after the warm-up: progress = (step − warmup_steps) / (steps − warmup_steps), so the multiplier is 1 right at the end of the warm-up"
HINT_RAMP = "During warm-up the multiplier rises linearly from 0 to 1 (step / warmup_steps); yours stays at 1"
HINT_QUARTER = "Use half a cosine period, ½ (1 + cos(π · progress)), which is flat at both ends; cos(π/2 · progress) is a quarter period"
HINT_LINEAR = "After the warm-up the decay follows a cosine, ½ (1 + cos(π · progress)), not a straight line"
HINT_SHIFT = "cos(π · progress) goes down to −1: shift and scale it to ½ (1 + cos(π · progress)), so the multiplier stays in [0, 1]"
HINT_INTEGER = "`step // warmup_steps` is integer division (always 0 during warm-up): use `/`"
HINT_LAST_STEP = "Divide by (steps − warmup_steps): the multiplier reaches 0 at step = steps, one past the last step, so the last update still moves the weights"
HINT_QUARTER_TO_LAST_STEP = "Use half a cosine period, ½ (1 + cos(π · progress)), with progress = (step − warmup_steps) / (steps − warmup_steps); yours is a quarter period, cos(π/2 · progress), that reaches 0 at the last step because it divides by (steps − 1 − warmup_steps)"
HINT_MULTIPLIER = "Return a multiplier in [0, 1] (1 at the end of the warm-up), not the learning rate itself: the training loop multiplies it by lr"
HINT_ALL_WARMUP = "With warmup_steps = steps the whole run is warm-up and the cosine is never reached: compute its progress (step − warmup_steps) / (steps − warmup_steps) only after the warm-up, so you never divide by 0"
HINT_NO_WARMUP = "With warmup_steps = 0 there is no warm-up: compute step / warmup_steps only when step < warmup_steps, so you never divide by 0"

LR_MISTAKES = [
    Mistake(lr_warmup_off_by_one, HINT_OFF_BY_ONE),
    Mistake(lr_decays_to_floor, HINT_FLOOR),
    Mistake(lr_cosine_over_all_steps, HINT_ALL_STEPS),
    Mistake(lr_no_warmup_ramp, HINT_RAMP),
    Mistake(lr_quarter_cosine, HINT_QUARTER),
    Mistake(lr_linear_decay, HINT_LINEAR),
    Mistake(lr_cosine_without_shift, HINT_SHIFT),
    Mistake(lr_integer_division, HINT_INTEGER),
    Mistake(lr_zero_at_last_step, HINT_LAST_STEP),
    Mistake(lr_quarter_cosine_to_last_step, HINT_QUARTER_TO_LAST_STEP),
    Mistake(lr_returns_learning_rate, HINT_MULTIPLIER),
    Mistake(lr_fails_without_warmup, HINT_NO_WARMUP),
    Mistake(lr_cosine_computed_first, HINT_ALL_WARMUP),
]


def schedule_values(impl, steps: int, warmup_steps: int) -> Tensor:
    return t.tensor([float(impl(s, steps, warmup_steps)) for s in range(steps)], dtype=t.float64)


def verdict_warmup_cosine_lr(results: dict, context: Context) -> None:
    warmup_cosine_lr = reference_of("tms.double_descent.lr_schedule")
    got, expected, mistakes = {}, {}, {m.name: {} for m in LR_MISTAKES}
    for steps, warmup_steps in SCHEDULES:
        key = f"{steps},{warmup_steps}"
        value = results.get(key)
        if (message := raised(value)) is not None:
            hint = ""
            if "ZeroDivision" in message and warmup_steps in (0, steps):
                hint = (HINT_NO_WARMUP if warmup_steps == 0 else HINT_ALL_WARMUP) + ". "
            raise CheckFailed(f"{hint}warmup_cosine_lr(step, {steps}, {warmup_steps}) raised {message}")
        if not isinstance(value, Tensor) or value.shape != (steps,):
            raise CheckFailed(f"warmup_cosine_lr should return one number per call, got {value!r:.80}.")
        got[key] = value
        expected[key] = schedule_values(warmup_cosine_lr, steps, warmup_steps)
        for mistake in LR_MISTAKES:
            try:
                mistakes[mistake.name][key] = schedule_values(mistake.impl, steps, warmup_steps)
            except ZeroDivisionError:
                mistakes[mistake.name][key] = None

    def matches(values: dict, keys) -> bool:
        return all(values.get(k) is not None and t.allclose(got[k], values[k], rtol=1e-5, atol=1e-6) for k in keys)

    if matches(expected, got):
        return
    wrong = [k for k in got if not matches(expected, [k])]
    for mistake in LR_MISTAKES:  # a mistake explains the failure if it matches every schedule the learner got wrong
        if matches(mistakes[mistake.name], wrong):
            raise CheckFailed(mistake.hint + ".")
    # Report the largest difference over every schedule that is wrong (NaN counts as the largest).
    differences = {key: (got[key] - expected[key]).abs().nan_to_num(nan=math.inf) for key in wrong}
    key = max(wrong, key=lambda k: float(differences[k].max()))
    steps, warmup_steps = map(int, key.split(","))
    step = int(differences[key].argmax())
    raise CheckFailed(
        f"warmup_cosine_lr({step}, {steps}, {warmup_steps}) returned {float(got[key][step]):.6g}; expected "
        f"{float(expected[key][step]):.6g} (the largest difference, {float(differences[key][step]):.3g}, over the "
        f"{len(wrong)} of {len(got)} schedules tried that are wrong). It should be 0 at step 0, rise linearly to 1 at "
        f"step = warmup_steps, then follow ½ (1 + cos(π (step − warmup_steps) / (steps − warmup_steps)))."
    )


# -------------------------------------------- correct implementations written differently: all must pass


def dataset_with_functional_normalize(self, n_points):
    return t.nn.functional.normalize(self.generate_batch(n_points), dim=-1)


def dataset_own_draws_and_where(self, n_points):
    p = self.feature_probability
    shape = (n_points, *p.shape)
    points = t.where(t.rand(shape, device=p.device) < p, t.rand(shape, device=p.device), 0.0)
    norms = points.norm(dim=-1, keepdim=True)
    return t.where(norms > 0, points / t.where(norms > 0, norms, 1.0), 0.0)


def dataset_in_float64(self, n_points):
    points = self.generate_batch(n_points).double()
    return (points * points.pow(2).sum(-1, keepdim=True).rsqrt().nan_to_num(posinf=0.0)).float()


def lr_hugging_face_style(step, steps, warmup_steps):
    if step < warmup_steps:
        return float(step) / float(max(1, warmup_steps))
    progress = float(step - warmup_steps) / float(max(1, steps - warmup_steps))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def lr_minimum_of_both_pieces(step, steps, warmup_steps):
    # the ramp and the cosine are each 1 where the other one applies, so the schedule is the smaller of the two
    ramp = step / warmup_steps if warmup_steps else 1.0
    decay_steps = steps - warmup_steps
    progress = max(step - warmup_steps, 0) / decay_steps if decay_steps else 0.0
    return min(ramp, 0.5 * (1 + math.cos(math.pi * progress)))


def lr_squared_cosine(step, steps, warmup_steps):
    # cos²(π/2 · progress) = ½ (1 + cos(π · progress)), returned as a 0-d tensor
    if step < warmup_steps:
        return t.tensor(step / warmup_steps)
    return t.cos(t.tensor(0.5 * math.pi * (step - warmup_steps) / (steps - warmup_steps))) ** 2


EXERCISES = [
    Exercise(
        id="tms.double_descent.generate_dataset",
        name="DoubleDescentModel",
        method="generate_dataset",
        reference_path=f"{MODULE}:DoubleDescentModel",
        probe=probe_generate_dataset,
        verdict=verdict_generate_dataset,
        mistakes=DATASET_MISTAKES,
        alternatives=[dataset_with_functional_normalize, dataset_own_draws_and_where, dataset_in_float64],
        requires=("tms.generate_batch",),  # its points are generate_batch's, rescaled
    ),
    Exercise(
        id="tms.double_descent.lr_schedule",
        name="warmup_cosine_lr",
        signature=("step", "steps", "warmup_steps"),
        reference_path=f"{MODULE}:warmup_cosine_lr",
        probe=probe_warmup_cosine_lr,
        verdict=verdict_warmup_cosine_lr,
        mistakes=LR_MISTAKES,
        alternatives=[lr_hugging_face_style, lr_squared_cosine, lr_minimum_of_both_pieces],
    ),
]
