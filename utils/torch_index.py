"""Where `make setup` installs torch from: prints the pip options, nothing when the default index is right.

On Linux, PyPI's torch wheel is the CUDA build and pulls in about 15 NVIDIA packages (several GB). A machine without
an NVIDIA GPU gets PyTorch's CPU build from PyTorch's own index instead, when that index answers within a few
seconds; otherwise (no network to it, or a GPU present, or macOS and Windows, whose PyPI wheels are CPU builds
already) pip uses its default index. Standard library only: it runs before anything is installed.
"""

import platform
import shutil
import sys
import urllib.request

CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def has_nvidia_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None


def reachable(url: str, timeout: float = 5.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def pip_options() -> list[str]:
    if platform.system() != "Linux" or has_nvidia_gpu() or not reachable(f"{CPU_INDEX}/torch/"):
        return []
    return ["--index-url", CPU_INDEX, "--extra-index-url", "https://pypi.org/simple"]


if __name__ == "__main__":
    print(" ".join(pip_options()))
    sys.exit(0)
