"""Checks for chapter 2, section 4 (resampling dead latents), with their catalogues of mistakes.

Both methods are probed on windows of recorded activity in which some latents are dead (zero at every step), some are
alive at every step, and some fired at one step only, weakly: alive, and to be left alone bit for bit. The verdicts
are deterministic where the contract is (which latents change, unit decoder rows, the encoder's scale, zero biases)
and statistical where it is random (random directions; inputs sampled with probability ∝ squared loss), with
finite-sample bounds from `tests.stats`.
"""

import einops
import torch as t
import torch.nn.functional as F
from torch import Tensor

from tests.harness import CheckFailed, Context, Exercise, Mistake
from tests.sae.common import N_INST, ProbeToyModel, build_sae, sae_config, set_parameters
from tests.stats import Budget

MODULE = "solutions.sae.resampling"
D_IN, D_SAE, WINDOW = 4, 6, 6
SCALE = 0.37

# Latent roles, the same in instances 0 and 1; instance 2 has no dead latent.
DEAD = (0, 3, 5)
RARE = 2  # fired once in the window, on 1 % of its batch
ONCE = 4  # fired at the window's first step only


def activity_window() -> Tensor:
    """[window inst d_sae]: the fraction of each step's batch on which each latent fired."""
    window = t.full((WINDOW, N_INST, D_SAE), 0.2)
    window[:, :2, list(DEAD)] = 0.0
    window[:, :2, RARE] = 0.0
    window[4, :2, RARE] = 0.01
    window[:, :2, ONCE] = 0.0
    window[0, :2, ONCE] = 0.5
    return window


def dead_mask() -> Tensor:
    mask = t.zeros((N_INST, D_SAE), dtype=t.bool)
    mask[:2, list(DEAD)] = True
    return mask


def snapshot(sae) -> dict[str, Tensor]:
    names = ("W_enc", "b_enc", "b_dec", *(() if sae.cfg.tied_weights else ("_W_dec",)))
    return {name: getattr(sae, name).detach().clone() for name in names}


def resampling_sae(ToySAE: type, context: Context, tied: bool, salt: int):
    sae = build_sae(ToySAE, sae_config(d_sae=D_SAE, tied_weights=tied), ProbeToyModel(context, salt)).to(context.device)
    case = parameter_case_for(context, tied)
    set_parameters(sae, case)
    return sae


def parameter_case_for(context: Context, tied: bool) -> dict[str, Tensor]:
    g = context.generator(70)
    case = {"W_enc": t.randn((N_INST, D_IN, D_SAE), generator=g), "b_enc": t.randn((N_INST, D_SAE), generator=g) - 1,
            "b_dec": t.randn((N_INST, D_IN), generator=g) * 0.3}  # fmt: skip
    if not tied:
        case["_W_dec"] = F.normalize(t.randn((N_INST, D_SAE, D_IN), generator=g), dim=-1)
    return case


# ------------------------------------------------------------------------------------------ resample_simple

MANY = 40  # latents of the SAE probed for the distribution of the new directions: all dead but latent 0


def probe_resample_simple(ToySAE: type, context: Context) -> dict:
    results = {}
    for tied in (False, True):
        key = "tied" if tied else "untied"
        sae = resampling_sae(ToySAE, context, tied, salt=71)
        sae.resample_simple(activity_window().to(context.device), SCALE)
        again = resampling_sae(ToySAE, context, tied, salt=71)
        again.resample_simple(activity_window().to(context.device), SCALE)
        results[key] = {"after": snapshot(sae), "again": snapshot(again)}
    many = build_sae(ToySAE, sae_config(d_sae=MANY), ProbeToyModel(context, 72)).to(context.device)
    window = t.zeros((WINDOW, N_INST, MANY), device=context.device)
    window[:, :, 0] = 0.3
    many.resample_simple(window, SCALE)
    results["many_directions"] = many.W_dec.detach()[:, 1:]
    return results


