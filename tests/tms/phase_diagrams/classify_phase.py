"""`tms.classify_phase`: its probe, verdict, catalogue of mistakes with their hints, and alternatives."""

import torch as t
from torch import Tensor

from tests.harness import CheckFailed, Context, Mistake, attempt, raised
from tests.tms.phase_diagrams.phase_losses import (
    LABELS,
)

# ------------------------------------------------------------------------------------- classify_phase

N_PER_KIND = 3  # instances per (phase, sign pattern)

# Instances at and beyond the edges of every phase, always present (with random signs and biases): an exactly zero
# weight, the largest dropped weight (0.15), the weakest represented one (0.7), a represented weight far above 1,
# both features represented with the same sign, and neither feature represented. Any threshold on |w_i| strictly
# between 0.15 and 0.7 gives the reference's labels.
EDGE_CASES = [
    ((1.0, 0.0), 0),
    ((0.9, 0.15), 0),
    ((2.5, 0.05), 0),
    ((0.0, 1.0), 1),
    ((0.15, 1.1), 1),
    ((0.05, 2.5), 1),
    ((0.7, -0.7), 2),
    ((2.0, -0.75), 2),
    ((0.9, 0.8), 2),
    ((0.0, 0.0), 0),
    ((0.1, 0.12), 0),
    ((0.15, 0.15), 0),
]


def classify_case(context: Context) -> dict[str, Tensor]:
    """Trained-looking weights and biases of all three phases, shuffled, with every sign pattern, and the edge cases.

    Represented features have |w| between 0.7 and 1.3 (in superposition the two norms differ, as they do when
    r ≠ 1); dropped features have |w| below 0.15 with either sign. A dropped feature's bias is its mean p/2 for
    p between 0.001 and 1 (tiny when p is); superposed features have small biases of either sign.
    """
    g = context.generator(12)
    uniform = lambda shape, low, high: low + (high - low) * t.rand(shape, generator=g)  # noqa: E731
    dropped_bias = lambda shape: 10 ** uniform(shape, -3, 0) / 2 + uniform(shape, -0.003, 0.003)  # noqa: E731
    flip = lambda shape: t.where(t.rand(shape, generator=g) < 0.5, -1.0, 1.0)  # noqa: E731
    m = 4 * N_PER_KIND  # instances per phase: N_PER_KIND per sign pattern
    signs = t.tensor([(1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0)]).repeat_interleave(N_PER_KIND, 0)
    small = uniform((m, 2), -0.02, 0.02)
    # not represented: feature 1 owns the dimension, feature 2 is dropped (bias ≈ its mean p/2)
    not_represented = t.stack([uniform(m, 0.85, 1.15), uniform(m, 0.0, 0.15)], -1) * signs
    not_represented_bias = t.stack([small[:, 0], dropped_bias(m)], -1)
    # dedicated: feature 2 owns the dimension, feature 1 is dropped
    dedicated = t.stack([uniform(m, 0.0, 0.15), uniform(m, 0.85, 1.15)], -1) * signs
    dedicated_bias = t.stack([dropped_bias(m), small[:, 1]], -1)
    # superposition: opposite signs (antipodal), unequal norms, small biases of either sign
    superposition = uniform((m, 2), 0.7, 1.3) * t.tensor([1.0, -1.0]) * flip((m, 1))
    superposition_bias = uniform((m, 2), -0.05, 0.15)
    # the edge cases, with a random sign per instance and another per dropped weight (which may have either sign)
    edge = t.tensor([w for w, _ in EDGE_CASES]) * flip((len(EDGE_CASES), 1))
    dropped = edge.abs() < 0.5
    edge = t.where(dropped, edge * flip(edge.shape), edge)
    edge_bias = t.where(dropped, dropped_bias(edge.shape), uniform(edge.shape, -0.02, 0.02))

    W = t.cat([not_represented, dedicated, superposition, edge])
    b = t.cat([not_represented_bias, dedicated_bias, superposition_bias, edge_bias])
    phase = t.tensor([0] * m + [1] * m + [2] * m + [phase for _, phase in EDGE_CASES])
    order = t.randperm(len(phase), generator=g)
    # Instance 0 is a dedicated one, so that giving every instance instance 0's label is told apart from
    # calling everything superposition.
    first_dedicated = int((phase[order] == 1).nonzero()[0])
    order[[0, first_dedicated]] = order[[first_dedicated, 0]]
    return {"W": W[order].unsqueeze(1), "b_final": b[order], "phase": phase[order]}


