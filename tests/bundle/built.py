"""One real bundle per test session, built from the local wheel caches and shared by the bundle tests
and the adversarial ones (tests/adversarial/test_bundle_*.py).

Built once per process (a module-level cache, because two conftests import the fixture): Bastion's
wheel from this source tree, the wheelhouse from ~/.cache/bastion/{wheels,wheelhouse} and /opt/wheels
with ``pip download --no-index``. Only on a machine whose wheelhouse cache is still cold does pip fall
back to the index, once (the connected side may; the install side never does). SmolLM2 is the model.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bastion.bundle import Created, ModelSpec, create_bundle
from bastion.signing import generate_key_pair


@dataclass(frozen=True)
class Built:
    created: Created
    folder: Path
    private_key: Path
    public_key: Path
    other_public_key: Path  # a key that did not sign the bundle
    seconds: float


_CACHE: dict[str, Built] = {}


def built_bundle() -> Built:
    """The session's bundle (built on first use)."""
    if "b" not in _CACHE:
        folder = Path(tempfile.mkdtemp(prefix="bastion-bundle-test-"))
        keys = generate_key_pair(folder / "org")
        other = generate_key_pair(folder / "other")
        started = time.perf_counter()
        created = create_bundle(folder / "bastion.tar", keys.private_key, [ModelSpec.parse("smollm2")])
        _CACHE["b"] = Built(created, folder, keys.private_key, keys.public_key, other.public_key,
                            time.perf_counter() - started)
    return _CACHE["b"]


def cleanup() -> None:
    """Remove the session's bundle folder."""
    built = _CACHE.pop("b", None)
    if built is not None:
        shutil.rmtree(built.folder, ignore_errors=True)
