"""Checks for `sae.resample_simple` (row 25), with its catalogue of mistakes and its alternatives.

Probes, for each member of a config family (the defaults, tied weights, another `resample_scale`): a window of recorded
activity in which every instance has dead latents (zero at every step), latents alive at every step, and latents that
fired at one step only, weakly (alive, to be left alone bit for bit), each instance with a dead set of its own, so that
each can fail on its own. The parameters are recorded before the method runs and an SGD optimiser is built over them;
after it, they must be the same objects with memory of their own, and one step of that optimiser must move each as it
should (kit property 5). Boundary windows: nothing dead (nothing may change), and an SAE of 40 latents all dead but
one, whose new directions are tested for uniformity on the sphere.

Kit properties: 1 (`resample_scale` at two values; `tied_weights`), 2 (tied: the encoder column is resample_scale · v
and nothing else is written), 3, 5 and 6 apply; 4 does not (the method writes under `no_grad`, nothing is
differentiated). `weight_normalize_eps` is not read: v is a unit vector (`F.normalize`, v / ‖v‖, or ARENA's v / (‖v‖ +
eps) at the default eps agree), and resetting Adam's moments of the resampled latents is the training loop's job
(`utils.training.train_sae`), not the method's. Property 7: the section's `ToySAE` extends the course's section 2.1
reference, so no earlier exercise of the learner's runs inside this check (no `requires`).
"""

import functools

import torch as t
import torch.nn.functional as F
from torch import Tensor, nn

from tests.harness import CheckFailed, Context, Exercise, Mistake
from tests.kit import HINT_REPLACED, config_family, expect_parameters_kept, setting
from tests.sae.common import N_INST, ProbeToyModel, build_sae, sae_config, set_parameters
from tests.sae.resampling.shared import (
    HINT_ALIVE,
    HINT_ANY_STEP,
    HINT_BIAS,
    HINT_EVERY_INSTANCE,
    HINT_TIED_DECODER_LAST,
    LR,
    alive_problem,
    dead_latents_of,
    judge_instances,
    random_unit,
    run_resampling,
    snapshot,
    write,
)
from tests.stats import Budget

MODULE = "solutions.sae.resampling"
D_IN, D_SAE, WINDOW = 4, 6, 6

FAMILY = config_family({"tied_weights": False, "resample_scale": 0.37}, tied_weights=(True,), resample_scale=(2.5,))

# Latent roles of instance 0; instance i has them rolled by i, so every instance has its own dead latents.
ROLES = ("dead", "alive", "rare", "dead", "once", "dead")  # rare: fired once, on 1 % of its batch; once: at step 0


def roles(inst: int) -> list[str]:
    return [ROLES[(latent + inst) % D_SAE] for latent in range(D_SAE)]


@functools.cache
def role_mask(role: str) -> Tensor:
    return t.tensor([[r == role for r in roles(i)] for i in range(N_INST)])


def activity_window() -> Tensor:
    """[window inst d_sae]: the fraction of each step's batch on which each latent fired."""
    window = t.full((WINDOW, N_INST, D_SAE), 0.2)
    for role in ("dead", "rare", "once"):
        window[:, role_mask(role)] = 0.0
    window[4, role_mask("rare")] = 0.01
    window[0, role_mask("once")] = 0.5
    return window


def parameter_case_for(context: Context, tied: bool) -> dict[str, Tensor]:
    g = context.generator(70)
    case = {"W_enc": t.randn((N_INST, D_IN, D_SAE), generator=g), "b_enc": t.randn((N_INST, D_SAE), generator=g) - 1,
            "b_dec": t.randn((N_INST, D_IN), generator=g) * 0.3}  # fmt: skip
    if not tied:
        case["_W_dec"] = F.normalize(t.randn((N_INST, D_SAE, D_IN), generator=g), dim=-1)
    return case


