"""The checkers are tested both ways: right code always passes, wrong code always fails with the right hint."""

import inspect
import random
import re

import numpy as np
import pytest
import torch as t

from tests import EXERCISES, check
from tests.harness import CheckFailed, Context, NotImplementedYet, decode_results, encode_results, judge, run_probe
from tests.suite.conftest import ROOT, notebook_namespace

EXERCISE_NOTEBOOKS = sorted(ROOT.glob("chapter_*/*_exercises.ipynb"))


def as_learner_object(exercise, impl):
    """A learner's version of the exercise: the reference class with one method (or property) replaced, or a bare
    function."""
    if exercise.also:  # an exercise of several classes: the mistake builds them all
        return impl()
    if exercise.method is None:
        return impl
    if isinstance(inspect.getattr_static(exercise.reference, exercise.method), property):
        impl = property(impl)
    return type(exercise.name, (exercise.reference,), {exercise.method: impl})


@pytest.fixture(scope="module")
def stubs() -> dict:
    """Exercise id -> the learner's object for it, exactly as the exercises notebook that checks it defines it
    before anything is written (each notebook in its own namespace: later sections rebind names like ToyModel)."""
    found = {}
    for path in EXERCISE_NOTEBOOKS:
        namespace = notebook_namespace(path)
        for exercise_id in re.findall(r'check\("([^"]+)"', path.read_text().replace('\\"', '"')):
            objs = tuple(namespace[name] for name in EXERCISES[exercise_id].names)
            found[exercise_id] = objs if EXERCISES[exercise_id].also else objs[0]
    return found


def test_every_exercise_has_an_entry_with_the_contract_fields():
    assert EXERCISES, "no exercises registered"
    for exercise_id, exercise in EXERCISES.items():
        assert exercise.id == exercise_id
        assert exercise.name and callable(exercise.check) and exercise.reference is not None


def test_every_exercise_is_presented_once_by_its_lesson():
    """Title, difficulty, importance and time live with the lesson, in the exercise's marker in its section's source."""
    from utils.notebooks import EXERCISE_MARKER

    markers = [m for path in ROOT.glob("chapter_*/src/*.md") for m in EXERCISE_MARKER.finditer(path.read_text())]
    assert sorted(m["id"] for m in markers) == sorted(EXERCISES)
    assert all(m["title"].strip() and m["minutes"] for m in markers)


@pytest.mark.parametrize("exercise_id", EXERCISES)
def test_reference_passes(exercise_id, capsys):
    EXERCISES[exercise_id].check(EXERCISES[exercise_id].reference)
    assert capsys.readouterr().out.startswith(f"✓ {exercise_id}")


@pytest.mark.parametrize("exercise_id", EXERCISES)
def test_stub_from_the_exercises_notebook_is_reported_as_not_implemented(exercise_id, stubs):
    with pytest.raises(NotImplementedYet, match="not implemented yet"):
        check(exercise_id, stubs[exercise_id])


@pytest.mark.parametrize(
    "exercise_id, mistake",
    [(ex.id, mistake) for ex in EXERCISES.values() for mistake in ex.mistakes],
    ids=lambda value: getattr(value, "name", value),
)
def test_each_catalogued_mistake_fails_with_its_own_hint(exercise_id, mistake):
    exercise = EXERCISES[exercise_id]
    with pytest.raises(CheckFailed) as failure:
        exercise.check(as_learner_object(exercise, mistake.impl))
    assert mistake.hint.rstrip(".") in str(failure.value), str(failure.value)


def test_every_exercise_has_at_least_six_mistakes_and_an_alternative_solution():
    for exercise in EXERCISES.values():
        assert len(exercise.mistakes) >= 6, f"{exercise.id} has only {len(exercise.mistakes)} catalogued mistakes"
        assert exercise.alternatives, f"{exercise.id} has no differently written correct implementation to accept"


@pytest.mark.parametrize(
    "exercise_id, impl",
    [(ex.id, impl) for ex in EXERCISES.values() for impl in ex.alternatives],
    ids=lambda value: getattr(value, "__name__", value),
)
def test_correct_but_differently_written_implementations_pass(exercise_id, impl):
    EXERCISES[exercise_id].check(as_learner_object(EXERCISES[exercise_id], impl))


