"""Check scaffolding shared by the chapter 1 sections whose models look like section 1's ToyModel.

Building the learner's class, probing and judging `forward`, `generate_batch` and `calculate_loss`, the statistical
tests on sampled batches, and the mistakes that every such model shares, written once for all sections. Probes never
import `solutions`: the judge helpers take the reference model (or the expected values) from their caller.
"""

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import einops
import torch as t
import torch.nn.functional as F
from torch import Tensor

from tests.harness import CheckFailed, Context, Mistake, attempt, expect_close, expect_tensor, mistake_outputs, raised
from tests.stats import Budget, outside

# ---------------------------------------------------------------------------------------------- models


def toy_model_config(**fields) -> SimpleNamespace:
    """The fields of the notebook's ToyModelConfig, without importing `solutions` (probes never do)."""
    return SimpleNamespace(**{"n_correlated_pairs": 0, "n_anticorrelated_pairs": 0, **fields})


def build(cls: type, cfg_kwargs: dict, device: str, **kwargs) -> t.nn.Module:
    """Instantiate the learner's class the way the notebook does, with a plain message if that fails."""
    try:
        return cls(toy_model_config(**cfg_kwargs), device=device, **kwargs)
    except NotImplementedError:
        raise
    except Exception as error:
        raise CheckFailed(
            f"could not build {cls.__name__}(cfg, ...): {type(error).__name__}: {error}. "
            "Keep the __init__ the notebook gives you."
        ) from None


def set_parameter(model: t.nn.Module, name: str, value: Tensor) -> None:
    param = getattr(model, name, None)
    if not isinstance(param, Tensor):
        raise CheckFailed(f"{type(model).__name__} has no tensor attribute `{name}`.")
    if param.shape != value.shape:
        raise CheckFailed(f"`{name}` should have shape {tuple(value.shape)}, got {tuple(param.shape)}.")
    with t.no_grad():
        param.copy_(value.to(param.device))


def sparse(g: t.Generator, shape: tuple[int, ...], low: float) -> Tensor:
    """Uniform values on [low, 1], each present with probability 0.6 (else 0)."""
    return (low + (1 - low) * t.rand(shape, generator=g)) * (t.rand(shape, generator=g) < 0.6)


# --------------------------------------------------------------------------------------------- forward

HINT_LEADING_AXES = (
    "forward must accept any number of leading axes, none included (`features: [... inst feats]`, so "
    "[inst feats] and [a b inst feats] too): use `...` in your einsum patterns, and index the instance axis from "
    "the end (`features[..., i, :]`), not as axis 1"
)
HINT_SQUEEZE = (
    "Keep every axis, even one of size 1 (an input axis of size 1, n_inst = 1 or d_hidden = 1): `.squeeze()` with "
    "no argument drops all of them, so name the axis you mean, `.squeeze(dim)`"
)


def dropped_size_one_axes(got: tuple[int, ...], expected: tuple[int, ...]) -> bool:
    """Whether shape `got` is `expected` with some of its size-1 axes removed, as `.squeeze()` leaves it."""
    return len(got) < len(expected) and [n for n in got if n != 1] == [n for n in expected if n != 1]


def expect_shaped(got: Any, what: str, shape: tuple[int, ...], axes: str, hint: str | None = None) -> Tensor:
    """`expect_tensor`, naming `.squeeze()` when the result lost size-1 axes, and prefixing `hint` to any other
    failure (what the learner is told about the input that went wrong)."""
    if isinstance(got, Tensor) and dropped_size_one_axes(tuple(got.shape), tuple(shape)):
        raise CheckFailed(f"{HINT_SQUEEZE}. {what} should have shape {tuple(shape)}, got {tuple(got.shape)}.")
    try:
        return expect_tensor(got, what, shape, axes)
    except CheckFailed as error:
        if hint is None:
            raise
        raise CheckFailed(f"{hint}. ({error})") from None


def expect_close_to_reference(
    got: Tensor,
    expected: Tensor,
    what: str,
    mistakes: list[Mistake],
    run: Callable[[Callable[..., Any]], Any],
    hint: str | None = None,
    rtol: float = 1e-4,
    atol: float = 1e-5,
) -> None:
    """`expect_close`, naming the catalogued mistake whose output (`run(impl)`) the learner's matches; the mistakes
    run only when the learner's output is wrong. A difference that no catalogued mistake explains is reported with
    `hint`, if given."""
    if t.allclose(got, expected, rtol=rtol, atol=atol):  # NaN is never close: expect_close then names it
        return
    outputs, hints = mistake_outputs(mistakes, run)
    try:
        expect_close(got, expected, what, outputs, hints, rtol=rtol, atol=atol)
    except CheckFailed as error:
        if hint is None or any(known in str(error) for known in hints.values()):
            raise
        raise CheckFailed(f"{hint}. ({error})") from None