HINT_ALIVE = "Leave every latent that fired at some step of the window exactly as it was (its W_enc column, W_dec row and b_enc), and don't touch b_dec"
HINT_ANY_STEP = (
    "A latent is dead only if it fired at *no* step of the window: `(frac_active_in_window == 0).all(dim=0)` (or "
    "`< 1e-8`), not `.any(dim=0)`, and not a low average: a latent that fires rarely is alive"
)
HINT_BIAS = "Set the encoder bias b_enc of every dead latent to 0"
HINT_UNIT = "Normalise the random vectors: every dead latent's new decoder row must have unit norm"
HINT_SCALE = "The dead latent's encoder column is its new decoder direction times `resample_scale`: W_enc[inst, :, latent] = resample_scale · v"
HINT_ENCODER = "Set the dead latent's encoder column to resample_scale · v, with the same v as its decoder row"
HINT_NOT_RESAMPLED = "Give every dead latent a new direction: its W_enc column (and W_dec row) must change"
HINT_SAME_DIRECTION = (
    "Draw a separate random direction for every dead latent (one t.randn row each), not one shared by all"
)
HINT_RESEED = "Two calls gave the same new directions: don't reseed the random generator inside resample_simple"
HINT_DISTRIBUTION = "The new directions must be uniform on the sphere: normalise a standard normal draw (`t.randn`); `t.rand` gives only positive coordinates"


def check_alive_untouched(before: dict, after: dict, dead: Tensor, rarely_active: tuple[int, ...]) -> None:
    """Alive latents unchanged bit for bit; if only ones that fired at few steps changed, the dead test was wrong."""
    changed = t.zeros_like(dead)
    for name, value in after.items():
        if name == "b_dec":
            if not t.equal(value, before[name]):
                raise CheckFailed(f"{HINT_ALIVE} (b_dec changed).")
            continue
        difference = value != before[name]
        changed |= (
            difference.any(dim=-2) if name == "W_enc" else difference.any(dim=-1) if value.dim() == 3 else difference
        )
    changed &= ~dead
    if not changed.any():
        return
    rare = t.zeros_like(dead)
    rare[:2, list(rarely_active)] = True
    if (changed & ~rare).any():
        raise CheckFailed(f"{HINT_ALIVE} (a latent that fired at every step changed).")
    raise CheckFailed(HINT_ANY_STEP + ".")


def verdict_resample_simple(results: dict, context: Context) -> None:
    dead = dead_mask()
    for key, tied in (("untied", False), ("tied", True)):
        before, after = parameter_case_for(context, tied), results[key]["after"]
        check_alive_untouched(before, after, dead, (RARE, ONCE))
        if not (after["b_enc"][dead] == 0).all():
            raise CheckFailed(HINT_BIAS + ".")
        encoder = after["W_enc"].transpose(-1, -2)[dead]  # [n_dead d_in]
        if t.allclose(encoder, before["W_enc"].transpose(-1, -2)[dead]):
            raise CheckFailed(HINT_NOT_RESAMPLED + ".")
        if (
            tied
        ):  # one matrix: its direction is the new direction, of norm resample_scale (or 1, if the decoder's v won)
            norms = encoder.norm(dim=-1)
            if not (((norms - SCALE).abs() < 1e-4) | ((norms - 1).abs() < 1e-4)).all():
                raise CheckFailed(f"{HINT_SCALE}; with tied weights yours have norms {norms.tolist()}.")
            directions = F.normalize(encoder, dim=-1)
        else:
            directions = after["_W_dec"][dead]
            if not ((directions.norm(dim=-1) - 1).abs() < 1e-4).all():
                raise CheckFailed(HINT_UNIT + ".")
            if t.allclose(encoder, directions, atol=1e-5):
                raise CheckFailed(HINT_SCALE + ".")
            if not t.allclose(encoder, SCALE * directions, atol=1e-5):
                raise CheckFailed(HINT_ENCODER + ".")
        if t.allclose(directions, directions[:1].expand_as(directions), atol=1e-6):
            raise CheckFailed(HINT_SAME_DIRECTION + ".")
        again = results[key]["again"]["W_enc"].transpose(-1, -2)[dead]
        if t.allclose(encoder, again):
            raise CheckFailed(HINT_RESEED + ".")
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