@pytest.mark.slow
@pytest.mark.parametrize("exercise_id", EXERCISES)
def test_no_false_failures_over_200_seeds(exercise_id):
    """The reference passes under 200 different global seeds and check seeds (new inputs and draws each time),
    and so does the first alternative implementation under the first 25."""
    exercise = EXERCISES[exercise_id]
    alternative = as_learner_object(exercise, exercise.alternatives[0])
    for seed in range(200):
        t.manual_seed(seed)
        for obj in [exercise.reference, alternative] if seed < 25 else [exercise.reference]:
            context = Context(seed=seed)
            judge(exercise, run_probe(exercise, obj, context), context)


# Check seeds under which every catalogued mistake must fail with its own hint. Running the whole catalogue (about
# 200 mistakes) once costs about 2.2 CPU-seconds on one thread, three quarters of it in the six generator checks, so
# 36 seeds keep this test near 80 CPU-seconds (measured on a busy 2-core machine).
MISTAKE_SEEDS = range(36)


@pytest.mark.slow
@pytest.mark.parametrize("exercise_id", EXERCISES)
def test_each_catalogued_mistake_fails_with_its_own_hint_under_every_seed(exercise_id):
    """What a check accepts does not depend on its seed: every catalogued mistake fails, with its own hint, under
    each of MISTAKE_SEEDS (new inputs and new random draws each time), not only under the default seed."""
    exercise = EXERCISES[exercise_id]
    problems = []
    for mistake in exercise.mistakes:
        learner = as_learner_object(exercise, mistake.impl)
        for seed in MISTAKE_SEEDS:
            context = Context(seed=seed)
            try:
                judge(exercise, run_probe(exercise, learner, context), context)
                problems.append(f"{mistake.name} passes under seed {seed}")
            except CheckFailed as failure:
                if mistake.hint.rstrip(".") not in str(failure):
                    problems.append(f"{mistake.name} fails without its hint under seed {seed}: {failure}")
    assert not problems, "\n".join(problems)


def test_check_leaves_the_learners_random_state_alone():
    t.manual_seed(7)
    random.seed(7)
    np.random.seed(7)
    expected = (t.rand(3), random.random(), np.random.rand())
    t.manual_seed(7)
    random.seed(7)
    np.random.seed(7)
    for exercise in EXERCISES.values():
        exercise.check(exercise.reference)
    assert t.equal(t.rand(3), expected[0]) and random.random() == expected[1] and np.random.rand() == expected[2]


@pytest.mark.parametrize("exercise_id", EXERCISES)
def test_results_survive_the_graders_serialisation(exercise_id):
    exercise, context = EXERCISES[exercise_id], Context(seed=99)
    results = decode_results(encode_results(run_probe(exercise, exercise.reference, context)))
    judge(exercise, results, context)


# ---------------------------------------------------------------------------- objects of the wrong kind


def test_an_instance_instead_of_the_class_is_refused_plainly():
    from solutions.tms import ToyModel, ToyModelConfig

    with pytest.raises(CheckFailed, match="pass the class itself"):
        check("tms.forward", ToyModel(ToyModelConfig(2)))


@pytest.mark.parametrize("exercise_id", EXERCISES)
def test_none_is_refused_plainly(exercise_id):
    with pytest.raises(CheckFailed, match="got None"):
        check(exercise_id, None)


def test_a_function_with_the_wrong_signature_is_refused_plainly():
    with pytest.raises(CheckFailed, match=r"should take \(W\)"):
        check("tms.superposition_stats", lambda W, importance: (W, W))


def test_a_function_where_a_class_is_expected_is_refused_plainly():
    with pytest.raises(CheckFailed, match="expected the class `ToyModel`"):
        check("tms.forward", lambda features: features)


def test_a_class_where_a_function_is_expected_is_refused_plainly():
    from solutions.tms import ToyModel

    with pytest.raises(CheckFailed, match="expected the function `superposition_stats`"):
        check("tms.superposition_stats", ToyModel)


def test_learner_code_that_raises_is_reported_with_its_error():
    def superposition_stats(W):
        return W.norm(dim=1), W.sum() / 0 + [1]

    with pytest.raises(CheckFailed, match="raised TypeError"):
        check("tms.superposition_stats", superposition_stats)


def test_a_wrong_return_type_is_reported():
    with pytest.raises(CheckFailed, match="should return a tuple"):
        check("tms.superposition_stats", lambda W: W.norm(dim=1))


def test_an_unknown_exercise_id_suggests_the_right_one():
    with pytest.raises(KeyError, match="tms.forward"):
        check("forward", None)


@pytest.mark.skipif(not t.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("exercise_id", EXERCISES)
def test_reference_passes_on_cuda(exercise_id):
    EXERCISES[exercise_id].check(EXERCISES[exercise_id].reference, device="cuda")
