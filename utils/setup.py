"""What the first cell of every notebook does once the course is importable: the same on Colab and locally.

It installs only what is missing (Colab lacks jaxtyping), never reinstalls torch, numpy or plotly (Colab ships
them, and replacing an imported package needs a runtime restart), checks version floors, and says in one line
where the course runs.
"""

import importlib
import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

# module -> pip requirement, for the packages the setup cell may install if (and only if) they are missing
INSTALL_IF_MISSING = {
    "einops": "einops>=0.7",
    "jaxtyping": "jaxtyping>=0.2.25",
    "tqdm": "tqdm>=4.60",
    "safetensors": "safetensors>=0.4",
}
# packages the learner's environment must already have: we check, but never install or upgrade them here
PREINSTALLED = {"torch": "2.1", "numpy": "1.24", "plotly": "5.18"}


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("+")[0].split(".")[:2] if part.isdigit())


def missing_packages() -> list[str]:
    return [
        requirement for module, requirement in INSTALL_IF_MISSING.items() if importlib.util.find_spec(module) is None
    ]


def problems_with_preinstalled() -> list[str]:
    problems = []
    for package, floor in PREINSTALLED.items():
        try:
            version = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            problems.append(
                f"{package} is not installed: install {package}>={floor} (`pip install -r requirements.txt`)"
            )
            continue
        if version_tuple(version) < version_tuple(floor):
            problems.append(f"{package} {version} is older than {floor}: upgrade it, then restart the kernel")
    return problems


def setup_notebook() -> None:
    """Make the notebook ready to run; idempotent, and quick when nothing is missing."""
    if missing := missing_packages():
        print("Installing", ", ".join(missing), "...")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *missing], check=True)
        importlib.invalidate_caches()
    if problems := problems_with_preinstalled():
        raise RuntimeError("The course cannot run here yet:\n  " + "\n  ".join(problems))

    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    root = Path(__file__).resolve().parent.parent
    print(f"✓ Course ready: torch {torch.__version__} on {device}; course files in {root}")
