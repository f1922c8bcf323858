"""What the checks of both resampling methods share: running the learner's method under the kit's parameter record,
reading back what it wrote, judging alive latents, and naming the instances that went wrong."""

from collections.abc import Callable

import torch as t
import torch.nn.functional as F
from torch import Tensor, nn

from tests.harness import CheckFailed
from tests.kit import optimiser_step, parameter_record, sgd_for

LR = 0.25  # the learning rate of the one SGD step taken after the learner's method (kit property 5)

HINT_ALIVE = "Leave every latent that fired at some step of the window exactly as it was (its W_enc column, W_dec row and b_enc), and don't touch b_dec"
HINT_ANY_STEP = (
    "A latent is dead only if it fired at *no* step of the window: `(frac_active_in_window == 0).all(dim=0)` (or "
    "`< 1e-8`), not `.any(dim=0)`, and not a low average: a latent that fires rarely is alive"
)
HINT_BIAS = "Set the encoder bias b_enc of every dead latent to 0"
HINT_EVERY_INSTANCE = (
    "the other instances are right: every instance is an independent SAE with dead latents of its own, so resample "
    "each one alike (don't stop before the last instance, or reuse the first instance's mask or losses)"
)
HINT_TIED_DECODER_LAST = (
    "With tied weights the decoder is the encoder transposed (`W_dec` is a view of `W_enc`): writing the unit "
    "direction into `W_dec` after the scaled encoder column overwrites that column with the unit vector and loses the "
    "scale. When tied, write only the encoder column (its unit decoder row is then the direction)"
)


def snapshot(sae: nn.Module) -> dict[str, Tensor]:
    names = ("W_enc", "b_enc", "b_dec", *(() if sae.cfg.tied_weights else ("_W_dec",)))
    return {name: getattr(sae, name).detach().clone() for name in names}


def run_resampling(sae: nn.Module, call: Callable[[nn.Module], object], step: bool = True) -> dict:
    """Run the learner's method the way `optimize` does, with an optimiser built before it (kit property 5): what
    the parameters are before and after, their values, and (if `step`) where one SGD step of that optimiser takes
    them."""
    before = parameter_record(sae)
    trainable = {name for name, p in sae.named_parameters() if p.requires_grad}  # not the frozen toy model's
    optimiser = sgd_for(sae, LR)
    call(sae)
    after = parameter_record(sae)
    values = snapshot(sae)
    if not step:
        return {"before": before, "after_record": after, "after": values, "stepped": None}
    stepped = optimiser_step(sae, optimiser, LR)
    stepped = {name: value for name, value in stepped.items() if name.removeprefix("before_step.") in trainable}
    return {"before": before, "after_record": after, "after": values, "stepped": stepped}


def latent_rows(value: Tensor, name: str) -> Tensor:
    """[inst d_sae ...] view of a parameter: encoder columns as rows."""
    return value.transpose(-1, -2) if name == "W_enc" else value


def alive_problem(before: dict, after: dict, dead: Tensor, rare: Tensor, inst: int) -> str | None:
    """Alive latents of instance `inst` unchanged bit for bit; if only rarely active ones changed, the dead test was
    wrong. `dead` and `rare` are [d_sae] masks of that instance."""
    if not t.equal(after["b_dec"][inst], before["b_dec"][inst]):
        return f"{HINT_ALIVE} (b_dec changed)"
    changed = t.zeros_like(dead)
    for name, value in after.items():
        if name == "b_dec":
            continue
        difference = latent_rows(value, name)[inst] != latent_rows(before[name], name)[inst]
        changed |= difference.reshape(dead.shape[0], -1).any(-1)
    changed &= ~dead
    if not changed.any():
        return None
    if (changed & ~rare).any():
        return f"{HINT_ALIVE} (a latent that fired at every step changed)"
    return HINT_ANY_STEP


def judge_instances(problems: list[str | None], where: str = "") -> None:
    """Raise the first instance's problem; when some instances are right, name the wrong ones (kit property 3)."""
    wrong = [i for i, problem in enumerate(problems) if problem]
    if not wrong:
        return
    problem = problems[wrong[0]]
    if len(wrong) < len(problems):
        listed = ", ".join(map(str, wrong))
        raise CheckFailed(
            f"{problem}{where}: instance{'s' if len(wrong) > 1 else ''} {listed} of {len(problems)} went wrong, and "
            f"{HINT_EVERY_INSTANCE}."
        )
    raise CheckFailed(f"{problem}{where}.")


# ------------------------------------------------------------------------- helpers of the catalogued mistakes


def dead_latents_of(window: Tensor) -> Tensor:
    return (window == 0).all(dim=0)


def write(self, dead, encoder_rows, decoder_rows, zero_bias=True):
    self.W_enc.data.transpose(-1, -2)[dead] = encoder_rows
    if not self.cfg.tied_weights:
        self._W_dec.data[dead] = decoder_rows
    if zero_bias:
        self.b_enc.data[dead] = 0.0


def random_unit(n, d):
    return F.normalize(t.randn((n, d)), dim=-1)