def resampling_sae(ToySAE: type, context: Context, tied: bool, salt: int):
    sae = build_sae(ToySAE, sae_config(d_sae=D_SAE, tied_weights=tied), ProbeToyModel(context, salt)).to(context.device)
    set_parameters(sae, parameter_case_for(context, tied))
    return sae


MANY = 40  # latents of the SAE probed for the distribution of the new directions: all dead but latent 0


def probe_resample_simple(ToySAE: type, context: Context) -> dict:
    window = activity_window().to(context.device)
    results = {}
    for label, fields in FAMILY:
        sae = resampling_sae(ToySAE, context, fields["tied_weights"], salt=71)
        results[label] = run_resampling(sae, lambda s, scale=fields["resample_scale"]: s.resample_simple(window, scale))
    again = resampling_sae(ToySAE, context, False, salt=71)
    again.resample_simple(window, FAMILY[0][1]["resample_scale"])
    results["again"] = snapshot(again)
    nothing_dead = resampling_sae(ToySAE, context, False, salt=71)
    nothing_dead.resample_simple(t.full_like(window, 0.2), 0.37)
    results["nothing_dead"] = snapshot(nothing_dead)
    many = build_sae(ToySAE, sae_config(d_sae=MANY), ProbeToyModel(context, 72)).to(context.device)
    window = t.zeros((WINDOW, N_INST, MANY), device=context.device)
    window[:, :, 0] = 0.3
    many.resample_simple(window, 0.37)
    results["many_directions"] = many.W_dec.detach()[:, 1:]
    return results


HINT_UNIT = "Normalise the random vectors: every dead latent's new decoder row must have unit norm"
HINT_SCALE = "The dead latent's encoder column is its new decoder direction times `resample_scale`: W_enc[inst, :, latent] = resample_scale · v"
HINT_SCALE_IGNORED = (
    "Use the `resample_scale` argument: your encoder columns have the same norm whatever `resample_scale` the "
    "method is given"
)
HINT_ENCODER = "Set the dead latent's encoder column to resample_scale · v, with the same v as its decoder row"
HINT_NOT_RESAMPLED = "Give every dead latent a new direction: its W_enc column (and W_dec row) must change"
HINT_SAME_DIRECTION = (
    "Draw a separate random direction for every dead latent (one t.randn row each), not one shared by all"
)
HINT_RESEED = "Two calls gave the same new directions: don't reseed the random generator inside resample_simple"
HINT_DISTRIBUTION = "The new directions must be uniform on the sphere: normalise a standard normal draw (`t.randn`); `t.rand` gives only positive coordinates"


def encoder_ratios(results: dict, context: Context, label: str) -> Tensor:
    """‖new encoder column‖ / ‖new decoder row‖ of every dead latent, untied."""
    after, dead = results[label]["after"], role_mask("dead")
    return after["W_enc"].transpose(-1, -2)[dead].norm(dim=-1) / after["_W_dec"][dead].norm(dim=-1).clamp_min(1e-12)


def instance_problem(before: dict, after: dict, again: dict | None, inst: int, tied: bool, scale: float) -> str | None:
    dead, rare = role_mask("dead")[inst], role_mask("rare")[inst] | role_mask("once")[inst]
    if problem := alive_problem(before, after, dead, rare, inst):
        return problem
    encoder = after["W_enc"][inst].T[dead]  # [n_dead d_in]
    if t.allclose(encoder, before["W_enc"][inst].T[dead]):
        return HINT_NOT_RESAMPLED
    if not (after["b_enc"][inst][dead] == 0).all():
        return HINT_BIAS
    norms = encoder.norm(dim=-1)
    if tied:  # one matrix: its direction is the new direction, of norm resample_scale
        if ((norms - 1).abs() < 1e-4).all():
            return HINT_TIED_DECODER_LAST
        if not ((norms - scale).abs() < 1e-4 * scale).all():
            return f"{HINT_SCALE}; with tied weights yours have norms {[round(n, 4) for n in norms.tolist()]}"
        directions = F.normalize(encoder, dim=-1)
    else:
        directions = after["_W_dec"][inst][dead]
        if not ((directions.norm(dim=-1) - 1).abs() < 1e-4).all():
            return HINT_UNIT
        if t.allclose(encoder, directions, atol=1e-5):
            return HINT_SCALE
        if not t.allclose(encoder, scale * directions, atol=1e-5 * scale):
            return HINT_ENCODER
    if t.allclose(directions, directions[:1].expand_as(directions), atol=1e-6):
        return HINT_SAME_DIRECTION
    if again is not None and t.allclose(encoder, again["W_enc"][inst].T[dead]):
        return HINT_RESEED
    return None


