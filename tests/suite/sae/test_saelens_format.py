"""`export_saelens` writes what SAELens reads: the files, the config fields and tensors, and activations that SAELens'
own forward pass (written out here) computes exactly as the course's SAE does. `make test-saelens` repeats the last
part with the real sae-lens package."""

import json

import pytest
import torch as t
from safetensors.torch import load_file

from solutions.sae import (
    BatchTopKToySAE,
    GatedToySAE,
    JumpReLUToySAE,
    JumpReLUToySAEConfig,
    TopKToySAE,
    TopKToySAEConfig,
    ToySAE,
    ToySAEConfig,
)
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


def saelens_variant_forward(architecture: str, cfg: dict, state: dict, x: t.Tensor) -> t.Tensor:
    """The latents of SAELens' TopKSAE, GatedSAE and JumpReLUSAE (sae-lens 6's encode, written out)."""
    centred = x - state["b_dec"]
    if architecture == "gated":
        gate = centred @ state["W_enc"] + state["b_gate"]
        magnitude = centred @ (state["W_enc"] * state["r_mag"].exp()) + state["b_mag"]
        return (gate > 0).float() * t.relu(magnitude)
    hidden = centred @ state["W_enc"] + state["b_enc"]
    if architecture == "topk":
        top = hidden.topk(cfg["k"], dim=-1)
        return t.zeros_like(hidden).scatter(-1, top.indices, t.relu(top.values))
    assert architecture == "jumprelu"
    return t.relu(hidden) * (hidden > state["threshold"])


VARIANTS = {  # class, config, what the export holds
    "topk": (TopKToySAE, TopKToySAEConfig, {"W_enc", "W_dec", "b_enc", "b_dec"}),
    "gated": (GatedToySAE, ToySAEConfig, {"W_enc", "W_dec", "b_gate", "r_mag", "b_mag", "b_dec"}),
    "jumprelu": (JumpReLUToySAE, JumpReLUToySAEConfig, {"W_enc", "W_dec", "b_enc", "b_dec", "threshold"}),
    "batchtopk": (BatchTopKToySAE, TopKToySAEConfig, {"W_enc", "W_dec", "b_enc", "b_dec", "threshold"}),
}


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_exports_what_saelens_computes_it_with(tmp_path, name, tied):
    cls, config, tensors = VARIANTS[name]
    t.manual_seed(0)
    extra = {"k": 2} if config is TopKToySAEConfig else {}
    sae = cls(config(3, 2, 5, tied_weights=tied, **extra), pentagon_model(3))
    with t.no_grad():  # a trained-looking SAE: every parameter moved off its start
        for param_name, param in sae.named_parameters():
            if not param_name.startswith("model."):
                param.add_(t.randn_like(param) * 0.2)
        if name == "batchtopk":
            sae.threshold.copy_(t.tensor([0.05, 0.1, 0.2]))
    sae.eval()
    path = export_saelens(sae, tmp_path / "sae", instance=2)
    cfg = json.loads((path / "cfg.json").read_text())
    architecture = "jumprelu" if name == "batchtopk" else name
    assert cfg["architecture"] == architecture and (cfg["d_in"], cfg["d_sae"]) == (2, 5)
    state = load_file(str(path / "sae_weights.safetensors"))
    assert set(state) == tensors
    assert t.allclose(state["W_dec"].norm(dim=-1), t.ones(5))
    h = sae.generate_batch(256) + 0.3 * t.randn(256, 3, 2)  # off the pentagon too, so that every latent varies
    with t.no_grad():
        _, _, acts, h_reconstructed = sae(h)
    latents = saelens_variant_forward(architecture, cfg, state, h[:, 2])
    assert (latents > 0).any() and t.allclose(latents, acts[:, 2], atol=1e-6)
    assert t.allclose(latents @ state["W_dec"] + state["b_dec"], h_reconstructed[:, 2], atol=1e-6)
