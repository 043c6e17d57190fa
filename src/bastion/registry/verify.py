"""Load-time verification: a model is served only if the bytes it loads are exactly what was admitted.

:func:`open_admitted` is what the gateway calls. It checks the admission's signature with the
organisation key, copies the files into sealed memory (:mod:`bastion.registry.sealed`), hashes *those*
bytes, compares them with the signed manifest (not with a fresh hash of the disk, nor with the row's
unsigned columns), refuses revoked bytes, and returns the sealed copy for the backend to load. One
read, one hash, no digest cache: the digest cache describes paths, and a path is what an attacker with
write access to the model folder controls.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from bastion.errors import IntegrityError, PolicyDenied
from bastion.hashing import compare, manifest_of
from bastion.hashing.descriptor import manifest_of_descriptors, sha256_fd
from bastion.registry.sealed import Observer, SealedModel, seal
from bastion.registry.store import Admission, AdmittedRef, Registry
from bastion.signing import SignedManifest, verify_bundle

#: the file of a model folder whose digest labels its answers (as ``admit.weights_digest`` picks it)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass
class ServedWeights:
    """Sealed bytes a backend loads, the digest it reports for them and, if any, the admission."""

    sealed: SealedModel
    #: ``sha256:<hex>`` of the weights file, computed over the sealed bytes
    digest: str
    #: the admission these bytes were verified against; None when the registry is not enforced
    admission: AdmittedRef | None = None

    def close(self) -> None:
        """Release the sealed copies."""
        self.sealed.close()


def _weights_name(sealed: SealedModel) -> str:
    if "." in sealed.files:
        return "."
    for name in WEIGHT_FILES:
        if name in sealed.files:
            return name
    raise IntegrityError(
        f"{sealed.source} has no weights file ({', '.join(WEIGHT_FILES)}) among its signed files",
        hint="Admit the model folder with its weights.",
    )


def seal_unverified(
    path: Path, names: list[str] | None = None, observe: Observer | None = None
) -> ServedWeights:
    """Seal ``path`` and hash it, with no admission to compare against (``registry.enforce = false``).

    The reported digest still describes exactly the bytes that answer.
    """
    sealed = seal(path.resolve(), names, observe)
    try:
        fd, size = sealed.files[_weights_name(sealed)]
        return ServedWeights(sealed, sha256_fd(fd, size))
    except BaseException:
        sealed.close()
        raise


def open_admitted(
    registry: Registry,
    name: str,
    path: Path,
    public_key: ec.EllipticCurvePublicKey,
    observe: Observer | None = None,
) -> ServedWeights:
    """The sealed, verified bytes of the active admission of ``name`` at ``path``, ready to load.

    Raises NotFound (not admitted), PolicyDenied (another path, or revoked bytes) or IntegrityError
    (bad signature, or the bytes differ from the signed manifest). ``observe`` is called with
    "opened", "sealed" and "verified" (a seam for tests and progress).
    """
    admission, signed = _signed_admission(registry, name, path, public_key)
    expected = signed.manifest
    root = expected.root_digest()
    _refuse_revoked(registry, name, root)
    sealed = seal(Path(admission.path), list(expected.files), observe)
    try:
        actual = manifest_of_descriptors(
            sealed.files, model_name=expected.model_name, hash_type=expected.hash_type,
            shard_size=expected.shard_size, ignore_paths=expected.ignore_paths,
        )
        diff = compare(expected, actual)
        if diff:
            raise IntegrityError(
                f"model {name!r} at {path} changed after admission: {diff.describe()}",
                hint="Do not serve it. Restore the admitted file, or vet and admit the new one.",
            )
        weights = _weights_name(sealed)
        if expected.method == "files" and expected.hash_type == "sha256":
            digest = expected.digest_of(weights)  # the signed digest, equal to the sealed bytes' hash
        else:
            digest = sha256_fd(*sealed.files[weights])
        if digest != admission.weights_digest:
            # The row's column is not signed; disagreeing with the signed manifest means it was edited.
            raise IntegrityError(
                f"registry entry {name!r} names weights {admission.weights_digest}, but its signed"
                f" manifest's bytes hash to {digest}",
                hint="The registry database was edited; restore it from a backup or admit the model again.",
            )
        _refuse_revoked(registry, name, digest)
        if observe is not None:
            observe("verified")
    except BaseException:
        sealed.close()
        raise
    return ServedWeights(sealed, digest, AdmittedRef(admission.id, name, digest, root))


def _signed_admission(
    registry: Registry, name: str, path: Path, public_key: ec.EllipticCurvePublicKey
) -> tuple[Admission, SignedManifest]:
    """``name``'s active admission, if it is of ``path``, with its signature verified."""
    admission = registry.get(name)
    if Path(admission.path) != path.resolve():
        raise PolicyDenied(
            f"model {name!r} was admitted from {admission.path}, not {path}",
            hint="Serve the admitted file, or admit this one.",
        )
    signed = verify_bundle(admission.signature, public_key=public_key, source=f"registry entry {name!r}")
    return admission, signed


def _refuse_revoked(registry: Registry, name: str, digest: str) -> None:
    revoked = registry.revocation_of(digest)
    if revoked is not None:
        raise PolicyDenied(
            f"model {name!r}: its bytes ({digest}) were revoked (as {revoked['name']!r},"
            f" by {revoked['revoked_by']}); a revocation is final for the bytes it names",
            hint="Admit a different build of the model; 'bastion models list --all' shows the revocation.",
        )


def verify_for_serving(
    registry: Registry, name: str, path: Path, public_key: ec.EllipticCurvePublicKey
) -> Admission:
    """Check that ``name`` is admitted for ``path``, its signature holds, and the files are unchanged.

    For a check without loading (``bastion doctor``, tests); the gateway uses :func:`open_admitted`.
    Hashes every file of the model afresh (no digest cache), so an edit that kept size and times is
    caught too.
    """
    admission, signed = _signed_admission(registry, name, path, public_key)
    actual = manifest_of(
        path, hash_type=signed.manifest.hash_type, shard_size=signed.manifest.shard_size,
        ignore_paths=signed.manifest.ignore_paths, use_cache=False,
    )
    diff = compare(signed.manifest, actual)
    if diff:
        raise IntegrityError(
            f"model {name!r} at {path} changed after admission: {diff.describe()}",
            hint="Do not serve it. Restore the admitted file, or vet and admit the new one.",
        )
    _refuse_revoked(registry, name, signed.manifest.root_digest())
    return admission
