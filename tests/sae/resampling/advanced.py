"""Checks for `sae.resample_advanced` (row 26), with its catalogue of mistakes and its alternatives.

Main probe: parameters under which every input's loss is set by the input alone. All latents are silent except, when
untied, one alive latent per instance with a zero decoder row that fires (strongly) only on the inputs equal to b_dec:
it adds to the *total* loss there and nothing to `L_reconstruction` (which stays 0). So each input's reconstruction
loss is ‖h − b_dec‖² / d_in: 1/4 ("low"), 3/4 ("high") or 0 ("zero"), in an order of its own in every instance. Every
instance has dead latents (a set of its own), alive ones, and one that fired at one step only (alive). The probe's
`generate_batch` serves those inputs (cycled to any size) and records the sizes asked for. Each run is judged per
instance (deterministic: which latents change, unit decoder rows among the centred inputs, the encoder's scale, zero
biases, never a zero-loss input), and the picks of the default runs together statistically (∝ squared loss).

Config family: the defaults (untied, resample_scale 0.37, batch_size 40), tied weights, another resample_scale, and
batch_size 5, which is fewer inputs than dead latents (sampling must be with replacement). Degenerate probe: every
input reconstructed exactly (all losses exactly 0, in float32): the contract says to sample uniformly, so every dead
latent is resampled towards one of the inputs (which of them is not tested beyond that). Parameters are recorded before
the method and must stay the same objects, trained by an optimiser built before (kit property 5).

Not probed, as the contract is silent: an instance whose latents are all dead (no alive norm to average; the reference
and ARENA use 1). Kit properties: 1 (resample_scale, batch_size; `sparsity_coeff` through the total loss, which must
not be used), 2, 3, 5 and 6 apply; 4 does not (nothing differentiable is written). `weight_normalize_eps` only reaches
the losses through `forward` (section 2.1's exercise), and the Adam reset of resampled latents is the training loop's
job. Property 7: the section's `ToySAE` extends the course's section 2.1 reference, so no earlier exercise of the
learner's runs inside this check (no `requires`).
"""

import functools

import einops
import torch as t
import torch.nn.functional as F
from torch import Tensor, nn

from tests.harness import CheckFailed, Context, Exercise, Mistake, attempt, raised
from tests.kit import HINT_REPLACED, config_family, expect_parameters_kept, setting
from tests.sae.common import N_INST, ProbeToyModel, build_sae, sae_config, set_parameters
from tests.sae.resampling.shared import (
    HINT_ANY_STEP,
    HINT_BIAS,
    HINT_EVERY_INSTANCE,
    HINT_TIED_DECODER_LAST,
    LR,
    alive_problem,
    judge_instances,
    run_resampling,
)
from tests.stats import Budget

MODULE = "solutions.sae.resampling"
D_IN, WINDOW = 4, 6
BATCH = 40
D_SAE = 12
LOW, HIGH, ZERO = 0, 1, 2  # groups of inputs: ‖h − b_dec‖ = 1, √3, 0
REPEATS = {"default": 12}  # runs per family member; the default's picks are tested statistically
FAMILY = config_family(
    {"tied_weights": False, "resample_scale": 0.37, "batch_size": BATCH},
    tied_weights=(True,),
    resample_scale=(1.7,),
    batch_size=(5,),
)
# Latent roles of instance 0 (rolled by 4 per instance): "sparse" fires on the zero group only, through a zero decoder
# row (untied); "once" fired at one step of the window (alive).
ROLES = ("sparse", "once", "alive", "alive") + ("dead",) * 8


def roles(inst: int) -> list[str]:
    return [ROLES[(latent + 4 * inst) % D_SAE] for latent in range(D_SAE)]


@functools.cache
def role_mask(role: str) -> Tensor:
    return t.tensor([[r == role for r in roles(i)] for i in range(N_INST)])