@dataclass(frozen=True)
class ForwardFamily:
    """How a ToyModel-like forward computes: h = W_in x (through a ReLU or not), then ReLU(W_out h + b_final).

    The mistakes that every such forward can make are written once against this description (`forward_mistakes`),
    with hints in the family's own formula."""

    prefix: str  # names the mistakes: "forward" gives forward_without_bias
    weights: tuple[str, str]  # the attributes used as W_in and W_out: ("W", "W") when tied
    hidden_relu: bool
    readout: str  # what b_final is added to, e.g. "Wᵀ W x"
    feature_low: float = 0.0  # present features are uniform on [feature_low, 1]

    @property
    def tied(self) -> bool:
        return self.weights[0] == self.weights[1]

    @property
    def parameters(self) -> tuple[str, ...]:
        return (*dict.fromkeys(self.weights), "b_final")

    @property
    def formula(self) -> str:
        return f"ReLU({self.readout} + b_final)"

    @property
    def output_relu(self) -> str:
        return "output ReLU" if self.hidden_relu else "ReLU"

    @property
    def readout_axes(self) -> str:
        """W_out's axes: the tied W is read out transposed, an untied W2 is [inst feats d_hidden]."""
        return "inst d_hidden feats" if self.tied else "inst feats d_hidden"

    @property
    def no_grad_hint(self) -> str:
        names = " and ".join(f"`{name}`" for name in dict.fromkeys(self.weights))
        return (
            f"No gradient reaches {names} through your output, so the model could never learn. Don't use "
            "`.detach()`, `.data`, `.item()` or `torch.no_grad()` inside forward"
        )

    def random_inputs(self, g: t.Generator, cfg: dict, leading: tuple[int, ...]) -> dict[str, Tensor]:
        """Weights of both signs (so a hidden ReLU cuts), non-zero biases, and sparse features [*leading, inst, feats]."""
        n_inst, n_features, d_hidden = cfg["n_inst"], cfg["n_features"], cfg["d_hidden"]
        inputs = {self.weights[0]: t.randn((n_inst, d_hidden, n_features), generator=g)}
        if not self.tied:
            inputs[self.weights[1]] = t.randn((n_inst, n_features, d_hidden), generator=g)
        inputs["b_final"] = t.randn((n_inst, n_features), generator=g) * 0.5
        inputs["features"] = sparse(g, (*leading, n_inst, n_features), self.feature_low)
        return inputs


@dataclass(frozen=True)
class ShapeCase:
    """Another input the contract allows: other leading axes for the main model (its weights), or a model of
    another size (weights of its own)."""

    leading: tuple[int, ...]
    hint: str  # what the learner is told when this input goes wrong
    cfg: dict | None = None

    def describe(self, main_cfg: dict) -> str:
        text = "a [" + ", ".join([*map(str, self.leading), "inst", "feats"]) + "] input"
        if self.cfg is None:
            return text
        sizes = ", ".join(f"{key}={value}" for key, value in self.cfg.items() if main_cfg.get(key) != value)
        return f"a model with {sizes}, on {text}"


def shape_cases(cfg: dict) -> tuple[ShapeCase, ...]:
    """No leading axis at all, a leading axis of size 1, several leading axes, and a single instance with a single
    hidden dimension."""
    return (
        ShapeCase((), HINT_LEADING_AXES),
        ShapeCase((1,), HINT_SQUEEZE),
        ShapeCase((2, 4), HINT_LEADING_AXES),
        ShapeCase((3,), HINT_SQUEEZE, {**cfg, "n_inst": 1, "d_hidden": 1}),
    )


@dataclass(frozen=True)
class ForwardCheck:
    """Everything a forward check's probe and verdict share: the family, the main model and batch, and the other
    shapes to try."""

    family: ForwardFamily
    cfg: dict
    salt: int
    batch: int
    cases: tuple[ShapeCase, ...]

    def inputs(self, context: Context) -> tuple[dict[str, Tensor], list[dict[str, Tensor]]]:
        """The main case, then one per shape case, all from the seed."""
        main = self.family.random_inputs(context.generator(self.salt), self.cfg, (self.batch,))
        extra = []
        for k, case in enumerate(self.cases):
            inputs = self.family.random_inputs(context.generator(self.salt + 1 + k), case.cfg or self.cfg, case.leading)
            if case.cfg is None:
                inputs |= {name: main[name] for name in self.family.parameters}
            extra.append(inputs)
        return main, extra


def gradient_weights(out: Tensor) -> Tensor:
    """Fixed, unequal weights for a scalar of the output, so that the gradient sees every output entry."""
    return t.linspace(0.5, 1.5, out.numel(), device=out.device).view(out.shape)


def output_gradients(model: t.nn.Module, out: Tensor, names: tuple[str, ...]) -> dict[str, Tensor | None]:
    """`grad_<name>` for each named parameter: the gradient of a weighted sum of `out`, or None if none reaches it."""
    if isinstance(out, Tensor) and out.requires_grad:
        model.zero_grad()
        (out * gradient_weights(out)).sum().backward()
    return {f"grad_{name}": getattr(model, name).grad for name in names}


