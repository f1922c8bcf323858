"""Chapter 2, section 6: where feature absorption is the loss minimum, in closed form and trained.

Section 2.6's toy model (parent, child, two other features, orthonormal in 16-D, magnitudes 1) at other values of
P(child | parent) = q and of the sparsity coefficient λ. The data take only 12 values (which features are present),
so every SAE's *expected* loss is an exact finite sum (`expected_loss`): no sampling noise, which matters because the
two solutions differ by well under 1 % of the loss near the boundary.

Closed form, for the tied SAE with one unit matrix (`UnitTiedToySAE`). Write the loss in units of 1/16 (the course
averages the reconstruction over the 16 dimensions and λ here is the coefficient of a summed reconstruction, so the
course's coefficient is λ / 16): ‖ĥ − h‖² + λ Σ f. When a solution's latents are orthonormal directions u_k, the loss
splits into one problem per latent along its own direction: the input's coordinate x = u_k · h and the reconstruction
f + β, with f = x − β + b where the latent fires (b its bias, β = u_k · b_dec). If the latent fires exactly when x > 0,
with probability π, the expected loss (1 − π) β² + π b² + λ (E[x] − π β + π b) is smallest at b = −λ/2 and
β = λπ / (2(1 − π)), where it is

    λ E[x] − λ² π / (4 (1 − π))                                     (`latent_loss`)

(as long as every positive x exceeds β + λ/2, so that the latent does fire there). Two solutions have orthonormal
latents:

* clean: u = e_parent, e_child, e_2, e_3: π = E[x] = p, pq, p_other, p_other;
* absorbing: in the parent-child plane, u = (e_parent − e_child)/√2 (fires on the parent alone, x = 1/√2) and
  (e_parent + e_child)/√2 (fires on every parent, x = 1/√2 alone and √2 with the child).

To first order in λ only the L1 term counts: the clean solution pays λ p (1 + q) for the plane, the absorbing one
λ p √2. So the tied SAE absorbs when q > √2 − 1 ≈ 0.414, whatever p and λ (the λ² terms move the boundary by about
0.06 λ). Section 2.6's q = 0.4 sits just below it. An untied SAE can do better than both: its parent latent writes
e_parent (1 on the parent alone) while its encoder shuts it off when the child is there, and the child's latent writes
(e_parent + e_child)/√2 (√2 on parent + child): λ p (1 − q + √2 q), below the clean λ p (1 + q) for every q > 0. A
tied encoder cannot shut the parent's latent off without turning its decoder away from e_parent: that is all tying
changes.

`AbsorptionMap` trains SAEs over a grid of q × λ as the instances of one SAE, several seeds per setting, and keeps the
seed with the lowest exact expected loss; `phase` names what each learned.
"""

import math
from dataclasses import dataclass

import einops
import torch as t
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from solutions.sae.absorption import generate_hierarchical_batch
from solutions.sae.absorption_experiments import (
    CHILD,
    D_IN,
    N_FEATURES,
    P_OTHER,
    P_PARENT,
    PARENT,
    SAE_CLASSES,
    UnitTiedToySAE,
    orthonormal_embedding,
)
from solutions.sae.toy_sae import ToySAE, ToySAEConfig
from solutions.tms.superposition import ToyModel, ToyModelConfig
from utils.sweeps import SeedGrid, train_sweep

SQRT2 = math.sqrt(2)
PHASES = ("clean", "absorbing", "other")

# ---------------------------------------------------------------------------------------------- closed form


def latent_loss(mean: Tensor | float, firing: Tensor | float, lam: Tensor | float) -> Tensor:
    """λ E[x] − λ² π / (4(1 − π)): the lowest expected loss (units of 1/16) of one latent that reads and writes its own
    unit direction, fires with probability π exactly when its coordinate x is positive, and has E[x] = `mean`."""
    mean, firing, lam = (t.as_tensor(v, dtype=t.float64) for v in (mean, firing, lam))
    return lam * mean - lam**2 * firing / (4 * (1 - firing))


