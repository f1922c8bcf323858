"""Chapter 1's checks name the instance that differs for mistakes that are not in any catalogue (kit property 3):
variants of the catalogued `*_first_instance_bias`, `loss_first_instance_importance` and `*_loop_over_wrong_axis`
that handle another instance, so that no catalogued output matches them."""

import einops
import pytest
import torch as t
import torch.nn.functional as F

from tests import EXERCISES
from tests.harness import CheckFailed


def as_learner(exercise_id, impl):
    exercise = EXERCISES[exercise_id]
    return type(exercise.name, (exercise.reference,), {exercise.method: impl}) if exercise.method else impl


def forward_last_instance_bias(self, features):
    hidden = einops.einsum(features, self.W, "... inst feats, inst d_hidden feats -> ... inst d_hidden")
    out = einops.einsum(hidden, self.W, "... inst d_hidden, inst d_hidden feats -> ... inst feats")
    return F.relu(out + self.b_final[-1])


def loss_last_instance_importance(self, out, batch):
    return einops.reduce(self.importance[-1] * (batch - out) ** 2, "batch inst feats -> inst", "mean").sum()


def loss_skips_last_instance(self, out, batch):
    per_instance = einops.reduce(self.importance * (batch - out) ** 2, "batch inst feats -> inst", "mean")
    return per_instance[:-1].sum()


def stats_skips_first_instance(W):
    norms, interference = t.zeros(W.shape[0], W.shape[2]), t.zeros(W.shape[0], W.shape[2])
    for i in range(1, W.shape[0]):
        norms[i] = W[i].norm(dim=0)
        overlaps = (W[i] / norms[i].clamp_min(1e-8)).T @ W[i]
        interference[i] = (overlaps**2).sum(-1) - overlaps.diagonal() ** 2
    return norms, interference


def dpf_skips_first_instance(W):
    D_star = W.shape[1] / W.pow(2).sum(dim=(1, 2))
    return t.cat([t.zeros(1), D_star[1:]])


CASES = [
    ("tms.forward", forward_last_instance_bias, "instances 0, 1 of 3"),
    ("tms.calculate_loss", loss_last_instance_importance, "instances 0, 1 of 3"),
    ("tms.calculate_loss", loss_skips_last_instance, "instance 2 of 3"),
    ("tms.superposition_stats", stats_skips_first_instance, "instance 0 of 4"),
    ("tms.dimensions_per_feature", dpf_skips_first_instance, "instance 0 of 4"),
]


@pytest.mark.parametrize("exercise_id, impl, instances", CASES, ids=[case[1].__name__ for case in CASES])
def test_a_mistake_in_some_instances_only_is_named_by_instance(exercise_id, impl, instances):
    with pytest.raises(CheckFailed) as failure:
        EXERCISES[exercise_id].check(as_learner(exercise_id, impl))
    assert f"is wrong for {instances} (the others are right)" in str(failure.value), str(failure.value)