def set_parameters(model: t.nn.Module, family: ForwardFamily, inputs: dict[str, Tensor]) -> None:
    for name in family.parameters:
        set_parameter(model, name, inputs[name])


def probe_forward_check(cls: type, check: ForwardCheck, context: Context) -> dict:
    """The learner's forward on the main case (output, input afterwards, gradients), then on every shape case."""
    main, extra = check.inputs(context)
    model = build(cls, check.cfg, context.device)
    set_parameters(model, check.family, main)
    features = main["features"].to(context.device)
    out = model(features)
    results = {"out": out, "features_after": features}

    def run(case: ShapeCase, inputs: dict[str, Tensor]) -> Tensor:
        case_model = model
        if case.cfg is not None:
            case_model = build(cls, case.cfg, context.device)
            set_parameters(case_model, check.family, inputs)
        with t.no_grad():
            return case_model(inputs["features"].to(context.device))

    for k, (case, inputs) in enumerate(zip(check.cases, extra, strict=True)):
        results[f"shape_{k}"] = attempt(lambda case=case, inputs=inputs: run(case, inputs))
    return results | output_gradients(model, out, check.family.parameters)


def judge_forward_output(results: dict, model: t.nn.Module, features: Tensor, mistakes: list[Mistake]) -> None:
    """The shape of `forward(features)`, its input untouched, and its values, naming a catalogued mistake."""
    got = expect_shaped(results["out"], "forward(features)", tuple(features.shape), "batch inst feats")
    if not t.equal(results["features_after"], features):
        raise CheckFailed("forward changed its input `features` in place; compute new tensors instead.")
    with t.no_grad():
        run = lambda impl: impl(model, features)
        expect_close_to_reference(got, model(features), "forward(features)", mistakes, run)


def judge_forward_check(
    results: dict, check: ForwardCheck, reference: Callable[[dict], t.nn.Module], mistakes: list[Mistake], context
) -> None:
    """The verdict on `probe_forward_check`, given a builder of the reference model: the main output (naming catalogued
    mistakes), every shape case, and gradients that reach every parameter."""
    family = check.family
    main, extra = check.inputs(context)
    model = reference(check.cfg)
    set_parameters(model, family, main)
    judge_forward_output(results, model, main["features"], mistakes)
    for k, (case, inputs) in enumerate(zip(check.cases, extra, strict=True)):
        case_model = model
        if case.cfg is not None:
            case_model = reference(case.cfg)
            set_parameters(case_model, family, inputs)
        features = inputs["features"]
        what = f"forward on {case.describe(check.cfg)}"
        got = results[f"shape_{k}"]
        if (message := raised(got)) is not None:
            raise CheckFailed(f"{case.hint}. ({what} raised {message})")
        got = expect_shaped(got, what, tuple(features.shape), "", case.hint)
        with t.no_grad():
            run = lambda impl: impl(case_model, features)
            expect_close_to_reference(got, case_model(features), what, mistakes, run, case.hint)
    if any(results[f"grad_{name}"] is None for name in family.parameters):
        raise CheckFailed(family.no_grad_hint + ".")
    features = main["features"]
    out = model(features)
    (out * gradient_weights(out)).sum().backward()
    for name in family.parameters:
        expect_close(
            results[f"grad_{name}"], getattr(model, name).grad, f"the gradient of your output with respect to {name}"
        )