def closed_form_losses(
    q: Tensor | float, lam: Tensor | float, p_parent: float = P_PARENT, p_other: float = P_OTHER, n_other: int = 2
) -> Float[Tensor, "... 2"]:
    """Expected loss per input, in the course's convention (divided by D_IN = 16; the course's coefficient is λ / 16),
    of the tied unit-matrix SAE's clean and absorbing solutions, [..., (clean, absorbing)], with their best biases."""
    q, lam = t.as_tensor(q, dtype=t.float64), t.as_tensor(lam, dtype=t.float64)
    p = p_parent
    others = n_other * latent_loss(p_other, p_other, lam)
    clean = latent_loss(p, p, lam) + latent_loss(p * q, p * q, lam)
    parent_alone = p * (1 - q)
    absorbing = latent_loss(parent_alone / SQRT2, parent_alone, lam) + latent_loss(
        parent_alone / SQRT2 + p * q * SQRT2, p, lam
    )
    return t.stack([clean + others, absorbing + others], dim=-1) / D_IN


def closed_form_phase(q: Tensor | float, lam: Tensor | float, **kwargs) -> Tensor:
    """0 where the clean solution has the lower closed-form loss, 1 where the absorbing one has."""
    losses = closed_form_losses(q, lam, **kwargs)
    return (losses[..., 1] < losses[..., 0]).long()


def relative_gap(q: Tensor | float, lam: Tensor | float, **kwargs) -> Tensor:
    """|L_clean − L_absorbing| / min(L_clean, L_absorbing): how far a setting is from the boundary."""
    losses = closed_form_losses(q, lam, **kwargs)
    return (losses[..., 0] - losses[..., 1]).abs() / losses.min(-1).values


def ideal_parameters(solution: str, q: float, lam: float, p_parent: float = P_PARENT, p_other: float = P_OTHER):
    """The closed form's parameters (decoder rows [4 d_in], b_enc [4], b_dec [d_in]) of one tied unit-matrix SAE, in
    the toy model's embedding: latents 0 and 1 span the parent-child plane, latents 2 and 3 read features 2 and 3."""
    e = orthonormal_embedding().T.double()  # [feats d_in]
    if solution == "clean":
        rows = e.clone()
        firing = [p_parent, p_parent * q, p_other, p_other]
    else:
        rows = t.stack([(e[PARENT] - e[CHILD]) / SQRT2, (e[PARENT] + e[CHILD]) / SQRT2, e[2], e[3]])
        firing = [p_parent * (1 - q), p_parent, p_other, p_other]
    firing = t.tensor(firing, dtype=t.float64)
    b_enc = t.full((4,), -lam / 2, dtype=t.float64)
    b_dec = einops.einsum(lam * firing / (2 * (1 - firing)), rows, "latent, latent d_in -> d_in")
    return rows, b_enc, b_dec


# ------------------------------------------------------------------------------------- exact expected loss


def input_patterns(
    p_parent: Tensor, q: Tensor, p_other: float = P_OTHER
) -> tuple[Float[Tensor, "pattern feats"], Float[Tensor, "pattern inst"]]:
    """The 12 inputs the toy data can take (parent, child, feature 2, feature 3 present or not, the child only with
    its parent) and their probability per instance (`p_parent`, `q` [inst])."""
    plane = t.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    plane_probability = t.stack([1 - p_parent, p_parent * (1 - q), p_parent * q])  # [3 inst]
    others = t.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    others_probability = t.tensor([(1 - p_other) ** 2, p_other * (1 - p_other), p_other * (1 - p_other), p_other**2])
    x = t.cat([plane.repeat_interleave(4, 0), others.repeat(3, 1)], dim=-1)
    probability = plane_probability.repeat_interleave(4, 0) * others_probability.repeat(3)[:, None]
    return x, probability


