"""Every architecture of chapter 2, exported with `export_saelens`, loads in the real sae-lens package, and SAELens'
SAE computes the course's activations. Run by `make test-saelens`, in an environment of its own with sae-lens
installed (it pulls in transformer-lens and transformers, too heavy for `make test`)."""

import pytest
import torch as t

sae_lens = pytest.importorskip("sae_lens")

from solutions.sae import (  # noqa: E402
    BatchTopKToySAE,
    GatedToySAE,
    JumpReLUToySAE,
    JumpReLUToySAEConfig,
    TopKToySAE,
    TopKToySAEConfig,
    ToySAE,
    ToySAEConfig,
)
from solutions.sae.saelens_format import export_saelens  # noqa: E402
from solutions.sae.toy_sae_experiments import pentagon_model  # noqa: E402


def trained_looking(sae):
    with t.no_grad():
        for name, param in sae.named_parameters():
            if not name.startswith("model."):
                param.add_(t.randn_like(param) * 0.1)
    return sae


def batch_top_k(tied: bool) -> BatchTopKToySAE:
    sae = BatchTopKToySAE(TopKToySAEConfig(3, 2, 5, k=2, tied_weights=tied), pentagon_model(3))
    with t.no_grad():
        sae.threshold.copy_(t.tensor([0.05, 0.1, 0.2]))
    return sae.eval()


ARCHITECTURES = {
    "standard, untied": lambda: ToySAE(ToySAEConfig(3, 2, 5), pentagon_model(3)),
    "standard, tied": lambda: ToySAE(ToySAEConfig(3, 2, 5, tied_weights=True), pentagon_model(3)),
    **{
        f"{name}, {'tied' if tied else 'untied'}": (
            lambda cls=cls, config=config, tied=tied: cls(config(3, 2, 5, tied_weights=tied), pentagon_model(3))
        )
        for name, cls, config in (
            ("topk", TopKToySAE, lambda *args, **kwargs: TopKToySAEConfig(*args, k=2, **kwargs)),
            ("gated", GatedToySAE, ToySAEConfig),
            ("jumprelu", JumpReLUToySAE, JumpReLUToySAEConfig),
        )
        for tied in (False, True)
    },
    "batchtopk, untied": lambda: batch_top_k(False),
    "batchtopk, tied": lambda: batch_top_k(True),
}


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_sae_lens_loads_the_export_and_computes_the_same_activations(tmp_path, name):
    t.manual_seed(0)
    sae = trained_looking(ARCHITECTURES[name]())
    path = export_saelens(sae, tmp_path / "sae", instance=1)
    loaded = sae_lens.SAE.load_from_disk(str(path))
    h = sae.generate_batch(512)
    with t.no_grad():
        _, _, acts, h_reconstructed = sae(h)
        latents = loaded.encode(h[:, 1])
        reconstruction = loaded.decode(latents)
    latents = latents.to_dense() if latents.is_sparse else latents
    assert t.allclose(latents, acts[:, 1], atol=1e-5), (latents - acts[:, 1]).abs().max()
    assert t.allclose(reconstruction, h_reconstructed[:, 1], atol=1e-5)
