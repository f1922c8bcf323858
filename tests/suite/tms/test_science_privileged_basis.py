"""The science of chapter 1, section 4, asserted with numbers at exactly the settings of the solutions notebook.

Targets T9, T10: with a ReLU on the hidden layer, dense features get one monosemantic neuron
each and sparse features share polysemantic neurons; and a model computing abs(x) computes m/2 features with two
neurons each when features are dense, but more than its m neurons could compute alone when features are sparse
(more signed halves ReLU(±x_i) than neurons; in this CPU-sized run most sparse features are computed for one sign).
Each sweep is trained once per module with the notebook's seeds; every claim is read off the seed with the lowest loss.
"""

import pytest
import torch as t

from solutions.tms import privileged_basis as models
from solutions.tms import privileged_basis_experiments as pb
from solutions.tms.superposition_experiments import n_represented
from utils.sweeps import SweepResult, train_sweep

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def neurons() -> SweepResult:
    t.set_num_threads(1)
    return train_sweep(pb.PRIVILEGED_BASIS, models.NeuronModel)


@pytest.fixture(scope="module")
def computation() -> SweepResult:
    t.set_num_threads(1)
    return train_sweep(pb.ABSOLUTE_VALUE, models.NeuronComputationModel)


def best_W(result: SweepResult) -> t.Tensor:
    return result.model.W.detach()[result.best]


def measured_neurons(result: SweepResult) -> str:
    W = best_W(result)
    return (
        f"p {list(result.sweep.feature_probabilities)}: features represented {n_represented(W).tolist()}, "
        f"monosemantic neurons {pb.n_monosemantic(W).tolist()}, losses {[round(x, 5) for x in result.loss.tolist()]}"
    )


# ------------------------------------------------------------------------------------------- T9


def test_dense_features_get_one_monosemantic_neuron_each(neurons):
    W = best_W(neurons)[0]  # p = 0.75
    feature_of_neuron = (W**2).argmax(-1).sort().values
    measured = measured_neurons(neurons)
    assert n_represented(W[None]).item() == 5, f"p=0.75: exactly 5 features should be represented; {measured}"
    assert pb.n_monosemantic(W[None]).item() == 5, f"p=0.75: all 5 neurons should be monosemantic; {measured}"
    assert feature_of_neuron.tolist() == [0, 1, 2, 3, 4], f"the 5 neurons should carry the top-5 features; {measured}"


def test_sparser_features_are_represented_more(neurons):
    counts = n_represented(best_W(neurons))
    measured = measured_neurons(neurons)
    assert (counts.diff() >= 0).all(), f"features represented should never fall as p falls; {measured}"
    assert counts[-1] == 10 and counts[-1] > counts[0], f"all 10 features at p=0.01; {measured}"


def test_sparser_features_make_neurons_polysemantic(neurons):
    mono = pb.n_monosemantic(best_W(neurons))
    dense, middle, sparse = mono[0].item(), mono[1:4].float().mean().item(), mono[4:].float().mean().item()
    measured = f"{measured_neurons(neurons)}; means dense {dense}, middle {middle:.2f}, sparse {sparse:.2f}"
    assert dense > middle > sparse, f"monosemantic neurons should fall from dense to middle to sparse p; {measured}"
    assert (mono[-2:] == 0).all(), f"at p ≤ 0.02 every neuron should be polysemantic; {measured}"


# ------------------------------------------------------------------------------------------- T10


def computed_counts(result: SweepResult) -> tuple[t.Tensor, t.Tensor, t.Tensor, str]:
    errors = pb.single_feature_errors(result.model)[result.best]
    full, partly, halves = pb.n_computed(errors)
    measured = (
        f"p {list(result.sweep.feature_probabilities)}: features computed for both signs {full.tolist()}, "
        f"for at least one sign {partly.tolist()}, signed halves {halves.tolist()} (neurons: {result.sweep.d_hidden})"
    )
    return full, partly, halves, measured


def test_dense_abs_model_computes_half_as_many_features_as_neurons(computation):
    full, partly, halves, measured = computed_counts(computation)
    W1 = computation.model.W1.detach()[computation.best][0]  # p = 1
    errors = pb.single_feature_errors(computation.model)[computation.best][0]
    assert full[0] == 5 and partly[0] == 5, f"p=1: 10 neurons should compute exactly 5 features; {measured}"
    assert halves[0] == computation.sweep.d_hidden, f"p=1: one signed half per neuron; {measured}"
    assert (errors[:5] < pb.COMPUTED).all(), f"p=1: the computed features are the 5 most important; {measured}"
    # two dedicated neurons per computed feature, ReLU(x_i) and ReLU(-x_i): every neuron reads a single feature
    assert (pb.neuron_monosemanticity(W1[None]) >= 0.9).all(), f"p=1: all neurons monosemantic; {measured}"


def test_sparse_abs_model_computes_more_than_its_neurons_can_alone(computation):
    full, partly, halves, measured = computed_counts(computation)
    m = computation.sweep.d_hidden
    assert (halves[1:] > m).all(), f"p ≤ 0.1: more signed halves computed than neurons; {measured}"
    assert partly[1:].max() > m, f"some sparse p: more features (at least partly) computed than neurons; {measured}"