def dead_latents_of(window):
    return (window == 0).all(dim=0)


def write(self, dead, encoder_rows, decoder_rows, zero_bias=True):
    self.W_enc.data.transpose(-1, -2)[dead] = encoder_rows
    if not self.cfg.tied_weights:
        self._W_dec.data[dead] = decoder_rows
    if zero_bias:
        self.b_enc.data[dead] = 0.0


def random_unit(n, d):
    return F.normalize(t.randn((n, d)), dim=-1)


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


SIMPLE_MISTAKES = [
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
]


def simple_arena_style(self, frac_active_in_window, resample_scale):
    # ARENA's solution: dead where the window is below 1e-8 at every step, directions normalised with an epsilon
    dead_latents_mask = (frac_active_in_window < 1e-8).all(dim=0)
    n_dead = int(dead_latents_mask.int().sum().item())
    replacement_values = t.randn((n_dead, self.cfg.d_in), device=self.W_enc.device)
    replacement_values_normed = replacement_values / (
        replacement_values.norm(dim=-1, keepdim=True) + self.cfg.weight_normalize_eps
    )
    self.W_enc.data.transpose(-1, -2)[dead_latents_mask] = resample_scale * replacement_values_normed
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


# ---------------------------------------------------------------------------------------- resample_advanced

BATCH = 40
GROUPS = {"low": range(0, 20), "high": range(20, 30), "zero": range(30, 40)}  # ‖h − b_dec‖ = 1, √3, 0
REPEATS = 12
ADVANCED_D_SAE = 12
ADVANCED_DEAD = tuple(range(4, 12))  # latents 0-3 alive; instance 2 has no dead latent


def advanced_case(context: Context) -> dict[str, Tensor]:
    """Parameters under which no latent fires on the probe's inputs (every b_enc is −100), so every input's
    reconstruction is b_dec and its loss ‖h − b_dec‖² / d_in is set by the input alone; alive encoder columns of
    varied norms (their mean scales the new ones)."""
    g = context.generator(73)
    W_enc = F.normalize(t.randn((N_INST, D_IN, ADVANCED_D_SAE), generator=g), dim=1)
    W_enc = W_enc * (0.5 + 2 * t.rand((N_INST, 1, ADVANCED_D_SAE), generator=g))
    b_dec = t.randn((N_INST, D_IN), generator=g) * 0.3
    lengths = t.tensor([1.0] * 20 + [3**0.5] * 10 + [0.0] * 10)
    offsets = F.normalize(t.randn((BATCH, N_INST, D_IN), generator=g), dim=-1) * lengths[:, None, None]
    return {
        "W_enc": W_enc, "b_enc": t.full((N_INST, ADVANCED_D_SAE), -100.0), "b_dec": b_dec,
        "_W_dec": F.normalize(t.randn((N_INST, ADVANCED_D_SAE, D_IN), generator=g), dim=-1), "h": b_dec + offsets,
    }  # fmt: skip


def advanced_window() -> Tensor:
    window = t.full((WINDOW, N_INST, ADVANCED_D_SAE), 0.1)
    window[:, :2, list(ADVANCED_DEAD)] = 0.0
    window[:, :2, 1] = 0.0
    window[3, :2, 1] = 0.02  # latent 1 fired once: alive
    return window


def probe_resample_advanced(ToySAE: type, context: Context) -> dict:
    case = {name: value.to(context.device) for name, value in advanced_case(context).items()}
    runs = []
    for _ in range(REPEATS):
        sae = build_sae(ToySAE, sae_config(d_sae=ADVANCED_D_SAE), ProbeToyModel(context, 74)).to(context.device)
        set_parameters(sae, {name: value for name, value in case.items() if name != "h"})
        sae.generate_batch = lambda batch_size, h=case["h"]: h.clone()  # the probe decides the inputs
        sae.resample_advanced(advanced_window().to(context.device), SCALE, BATCH)
        runs.append(snapshot(sae))
    return {"runs": runs}