def verdict_resample_simple(results: dict, context: Context) -> None:
    default_ratio, other_ratio = (encoder_ratios(results, context, label) for label in ("default", FAMILY[2][0]))
    constant = (default_ratio - default_ratio[0]).abs().max() < 1e-4
    if constant and (other_ratio - default_ratio[0]).abs().max() < 1e-4 and abs(float(default_ratio[0]) - 1) > 1e-3:
        raise CheckFailed(f"{HINT_SCALE_IGNORED} ({float(default_ratio[0]):.4g} with {FAMILY[0][0]} settings and "
                          f"with {FAMILY[2][0]}).")  # fmt: skip
    for label, fields in FAMILY:
        tied, scale = fields["tied_weights"], fields["resample_scale"]
        run, before = results[label], parameter_case_for(context, tied)
        expect_parameters_kept(run["before"], run["after_record"], run["stepped"], "resample_simple", lr=LR)
        again = results["again"] if label == "default" else None
        problems = [instance_problem(before, run["after"], again, i, tied, scale) for i in range(N_INST)]
        judge_instances(problems, setting(label))
    before = parameter_case_for(context, False)
    if not all(t.equal(value, before[name]) for name, value in results["nothing_dead"].items()):
        raise CheckFailed(f"{HINT_ALIVE}: with no dead latent in the window, resample_simple changed the parameters.")
    # Signs of the coordinates of uniform directions are fair coins: test the count of negative ones.
    directions = results["many_directions"]
    if not ((directions.norm(dim=-1) - 1).abs() < 1e-4).all():
        raise CheckFailed(HINT_UNIT + ".")
    n = directions.numel()
    low, high = Budget(1).binomial_range(n, 0.5)
    if not low <= float((directions < 0).float().mean()) <= high:
        raise CheckFailed(
            f"{HINT_DISTRIBUTION} ({float((directions < 0).float().mean()):.1%} of coordinates are negative)."
        )


def simple_without_scale(self, frac_active_in_window, resample_scale):
    dead = dead_latents_of(frac_active_in_window)
    v = random_unit(int(dead.sum()), self.cfg.d_in)
    write(self, dead, v, v)


def simple_unnormalised(self, frac_active_in_window, resample_scale):
    dead = dead_latents_of(frac_active_in_window)
    v = t.randn((int(dead.sum()), self.cfg.d_in))
    write(self, dead, resample_scale * v, v)


def simple_resamples_every_latent(self, frac_active_in_window, resample_scale):
    dead = t.ones(frac_active_in_window.shape[1:], dtype=t.bool)
    v = random_unit(int(dead.sum()), self.cfg.d_in)
    write(self, dead, resample_scale * v, v)


def simple_any_inactive_step(self, frac_active_in_window, resample_scale):
    dead = (frac_active_in_window == 0).any(dim=0)
    v = random_unit(int(dead.sum()), self.cfg.d_in)
    write(self, dead, resample_scale * v, v)


def simple_rare_counted_dead(self, frac_active_in_window, resample_scale):
    dead = frac_active_in_window.mean(dim=0) < 0.05
    v = random_unit(int(dead.sum()), self.cfg.d_in)
    write(self, dead, resample_scale * v, v)