def expected_loss(sae: ToySAE, p_parent: Tensor, q: Tensor) -> Float[Tensor, " inst"]:
    """Every instance's exact expected loss, Σ over the 12 inputs of P(input) · loss(input), differentiable."""
    x, probability = input_patterns(p_parent.cpu(), q.cpu())
    x = x[:, None].expand(-1, sae.cfg.n_inst, -1).to(sae.b_dec)
    h = einops.einsum(x, sae.model.W, "pattern inst feats, inst d_in feats -> pattern inst d_in")
    return (probability.to(h) * sae(h)[1]).sum(0)


def refined_solutions(
    q: Float[Tensor, " setting"], lam: Float[Tensor, " setting"], steps: int = 1_500, lr: float = 1e-3
) -> tuple[Float[Tensor, "setting 2"], list[list[str]]]:
    """The closed form's two solutions, each refined by gradient descent on the exact expected loss (Adam, float32):
    their losses [setting, (clean, absorbing)] in the course's convention, and what each became (`phase`).

    The closed form fixes the directions at e_parent, e_child or at ±45° between them; freeing them lowers each loss
    a little (at λ = 0.03, by 0.2 % for the clean and 0.8 % for the absorbing solution), and at large λ a clean start
    can slide into the absorbing basin. This numerical step is the exact minimum near each closed-form solution.
    """
    n = len(q)
    q2, lam2 = q.float().repeat_interleave(2), lam.float().repeat_interleave(2)
    model = HierarchyGridModel(t.full_like(q2, P_PARENT), q2)
    sae = UnitTiedToySAE(ToySAEConfig(2 * n, D_IN, 4, lam2 / D_IN, tied_weights=True), model)
    with t.no_grad():
        for i in range(2 * n):
            rows, b_enc, b_dec = ideal_parameters(("clean", "absorbing")[i % 2], float(q2[i]), float(lam2[i]))
            sae.W_enc[i], sae.b_enc[i], sae.b_dec[i] = rows.T.float(), b_enc.float(), b_dec.float()
    optimizer = t.optim.Adam(sae.parameters(), lr=lr)
    for _ in range(steps):
        loss = expected_loss(sae, model.p_parent, model.q).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with t.no_grad():
        losses = expected_loss(sae, model.p_parent, model.q).double().view(n, 2)
    phases = phase(sae)
    return losses, [phases[2 * i : 2 * i + 2] for i in range(n)]


# ---------------------------------------------------------------------------------------------- the map


class HierarchyGridModel(ToyModel):
    """Section 2.6's hierarchical toy model with a parent probability and a P(child | parent) of its own per instance
    (`p_parent`, `q`, each [inst]); the other two features at p = 0.1. Frozen, read by an SAE."""

    def __init__(self, p_parent: Tensor, q: Tensor, device: t.device | str | None = None):
        n_inst = len(q)
        marginals = t.stack([p_parent, p_parent * q, t.full_like(q, P_OTHER), t.full_like(q, P_OTHER)], dim=-1)
        super().__init__(ToyModelConfig(n_inst, N_FEATURES, D_IN), feature_probability=marginals, device=device)
        self.register_buffer("p_parent", p_parent.to(self.W.device))
        self.register_buffer("q", q.to(self.W.device))
        with t.no_grad():
            self.W.copy_(orthonormal_embedding().expand(n_inst, D_IN, N_FEATURES))

    def generate_batch(self, batch_size: int) -> Float[Tensor, "batch inst feats"]:
        # the per-instance probabilities [inst] broadcast against the draws [batch inst]
        x = generate_hierarchical_batch(
            batch_size, self.cfg.n_inst, self.p_parent.cpu(), self.q.cpu(), P_OTHER, N_FEATURES - 2
        )
        return x.to(self.W.device)