HINT_SQUARED_LOSS = (
    "Sample the inputs with probability proportional to their *squared* reconstruction loss, "
    "L_reconstruction² (e.g. `t.multinomial(loss.pow(2), n_dead, replacement=True)`), not to the loss itself"
)
HINT_SAMPLE = "Sample the inputs at random, with probability ∝ squared loss; don't take the worst one(s) every time"
HINT_CENTRED = (
    "The new decoder direction is the sampled input centred by b_dec and normalised: (h − b_dec) / ‖h − b_dec‖"
)
HINT_ADVANCED_UNIT = (
    "Normalise the sampled (centred) inputs before using them as decoder rows: each must have unit norm"
)
HINT_ALIVE_NORM = (
    "The new encoder column is the decoder direction × the mean encoder norm of the *alive* latents × resample_scale "
    "(mean of ‖W_enc[inst, :, alive]‖ over the alive latents of that instance)"
)
HINT_ZERO_LOSS = "An input with zero reconstruction loss has probability 0: never resample towards it"


def verdict_resample_advanced(results: dict, context: Context) -> None:
    case = advanced_case(context)
    window = advanced_window()
    dead = (window == 0).all(dim=0)
    before = {name: value for name, value in case.items() if name != "h"}
    centred = F.normalize(case["h"] - case["b_dec"], dim=-1)  # [batch inst d_in]; zero rows stay zero
    uncentred = F.normalize(case["h"], dim=-1)
    alive_norm = (case["W_enc"].norm(dim=1) * ~dead).sum(-1) / (~dead).sum(-1)  # [inst]
    chosen = {group: 0 for group in GROUPS}
    n_samples = 0
    for run in results["runs"]:
        check_alive_untouched(before, run, dead, (1,))
        if not (run["b_enc"][dead] == 0).all():
            raise CheckFailed(HINT_BIAS + ".")
        for inst in range(2):
            rows = run["_W_dec"][inst, list(ADVANCED_DEAD)]  # [n_dead d_in]
            if (rows.norm(dim=-1) < 1e-6).any():
                raise CheckFailed(
                    HINT_ZERO_LOSS + " (a new decoder row is all zeros: it points at an input equal to b_dec)."
                )
            if not ((rows.norm(dim=-1) - 1).abs() < 1e-4).all():
                raise CheckFailed(HINT_ADVANCED_UNIT + ".")
            similarity = rows @ centred[:, inst].T  # [n_dead batch]
            best, index = similarity.max(dim=-1)
            if (best < 1 - 1e-4).any():
                if ((rows @ uncentred[:, inst].T).max(dim=-1).values > 1 - 1e-4).all():
                    raise CheckFailed(HINT_CENTRED + " (yours are the inputs themselves, not centred).")
                raise CheckFailed(HINT_CENTRED + ".")
            encoder = run["W_enc"][inst][:, list(ADVANCED_DEAD)].T
            if not t.allclose(encoder, rows * alive_norm[inst] * SCALE, rtol=1e-4, atol=1e-5):
                raise CheckFailed(HINT_ALIVE_NORM + ".")
            for group, members in GROUPS.items():
                chosen[group] += int(sum(int(i) in members for i in index))
            n_samples += len(index)
    if chosen["zero"]:
        raise CheckFailed(f"{HINT_ZERO_LOSS}: {chosen['zero']} of {n_samples} resampled latents point at one.")
    # Squared losses: ‖h − b_dec‖⁴ / d_in², 1 for the 20 "low" inputs and 9 for the 10 "high" ones.
    expected = 10 * 9 / (20 * 1 + 10 * 9)
    low, high = Budget(2).binomial_range(n_samples, expected)  # one test; a budget of 2 keeps its level as written
    share = chosen["high"] / n_samples
    if share > 1 - 1e-9:
        raise CheckFailed(HINT_SAMPLE + " (every resampled latent points at one of the worst inputs).")
    if not low <= share <= high:
        proportional = 10 * 3 / (20 * 1 + 10 * 3)
        raise CheckFailed(
            f"{HINT_SQUARED_LOSS}. {share:.1%} of the resampled latents point at the inputs with 3× the loss of the others; "
            f"sampling ∝ squared loss gives {expected:.1%} (∝ loss: {proportional:.1%})."
        )