def advanced_window() -> Tensor:
    window = t.full((WINDOW, N_INST, D_SAE), 0.1)
    window[:, role_mask("dead") | role_mask("once")] = 0.0
    window[3, role_mask("once")] = 0.02
    return window


def groups(context: Context) -> Tensor:
    """[batch inst]: each input's group; 20 low, 10 high, 10 zero per instance, in an order of its own, with no zero
    input among the first 5 (the batch_size=5 probe has a loss to sample from)."""
    g = context.generator(75)
    kinds = t.tensor([LOW] * 20 + [HIGH] * 10)
    columns = []
    for _ in range(N_INST):
        nonzero = kinds[t.randperm(30, generator=g)]
        rest = t.cat([nonzero[5:], t.full((10,), ZERO)])
        columns.append(t.cat([nonzero[:5], rest[t.randperm(35, generator=g)]]))
    return t.stack(columns, dim=1)


def advanced_case(context: Context, tied: bool) -> dict[str, Tensor]:
    g = context.generator(73)
    W_enc = F.normalize(t.randn((N_INST, D_IN, D_SAE), generator=g), dim=1)
    W_enc = W_enc * (0.5 + 2 * t.rand((N_INST, 1, D_SAE), generator=g))
    b_dec = t.randn((N_INST, D_IN), generator=g) * 0.3
    b_enc = t.full((N_INST, D_SAE), -100.0)
    W_dec = F.normalize(t.randn((N_INST, D_SAE, D_IN), generator=g), dim=-1)
    kind = groups(context)
    lengths = t.tensor([1.0, 3**0.5, 0.0])[kind]  # [batch inst]
    directions = t.randn((BATCH, N_INST, D_IN), generator=g)
    if not tied:  # the sparse latent reads u, and every non-zero input points away from u: it fires on b_dec only
        sparse = role_mask("sparse")
        u = W_enc.transpose(-1, -2)[sparse] / W_enc.transpose(-1, -2)[sparse].norm(dim=-1, keepdim=True)  # [inst d_in]
        across = F.normalize(directions - (directions * u).sum(-1, keepdim=True) * u, dim=-1)
        directions = 0.6 * across - 0.8 * u
        W_enc.transpose(-1, -2)[sparse] = 50 * u  # pre-activation 20 on b_dec, below −20 on every other input
        b_enc[sparse] = 20.0
        W_dec[sparse] = 0.0
    offsets = F.normalize(directions, dim=-1) * lengths[..., None]
    case = {"W_enc": W_enc, "b_enc": b_enc, "b_dec": b_dec, "h": b_dec + offsets}
    return case if tied else case | {"_W_dec": W_dec}


