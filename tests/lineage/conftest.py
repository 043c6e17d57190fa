"""Real models for lineage tests: derived from and unrelated to the bundled SmolLM2, built once per session.

The recipes live in scripts/lineage_models.py (shared with bench/lineage.py) and cache their output
under $TMPDIR/bastion-lineage-cache/<hash of the recipes>, so only the first run pays for the
re-quantization, fine-tune and seed training.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bastion import bundled
from bastion.lineage import Comparison, Fingerprint, compare, fingerprint

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))


@pytest.fixture(scope="session")
def lineage_models() -> dict[str, Path]:
    """name -> path of every derived and unrelated model (see scripts/lineage_models.py)."""
    from lineage_models import make_all

    return make_all(log=lambda msg: print(msg, file=sys.stderr))


@pytest.fixture(scope="session")
def base_fp() -> Fingerprint:
    """Fingerprint of the bundled SmolLM2-135M-Instruct Q4_1 GGUF."""
    return fingerprint(bundled.smollm2())


@pytest.fixture(scope="session")
def model_fps(lineage_models: dict[str, Path]) -> dict[str, Fingerprint]:
    """Fingerprints of every derived and unrelated model."""
    return {name: fingerprint(path) for name, path in lineage_models.items()}


@pytest.fixture(scope="session")
def vs_base(base_fp: Fingerprint, model_fps: dict[str, Fingerprint]) -> dict[str, Comparison]:
    """compare(SmolLM2, model) for every made model, computed once (Gemma's 144 block pairs take seconds)."""
    return {name: compare(base_fp, fp) for name, fp in model_fps.items()}