def simple_bias_kept(self, frac_active_in_window, resample_scale):
    dead = dead_latents_of(frac_active_in_window)
    v = random_unit(int(dead.sum()), self.cfg.d_in)
    write(self, dead, resample_scale * v, v, zero_bias=False)


def simple_positive_directions(self, frac_active_in_window, resample_scale):
    dead = dead_latents_of(frac_active_in_window)
    v = F.normalize(t.rand((int(dead.sum()), self.cfg.d_in)), dim=-1)
    write(self, dead, resample_scale * v, v)


def simple_one_direction_for_all(self, frac_active_in_window, resample_scale):
    dead = dead_latents_of(frac_active_in_window)
    v = random_unit(1, self.cfg.d_in).expand(int(dead.sum()), -1)
    write(self, dead, resample_scale * v, v)


def simple_encoder_direction_differs(self, frac_active_in_window, resample_scale):
    dead = dead_latents_of(frac_active_in_window)
    n = int(dead.sum())
    write(self, dead, resample_scale * random_unit(n, self.cfg.d_in), random_unit(n, self.cfg.d_in))


def simple_fixed_seed(self, frac_active_in_window, resample_scale):
    t.manual_seed(0)
    dead = dead_latents_of(frac_active_in_window)
    v = random_unit(int(dead.sum()), self.cfg.d_in)
    write(self, dead, resample_scale * v, v)


def simple_only_biases(self, frac_active_in_window, resample_scale):
    self.b_enc.data[dead_latents_of(frac_active_in_window)] = 0.0


def simple_scale_hard_coded(self, frac_active_in_window, resample_scale):
    # kind 1: the argument's value is replaced by ARENA's default
    dead = dead_latents_of(frac_active_in_window)
    v = random_unit(int(dead.sum()), self.cfg.d_in)
    write(self, dead, 0.5 * v, v)


def simple_decoder_written_after_encoder(self, frac_active_in_window, resample_scale):
    # kind 2: ARENA's order; tied, W_dec is a view of W_enc, so the unit v overwrites the scaled column
    dead = dead_latents_of(frac_active_in_window)
    v = random_unit(int(dead.sum()), self.cfg.d_in)
    self.W_enc.data.transpose(-1, -2)[dead] = resample_scale * v
    self.W_dec.data[dead] = v
    self.b_enc.data[dead] = 0.0


def simple_skips_last_instance(self, frac_active_in_window, resample_scale):
    # kind 3: an off-by-one in the loop over instances
    dead = dead_latents_of(frac_active_in_window)
    for inst in range(self.cfg.n_inst - 1):
        v = random_unit(int(dead[inst].sum()), self.cfg.d_in)
        self.W_enc.data[inst].T[dead[inst]] = resample_scale * v
        if not self.cfg.tied_weights:
            self._W_dec.data[inst][dead[inst]] = v
        self.b_enc.data[inst][dead[inst]] = 0.0


def simple_replaces_parameters(self, frac_active_in_window, resample_scale):
    # kind 5: right values in new parameters, which the optimiser built before never trains
    dead = dead_latents_of(frac_active_in_window)
    v = random_unit(int(dead.sum()), self.cfg.d_in)
    W_enc, b_enc = self.W_enc.detach().clone(), self.b_enc.detach().clone()
    W_enc.transpose(-1, -2)[dead] = resample_scale * v
    b_enc[dead] = 0.0
    self.W_enc, self.b_enc = nn.Parameter(W_enc), nn.Parameter(b_enc)
    if not self.cfg.tied_weights:
        W_dec = self._W_dec.detach().clone()
        W_dec[dead] = v
        self._W_dec = nn.Parameter(W_dec)


def simple_every_latent_when_none_dead(self, frac_active_in_window, resample_scale):
    # kind 6: "nothing dead" read as "resample everything" (an empty mask replaced by a full one)
    dead = dead_latents_of(frac_active_in_window)
    if not dead.any():
        dead = t.ones_like(dead)
    v = random_unit(int(dead.sum()), self.cfg.d_in)
    write(self, dead, resample_scale * v, v)


