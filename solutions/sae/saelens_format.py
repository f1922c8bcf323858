"""Saving a trained toy SAE in the format SAELens loads (`SAE.load_from_disk(path)`, sae-lens 6).

A directory with `cfg.json` (the SAE's config, with its `architecture`) and `sae_weights.safetensors` (its state
dict, without the instance axis: one instance per directory). The course's SAEs decode with unit decoder rows, so the
file holds the normalised decoder, which makes SAELens' plain forward pass compute exactly what ours does. Each SAE
class says what it exports (`saelens_parameters`); `make test-saelens` loads every architecture with the real
package and compares activations.
"""

import json
from pathlib import Path

import torch as t
from torch import nn

# The on-disk format this writer follows: sae-lens 6's (older versions rename fields on load).
SAELENS_FORMAT_VERSION = "6.0.0"


def export_saelens(sae: nn.Module, path: str | Path, instance: int = 0) -> Path:
    """Write one instance of a trained SAE to the directory `path` (created if needed); returns it."""
    from safetensors.torch import save_file  # imported when saving: the rest of the course does not need it

    architecture, state, config = sae.saelens_parameters(instance)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cfg = {
        "architecture": architecture,
        "d_in": sae.cfg.d_in,
        "d_sae": sae.cfg.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_version": SAELENS_FORMAT_VERSION,
            "sae_lens_training_version": None,
            "model_name": f"toy model ({type(sae.model).__name__}), instance {instance}",
            "hook_name": "hidden",
        },
        **config,
    }
    (path / "cfg.json").write_text(json.dumps(cfg, indent=2) + "\n")
    tensors = {name: value.detach().to("cpu", t.float32).contiguous() for name, value in state.items()}
    save_file(tensors, str(path / "sae_weights.safetensors"))
    return path
