"""Probing and judging a ToyModel-like `forward` (sections 1 and 4), and the mistakes every such forward can make."""

from collections.abc import Callable
from dataclasses import dataclass

import einops
import torch as t
import torch.nn.functional as F
from torch import Tensor

from tests.harness import CheckFailed, Context, Mistake, attempt, raised
from tests.kit import expect_gradients, weighted_gradients
from tests.tms.common.basics import (
    HINT_EVERY_INSTANCE,
    HINT_LEADING_AXES,
    HINT_SQUEEZE,
    build,
    expect_close_to_reference,
    expect_shaped,
    set_parameter,
    sparse,
)


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


def output_gradients(model: t.nn.Module, out: Tensor, names: tuple[str, ...]) -> dict[str, Tensor | None]:
    """`grad_<name>` for each named parameter (the kit's `weighted_gradients`; kept under its old name)."""
    return weighted_gradients(model, out, names)


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
    return results | weighted_gradients(model, out, check.family.parameters)


def judge_forward_output(results: dict, model: t.nn.Module, features: Tensor, mistakes: list[Mistake]) -> None:
    """The shape of `forward(features)`, its input untouched, and its values, naming a catalogued mistake."""
    got = expect_shaped(results["out"], "forward(features)", tuple(features.shape), "batch inst feats")
    if not t.equal(results["features_after"], features):
        raise CheckFailed("forward changed its input `features` in place; compute new tensors instead.")
    with t.no_grad():
        run = lambda impl: impl(model, features)
        expect_close_to_reference(got, model(features), "forward(features)", mistakes, run, inst_axis=-2)


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
            expect_close_to_reference(got, case_model(features), what, mistakes, run, case.hint, inst_axis=-2)
    if any(results[f"grad_{name}"] is None for name in family.parameters):
        raise CheckFailed(family.no_grad_hint + ".")
    model.requires_grad_(True)
    expected = weighted_gradients(model, model(main["features"]), family.parameters)
    expect_gradients(results, {name: expected[f"grad_{name}"] for name in family.parameters}, "your output")


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

    def first_instance_bias(self, features):
        W_in, W_out = weights(self)
        return F.relu(decode(encode(features, W_in), W_out) + self.b_final[0])

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
        first_instance_bias: HINT_EVERY_INSTANCE,
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
