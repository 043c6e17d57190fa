"""Real keys, a real PKI and real model folders (copies of the bundled models) for signing tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bastion.bundled import minilm, smollm2
from bastion.signing import KeyPair, generate_key_pair
from tests.signing.signing_pki import Pki, make_pki


@pytest.fixture
def org_key(tmp_path: Path) -> KeyPair:
    """A fresh P-256 organisation key pair, written by Bastion itself."""
    return generate_key_pair(tmp_path / "keys")


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """Root CA -> intermediate -> code-signing leaf."""
    return make_pki(tmp_path / "pki")


@pytest.fixture
def small_model(tmp_path: Path) -> Path:
    """A small Hugging Face-style folder: weights, config, a nested file."""
    root = tmp_path / "small-model"
    (root / "1_Pooling").mkdir(parents=True)
    (root / "model.safetensors").write_bytes(bytes(range(256)) * 1024)
    (root / "config.json").write_text('{"architectures": ["BertModel"]}')
    (root / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    return root


@pytest.fixture(scope="module")
def smollm2_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled SmolLM2 GGUF copied into a model folder (copied: tests tamper with it)."""
    root = tmp_path_factory.mktemp("smollm2") / "SmolLM2-135M-Instruct"
    root.mkdir()
    shutil.copyfile(smollm2(), root / smollm2().name)
    return root


@pytest.fixture(scope="module")
def minilm_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the bundled all-MiniLM-L6-v2 folder."""
    root = tmp_path_factory.mktemp("minilm") / "all-MiniLM-L6-v2"
    shutil.copytree(minilm(), root)
    return root