def forward_mistakes(family: ForwardFamily) -> list[Mistake]:
    """The mistakes of any forward of the family, with hints that name its formula."""
    W_in_name, W_out_name = family.weights
    hidden_act = F.relu if family.hidden_relu else (lambda hidden: hidden)
    readout_axes = family.readout_axes
    single_readout_axes = readout_axes.removeprefix("inst ")
    encode_pattern = "... inst feats, inst d_hidden feats -> ... inst d_hidden"
    decode_pattern = f"... inst d_hidden, {readout_axes} -> ... inst feats"

    def weights(self) -> tuple[Tensor, Tensor]:
        return getattr(self, W_in_name), getattr(self, W_out_name)

    def encode(features, W_in, pattern=encode_pattern):
        return hidden_act(einops.einsum(features, W_in, pattern))

    def decode(hidden, W_out, pattern=decode_pattern):
        return einops.einsum(hidden, W_out, pattern)

    def as_readout_matrix(W_out):  # [inst d_hidden feats], what the hidden row vector is multiplied by
        return W_out if family.tied else W_out.transpose(-1, -2)

    def without_bias(self, features):
        W_in, W_out = weights(self)
        return F.relu(decode(encode(features, W_in), W_out))

    def without_output_relu(self, features):
        W_in, W_out = weights(self)
        return decode(encode(features, W_in), W_out) + self.b_final

    def relu_before_bias(self, features):
        W_in, W_out = weights(self)
        return F.relu(decode(encode(features, W_in), W_out)) + self.b_final

    def bias_on_input(self, features):
        W_in, W_out = weights(self)
        return F.relu(decode(encode(features + self.b_final, W_in), W_out))

    def first_instance_weights(self, features):
        W_in, W_out = (W[0] for W in weights(self))
        hidden = encode(features, W_in, "... inst feats, d_hidden feats -> ... inst d_hidden")
        return F.relu(
            decode(hidden, W_out, f"... inst d_hidden, {single_readout_axes} -> ... inst feats") + self.b_final
        )

    def sums_over_instances(self, features):
        W_in, W_out = weights(self)
        hidden = encode(features, W_in, "... inst feats, inst d_hidden feats -> ... d_hidden")
        return F.relu(decode(hidden, W_out, f"... d_hidden, {readout_axes} -> ... inst feats") + self.b_final)

    def detached_weights(self, features):
        W_in, W_out = (W.detach() for W in weights(self))
        return F.relu(decode(encode(features, W_in), W_out) + self.b_final)

    def only_3d_input(self, features):
        W_in, W_out = weights(self)
        hidden = encode(features, W_in, "batch inst feats, inst d_hidden feats -> batch inst d_hidden")
        return F.relu(decode(hidden, W_out, f"batch inst d_hidden, {readout_axes} -> batch inst feats") + self.b_final)

    def loop_over_instances(self, features):
        # `features[:, i]` takes axis 1 as the instance axis, so this needs exactly one leading (batch) axis
        W_in, W_out = weights(self)
        readout = as_readout_matrix(W_out)
        outs = [
            F.relu(hidden_act(features[:, i] @ W_in[i].T) @ readout[i] + self.b_final[i]) for i in range(W_in.shape[0])
        ]
        return t.stack(outs, dim=1)

    def matmul_squeezing_every_axis(self, features):
        # [..., inst, 1, feats] @ [inst, feats, d_hidden], then `.squeeze()` where `.squeeze(-2)` was meant
        W_in, W_out = weights(self)
        hidden = hidden_act((features.unsqueeze(-2) @ W_in.transpose(-1, -2)).squeeze())
        return F.relu((hidden.unsqueeze(-2) @ as_readout_matrix(W_out)).squeeze() + self.b_final)

    own_weights = ", ".join(f"`{name}[i]`" for name in dict.fromkeys(family.weights))
    relu, formula = family.output_relu, family.formula
    hints = {
        without_bias: f"Did you forget to add `b_final` before the {relu}? The model is {formula}.",
        without_output_relu: f"You left out the {relu}: your output is {family.readout} + b_final, and the model is {formula}.",
        relu_before_bias: f"You add `b_final` after the {relu}; it belongs inside: {formula}.",
        bias_on_input: f"You add `b_final` to the input; it is added to the output, inside the {relu}: {formula}.",
        first_instance_weights: f"Every instance must use its own weights {own_weights}; yours uses one instance's "
        "weights for all of them.",
        sums_over_instances: "Your einsum sums over the `inst` axis, mixing instances. Keep `inst` in the output "
        "pattern of both einsums.",
        detached_weights: family.no_grad_hint,
        only_3d_input: HINT_LEADING_AXES,
        loop_over_instances: HINT_LEADING_AXES,
        matmul_squeezing_every_axis: HINT_SQUEEZE,
    }
    mistakes = []
    for impl, hint in hints.items():
        impl.__name__ = impl.__qualname__ = f"{family.prefix}_{impl.__name__}"
        mistakes.append(Mistake(impl, hint))
    return mistakes


# ------------------------------------------------------------------------------------ functions of the weights


def rotation(g: t.Generator, d: int) -> Tensor:
    """A random orthogonal [d, d] matrix."""
    q, r = t.linalg.qr(t.randn((d, d), generator=g))
    return q * r.diagonal().sign()


def planted_instance(g: t.Generator, d_hidden: int, n_features: int, columns: dict[int, tuple[int, float]]) -> Tensor:
    """One instance's W [d_hidden, feats] with a known geometry: feature f lies along hidden axis a with signed norm
    s for every `f: (a, s)` in `columns`, every other feature is dead (a zero column), and the hidden space is then
    turned by a random rotation, so that nothing is axis-aligned."""
    W = t.zeros((d_hidden, n_features))
    for feature, (axis, norm) in columns.items():
        W[axis, feature] = norm
    return rotation(g, d_hidden) @ W


def size_one_weights(g: t.Generator, d_hidden: int, n_features: int) -> dict[str, Tensor]:
    """Random weights of varied norms with the size-1 axes the contract allows: one instance, one hidden dimension."""
    shapes = {"a single instance": (1, d_hidden, n_features), "a single hidden dimension": (2, 1, n_features)}
    return {
        name: t.randn(shape, generator=g) * (0.3 + 2 * t.rand((shape[0], 1, n_features), generator=g))
        for name, shape in shapes.items()
    }