MISTAKES = [
    Mistake(simple_without_scale, HINT_SCALE),
    Mistake(simple_unnormalised, HINT_UNIT),
    Mistake(simple_resamples_every_latent, HINT_ALIVE),
    Mistake(simple_any_inactive_step, HINT_ANY_STEP),
    Mistake(simple_rare_counted_dead, HINT_ANY_STEP),
    Mistake(simple_bias_kept, HINT_BIAS),
    Mistake(simple_positive_directions, HINT_DISTRIBUTION),
    Mistake(simple_one_direction_for_all, HINT_SAME_DIRECTION),
    Mistake(simple_encoder_direction_differs, HINT_ENCODER),
    Mistake(simple_fixed_seed, HINT_RESEED),
    Mistake(simple_only_biases, HINT_NOT_RESAMPLED),
    Mistake(simple_scale_hard_coded, HINT_SCALE_IGNORED),
    Mistake(simple_decoder_written_after_encoder, HINT_TIED_DECODER_LAST),
    Mistake(simple_skips_last_instance, HINT_EVERY_INSTANCE),
    Mistake(simple_replaces_parameters, HINT_REPLACED.format(name="W_enc", what="resample_simple")),
    Mistake(simple_every_latent_when_none_dead, HINT_ALIVE + ": with no dead latent"),
]


def simple_arena_style(self, frac_active_in_window, resample_scale):
    # ARENA's solution: dead where the window is below 1e-8 at every step, directions normalised with an epsilon;
    # the decoder is written only when untied (ARENA writes it always, which loses the scale when tied)
    dead_latents_mask = (frac_active_in_window < 1e-8).all(dim=0)
    n_dead = int(dead_latents_mask.int().sum().item())
    replacement_values = t.randn((n_dead, self.cfg.d_in), device=self.W_enc.device)
    replacement_values_normed = replacement_values / (
        replacement_values.norm(dim=-1, keepdim=True) + self.cfg.weight_normalize_eps
    )
    self.W_enc.data.transpose(-1, -2)[dead_latents_mask] = resample_scale * replacement_values_normed
    if not self.cfg.tied_weights:
        self.W_dec.data[dead_latents_mask] = replacement_values_normed
    self.b_enc.data[dead_latents_mask] = 0.0


def simple_with_loops(self, frac_active_in_window, resample_scale):
    with t.no_grad():
        for inst in range(self.cfg.n_inst):
            for latent in range(self.cfg.d_sae):
                if frac_active_in_window[:, inst, latent].max() > 0:
                    continue
                v = t.randn(self.cfg.d_in, dtype=t.float64)
                v = (v / v.norm()).float()
                self.W_enc[inst, :, latent] = resample_scale * v
                if self._W_dec is not None:
                    self._W_dec[inst, latent] = v
                self.b_enc[inst, latent] = 0.0


def simple_decoder_first_then_encoder(self, frac_active_in_window, resample_scale):
    # writes the unit decoder row first and the scaled encoder after it: right tied and untied
    dead = dead_latents_of(frac_active_in_window)
    v = F.normalize(t.randn((int(dead.sum()), self.cfg.d_in), device=self.W_enc.device), dim=-1)
    with t.no_grad():
        self.W_dec[dead] = v
        self.W_enc.transpose(-1, -2)[dead] = resample_scale * v
        self.b_enc[dead] = 0.0


EXERCISE = Exercise(
    id="sae.resample_simple",
    name="ToySAE",
    method="resample_simple",
    reference_path=f"{MODULE}:ToySAE",
    probe=probe_resample_simple,
    verdict=verdict_resample_simple,
    mistakes=MISTAKES,
    alternatives=[simple_arena_style, simple_with_loops, simple_decoder_first_then_encoder],
)
