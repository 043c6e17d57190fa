"""Verify (and optionally unpack) a Bastion transfer bundle with only Python and ``cryptography``.

This file is shipped inside every bundle and run by its bootstrap script on a machine where Bastion is
not installed yet, so it imports nothing from Bastion: the standard library and ``cryptography`` only.
Bastion's own ``bastion bundle verify`` and ``install`` run this same code (one verifier, not two).

What a bundle is: an uncompressed POSIX tar (ustar; pax for long names) in a canonical form. Its first
member is ``MANIFEST.json`` (every file's path, size and SHA-256), its second ``MANIFEST.json.sig``
(a sigstore bundle v0.3 whose ``messageSignature`` is an ECDSA signature over the manifest's bytes: a
detached signature, as ``cosign sign-blob --bundle`` writes one). Every later member is a regular file.

Why "every byte" holds: each 512-byte header must equal the header this module would write for that
name and size (mode 0644, owner 0, mtime 0, no link, no user names), so no header byte can change
unnoticed; the data of each member is hashed against the signed manifest; the padding after each
member and everything after the end-of-archive marker must be zero. A changed, added, removed,
duplicated or reordered file, a symlink, a device, ``..`` in a name or trailing data is refused, and the
message names the file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import sys
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

FORMAT = "bastion-bundle/1"
MANIFEST = "MANIFEST.json"
SIGNATURE = "MANIFEST.json.sig"
BLOCK = 512
MAX_MANIFEST = 64 << 20  # a manifest of 100,000 files is ~15 MB; bounds memory on a hostile input
MAX_TRAILER = tarfile.RECORDSIZE + 2 * BLOCK  # end-of-archive blocks plus record padding
CHUNK = 1 << 20
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
# A name is a relative POSIX path of plain components: no "..", no absolute path, no control
# characters, so unpacking can never write outside its folder.
_NAME = re.compile(r"^(?!/)(?:[A-Za-z0-9_+=,@][A-Za-z0-9._+=,@-]*/)*[A-Za-z0-9_+=,@][A-Za-z0-9._+=,@-]*$")
_DIGESTS = {256: ("sha256", "SHA2_256"), 384: ("sha384", "SHA2_384"), 521: ("sha512", "SHA2_512")}


class BundleRefused(Exception):
    """The bundle is unsigned, wrongly signed, altered or malformed; ``path`` names the file at fault."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path


@dataclass(frozen=True)
class Verified:
    """A bundle whose signature and every byte checked out."""

    manifest: dict[str, Any]
    manifest_bytes: bytes
    manifest_sha256: str
    key_hint: str
    files: int
    bytes: int


def check_name(name: str) -> None:
    """Refuse a member or manifest path that could escape the folder it is unpacked into."""
    if len(name) > 250 or not _NAME.match(name) or any(p in (".", "..") for p in name.split("/")):
        raise BundleRefused(f"{name!r} is not an allowed file name in a bundle", name)


def canonical_header(name: str, size: int) -> bytes:
    """The one ustar header a bundle may carry for a file ``name`` of ``size`` bytes."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    # pax: a plain ustar block when the name fits, else an extended header carrying the long name
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict")


def key_hint(public_pem: bytes) -> str:
    """The key identifier model_signing uses: hex SHA-256 of the public key's PEM."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_public_key(public_pem)
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(pem).hexdigest()