@dataclass(frozen=True)
class AbsorptionMap(SeedGrid):
    """SAEs of 4 latents over P(child | parent) × λ (settings `i_q * len(lambdas) + i_lambda`), `n_seeds` each.

    `kind` is one of section 2.6's kinds ("untied", "tied", "tied, free encoder norm", "matryoshka"); λ is the
    coefficient of a reconstruction summed over d_in (the course's coefficient is λ / 16). Seeds are ranked by their
    exact expected loss (for Matryoshka, its own loss, prefix terms included).
    """

    kind: str
    child_probabilities: tuple[float, ...]
    lambdas: tuple[float, ...]
    p_parent: float = P_PARENT
    n_seeds: int = 4
    steps: int = 2_000
    lr: float = 4e-3
    batch_size: int = 64
    seed: int = 0

    @property
    def n_settings(self) -> int:
        return len(self.child_probabilities) * len(self.lambdas)

    def setting_q(self) -> Float[Tensor, " setting"]:
        return t.tensor(self.child_probabilities).repeat_interleave(len(self.lambdas))

    def setting_lambda(self) -> Float[Tensor, " setting"]:
        return t.tensor(self.lambdas).repeat(len(self.child_probabilities))

    def build(self, model_class: type | None = None, device: t.device | str | None = None) -> ToySAE:
        q = self.for_every_seed(self.setting_q())
        model = HierarchyGridModel(t.full_like(q, self.p_parent), q, device=device)
        coefficients = self.for_every_seed(self.setting_lambda() / D_IN).to(model.W.device)
        cfg = ToySAEConfig(self.n_inst, D_IN, 4, coefficients, tied_weights=self.kind.startswith("tied"))
        return (model_class or SAE_CLASSES[self.kind])(cfg, model)

    def train(self, sae: ToySAE) -> dict[str, Tensor]:
        return sae.optimize(batch_size=self.batch_size, steps=self.steps, lr=self.lr)

    def rank(self, sae: ToySAE) -> Float[Tensor, " inst"]:
        with t.no_grad():
            return expected_loss(sae, sae.model.p_parent, sae.model.q)


@t.no_grad()
def phase(sae: ToySAE) -> list[str]:
    """Per instance, what the SAE learned in the parent-child plane: "clean" when some decoder row is within cosine
    0.95 of the parent's direction and some of the child's; "absorbing" when instead some row is within 0.95 of
    (e_parent + e_child)/√2, the merged direction; "other" otherwise (a dead or wandering latent)."""
    features = sae.model.W.transpose(-1, -2)  # [inst feats d_in]
    merged = (features[:, PARENT] + features[:, CHILD]) / SQRT2
    directions = t.stack([features[:, PARENT], features[:, CHILD], merged], dim=1)  # [inst 3 d_in]
    cosines = einops.einsum(
        F.normalize(sae.W_dec, dim=-1), directions, "inst d_sae d_in, inst direction d_in -> inst d_sae direction"
    )
    best = cosines.amax(1)  # [inst 3]
    clean = (best[:, 0] > 0.95) & (best[:, 1] > 0.95)
    absorbing = ~clean & (best[:, 2] > 0.95)
    return [
        "clean" if c else "absorbing" if a else "other" for c, a in zip(clean.tolist(), absorbing.tolist(), strict=True)
    ]


@t.no_grad()
def exact_absorption_rate(sae: ToySAE) -> Float[Tensor, " inst"]:
    """Per instance, the exact absorption rate (`absorption_rate`'s quantity, with no sampling): the probability that
    the parent's latent (the decoder row closest to e_parent) is silent, given that the parent and the child are both
    present, summed over the input patterns that have both."""
    x, probability = input_patterns(sae.model.p_parent.cpu(), sae.model.q.cpu())
    x_inst = x[:, None].expand(-1, sae.cfg.n_inst, -1).to(sae.b_dec)
    h = einops.einsum(x_inst, sae.model.W, "pattern inst feats, inst d_in feats -> pattern inst d_in")
    acts = sae(h)[2].cpu()
    features = sae.model.W.transpose(-1, -2)
    cosines = einops.einsum(
        F.normalize(sae.W_dec, dim=-1), features[:, PARENT], "inst d_sae d_in, inst d_in -> inst d_sae"
    )
    parent_latent = cosines.argmax(-1).cpu()
    silent = (acts[:, t.arange(sae.cfg.n_inst), parent_latent] <= 0).double()  # [pattern inst]
    both = probability.double() * ((x[:, PARENT] > 0) & (x[:, CHILD] > 0)).double()[:, None]
    return (silent * both).sum(0) / both.sum(0)