def advanced_from(
    self,
    frac_active_in_window,
    resample_scale,
    batch_size,
    weights,
    centre=True,
    normalise=True,
    norm_of="alive",
    take="sample",
):
    """The reference recipe with one step changed (for the catalogue of mistakes)."""
    dead = (frac_active_in_window == 0).all(dim=0)
    h = self.generate_batch(batch_size)
    loss = self.forward(h)[0]["L_reconstruction"]
    for inst in range(self.cfg.n_inst):
        latents = dead[inst].nonzero().squeeze(-1)
        if len(latents) == 0:
            continue
        w = weights(loss[:, inst])
        index = t.multinomial(w, len(latents), replacement=True) if take == "sample" else w.topk(len(latents)).indices
        rows = h[index, inst] - (self.b_dec[inst] if centre else 0)
        rows = F.normalize(rows, dim=-1) if normalise else rows
        alive = ~dead[inst]
        norms = self.W_enc[inst].norm(dim=0)
        scale = {"alive": norms[alive].mean(), "all": norms.mean(), "none": t.tensor(1.0)}[norm_of]
        self.W_enc.data[inst][:, latents] = (rows * scale * resample_scale).T
        self._W_dec.data[inst][latents] = rows
        self.b_enc.data[inst][latents] = 0.0


def advanced_proportional_to_loss(self, frac_active_in_window, resample_scale, batch_size):
    advanced_from(self, frac_active_in_window, resample_scale, batch_size, weights=lambda loss: loss)


def advanced_uniform(self, frac_active_in_window, resample_scale, batch_size):
    advanced_from(self, frac_active_in_window, resample_scale, batch_size, weights=lambda loss: t.ones_like(loss))


def advanced_worst_inputs(self, frac_active_in_window, resample_scale, batch_size):
    advanced_from(self, frac_active_in_window, resample_scale, batch_size, weights=lambda loss: loss**2, take="top")


def advanced_not_centred(self, frac_active_in_window, resample_scale, batch_size):
    advanced_from(self, frac_active_in_window, resample_scale, batch_size, weights=lambda loss: loss**2, centre=False)


def advanced_not_normalised(self, frac_active_in_window, resample_scale, batch_size):
    advanced_from(
        self, frac_active_in_window, resample_scale, batch_size, weights=lambda loss: loss**2, normalise=False
    )


def advanced_mean_norm_of_every_latent(self, frac_active_in_window, resample_scale, batch_size):
    advanced_from(self, frac_active_in_window, resample_scale, batch_size, weights=lambda loss: loss**2, norm_of="all")


def advanced_without_alive_norm(self, frac_active_in_window, resample_scale, batch_size):
    advanced_from(self, frac_active_in_window, resample_scale, batch_size, weights=lambda loss: loss**2, norm_of="none")


def advanced_any_inactive_step(self, frac_active_in_window, resample_scale, batch_size):
    window = frac_active_in_window.clone()
    window[:, (frac_active_in_window == 0).any(dim=0)] = 0.0
    advanced_from(self, window, resample_scale, batch_size, weights=lambda loss: loss**2)


def advanced_bias_kept(self, frac_active_in_window, resample_scale, batch_size):
    biases = self.b_enc.detach().clone()
    advanced_from(self, frac_active_in_window, resample_scale, batch_size, weights=lambda loss: loss**2)
    self.b_enc.data.copy_(biases)


