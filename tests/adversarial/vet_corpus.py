"""The crafted vet attacks, built once per test session (the torch-zip ones start from a real torch.save).

Kept out of conftest.py so that other capabilities' adversarial tests can keep a conftest of their own;
each vet test module declares thin fixtures over these builders.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.adversarial.attacks import Attack, build_attacks

_BUILT: dict[str, object] = {}


def clean_torch_zip_file(factory: pytest.TempPathFactory) -> Path:
    """A real ``torch.save`` state dict (zip format), written once."""
    if "clean" not in _BUILT:
        import torch

        p = factory.mktemp("clean") / "pytorch_model.bin"
        model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.LayerNorm(4))
        torch.save(model.state_dict(), p)
        _BUILT["clean"] = p
    path = _BUILT["clean"]
    assert isinstance(path, Path)
    return path


def attack_files(factory: pytest.TempPathFactory) -> dict[str, tuple[Attack, Path]]:
    """Every crafted attack of tests/adversarial/attacks.py, by file name, written once."""
    if "attacks" not in _BUILT:
        root = factory.mktemp("attacks")
        _BUILT["attacks"] = {
            a.name: (a, root / a.name) for a in build_attacks(root, clean_torch_zip_file(factory))
        }
    built = _BUILT["attacks"]
    assert isinstance(built, dict)
    return built