def rate_phase(sae: ToySAE) -> list[str]:
    """Per instance, "absorbing" when the parent's latent is silent on most parent + child inputs (exact absorption
    rate above 1/2), "clean" otherwise: the parent keeps a latent that fires whenever the parent is present.

    Why not `phase` for Matryoshka: its parent latent keeps firing with the child but its decoder leans towards the
    child (measured on the map at q = 0.55 and 0.7: cosine 0.73 to 0.78 with e_parent, within 0.95 of the merged
    direction), so the decoder cosines read "absorbing" where nothing is absorbed. Absorption is about when a latent
    fires, and the rate measures exactly that."""
    return ["absorbing" if rate > 0.5 else "clean" for rate in exact_absorption_rate(sae).tolist()]


# How each kind's phase is read: decoder cosines, except for Matryoshka (see `rate_phase`).
PHASE_READERS = {"matryoshka": rate_phase}


# The notebook's map: P(child | parent) on both sides of √2 − 1, three sparsity coefficients (λ = 0.3 is left out:
# there tied SAEs lose latents altogether, as section 2.6's first runs show).
MAP_CHILD_PROBABILITIES = (0.15, 0.3, 0.55, 0.7)
MAP_LAMBDAS = (0.01, 0.03, 0.1)
MAP_KINDS = ("tied", "tied, free encoder norm", "untied", "matryoshka")
# Why 32 seeds of batch 64 at lr 4e-3. A tied SAE has more than one local minimum here: where absorbing is the
# optimum, a seed can also settle in the clean solution (6-13 % above it), or keep a dead latent, or (at λ = 0.01)
# still be on its way after 2,000 steps. With 3 seeds of batch 1,024 at lr 2e-3 only 0 to 4 of 12 seeds reached the
# optimum at the absorbing settings, so best-of-3 missed it at 4 of the 12 settings. Seeds are instances, so what a
# step costs is instances × batch: 32 seeds of 64 cost what 2 of 1,024 do. Small batches reach the optimum no less
# often, and lr 4e-3 gets the λ = 0.01 seeds there within 2,000 steps. Measured with this recipe (sweep seeds 0, 1, 2:
# 96 seeds per setting) at least 22 of 96 seeds (23 %) reach the optimum at every setting, so best-of-32 misses it at
# one setting with probability about 0.77³² ≈ 2·10⁻⁴; the kept seeds' exact losses are within 0.1 % of it.
MAP_SEEDS, MAP_BATCH, MAP_STEPS, MAP_LR = 32, 64, 2_000, 4e-3
# "Away from the boundary": the closed-form losses of the two solutions differ by more than MAP_GAP (relative). The
# closed form fixes every latent's direction; freeing them (`refined_solutions`) lowers a loss by up to 3 % on this
# grid (at λ = 0.1), so a smaller closed-form gap could be reversed by what the closed form leaves out.
MAP_GAP = 0.04
# The kept seed found the minimum when its exact loss is within this fraction of the refined optimum.
OPTIMUM_TOLERANCE = 0.01


def map_sweep(kind: str) -> AbsorptionMap:
    return AbsorptionMap(
        kind,
        MAP_CHILD_PROBABILITIES,
        MAP_LAMBDAS,
        n_seeds=MAP_SEEDS,
        steps=MAP_STEPS,
        lr=MAP_LR,
        batch_size=MAP_BATCH,
    )


