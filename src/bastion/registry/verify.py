"""Load-time verification: a model is served only if its bytes are still exactly what was admitted."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from bastion.errors import IntegrityError, PolicyDenied
from bastion.hashing import compare, manifest_of
from bastion.registry.store import Admission, Registry
from bastion.signing import verify_bundle


def verify_for_serving(
    registry: Registry, name: str, path: Path, public_key: ec.EllipticCurvePublicKey
) -> Admission:
    """Check that ``name`` is admitted for ``path``, its signature holds, and the files are unchanged.

    Re-hashing uses the digest cache (keyed by path, size, mtime and inode), so an unchanged model is
    re-verified in milliseconds; any change to the file forces a full hash and is caught.
    """
    admission = registry.get(name)
    if Path(admission.path) != path.resolve():
        raise PolicyDenied(
            f"model {name!r} was admitted from {admission.path}, not {path}",
            hint="Serve the admitted file, or admit this one.",
        )
    signed = verify_bundle(admission.signature, public_key=public_key, source=f"registry entry {name!r}")
    actual = manifest_of(
        path, hash_type=signed.manifest.hash_type, shard_size=signed.manifest.shard_size,
        ignore_paths=signed.manifest.ignore_paths,
    )
    diff = compare(signed.manifest, actual)
    if diff:
        raise IntegrityError(
            f"model {name!r} at {path} changed after admission: {diff.describe()}",
            hint="Do not serve it. Restore the admitted file, or vet and admit the new one.",
        )
    return admission