def single_instance_of(case: dict[str, Tensor]) -> dict[str, Tensor]:
    """A single instance ([1, 1, 2] weights): the case's first superposition instance."""
    k = int((case["phase"] == 2).nonzero()[0])
    return {"W": case["W"][k : k + 1].clone(), "b_final": case["b_final"][k : k + 1].clone()}


def labels_of(returned) -> list[str] | dict:
    """What a learner's classify_phase returned, as plain data: a list of strings (anything else as its repr)."""
    if isinstance(returned, Tensor):
        return {"tensor": returned}
    if isinstance(returned, list | tuple):
        return [label if isinstance(label, str) else repr(label) for label in returned]
    return {"type": type(returned).__name__}


def probe_classify_phase(classify_phase, context: Context) -> dict:
    case = classify_case(context)
    single = single_instance_of(case)  # a copy, taken before the learner's code sees the case
    W, b_final = case["W"].to(context.device), case["b_final"].to(context.device)
    labels = labels_of(classify_phase(W, b_final))
    single_labels = attempt(
        lambda: labels_of(classify_phase(single["W"].to(context.device), single["b_final"].to(context.device)))
    )
    return {"labels": labels, "W_after": W, "b_after": b_final, "single": single_labels}


def classify_with(rule):
    """A learner's classify_phase from a rule (w1, w2, b1, b2) -> label, applied instance by instance."""

    def classify(W, b_final):
        return [rule(*weights, *biases) for weights, biases in zip(W[:, 0].tolist(), b_final.tolist(), strict=True)]

    return classify


def classify_labels_swapped(W, b_final):
    represented = W[:, 0].abs() > 0.5
    return [
        "superposition" if first and second else "not represented" if not first else "dedicated"
        for first, second in represented.tolist()
    ]


def classify_signed_threshold(W, b_final):
    represented = W[:, 0] > 0.5
    return [
        "superposition" if first and second else "dedicated" if second else "not represented"
        for first, second in represented.tolist()
    ]


def classify_one_sign_arrangement(W, b_final):
    def rule(w1, w2, b1, b2):
        if w1 > 0.5 and w2 < -0.5:
            return "superposition"
        return "dedicated" if abs(w2) > 0.5 else "not represented"

    return classify_with(rule)(W, b_final)


def classify_by_bias_sign(W, b_final):
    def rule(w1, w2, b1, b2):
        if b2 > 0 and b1 <= 0:
            return "not represented"
        if b1 > 0 and b2 <= 0:
            return "dedicated"
        return "superposition"

    return classify_with(rule)(W, b_final)


def classify_by_product_sign(W, b_final):
    def rule(w1, w2, b1, b2):
        if w1 * w2 < 0:
            return "superposition"
        return "dedicated" if abs(w2) > abs(w1) else "not represented"

    return classify_with(rule)(W, b_final)


def classify_exact_zero(W, b_final):
    def rule(w1, w2, b1, b2):
        if w2 == 0:
            return "not represented"
        return "dedicated" if w1 == 0 else "superposition"

    return classify_with(rule)(W, b_final)


def classify_equal_norms(W, b_final):
    def rule(w1, w2, b1, b2):
        if abs(abs(w1) - abs(w2)) < 0.1:
            return "superposition"
        return "dedicated" if abs(w2) > abs(w1) else "not represented"

    return classify_with(rule)(W, b_final)


def classify_first_instance(W, b_final):
    w1, w2 = W[0, 0].abs().tolist()
    label = "superposition" if w1 > 0.5 and w2 > 0.5 else "dedicated" if w2 > 0.5 else "not represented"
    return [label] * W.shape[0]


def classify_feature_one_first(W, b_final):
    def rule(w1, w2, b1, b2):
        if abs(w1) > 0.5 and abs(w2) > 0.5:
            return "superposition"
        return "not represented" if abs(w1) > 0.5 else "dedicated"

    return classify_with(rule)(W, b_final)


