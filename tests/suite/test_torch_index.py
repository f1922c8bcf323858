"""`make setup` takes torch's CPU build from PyTorch's own index on Linux without an NVIDIA GPU, and the default
index everywhere else or when PyTorch's index does not answer."""

import pytest

from utils import torch_index


@pytest.mark.parametrize(
    "system, gpu, reachable, cpu_index",
    [
        ("Linux", False, True, True),
        ("Linux", False, False, False),  # no network to PyTorch's index: the default index, not a failure
        ("Linux", True, True, False),  # an NVIDIA GPU keeps the CUDA build
        ("Darwin", False, True, False),  # PyPI's macOS wheel is a CPU build already
        ("Windows", False, True, False),
    ],
)
def test_the_index_follows_the_machine(monkeypatch, system, gpu, reachable, cpu_index):
    monkeypatch.setattr(torch_index.platform, "system", lambda: system)
    monkeypatch.setattr(torch_index, "has_nvidia_gpu", lambda: gpu)
    monkeypatch.setattr(torch_index, "reachable", lambda url, timeout=5.0: reachable)
    options = torch_index.pip_options()
    assert (torch_index.CPU_INDEX in options) == cpu_index
    assert options == [] or options[:2] == ["--index-url", torch_index.CPU_INDEX]


def test_an_unreachable_address_is_reported_quickly_and_without_raising():
    assert torch_index.reachable("http://127.0.0.1:9/", timeout=1.0) is False
    assert torch_index.reachable("not a url") is False