ADVANCED_MISTAKES = [
    Mistake(advanced_proportional_to_loss, HINT_SQUARED_LOSS),
    Mistake(advanced_uniform, HINT_ZERO_LOSS),
    Mistake(advanced_worst_inputs, HINT_SAMPLE),
    Mistake(advanced_not_centred, HINT_CENTRED),
    Mistake(advanced_not_normalised, HINT_ADVANCED_UNIT),
    Mistake(advanced_mean_norm_of_every_latent, HINT_ALIVE_NORM),
    Mistake(advanced_without_alive_norm, HINT_ALIVE_NORM),
    Mistake(advanced_any_inactive_step, HINT_ANY_STEP),
    Mistake(advanced_bias_kept, HINT_BIAS),
]


def advanced_arena_style(self, frac_active_in_window, resample_scale, batch_size):
    # ARENA's solution, with torch.distributions.Categorical and an epsilon in the normalisation
    from torch.distributions.categorical import Categorical

    h = self.generate_batch(batch_size)
    l2_loss = self.forward(h)[0]["L_reconstruction"]
    for instance in range(self.cfg.n_inst):
        is_dead = (frac_active_in_window[:, instance] < 1e-8).all(dim=0)
        dead_latents = t.nonzero(is_dead).squeeze(-1)
        n_dead = dead_latents.numel()
        if n_dead == 0:
            continue
        l2_loss_instance = l2_loss[:, instance]
        if l2_loss_instance.max() < 1e-6:
            continue
        distn = Categorical(probs=l2_loss_instance.pow(2) / l2_loss_instance.pow(2).sum())
        replacement_indices = distn.sample((n_dead,))
        replacement_values = (h - self.b_dec)[replacement_indices, instance]
        replacement_values_normalized = replacement_values / (
            replacement_values.norm(dim=-1, keepdim=True) + self.cfg.weight_normalize_eps
        )
        W_enc_norm_alive_mean = self.W_enc[instance, :, ~is_dead].norm(dim=0).mean().item() if (~is_dead).any() else 1.0
        self.W_dec.data[instance, dead_latents, :] = replacement_values_normalized
        self.W_enc.data[instance, :, dead_latents] = (
            replacement_values_normalized.T * W_enc_norm_alive_mean * resample_scale
        )
        self.b_enc.data[instance, dead_latents] = 0.0


def advanced_with_summed_squared_error(self, frac_active_in_window, resample_scale, batch_size):
    # the loss summed over d_in instead of averaged: proportional, so the same probabilities
    dead = (frac_active_in_window == 0).all(dim=0)
    h = self.generate_batch(batch_size)
    _, _, _, h_rec = self.forward(h)
    squared = einops.reduce((h - h_rec) ** 2, "batch inst d_in -> inst batch", "sum") ** 2
    for inst in range(self.cfg.n_inst):
        latents = dead[inst].nonzero().squeeze(-1)
        if len(latents) == 0:
            continue
        index = t.multinomial(squared[inst], len(latents), replacement=True)
        rows = F.normalize(h[index, inst] - self.b_dec[inst], dim=-1)
        self.W_enc.data[inst][:, latents] = (
            rows * self.W_enc[inst][:, ~dead[inst]].norm(dim=0).mean() * resample_scale
        ).T
        self._W_dec.data[inst][latents] = rows
        self.b_enc.data[inst][latents] = 0.0


EXERCISES = [
    Exercise(
        id="sae.resample_simple",
        name="ToySAE",
        method="resample_simple",
        title="resample dead latents in random directions",
        difficulty=3,
        importance=3,
        minutes="20-30",
        reference_path=f"{MODULE}:ToySAE",
        probe=probe_resample_simple,
        verdict=verdict_resample_simple,
        mistakes=SIMPLE_MISTAKES,
        alternatives=[simple_arena_style, simple_with_loops],
    ),
    Exercise(
        id="sae.resample_advanced",
        name="ToySAE",
        method="resample_advanced",
        title="resample dead latents towards badly reconstructed inputs",
        difficulty=4,
        importance=2,
        minutes="25-40",
        reference_path=f"{MODULE}:ToySAE",
        probe=probe_resample_advanced,
        verdict=verdict_resample_advanced,
        mistakes=ADVANCED_MISTAKES,
        alternatives=[advanced_arena_style, advanced_with_summed_squared_error],
    ),
]