def classify_requires_opposite_signs(W, b_final):
    def rule(w1, w2, b1, b2):
        if abs(w1) > 0.5 and abs(w2) > 0.5 and w1 * w2 < 0:
            return "superposition"
        return "dedicated" if abs(w2) > 0.5 else "not represented"

    return classify_with(rule)(W, b_final)


def classify_threshold_too_low(W, b_final):
    def rule(w1, w2, b1, b2):
        if abs(w2) <= 0.1:
            return "not represented"
        return "dedicated" if abs(w1) <= 0.1 else "superposition"

    return classify_with(rule)(W, b_final)


def classify_near_one(W, b_final):
    represented = (W[:, 0].abs() - 1).abs() < 0.35  # "represented features have |w| ≈ 1"
    return [
        "superposition" if first and second else "dedicated" if second else "not represented"
        for first, second in represented.tolist()
    ]


def classify_squeezes_W(W, b_final):
    represented = W.squeeze().abs() > 0.5
    return [
        "superposition" if first and second else "dedicated" if second else "not represented"
        for first, second in represented.tolist()
    ]


def classify_returns_indices(W, b_final):
    represented = W[:, 0].abs() > 0.5
    return t.where(~represented[:, 1], 0, t.where(~represented[:, 0], 1, 2))


HINT_SQUEEZE_W = (
    "W has shape [inst 1 2]: drop only its d_hidden axis (`W[:, 0, :]` or `W.squeeze(1)`). `W.squeeze()` also drops "
    "the inst axis when there is a single instance"
)
HINT_INDICES = (
    'Return the labels themselves, a list of strings such as "superposition", one per instance, not phase indices'
)

CLASSIFY_MISTAKES = [
    Mistake(
        classify_labels_swapped,
        "'not represented' and 'dedicated' are swapped. They describe feature 2, the one with importance r: "
        "'not represented' means w₂ ≈ 0 (feature 1 keeps the dimension), 'dedicated' means feature 2 has the "
        "dimension to itself and w₁ ≈ 0.",
    ),
    Mistake(
        classify_signed_threshold,
        "A feature stored with a negative weight is represented too: compare |w_i| (or w_i²) with a threshold, "
        "not w_i itself. The direction's sign is arbitrary.",
    ),
    Mistake(
        classify_one_sign_arrangement,
        "Antipodal means opposite signs either way round: w = (−1, +1) is superposition as much as (+1, −1).",
    ),
    Mistake(
        classify_by_bias_sign,
        "The biases don't tell the phase: a dropped feature's bias is its mean p/2, which is tiny when p is "
        "small, and superposed features can have small positive biases too. Read the phase from the weights.",
    ),
    Mistake(
        classify_by_product_sign,
        "Opposite signs alone don't make superposition: a dropped feature's weight is only near 0 and may have "
        "either sign. Superposition needs *both* features represented (|w_i| above a threshold).",
    ),
    Mistake(
        classify_exact_zero,
        "Trained weights are never exactly 0: decide with a threshold, e.g. feature i is represented when |w_i| > 0.5.",
    ),
    Mistake(
        classify_equal_norms,
        "Superposed features need not have equal norms (they differ when r ≠ 1): call it superposition when "
        "both |w_i| are above a threshold, not when they are equal.",
    ),
    Mistake(
        classify_first_instance,
        "Classify every instance from its own weights W[i]; you gave all instances the label of instance 0.",
    ),
    Mistake(classify_returns_indices, HINT_INDICES),
    Mistake(
        classify_feature_one_first,
        "When neither feature is represented the label is 'not represented': the labels describe feature 2, which "
        "then has no direction. 'dedicated' means feature 2 *has* the dimension (|w₂| above the threshold) and "
        "feature 1 has none. Decide on feature 2 first.",
    ),
    Mistake(
        classify_requires_opposite_signs,
        "Both features represented is superposition whatever their signs: the label depends only on which features "
        "have a direction (|w_i| above the threshold). Trained models put them on opposite sides of the line, but "
        "two features with the same sign share it too.",
    ),
    Mistake(
        classify_threshold_too_low,
        "Your threshold is too low: a dropped feature keeps a small weight of either sign (up to 0.15 here), which "
        "does not make it represented. Call feature i represented when |w_i| > 0.5.",
    ),
    Mistake(
        classify_near_one,
        "Represented doesn't mean |w_i| ≈ 1: a represented feature's weight can be as low as 0.7 or far above 1. "
        "Compare |w_i| with a threshold: feature i is represented when |w_i| > 0.5.",
    ),
    Mistake(classify_squeezes_W, HINT_SQUEEZE_W),
]