def exact_case() -> dict[str, Tensor]:
    """Every input reconstructed exactly, in float32: alive latents 0-3 read and write the basis vectors e_0 … e_3,
    inputs are b_dec + a·e_j with dyadic a and b_dec, and the dead latents (4-11) never fire."""
    W_enc = t.zeros((N_INST, D_IN, D_SAE))
    W_enc[:, :, :D_IN] = t.eye(D_IN)
    W_enc[:, :, D_IN:] = 0.5
    W_dec = W_enc.transpose(-1, -2).clone()
    b_enc = t.zeros((N_INST, D_SAE))
    b_enc[:, D_IN:] = -100.0
    b_dec = t.tensor([0.25, -0.5, 0.75, -1.0]).expand(N_INST, -1).clone()
    rows = t.arange(BATCH)
    h = b_dec + t.eye(D_IN)[rows % D_IN][:, None, :] * (0.5 * (1 + (rows // D_IN) % 4))[:, None, None]
    return {"W_enc": W_enc, "b_enc": b_enc, "b_dec": b_dec, "_W_dec": W_dec, "h": h}


def exact_window() -> Tensor:
    window = t.full((WINDOW, N_INST, D_SAE), 0.1)
    window[:, :, D_IN:] = 0.0
    return window


def prepared_sae(ToySAE: type, context: Context, case: dict, tied: bool) -> tuple[nn.Module, list]:
    """The learner's SAE with the case's parameters, whose `generate_batch` serves the case's inputs, cycled to the
    size asked for, and records that size."""
    sae = build_sae(ToySAE, sae_config(d_sae=D_SAE, tied_weights=tied), ProbeToyModel(context, 74)).to(context.device)
    set_parameters(sae, {name: value for name, value in case.items() if name != "h"})
    asked = []

    def generate_batch(batch_size: int) -> Tensor:
        asked.append(int(batch_size))
        return case["h"][t.arange(int(batch_size)) % BATCH].to(context.device)

    sae.generate_batch = generate_batch
    return sae, asked


def probe_resample_advanced(ToySAE: type, context: Context) -> dict:
    results = {}
    for label, fields in FAMILY:
        case, runs = advanced_case(context, fields["tied_weights"]), []
        window = advanced_window().to(context.device)
        scale, batch_size = fields["resample_scale"], fields["batch_size"]
        for repeat in range(REPEATS.get(label, 2)):
            sae, asked = prepared_sae(ToySAE, context, case, fields["tied_weights"])
            call = lambda s, a=scale, b=batch_size: s.resample_advanced(window, a, b)  # noqa: E731
            run = attempt(lambda s=sae, c=call, first=repeat == 0: run_resampling(s, c, step=first))
            runs.append(run if raised(run) else run | {"asked": asked})
        results[label] = runs
    sae, _ = prepared_sae(ToySAE, context, exact_case(), False)
    results["exact"] = attempt(
        lambda: run_resampling(sae, lambda s: s.resample_advanced(exact_window().to(context.device), 0.37, BATCH))
    )
    return results


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
HINT_TOTAL_LOSS = (
    "Weight the inputs by their squared *reconstruction* loss, `loss_dict['L_reconstruction']`, not by the total "
    "loss (which adds sparsity_coeff · L_sparsity): an input reconstructed exactly must never be picked, however many "
    "latents fire on it"
)
HINT_BATCH_SIZE = "Draw the inputs with `self.generate_batch(batch_size)`, using the method's `batch_size` argument"
HINT_REPLACEMENT = (
    "Sample with replacement (`t.multinomial(..., replacement=True)`): there can be more dead latents than inputs in "
    "the batch, and two dead latents may restart at the same input"
)
HINT_EXACT = (
    "When every input is reconstructed exactly (all squared losses 0) there is nothing to prefer: sample the inputs "
    "uniformly (e.g. weights `t.ones_like(loss)`) instead of dividing by a zero sum, skipping the instance, or "
    "calling `t.multinomial` with all-zero weights (which raises)"
)


def run_problem(run: dict, case: dict, dead: Tensor, rare: Tensor, kind: Tensor | None, inst: int, tied: bool,
                scale: float) -> str | None:  # fmt: skip
    """What is wrong in one instance of one run (None if nothing), given the case it ran on."""
    after = run["after"]
    if problem := alive_problem(case, after, dead, rare, inst):
        return problem
    encoder = after["W_enc"][inst].T[dead]  # [n_dead d_in]
    if t.allclose(encoder, case["W_enc"][inst].T[dead]):
        return "Give every dead latent a new direction: its W_enc column (and W_dec row) must change"
    if not (after["b_enc"][inst][dead] == 0).all():
        return HINT_BIAS
    alive_norm = case["W_enc"][inst].norm(dim=0)[~dead].mean()
    if tied:
        norms = encoder.norm(dim=-1)
        if ((norms - 1).abs() < 1e-4).all() and abs(float(alive_norm * scale) - 1) > 1e-3:
            return HINT_TIED_DECODER_LAST
        rows = F.normalize(encoder, dim=-1)
    else:
        rows = after["_W_dec"][inst][dead]
    if (rows.norm(dim=-1) < 1e-6).any():
        return HINT_ZERO_LOSS + " (a new decoder row is all zeros: it points at an input equal to b_dec)"
    if not ((rows.norm(dim=-1) - 1).abs() < 1e-4).all():
        return HINT_ADVANCED_UNIT
    centred = F.normalize(case["h"][:, inst] - case["b_dec"][inst], dim=-1)  # [batch d_in]; zero rows stay zero
    best, index = (rows @ centred.T).max(dim=-1)
    if (best < 1 - 1e-4).any():
        if ((rows @ F.normalize(case["h"][:, inst], dim=-1).T).max(dim=-1).values > 1 - 1e-4).all():
            return HINT_CENTRED + " (yours are the inputs themselves, not centred)"
        return HINT_CENTRED
    if not t.allclose(encoder, rows * alive_norm * scale, rtol=1e-4, atol=1e-5):
        return HINT_ALIVE_NORM
    if kind is not None and (kind[index, inst] == ZERO).any():
        return HINT_ZERO_LOSS
    return None


def chosen_kinds(run: dict, case: dict, kind: Tensor) -> Tensor:
    """The group of the input each dead latent of each instance was sent to (untied runs that passed)."""
    picked = []
    for inst in range(N_INST):
        dead = role_mask("dead")[inst]
        centred = F.normalize(case["h"][:, inst] - case["b_dec"][inst], dim=-1)
        picked.append(kind[(run["after"]["_W_dec"][inst][dead] @ centred.T).argmax(-1), inst])
    return t.cat(picked)


def judge_runs(results: dict, context: Context, label: str, fields: dict) -> None:
    """Every run of one family member, instance by instance (deterministic properties)."""
    kind = groups(context)
    dead, rare = role_mask("dead"), role_mask("once")
    tied, scale = fields["tied_weights"], fields["resample_scale"]
    case = advanced_case(context, tied)
    for run in results[label]:
        if (message := raised(run)) is not None:
            hint = f"{HINT_REPLACEMENT}; " if "replacement" in message else ""
            raise CheckFailed(f"{hint}resample_advanced{setting(label)} raised {message}")
        if any(size != fields["batch_size"] for size in run["asked"]):
            raise CheckFailed(f"{HINT_BATCH_SIZE}{setting(label)}: yours asked for {run['asked']}.")
        expect_parameters_kept(run["before"], run["after_record"], run["stepped"], "resample_advanced", lr=LR)
        if label == "default":  # most new rows point at b_dec: zero reconstruction loss, but a large total loss
            if (run["after"]["_W_dec"][dead].norm(dim=-1) < 1e-6).float().mean() > 0.6:
                raise CheckFailed(f"{HINT_TOTAL_LOSS}.")
        problems = [run_problem(run, case, dead[i], rare[i], kind, i, tied, scale) for i in range(N_INST)]
        judge_instances(problems, setting(label))


def verdict_resample_advanced(results: dict, context: Context) -> None:
    judge_runs(results, context, *FAMILY[0])
    kind = groups(context)
    case = advanced_case(context, False)
    picks = t.cat([chosen_kinds(run, case, kind) for run in results["default"]])
    n_samples = len(picks)
    # Squared losses: ‖h − b_dec‖⁴ / d_in², in the ratio 1 : 9 for the 20 "low" and 10 "high" inputs.
    expected = 10 * 9 / (20 * 1 + 10 * 9)
    low, high = Budget(2).binomial_range(n_samples, expected)  # one test; a budget of 2 keeps its level as written
    share = float((picks == HIGH).float().mean())
    if share > 1 - 1e-9:
        raise CheckFailed(HINT_SAMPLE + " (every resampled latent points at one of the worst inputs).")
    if not low <= share <= high:
        proportional = 10 * 3 / (20 * 1 + 10 * 3)
        raise CheckFailed(
            f"{HINT_SQUARED_LOSS}. {share:.1%} of the resampled latents point at the inputs with 3× the loss of the "
            f"others; sampling ∝ squared loss gives {expected:.1%} (∝ loss: {proportional:.1%})."
        )
    for label, fields in FAMILY[1:]:
        judge_runs(results, context, label, fields)
    judge_exact(results["exact"])


def judge_exact(run) -> None:
    """Every input reconstructed exactly: every dead latent resampled towards one of the inputs."""
    where = " (on a batch that the SAE reconstructs exactly: every loss is 0)"
    if (message := raised(run)) is not None:
        raise CheckFailed(f"{HINT_EXACT}{where}; yours raised {message}.")
    case, dead = exact_case(), exact_window()[0] == 0
    expect_parameters_kept(run["before"], run["after_record"], run["stepped"], "resample_advanced", lr=LR)
    after = run["after"]
    rows = after["_W_dec"][dead]  # [n_dead d_in]
    if t.allclose(after["W_enc"].transpose(-1, -2)[dead], case["W_enc"].transpose(-1, -2)[dead]):
        raise CheckFailed(f"{HINT_EXACT}{where}; yours left the dead latents as they were.")
    if not t.isfinite(rows).all() or not ((rows.norm(dim=-1) - 1).abs() < 1e-4).all():
        raise CheckFailed(f"{HINT_EXACT}{where}; your new decoder rows are not unit vectors.")
    if not ((rows @ t.eye(D_IN)).max(dim=-1).values > 1 - 1e-4).all():
        raise CheckFailed(f"{HINT_CENTRED}{where}.")


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
    loss_name="L_reconstruction",
    instances=None,
    replacement=True,
):
    """The reference recipe with one step changed (for the catalogue of mistakes)."""
    dead = (frac_active_in_window == 0).all(dim=0)
    h = self.generate_batch(batch_size)
    loss_dict, total, _, _ = self.forward(h)
    loss = total if loss_name == "total" else loss_dict[loss_name]
    for inst in range(self.cfg.n_inst) if instances is None else instances(self.cfg.n_inst):
        latents = dead[inst].nonzero().squeeze(-1)
        if len(latents) == 0:
            continue
        w = weights(loss[:, inst])
        if w.max() <= 0:
            w = t.ones_like(w)
        if take == "sample":
            index = t.multinomial(w, len(latents), replacement=replacement)
        else:
            index = w.topk(len(latents)).indices
        rows = h[index, inst] - (self.b_dec[inst] if centre else 0)
        rows = F.normalize(rows, dim=-1) if normalise else rows
        alive = ~dead[inst]
        norms = self.W_enc[inst].norm(dim=0)
        scale = {"alive": norms[alive].mean(), "all": norms.mean(), "none": t.tensor(1.0)}[norm_of]
        self.W_enc.data[inst][:, latents] = (rows * scale * resample_scale).T
        if not self.cfg.tied_weights:
            self._W_dec.data[inst][latents] = rows
        self.b_enc.data[inst][latents] = 0.0


def squared(loss):
    return loss**2


def advanced_proportional_to_loss(self, frac_active_in_window, resample_scale, batch_size):
    advanced_from(self, frac_active_in_window, resample_scale, batch_size, weights=lambda loss: loss)


def advanced_uniform(self, frac_active_in_window, resample_scale, batch_size):
    advanced_from(self, frac_active_in_window, resample_scale, batch_size, weights=lambda loss: t.ones_like(loss))


def advanced_worst_inputs(self, frac_active_in_window, resample_scale, batch_size):
    advanced_from(self, frac_active_in_window, resample_scale, batch_size, weights=squared, take="top")


def advanced_not_centred(self, frac_active_in_window, resample_scale, batch_size):
    advanced_from(self, frac_active_in_window, resample_scale, batch_size, weights=squared, centre=False)


def advanced_not_normalised(self, frac_active_in_window, resample_scale, batch_size):
    advanced_from(self, frac_active_in_window, resample_scale, batch_size, weights=squared, normalise=False)


def advanced_mean_norm_of_every_latent(self, frac_active_in_window, resample_scale, batch_size):
    advanced_from(self, frac_active_in_window, resample_scale, batch_size, weights=squared, norm_of="all")


def advanced_without_alive_norm(self, frac_active_in_window, resample_scale, batch_size):
    advanced_from(self, frac_active_in_window, resample_scale, batch_size, weights=squared, norm_of="none")


def advanced_any_inactive_step(self, frac_active_in_window, resample_scale, batch_size):
    window = frac_active_in_window.clone()
    window[:, (frac_active_in_window == 0).any(dim=0)] = 0.0
    advanced_from(self, window, resample_scale, batch_size, weights=squared)


def advanced_bias_kept(self, frac_active_in_window, resample_scale, batch_size):
    biases = self.b_enc.detach().clone()
    advanced_from(self, frac_active_in_window, resample_scale, batch_size, weights=squared)
    self.b_enc.data.copy_(biases)


def advanced_total_loss(self, frac_active_in_window, resample_scale, batch_size):
    # kind 1: the total loss reads sparsity_coeff · L_sparsity as well
    advanced_from(self, frac_active_in_window, resample_scale, batch_size, weights=squared, loss_name="total")


def advanced_fixed_batch_size(self, frac_active_in_window, resample_scale, batch_size):
    # kind 1: the batch_size argument ignored for the training loop's default
    advanced_from(self, frac_active_in_window, resample_scale, 1024, weights=squared)


def advanced_decoder_written_last(self, frac_active_in_window, resample_scale, batch_size):
    # kind 2: the encoder, then the unit decoder through `W_dec`, which tied is the encoder's view
    dead = (frac_active_in_window == 0).all(dim=0)
    h = self.generate_batch(batch_size)
    weights = self.forward(h)[0]["L_reconstruction"] ** 2
    for inst in range(self.cfg.n_inst):
        latents = dead[inst].nonzero().squeeze(-1)
        if len(latents) == 0:
            continue
        index = t.multinomial(weights[:, inst], len(latents), replacement=True)
        rows = F.normalize(h[index, inst] - self.b_dec[inst], dim=-1)
        norm = self.W_enc[inst][:, ~dead[inst]].norm(dim=0).mean()
        self.W_enc.data[inst][:, latents] = (rows * norm * resample_scale).T
        self.W_dec.data[inst][latents] = rows
        self.b_enc.data[inst][latents] = 0.0


def advanced_skips_last_instance(self, frac_active_in_window, resample_scale, batch_size):
    # kind 3: an off-by-one in the loop over instances
    advanced_from(self, frac_active_in_window, resample_scale, batch_size, weights=squared,
                  instances=lambda n: range(n - 1))  # fmt: skip


def advanced_first_instance_losses(self, frac_active_in_window, resample_scale, batch_size):
    # kind 3: every instance sampled with instance 0's losses
    first = self.forward(self.generate_batch(batch_size))[0]["L_reconstruction"][:, 0]
    advanced_from(self, frac_active_in_window, resample_scale, batch_size, weights=lambda loss: squared(first))


def advanced_replaces_parameters(self, frac_active_in_window, resample_scale, batch_size):
    # kind 5: the right values in new parameters, which the optimiser built before never trains
    W_enc, b_enc = nn.Parameter(self.W_enc.detach().clone()), nn.Parameter(self.b_enc.detach().clone())
    W_dec = None if self.cfg.tied_weights else nn.Parameter(self._W_dec.detach().clone())
    self.W_enc, self.b_enc, self._W_dec = W_enc, b_enc, W_dec
    advanced_from(self, frac_active_in_window, resample_scale, batch_size, weights=squared)


def advanced_without_replacement(self, frac_active_in_window, resample_scale, batch_size):
    # kind 6: more dead latents than inputs cannot be sampled without replacement
    advanced_from(self, frac_active_in_window, resample_scale, batch_size, weights=squared, replacement=False)


def advanced_multinomial_of_zeros(self, frac_active_in_window, resample_scale, batch_size):
    # kind 6: no guard for an exactly reconstructed batch
    dead = (frac_active_in_window == 0).all(dim=0)
    h = self.generate_batch(batch_size)
    weights = self.forward(h)[0]["L_reconstruction"] ** 2
    for inst in range(self.cfg.n_inst):
        latents = dead[inst].nonzero().squeeze(-1)
        if len(latents) == 0:
            continue
        index = t.multinomial(weights[:, inst], len(latents), replacement=True)
        rows = F.normalize(h[index, inst] - self.b_dec[inst], dim=-1)
        norm = self.W_enc[inst][:, ~dead[inst]].norm(dim=0).mean()
        self.W_enc.data[inst][:, latents] = (rows * norm * resample_scale).T
        if not self.cfg.tied_weights:
            self._W_dec.data[inst][latents] = rows
        self.b_enc.data[inst][latents] = 0.0


MISTAKES = [
    Mistake(advanced_proportional_to_loss, HINT_SQUARED_LOSS),
    Mistake(advanced_uniform, HINT_ZERO_LOSS),
    Mistake(advanced_worst_inputs, HINT_SAMPLE),
    Mistake(advanced_not_centred, HINT_CENTRED),
    Mistake(advanced_not_normalised, HINT_ADVANCED_UNIT),
    Mistake(advanced_mean_norm_of_every_latent, HINT_ALIVE_NORM),
    Mistake(advanced_without_alive_norm, HINT_ALIVE_NORM),
    Mistake(advanced_any_inactive_step, HINT_ANY_STEP),
    Mistake(advanced_bias_kept, HINT_BIAS),
    Mistake(advanced_total_loss, HINT_TOTAL_LOSS),
    Mistake(advanced_fixed_batch_size, HINT_BATCH_SIZE),
    Mistake(advanced_decoder_written_last, HINT_TIED_DECODER_LAST),
    Mistake(advanced_skips_last_instance, HINT_EVERY_INSTANCE),
    Mistake(advanced_first_instance_losses, HINT_EVERY_INSTANCE),
    Mistake(advanced_replaces_parameters, HINT_REPLACED.format(name="W_enc", what="resample_advanced")),
    Mistake(advanced_without_replacement, HINT_REPLACEMENT),
    Mistake(advanced_multinomial_of_zeros, HINT_EXACT),
]


def advanced_arena_style(self, frac_active_in_window, resample_scale, batch_size):
    # ARENA's solution, with torch.distributions.Categorical and an epsilon in the normalisation; where ARENA skips an
    # instance whose losses are all (near) 0, the contract samples uniformly
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
            distn = Categorical(probs=t.ones_like(l2_loss_instance) / len(l2_loss_instance))
        else:
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
        weights = squared[inst] if squared[inst].sum() > 0 else t.ones_like(squared[inst])
        index = t.multinomial(weights, len(latents), replacement=True)
        rows = F.normalize(h[index, inst] - self.b_dec[inst], dim=-1)
        self.W_enc.data[inst][:, latents] = (
            rows * self.W_enc[inst][:, ~dead[inst]].norm(dim=0).mean() * resample_scale
        ).T
        if not self.cfg.tied_weights:
            self._W_dec.data[inst][latents] = rows
        self.b_enc.data[inst][latents] = 0.0


EXERCISE = Exercise(
    id="sae.resample_advanced",
    name="ToySAE",
    method="resample_advanced",
    reference_path=f"{MODULE}:ToySAE",
    probe=probe_resample_advanced,
    verdict=verdict_resample_advanced,
    mistakes=MISTAKES,
    alternatives=[advanced_arena_style, advanced_with_summed_squared_error],
)
