"""`export_saelens` writes what SAELens reads: the files, the config fields and tensors, and activations that SAELens'
own forward pass (written out here) computes exactly as the course's SAE does. `make test-saelens` repeats the last
part with the real sae-lens package."""

import json

import pytest
import torch as t
from safetensors.torch import load_file

from solutions.sae import ToySAE, ToySAEConfig
from solutions.sae.saelens_format import export_saelens
from solutions.sae.toy_sae_experiments import pentagon_model


def saelens_standard_forward(state: dict, x: t.Tensor) -> tuple[t.Tensor, t.Tensor]:
    """SAELens' StandardSAE (apply_b_dec_to_input=True, no normalisation): latents and reconstruction."""
    latents = t.relu((x - state["b_dec"]) @ state["W_enc"] + state["b_enc"])
    return latents, latents @ state["W_dec"] + state["b_dec"]


@pytest.mark.parametrize("tied", [False, True])
def test_an_exported_instance_computes_what_the_sae_computes(tmp_path, tied):
    t.manual_seed(0)
    sae = ToySAE(ToySAEConfig(3, 2, 5, tied_weights=tied), pentagon_model(3))
    with t.no_grad():  # a trained-looking SAE: non-zero biases, decoder rows of any norm
        sae.b_enc.normal_(0, 0.1)
        sae.b_dec.normal_(0, 0.1)
        sae.W_enc.mul_(1.7)
    path = export_saelens(sae, tmp_path / "sae", instance=2)
    cfg = json.loads((path / "cfg.json").read_text())
    assert cfg["architecture"] == "standard" and (cfg["d_in"], cfg["d_sae"]) == (2, 5)
    assert cfg["apply_b_dec_to_input"] is True and cfg["normalize_activations"] == "none"
    assert cfg["metadata"]["sae_lens_version"].startswith("6.")
    state = load_file(str(path / "sae_weights.safetensors"))
    assert {name: tuple(v.shape) for name, v in state.items()} == {
        "W_enc": (2, 5), "W_dec": (5, 2), "b_enc": (5,), "b_dec": (2,)
    }  # fmt: skip
    h = sae.generate_batch(256)
    with t.no_grad():
        _, _, acts, h_reconstructed = sae(h)
    latents, reconstruction = saelens_standard_forward(state, h[:, 2])
    assert t.allclose(latents, acts[:, 2], atol=1e-6) and t.allclose(reconstruction, h_reconstructed[:, 2], atol=1e-6)