def sign_manifest(manifest_bytes: bytes, private_pem: bytes) -> bytes:
    """A detached signature over ``manifest_bytes``: sigstore bundle v0.3 JSON with a messageSignature."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = serialization.load_pem_private_key(private_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise BundleRefused("the signing key is not an ECDSA key")
    algo, name = _DIGESTS[key.curve.key_size]
    digest = hashlib.new(algo, manifest_bytes).digest()
    signature = key.sign(manifest_bytes, ec.ECDSA(getattr(hashes, algo.upper())()))
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    doc = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": key_hint(public_pem)}, "tlogEntries": []},
        "messageSignature": {
            "messageDigest": {"algorithm": name, "digest": base64.b64encode(digest).decode()},
            "signature": base64.b64encode(signature).decode(),
        },
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def check_signature(manifest_bytes: bytes, signature: bytes, public_pem: bytes) -> str:
    """Verify the detached signature of the manifest with the trusted key; return the key hint."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = serialization.load_pem_public_key(public_pem)
    except ValueError as exc:
        raise BundleRefused("the trusted key is not a PEM public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.key_size not in _DIGESTS:
        raise BundleRefused("the trusted key is not an ECDSA P-256/P-384/P-521 public key")
    try:
        doc = json.loads(signature)
        sig_part = doc["messageSignature"]
        sig = base64.b64decode(sig_part["signature"], validate=True)
        claimed = base64.b64decode(sig_part["messageDigest"]["digest"], validate=True)
        algo_name = sig_part["messageDigest"]["algorithm"]
        hint = doc["verificationMaterial"]["publicKey"]["hint"]
        if doc["mediaType"] != BUNDLE_MEDIA_TYPE or not isinstance(hint, str):
            raise ValueError("media type")
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleRefused(f"{SIGNATURE} is not a sigstore message-signature bundle", SIGNATURE) from exc
    ours = key_hint(public_pem)
    if hint and hint != ours:
        raise BundleRefused(
            f"{SIGNATURE} was made by another key (hint {hint[:16]}...), not the trusted key {ours[:16]}...",
            SIGNATURE,
        )
    algo, name = _DIGESTS[key.curve.key_size]
    if algo_name != name or claimed != hashlib.new(algo, manifest_bytes).digest():
        raise BundleRefused(f"{SIGNATURE} was made over another manifest than {MANIFEST}", MANIFEST)
    try:
        key.verify(sig, manifest_bytes, ec.ECDSA(getattr(hashes, algo.upper())()))
    except InvalidSignature as exc:
        raise BundleRefused(
            f"{SIGNATURE} does not verify {MANIFEST} with the trusted key: one of them was altered "
            "or the bundle was signed by someone else",
            SIGNATURE,
        ) from exc
    return ours


def parse_manifest(data: bytes) -> dict[str, Any]:
    """Parse and check the shape of a signed manifest (called only after its signature verified)."""

    def no_dupes(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            raise BundleRefused(f"{MANIFEST} repeats a key", MANIFEST)
        return dict(pairs)

    try:
        doc = json.loads(data, object_pairs_hook=no_dupes)
    except ValueError as exc:
        raise BundleRefused(f"{MANIFEST} is not JSON: {exc}", MANIFEST) from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("files"), list):
        raise BundleRefused(f"{MANIFEST} is not a {FORMAT} manifest", MANIFEST)
    seen: set[str] = set()
    for f in doc["files"]:
        if not isinstance(f, dict) or not isinstance(f.get("path"), str):
            raise BundleRefused(f"{MANIFEST} has a malformed file entry", MANIFEST)
        check_name(f["path"])
        if f["path"] in seen or f["path"] in (MANIFEST, SIGNATURE):
            raise BundleRefused(f"{MANIFEST} lists {f['path']} twice", f["path"])
        seen.add(f["path"])
        if not isinstance(f.get("size"), int) or not re.fullmatch(r"[0-9a-f]{64}", str(f.get("sha256"))):
            raise BundleRefused(f"{MANIFEST} entry {f['path']} has no valid size and sha256", f["path"])
    # Installers build paths from the model entries: each must name files the manifest covers.
    models = doc.get("models", [])
    if not isinstance(models, list):
        raise BundleRefused(f"{MANIFEST} has a malformed model list", MANIFEST)
    for m in models:
        fields = ("name", "path", "signature")
        if not isinstance(m, dict) or not all(isinstance(m.get(k), str) for k in fields):
            raise BundleRefused(f"{MANIFEST} has a malformed model entry", MANIFEST)
        check_name(m["name"])
        inside = m["path"] == f"models/{m['name']}" or m["path"].startswith(f"models/{m['name']}/")
        if not inside or m["signature"] != f"models/{m['name']}.sig" or m["signature"] not in seen:
            raise BundleRefused(
                f"{MANIFEST} model {m['name']!r} names files outside models/{m['name']}", MANIFEST
            )
    return doc


def _read_exact(fh: IO[bytes], n: int, what: str) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise BundleRefused(f"the bundle ends in the middle of {what} (truncated)", what)
    return data


def _field(block: bytes, start: int, end: int) -> str:
    return block[start:end].split(b"\0", 1)[0].decode("ascii")


def _read_header(fh: IO[bytes], block: bytes) -> tuple[str, int, bytes]:
    """Name, size and raw bytes of one member's header: a ustar block, or a pax extended header
    (for names over 100 characters) and the ustar block after it."""
    raw = block
    long_name = None
    try:
        if block[156:157] == b"x":  # pax extended header: "LEN path=NAME\n" records
            pax_size = int(_field(block, 124, 136).strip() or "0", 8)
            if pax_size > 4096:
                raise BundleRefused("a pax header in the bundle is too large")
            pax = _read_exact(fh, pax_size + (-pax_size % BLOCK), "a pax header")
            for record in pax[:pax_size].decode("utf-8").splitlines():
                key, _, value = record.partition(" ")[2].partition("=")
                if key == "path":
                    long_name = value
            block = _read_exact(fh, BLOCK, "a tar header")
            raw += pax + block
        name, prefix = _field(block, 0, 100), _field(block, 345, 500)
        size = int(_field(block, 124, 136).strip() or "0", 8)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BundleRefused("a tar header in the bundle is malformed") from exc
    if long_name is not None:
        return long_name, size, raw
    return (f"{prefix}/{name}" if prefix else name), size, raw


def _members(fh: IO[bytes]) -> Iterator[tuple[str, int]]:
    """Each member's name and size, after checking its header is canonical; the caller reads the data."""
    while True:
        block = fh.read(BLOCK)
        if len(block) == BLOCK and block == bytes(BLOCK):
            rest = fh.read(MAX_TRAILER + 1)
            if len(rest) > MAX_TRAILER or rest.strip(b"\0"):
                raise BundleRefused("the bundle carries data after its end-of-archive marker")
            return
        if len(block) != BLOCK:
            raise BundleRefused("the bundle is truncated (no end-of-archive marker)")
        name, size, raw = _read_header(fh, block)
        check_name(name)
        if raw != canonical_header(name, size):
            raise BundleRefused(
                f"the tar header of {name} is not the canonical one (altered, or not a regular file)", name
            )
        yield name, size


def _data(fh: IO[bytes], name: str, size: int) -> Iterator[bytes]:
    left = size
    while left:
        chunk = _read_exact(fh, min(CHUNK, left), name)
        left -= len(chunk)
        yield chunk
    pad = -size % BLOCK
    if pad and _read_exact(fh, pad, name) != bytes(pad):
        raise BundleRefused(f"the padding after {name} is not zero (altered)", name)


Sink = Callable[[str, Iterator[bytes]], None]


def verify(
    bundle: str | os.PathLike[str],
    public_pem: bytes,
    sink: Sink | None = None,
    on_bytes: Callable[[int], None] | None = None,
    manifest_only: bool = False,
) -> Verified:
    """Check the signature and every byte of ``bundle``; hand each verified file's data to ``sink``.

    ``sink(name, chunks)`` must consume ``chunks``; it sees a file's bytes as they are hashed, so a
    sink that writes them must treat the file as untrusted until this function returns (the file's
    digest is compared after its last chunk). With ``manifest_only``, stop once the signed manifest
    is checked (nothing else is verified then). Raises BundleRefused naming the file at fault.
    """
    try:
        fh = open(bundle, "rb")  # noqa: SIM115 - closed in finally; the iterator needs it open
    except OSError as exc:
        raise BundleRefused(f"cannot read {bundle}: {exc.strerror or exc}", str(bundle)) from exc
    try:
        members = _members(fh)
        first = next(members, None)
        if first is None or first[0] != MANIFEST:
            raise BundleRefused(f"the bundle does not start with {MANIFEST}", MANIFEST)
        if first[1] > MAX_MANIFEST:
            raise BundleRefused(f"{MANIFEST} is larger than {MAX_MANIFEST >> 20} MiB", MANIFEST)
        manifest_bytes = b"".join(_data(fh, *first))
        second = next(members, None)
        if second is None or second[0] != SIGNATURE:
            raise BundleRefused(f"the bundle is unsigned: {SIGNATURE} does not follow {MANIFEST}", SIGNATURE)
        if second[1] > 1 << 20:
            raise BundleRefused(f"{SIGNATURE} is larger than 1 MiB", SIGNATURE)
        hint = check_signature(manifest_bytes, b"".join(_data(fh, *second)), public_pem)
        manifest = parse_manifest(manifest_bytes)
        if manifest_only:
            return Verified(manifest, manifest_bytes, hashlib.sha256(manifest_bytes).hexdigest(), hint, 0, 0)
        expected = {f["path"]: f for f in manifest["files"] if f.get("carried", True)}
        seen: set[str] = set()
        total = 0
        for name, size in members:
            entry = expected.get(name)
            if entry is None:
                what = "twice" if name in seen else "but is not in the signed manifest (added)"
                raise BundleRefused(f"the bundle carries {name} {what}", name)
            if size != entry["size"]:
                raise BundleRefused(
                    f"{name} is {size} bytes, the signed manifest says {entry['size']} (altered)", name
                )
            h = hashlib.sha256()

            def hashed(name: str = name, size: int = size, h: Any = h) -> Iterator[bytes]:
                for chunk in _data(fh, name, size):
                    h.update(chunk)
                    if on_bytes:
                        on_bytes(len(chunk))
                    yield chunk

            if sink is None:
                for _ in hashed():
                    pass
            else:
                chunks = hashed()
                sink(name, chunks)
                for _ in chunks:  # a sink that stopped early must not skip the check
                    pass
            if h.hexdigest() != entry["sha256"]:
                raise BundleRefused(
                    f"{name} does not match its digest in the signed manifest (altered)", name
                )
            seen.add(name)
            del expected[name]
            total += size
        if expected:
            missing = sorted(expected)
            raise BundleRefused(
                f"the bundle lacks {len(missing)} signed file(s) (removed): {', '.join(missing[:5])}",
                missing[0],
            )
    finally:
        fh.close()
    return Verified(
        manifest, manifest_bytes, hashlib.sha256(manifest_bytes).hexdigest(), hint, len(seen), total
    )


def unpack_into(root: str) -> Sink:
    """A sink that writes each file under ``root`` (which must be a fresh, private folder)."""

    def sink(name: str, chunks: Iterator[bytes]) -> None:
        check_name(name)  # already checked by the reader; repeated because this writes files
        dest = os.path.join(root, *name.split("/"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)

    return sink


def main(argv: list[str] | None = None) -> int:
    """``python offline_verify.py BUNDLE TRUSTED.pub.pem [--unpack DIR]``: exit 0 only if verified."""
    args = list(sys.argv[1:] if argv is None else argv)
    unpack = None
    if "--unpack" in args:
        i = args.index("--unpack")
        unpack = args[i + 1]
        del args[i : i + 2]
    if len(args) != 2:
        print("usage: offline_verify.py BUNDLE TRUSTED.pub.pem [--unpack NEW_DIR]", file=sys.stderr)
        return 2
    try:
        with open(args[1], "rb") as key:
            public_pem = key.read(1 << 20)
        if unpack is not None:
            os.makedirs(unpack, mode=0o700)
        result = verify(args[0], public_pem, unpack_into(unpack) if unpack else None)
    except BundleRefused as exc:
        print(f"REFUSED: {exc.message}", file=sys.stderr)
        return 8
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    import cryptography

    print(
        f"verified: {result.files} files, {result.bytes} bytes, manifest sha256 {result.manifest_sha256}, "
        f"signed by key {result.key_hint[:16]}... (cryptography {cryptography.__version__} from "
        f"{os.path.dirname(os.path.dirname(cryptography.__file__))})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
