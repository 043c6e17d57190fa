"""The crafted attacks are built once per session (the torch-zip ones start from a real torch.save)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.adversarial.attacks import Attack, build_attacks


@pytest.fixture(scope="session")
def clean_torch_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    p = tmp_path_factory.mktemp("clean") / "pytorch_model.bin"
    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.LayerNorm(4))
    torch.save(model.state_dict(), p)
    return p


@pytest.fixture(scope="session")
def attacks(
    tmp_path_factory: pytest.TempPathFactory, clean_torch_zip: Path
) -> dict[str, tuple[Attack, Path]]:
    root = tmp_path_factory.mktemp("attacks")
    return {a.name: (a, root / a.name) for a in build_attacks(root, clean_torch_zip)}