def describe_instance(case: dict, i: int) -> str:
    w1, w2 = case["W"][i, 0].tolist()
    b1, b2 = case["b_final"][i].tolist()
    return f"instance {i} (w = ({w1:+.3f}, {w2:+.3f}), b_final = ({b1:+.4f}, {b2:+.4f}))"


def verdict_classify_phase(results: dict, context: Context) -> None:
    from solutions.tms.phase_diagrams import classify_phase

    case = classify_case(context)
    W, b_final = case["W"], case["b_final"]
    if not (t.equal(results["W_after"], W) and t.equal(results["b_after"], b_final)):
        raise CheckFailed("classify_phase changed W or b_final in place; compute new tensors instead.")
    labels = expect_labels(results["labels"], W.shape[0], "classify_phase(W, b_final)")
    expected = classify_phase(W, b_final)
    assert expected == [LABELS[i] for i in case["phase"].tolist()], "the check's own cases are mislabelled"
    if labels != expected:
        for mistake in CLASSIFY_MISTAKES:
            if mistake.impl is classify_returns_indices:
                continue
            try:
                if list(mistake.impl(W, b_final)) == labels:
                    raise CheckFailed(mistake.hint)
            except (TypeError, ValueError, IndexError):  # a mistake that cannot run on these inputs
                continue
        wrong = next(i for i in range(len(labels)) if labels[i] != expected[i])
        raise CheckFailed(
            f"{describe_instance(case, wrong)} should be {expected[wrong]!r}, got {labels[wrong]!r} "
            f"({sum(a != b for a, b in zip(labels, expected, strict=True))} of {len(labels)} instances are wrong)."
        )
    single = single_instance_of(case)
    what = "classify_phase on a single instance (W of shape [1, 1, 2])"
    if (message := raised(results["single"])) is not None:
        raise CheckFailed(f"{HINT_SQUEEZE_W}. ({what} raised {message})")
    single_labels = expect_labels(results["single"], 1, what)
    if single_labels != classify_phase(single["W"], single["b_final"]):
        raise CheckFailed(
            f"{what}: {describe_instance(single, 0)} should be {classify_phase(single['W'], single['b_final'])[0]!r}, "
            f"got {single_labels[0]!r}."
        )


def expect_labels(labels, n_inst: int, what: str) -> list[str]:
    """A list of one known label per instance."""
    if isinstance(labels, dict):
        if "tensor" in labels:
            raise CheckFailed(HINT_INDICES + ".")
        raise CheckFailed(f"{what} should return a list of {n_inst} strings, got {labels['type']}.")
    if len(labels) != n_inst:
        raise CheckFailed(f"{what} should return one label per instance ({n_inst}), got {len(labels)}.")
    unknown = sorted({label for label in labels if label not in LABELS})
    if unknown:
        raise CheckFailed(f"unknown labels {unknown}: use exactly {', '.join(repr(label) for label in LABELS)}.")
    return labels


def classify_with_squared_weights(W, b_final):
    strength = W.squeeze(1) ** 2  # [inst 2]
    names = {(False, False): "not represented", (True, False): "not represented",
             (False, True): "dedicated", (True, True): "superposition"}  # fmt: skip
    return [names[(bool(a > 0.1), bool(b > 0.1))] for a, b in strength]


def classify_from_column_norms(W, b_final):
    represented = W.norm(dim=1) > 0.5  # [inst 2]: with d_hidden = 1, a feature's column norm is |w_i|
    phase = represented[:, 1].long() * (1 + represented[:, 0].long())  # 0, 1 or 2
    return [("not represented", "dedicated", "superposition")[i] for i in phase.tolist()]