def judge_size_one(got: Any, expected: Tensor, what: str, axes: str) -> None:
    """A function of W on weights with size-1 axes: it must keep them, and give the reference's values."""
    if (message := raised(got)) is not None:
        raise CheckFailed(f"{HINT_SQUEEZE}. ({what} raised {message})")
    got = expect_shaped(got, what, tuple(expected.shape), axes, HINT_SQUEEZE)
    expect_close_to_reference(got, expected, what, [], lambda impl: None, HINT_SQUEEZE)


# -------------------------------------------------------------------------------------- generate_batch

BATCH_SIZE = 10_000

HINT_FREQUENCY = "Each feature must be present with its own probability `self.feature_probability[inst, feat]`"
HINT_FEATURE_INDEPENDENCE = (
    "Features must be present independently of each other: draw one random number per (batch, inst, feat) entry"
)
HINT_INSTANCE_INDEPENDENCE = (
    "Instances must get independent data: draw random numbers for the `inst` axis too, not one draw broadcast over it"
)
HINT_MAGNITUDE_INDEPENDENCE = "Magnitudes must be drawn independently for every feature, not shared across features"
HINT_MAGNITUDES_ACROSS_INSTANCES = (
    "Instances must get independent magnitudes too: draw one magnitude per (batch, inst, feat) entry, not one set "
    "(e.g. `t.rand(batch, 1, feats)`) broadcast over the `inst` axis"
)
HINT_ONE_COLUMN = (
    "Every feature has its own probability: use `self.feature_probability` [inst, feats] as it is, not one "
    "feature's column (e.g. `[:, :1]` or `[:, -1:]`) for all of them"
)
HINT_ONE_INSTANCE = (
    "Every instance has its own probabilities: use `self.feature_probability` [inst, feats] as it is, not one "
    "instance's row (e.g. `[0]` or `[:1]`) for all of them"
)
HINT_BATCH_INDEPENDENCE = "Rows of the batch must be independent samples; yours repeat each other"
HINT_FRESH_CALLS = "Two calls returned the same batch: don't reseed the random generator inside generate_batch"


def batch_probabilities(n_inst: int) -> Tensor:
    """Different per instance and per feature, all away from 0.5 (so p and 1 - p differ) and from 0 and 1."""
    rows = t.tensor([0.08, 0.2, 0.35, 0.65, 0.8, 0.92])
    return t.stack([rows.roll(i) for i in range(n_inst)])


def expect_batches(results: dict, n_inst: int) -> tuple[Tensor, Tensor, Tensor]:
    """The probabilities `probe_batches` used, and its large and first small batch, checked for type and shape."""
    p = batch_probabilities(n_inst)
    n_features = p.shape[1]
    batch = expect_tensor(
        results["batch"], f"generate_batch({BATCH_SIZE})", (BATCH_SIZE, n_inst, n_features), "batch inst feats"
    )
    small = expect_tensor(results["small"], "generate_batch(7)", (7, n_inst, n_features), "batch inst feats")
    return p, batch, small


def probe_batches(cls: type, cfg: dict, context: Context) -> dict:
    """A large batch from a model with `batch_probabilities`, and two small ones to see that calls differ."""
    p = batch_probabilities(cfg["n_inst"]).to(context.device)
    model = build(cls, cfg, context.device, feature_probability=p)
    with t.no_grad():
        first = model.generate_batch(BATCH_SIZE)
        small = model.generate_batch(7)
        small_again = model.generate_batch(7)
    return {"batch": first, "small": small, "small_again": small_again}


def shape_of(self, batch_size):
    """The shape of a batch of `batch_size` samples from the model `self`, as a learner would write it."""
    return (batch_size, *self.feature_probability.shape)