def theory(sweep: AbsorptionMap) -> dict[str, Tensor]:
    """Per setting: the closed-form losses [setting 2], their phase (0 clean, 1 absorbing, as PHASES) and relative
    gap, whether the setting is away from the boundary (gap > MAP_GAP); the refined losses, the phase of the lower
    one (named by what that solution became) and the optimum (the lower refined loss)."""
    q, lam = sweep.setting_q().double(), sweep.setting_lambda().double()
    refined, became = refined_solutions(q, lam)
    lower = refined.argmin(-1)
    gap = relative_gap(q, lam)
    return {
        "closed_form": closed_form_losses(q, lam),
        "phase": closed_form_phase(q, lam),
        "gap": gap,
        "away": gap > MAP_GAP,
        "refined": refined,
        "refined_phase": t.tensor([PHASES.index(became[i][int(lower[i])]) for i in range(len(q))]),
        "optimum": refined.min(-1).values,
    }


def run_map(kinds: tuple[str, ...] = MAP_KINDS, device: t.device | str | None = None) -> dict:
    """Train the map for every kind; return the sweeps' results, every instance's phase (`PHASE_READERS`, else
    `phase`) and exact absorption rate, the kept seeds' phases and rates [setting] per kind, and the theory of the
    tied unit-matrix SAE."""
    results = {kind: train_sweep(map_sweep(kind), device=device) for kind in kinds}
    phases = {kind: PHASE_READERS.get(kind, phase)(result.model) for kind, result in results.items()}
    rates = {kind: exact_absorption_rate(result.model) for kind, result in results.items()}
    kept_phases = {kind: [phases[kind][int(i)] for i in results[kind].best] for kind in kinds}
    kept_rates = {kind: rates[kind][results[kind].best.cpu()] for kind in kinds}
    return {
        "results": results,
        "phases": phases,
        "absorption_rates": rates,
        "kept_phases": kept_phases,
        "kept_absorption_rates": kept_rates,
        "theory": theory(map_sweep(kinds[0])),
    }


def seeds_at_optimum(result, optimum: Float[Tensor, " setting"]) -> Tensor:
    """Per setting, how many of its seeds end within OPTIMUM_TOLERANCE of `optimum` (exact expected losses)."""
    sweep = result.sweep
    losses = result.loss.double().view(sweep.n_settings, sweep.n_seeds)
    return (losses <= (1 + OPTIMUM_TOLERANCE) * optimum[:, None]).sum(-1)


def describe(trained: dict) -> str:
    """One line per setting: q, λ, the closed-form and refined losses (×10³), the closed form's phase and gap, how many
    tied seeds reached the optimum, and every kind's kept phase with its loss."""
    sweep, theory_ = next(iter(trained["results"].values())).sweep, trained["theory"]
    at_optimum = (
        seeds_at_optimum(trained["results"]["tied"], theory_["optimum"]) if "tied" in trained["results"] else None
    )
    lines = []
    for s, (q, lam) in enumerate(zip(sweep.setting_q().tolist(), sweep.setting_lambda().tolist(), strict=True)):
        closed, refined = (theory_[k][s] * 1e3 for k in ("closed_form", "refined"))
        kinds = ", ".join(
            f"{kind} {trained['kept_phases'][kind][s]} {float(result.best_loss[s]) * 1e3:.4f}"
            f" (rate {float(trained['kept_absorption_rates'][kind][s]):.2f})"
            for kind, result in trained["results"].items()
        )
        reached = "" if at_optimum is None else f", {int(at_optimum[s])}/{sweep.n_seeds} tied seeds at it"
        lines.append(
            f"q {q:.2f} λ {lam:.2f}: closed form {closed[0]:.4f}/{closed[1]:.4f} → {PHASES[int(theory_['phase'][s])]} "
            f"(gap {float(theory_['gap'][s]):.3f}), refined {refined[0]:.4f}/{refined[1]:.4f}{reached}; {kinds}"
        )
    return "\n".join(lines)
