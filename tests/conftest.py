"""Suite-wide settings: offline, and every test gets its own BASTION_HOME and BASTION_KEY_HOME."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("BASTION_TEST", "1")


@pytest.fixture(autouse=True)
def _bastion_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("bastion-home")
    monkeypatch.setenv("BASTION_HOME", str(home))
    # operator keys (the audit signing key) live outside BASTION_HOME, as they do by default
    monkeypatch.setenv("BASTION_KEY_HOME", str(tmp_path_factory.mktemp("bastion-keys")))
    monkeypatch.delenv("BASTION_CONFIG", raising=False)
    return home