def sampler_mistakes(magnitudes: Callable[[tuple[int, ...]], Tensor]) -> list[Mistake]:
    """The mistakes of any `generate_batch` whose present features get `magnitudes(shape)`, with their hints."""

    def generate_batch_sparsity_for_probability(self, batch_size):
        shape = shape_of(self, batch_size)
        return t.where(t.rand(shape) <= 1 - self.feature_probability, magnitudes(shape), 0.0)

    def generate_batch_shared_across_features(self, batch_size):
        n_inst, n_features = self.feature_probability.shape
        mask = t.rand((batch_size, n_inst, 1)) <= self.feature_probability
        return t.where(mask, magnitudes((batch_size, n_inst, n_features)), 0.0)

    def generate_batch_shared_across_instances(self, batch_size):
        n_inst, n_features = self.feature_probability.shape
        mask = t.rand((batch_size, 1, n_features)) <= self.feature_probability
        return t.where(mask, magnitudes((batch_size, n_inst, n_features)), 0.0)

    def generate_batch_magnitudes_shared_across_instances(self, batch_size):
        n_inst, n_features = self.feature_probability.shape
        mask = t.rand((batch_size, n_inst, n_features)) <= self.feature_probability
        return t.where(mask, magnitudes((batch_size, 1, n_features)), 0.0)

    def generate_batch_first_feature_probability(self, batch_size):
        shape = shape_of(self, batch_size)
        return t.where(t.rand(shape) <= self.feature_probability[:, :1], magnitudes(shape), 0.0)

    def generate_batch_last_feature_probability(self, batch_size):
        shape = shape_of(self, batch_size)
        return t.where(t.rand(shape) <= self.feature_probability[:, -1:], magnitudes(shape), 0.0)

    def generate_batch_first_instance_probability(self, batch_size):
        shape = shape_of(self, batch_size)
        return t.where(t.rand(shape) <= self.feature_probability[0], magnitudes(shape), 0.0)

    def generate_batch_same_magnitude_for_all_features(self, batch_size):
        n_inst, n_features = self.feature_probability.shape
        mask = t.rand((batch_size, n_inst, n_features)) <= self.feature_probability
        return t.where(mask, magnitudes((batch_size, n_inst, 1)), 0.0)

    def generate_batch_half_batch_repeated(self, batch_size):
        shape = shape_of(self, (batch_size + 1) // 2)
        x = t.where(t.rand(shape) <= self.feature_probability, magnitudes(shape), 0.0)
        return t.cat([x, x])[:batch_size]

    def generate_batch_fixed_seed(self, batch_size):
        t.manual_seed(0)
        shape = shape_of(self, batch_size)
        return t.where(t.rand(shape) <= self.feature_probability, magnitudes(shape), 0.0)

    return [
        Mistake(generate_batch_sparsity_for_probability, HINT_FREQUENCY),
        Mistake(generate_batch_shared_across_features, HINT_FEATURE_INDEPENDENCE),
        Mistake(generate_batch_shared_across_instances, HINT_INSTANCE_INDEPENDENCE),
        Mistake(generate_batch_magnitudes_shared_across_instances, HINT_MAGNITUDES_ACROSS_INSTANCES),
        Mistake(generate_batch_first_feature_probability, HINT_ONE_COLUMN),
        Mistake(generate_batch_last_feature_probability, HINT_ONE_COLUMN),
        Mistake(generate_batch_first_instance_probability, HINT_ONE_INSTANCE),
        Mistake(generate_batch_same_magnitude_for_all_features, HINT_MAGNITUDE_INDEPENDENCE),
        Mistake(generate_batch_half_batch_repeated, HINT_BATCH_INDEPENDENCE),
        Mistake(generate_batch_fixed_seed, HINT_FRESH_CALLS),
    ]


DIAGNOSIS_ALPHA = 1e-6  # when naming a mistake, how plausible the data must be under it


def explained_by(counts: Tensor, n: int, rates: Tensor) -> bool:
    """Whether the counts are plausible under these rates: used only to name a mistake once a test has failed."""
    return not outside(counts, n, rates.expand(counts.shape), DIAGNOSIS_ALPHA)


def first_explaining(counts: Tensor, n: int, candidates: list[tuple[str, Tensor]]) -> str | None:
    """The hint of the first candidate rate that explains every count, if any."""
    return next((hint for hint, rates in candidates if explained_by(counts, n, rates)), None)


def frequency_mistake(present: Tensor, p: Tensor) -> str | None:
    """The hint for probabilities read from one column or one row of `p` [inst feats], if that explains how often
    each feature of each instance was present."""
    columns = [(HINT_ONE_COLUMN, p[:, c : c + 1]) for c in range(p.shape[1])]
    rows = [(HINT_ONE_INSTANCE, p[i : i + 1]) for i in range(p.shape[0])]
    return first_explaining(present.sum(0), present.shape[0], columns + rows)


def judge_frequency(present: Tensor, p: Tensor, budget: Budget) -> None:
    """Each feature of each instance present with its own probability: one test per (inst, feat)."""
    n = present.shape[0]
    counts = present.sum(0)
    if bad := budget.binomial_outliers(counts, n, p):
        i, f = bad[0]
        known = frequency_mistake(present, p)
        raise CheckFailed(
            f"{HINT_FREQUENCY if known is None else f'{HINT_FREQUENCY}. {known}'}: instance {i}, feature {f} has "
            f"probability {float(p[i, f]):.2f} but was present in {float(counts[i, f]) / n:.3f} of {n} samples."
        )


def judge_independence(present: Tensor, p: Tensor, budget: Budget) -> None:
    """Presence independent across rows of the batch (2 tests per cell), neighbouring features and instances."""
    n = present.shape[0]
    half = n // 2
    halves = (present[:half] & present[half : 2 * half]).sum(0)
    neighbours = (present[0::2][:half] & present[1::2][:half]).sum(0)
    for name, together in [("the two halves of the batch", halves), ("neighbouring rows", neighbours)]:
        if bad := budget.binomial_outliers(together, half, p * p):
            raise CheckFailed(
                f"{HINT_BATCH_INDEPENDENCE} (instance {bad[0][0]}, feature {bad[0][1]}, comparing {name})."
            )
    for hint, together, expected in [
        (HINT_FEATURE_INDEPENDENCE, (present[:, :, :-1] & present[:, :, 1:]).sum(0), p[:, :-1] * p[:, 1:]),
        (HINT_INSTANCE_INDEPENDENCE, (present[:, :-1] & present[:, 1:]).sum(0), p[:-1] * p[1:]),
    ]:
        if bad := budget.binomial_outliers(together, n, expected):
            index = bad[0]
            raise CheckFailed(
                f"{hint}. Two entries (pair {index}) were present together in {float(together[index]) / n:.4f} "
                f"of samples; independent draws would give {float(expected[index]):.4f}."
            )


def judge_uniform(values: Tensor, low: float, high: float, budget: Budget, hint: str, instance: int) -> None:
    """One instance's present magnitudes uniform on [low, high] (a Kolmogorov–Smirnov test)."""
    if (distance := budget.not_uniform(values, low, high)) is not None:
        raise CheckFailed(f"{hint}. In instance {instance} they are not uniform (KS distance {distance:.3f}).")


def disjoint_neighbours(x: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """Entries 0, 2, 4, … and 1, 3, 5, … along `dim`, cut to the same length: neighbours paired up so that no entry is
    in two pairs, which keeps the pairs independent (Hoeffding's inequality needs that; overlapping pairs (0, 1),
    (1, 2), … would not be)."""
    d = dim % x.dim()
    pairs = x.narrow(d, 0, 2 * (x.shape[d] // 2)).unflatten(d, (-1, 2))
    return pairs.select(d + 1, 0), pairs.select(d + 1, 1)


def independent_pairings(x: Tensor, unit_dim: int, unit_hint: str) -> list[tuple[str, Tensor, Tensor]]:
    """Pairings of entries that a generator must draw independently, for `judge_magnitudes_independent`: neighbouring
    units along `unit_dim` (features, or pairs of features), neighbouring instances (axis 1), and rows of the batch
    (axis 0: neighbours, then the two halves)."""
    half = x.shape[0] // 2
    return [
        (unit_hint, *disjoint_neighbours(x, unit_dim)),
        (HINT_MAGNITUDES_ACROSS_INSTANCES, *disjoint_neighbours(x, 1)),
        (HINT_BATCH_INDEPENDENCE, *disjoint_neighbours(x, 0)),
        (HINT_BATCH_INDEPENDENCE, x[:half], x[half : 2 * half]),
    ]


def shared_magnitudes_hint(pairings: list[tuple[str, Tensor, Tensor]]) -> str | None:
    """The hint of the first pairing whose two entries share their magnitudes: mostly exactly equal where both are
    present, among many distinct values (independent continuous draws are equal with probability about 2⁻²⁴, and a
    constant magnitude is a different mistake). Only to name a mistake once a test has failed."""
    for hint, a, b in pairings:
        both = (a != 0) & (b != 0)
        if both.sum() > 100 and (a[both] == b[both]).float().mean() > 0.5 and a[both].unique().numel() > 100:
            return hint
    return None


@contextlib.contextmanager
def naming_shared_magnitudes(pairings: list[tuple[str, Tensor, Tensor]]) -> Iterator[None]:
    """Around the tests of the magnitudes' distribution: magnitudes shared between the entries of a pairing make the
    values of an instance dependent, so those tests may fail first; name the sharing instead."""
    try:
        yield
    except CheckFailed:
        if (hint := shared_magnitudes_hint(pairings)) is not None:
            raise CheckFailed(f"{hint}: where both are present, your two magnitudes are exactly equal.") from None
        raise


def judge_magnitudes_independent(
    pairings: list[tuple[str, Tensor, Tensor]], centre: float, width: float, budget: Budget
) -> None:
    """Magnitudes the contract draws independently must be uncorrelated. For each pairing (hint, a, b), of entries
    paired up so that each entry is in at most one pair, where both are present (non-zero): the mean of
    (a − centre)(b − centre) is 0 up to Hoeffding's radius, each term lying in an interval of the given width. Given
    which entries are present, a correct generator's magnitudes are independent draws, so each test holds at
    its level whatever the presence pattern. Magnitudes shared between the two entries give a mean of their variance.

    One test per pairing, in order: callers list the most specific pairing first, and run this after every test of
    presence and of the magnitudes' distribution, so that it names only mistakes that those tests let through.
    """
    for hint, a, b in pairings:
        both = (a != 0) & (b != 0)
        products = ((a - centre) * (b - centre))[both]
        if products.numel() == 0:
            continue
        mean, radius = float(products.mean()), budget.hoeffding_radius(products.numel(), width)
        if abs(mean) > radius:
            term = f"(m₁ − {centre:g})(m₂ − {centre:g})" if centre else "m₁ m₂"
            raise CheckFailed(
                f"{hint}. Where both entries of such a pair are present, the mean of {term} is {mean:.4f}; "
                f"independent magnitudes give 0 ± {radius:.4f}."
            )


# -------------------------------------------------------------------------------------- calculate_loss

HINT_SCALAR = "calculate_loss must return a 0-dimensional tensor that still has its gradient: don't call `.item()` or `float()` on it"
HINT_SUM_INSTANCES = (
    "calculate_loss returns one number: sum the per-instance losses (shape ()), don't return one loss per instance"
)


def probe_loss(cls: type, cfg: dict, case: dict[str, Tensor], context: Context) -> dict:
    """The learner's loss on the case's `out` and `batch`, and its gradient."""
    model = build(cls, cfg, context.device, importance=case["importance"].to(context.device))
    out = case["out"].to(context.device).requires_grad_(True)
    batch = case["batch"].to(context.device)
    loss = model.calculate_loss(out, batch)
    results = {"loss": loss, "out_after": out.detach(), "batch_after": batch}
    if isinstance(loss, Tensor) and loss.requires_grad and loss.numel() == 1:
        loss.backward()
        results["grad_out"] = out.grad
    return results


def loss_mistakes(target: Callable[[Tensor], Tensor], error: str) -> list[Mistake]:
    """The mistakes of any `calculate_loss` that weights the squared error of `out` against `target(batch)` (written
    `error` in the hints) by importance, with their hints."""

    def loss_mean_over_instances(self, out, batch):
        return einops.reduce(self.importance * (target(batch) - out) ** 2, "batch inst feats -> inst", "mean").mean()

    def loss_summed_over_batch(self, out, batch):
        return (self.importance * (target(batch) - out) ** 2).sum(0).mean(-1).sum()

    def loss_summed_over_features(self, out, batch):
        return (self.importance * (target(batch) - out) ** 2).mean(0).sum(-1).sum()

    def loss_without_importance(self, out, batch):
        return einops.reduce((target(batch) - out) ** 2, "batch inst feats -> inst", "mean").sum()

    def loss_importance_inside_square(self, out, batch):
        return einops.reduce((self.importance * (target(batch) - out)) ** 2, "batch inst feats -> inst", "mean").sum()

    def loss_absolute_error(self, out, batch):
        return einops.reduce(self.importance * (target(batch) - out).abs(), "batch inst feats -> inst", "mean").sum()

    def loss_one_per_instance(self, out, batch):
        return einops.reduce(self.importance * (target(batch) - out) ** 2, "batch inst feats -> inst", "mean")

    def loss_returns_float(self, out, batch):
        return (
            einops.reduce(self.importance * (target(batch) - out) ** 2, "batch inst feats -> inst", "mean").sum().item()
        )

    return [
        Mistake(
            loss_mean_over_instances,
            "Sum the per-instance losses, don't average them: each instance is its own model, and averaging would "
            "divide every instance's gradient by n_inst.",
        ),
        Mistake(
            loss_summed_over_batch,
            "Average over the batch axis, don't sum it (mean over batch and features, then sum over instances).",
        ),
        Mistake(
            loss_summed_over_features,
            "Average over the feature axis, don't sum it (mean over batch and features, then sum over instances).",
        ),
        Mistake(loss_without_importance, "Weight each feature's squared error by `self.importance`."),
        Mistake(
            loss_importance_inside_square,
            f"Multiply the squared error by importance: I·({error})², not (I·({error}))².",
        ),
        Mistake(loss_absolute_error, f"Use the squared error ({error})², not the absolute error."),
        Mistake(loss_one_per_instance, HINT_SUM_INSTANCES),
        Mistake(loss_returns_float, HINT_SCALAR),
    ]


def judge_loss(results: dict, model: t.nn.Module, out: Tensor, batch: Tensor, mistakes: list[Mistake]) -> None:
    """The verdict on a `calculate_loss(out, batch)` exercise, given the reference model it is compared with
    (section 4's NeuronComputationModel uses it too): a scalar with a gradient, inputs untouched, the right value."""
    loss = results["loss"]
    if not isinstance(loss, Tensor) or loss.numel() != 1 or loss.dim() != 0:
        if isinstance(loss, float | int) or (isinstance(loss, Tensor) and loss.numel() == 1):
            raise CheckFailed(HINT_SCALAR + ".")
        if isinstance(loss, Tensor) and tuple(loss.shape) == (out.shape[1],):
            raise CheckFailed(HINT_SUM_INSTANCES + ".")
        shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise CheckFailed(f"calculate_loss(out, batch) should return a scalar (shape ()), got {shape}.")
    if not (t.equal(results["out_after"], out) and t.equal(results["batch_after"], batch)):
        raise CheckFailed("calculate_loss changed `out` or `batch` in place; compute new tensors instead.")
    outputs, hints = mistake_outputs(mistakes, lambda impl: t.as_tensor(impl(model, out, batch)))
    expect_close(loss, model.calculate_loss(out, batch), "calculate_loss(out, batch)", outputs, hints)
    if results.get("grad_out") is None:
        raise CheckFailed(HINT_SCALAR + ".")
