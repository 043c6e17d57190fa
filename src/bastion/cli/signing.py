"""``bastion hash``, ``sign``, ``verify`` and ``signing-key``: manifests and model signatures."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

from bastion.cli.options import JsonOpt, ModelPathArg, PasswordEnvOpt, password_from_env
from bastion.cli.render import emit, err, out
from bastion.errors import UsageError
from bastion.hashing import Manifest, manifest_of
from bastion.hashing.manifest import printable
from bastion.signing import (
    generate_key_pair,
    load_certificates,
    load_private_key,
    load_public_key,
    sign_model,
    signature_path_in_model,
    verify_model,
)
from bastion.signing.keys import write_atomic


class Algorithm(StrEnum):
    """Digest algorithms of the model-signing format that Bastion computes."""

    sha256 = "sha256"
    blake2b = "blake2b"


class CurveName(StrEnum):
    """ECDSA curves for a new signing key."""

    p256 = "p256"
    p384 = "p384"


PathArg = ModelPathArg
AlgorithmOpt = Annotated[
    Algorithm, typer.Option("--algorithm", "-a", help="Digest algorithm for every file.")
]
ShardOpt = Annotated[
    int | None,
    typer.Option(
        "--shard-size",
        help="Hash files in shards of this many bytes (model_signing 'shards' method; parallel within "
        "one large file, but digests are then per shard, not per file). Default: whole files.",
        min=1,
    ),
]
NoCacheOpt = Annotated[
    bool, typer.Option("--no-cache", help="Re-read every byte instead of trusting the digest cache.")
]


class _Work:
    """Feeds a Rich progress bar on stderr from the hashing threads and remembers how much was read."""

    def __init__(self, bar: Progress, label: str) -> None:
        self.bar = bar
        self.task = bar.add_task(label, total=None)
        self.to_read = 0

    def on_total(self, total: int) -> None:
        self.to_read = total
        self.bar.update(self.task, total=total)

    def on_progress(self, n: int) -> None:
        self.bar.advance(self.task, n)


@contextmanager
def _progress(label: str) -> Iterator[_Work]:
    """A progress bar that disappears when the work is done."""
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,  # no bar (and no stray blank lines) when stderr is a file or pipe
    ) as bar:
        yield _Work(bar, label)


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def _speed(total: int, read: int, seconds: float) -> str:
    text = f"{total / 1e6:,.1f} MB"
    if read == 0 and total > 0:
        text += " (unchanged since hashed: digests from the cache)"
    elif read < total:
        text += f" ({read / 1e6:,.1f} MB read, the rest from the digest cache)"
    text += f" in {seconds:.2f} s"
    if seconds > 0 and read > 1e8:
        text += f", {read / 1e9 / seconds:.2f} GB/s"
    return text


def _print_manifest(m: Manifest) -> None:
    # Files method: the exact "digest  name" lines of sha256sum/b2sum, so the output of
    # 'bastion hash DIR' can be checked with 'sha256sum -c' inside DIR.
    for r in m.resources:
        # A single-file model's resource is named "." in the format; people want the file name.
        path = m.model_name if r.path == "." else r.path
        name = f"{path}:{r.start}:{r.end}" if r.sharded else path
        out.print(f"{r.digest}  {printable(name)}", markup=False, highlight=False)


def hash_cmd(
    path: PathArg,
    algorithm: AlgorithmOpt = Algorithm.sha256,
    shard_size: ShardOpt = None,
    no_cache: NoCacheOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Print the manifest of a model: every file's digest, and the root digest over all of them."""
    started = time.perf_counter()
    with _progress("hashing") as work:
        m = manifest_of(
            path,
            hash_type=algorithm.value,
            shard_size=shard_size,
            use_cache=not no_cache,
            on_total=work.on_total,
            on_progress=work.on_progress,
        )
    elapsed = time.perf_counter() - started

    def human() -> None:
        _print_manifest(m)
        err.print(f"root digest  {m.root_digest()}")
        algorithm = m.resources[0].algorithm if m.resources else m.hash_type
        err.print(f"{_files(len(m.files))}, {_speed(m.total_bytes, work.to_read, elapsed)} ({algorithm})")

    emit(m.to_json(), as_json, human)


def sign_cmd(
    path: PathArg,
    key: Annotated[Path, typer.Option("--key", "-k", help="ECDSA private key (PEM).")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the signature (bundle JSON).")
    ],
    cert: Annotated[
        Path | None,
        typer.Option(
            "--cert", help="Certificate chain (PEM): the key's certificate first, then its issuers."
        ),
    ] = None,
    algorithm: AlgorithmOpt = Algorithm.sha256,
    shard_size: ShardOpt = None,
    password_env: PasswordEnvOpt = None,
    no_cache: NoCacheOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Sign a model (OpenSSF model-signing format: sigstore bundle, DSSE, in-toto), fully offline."""
    password = password_from_env(password_env)
    private_key = load_private_key(key, password)
    chain = load_certificates(cert, "certificate chain") if cert else []
    inside = signature_path_in_model(path, output)
    ignore = [inside] if inside else []
    with _progress("hashing") as work:
        manifest, bundle = sign_model(
            path,
            private_key,
            chain,
            hash_type=algorithm.value,
            shard_size=shard_size,
            ignore_paths=ignore,
            use_cache=not no_cache,
            on_total=work.on_total,
            on_progress=work.on_progress,
        )
    write_atomic(output, bundle)
    result: dict[str, Any] = {
        "signature": str(output),
        "mode": "certificate" if chain else "key",
        "root_digest": manifest.root_digest(),
        "files": len(manifest.files),
        "total_bytes": manifest.total_bytes,
    }

    def human() -> None:
        out.print(f"signed {_files(len(manifest.files))} ({manifest.total_bytes:,} bytes) -> {output}")
        out.print(f"root digest  {manifest.root_digest()}")

    emit(result, as_json, human)


def verify_cmd(
    path: PathArg,
    sig: Annotated[Path, typer.Option("--sig", "-s", help="The signature (bundle JSON) to check.")],
    key: Annotated[
        Path | None, typer.Option("--key", "-k", help="The signer's public key (PEM), for key signatures.")
    ] = None,
    cert_chain: Annotated[
        Path | None,
        typer.Option("--cert-chain", help="Trusted root certificates (PEM), for certificate signatures."),
    ] = None,
    no_cache: NoCacheOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Verify a model against its signature offline; exit 8 naming every changed, extra or missing file."""
    if (key is None) == (cert_chain is None):
        raise UsageError("give exactly one of --key or --cert-chain", hint="See 'bastion verify --help'.")
    public_key = load_public_key(key) if key else None
    roots = load_certificates(cert_chain, "trusted roots file") if cert_chain else []
    with _progress("verifying") as work:
        v = verify_model(
            path,
            sig,
            public_key=public_key,
            trusted_roots=roots,
            use_cache=not no_cache,
            on_total=work.on_total,
            on_progress=work.on_progress,
        )

    def human() -> None:
        n = len(v.manifest.files)
        out.print(f"[bold green]verified[/] {path}: {_files(n)} {'matches' if n == 1 else 'match'} {sig}")
        if v.certificate:
            out.print(f"signed by    {v.certificate.subject} (issuer {v.certificate.issuer})")
        else:
            out.print(f"signed by    key {v.key_hint}")
        out.print(f"root digest  {v.manifest.root_digest()}")

    emit(v.to_json(), as_json, human)


key_app = typer.Typer(help="The organisation's model-signing key pair.", no_args_is_help=True)


@key_app.command("generate")
def generate_cmd(
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder to write the key pair into.")],
    curve: Annotated[CurveName, typer.Option("--curve", help="ECDSA curve.")] = CurveName.p256,
    name: Annotated[str, typer.Option("--name", help="File name stem.")] = "signing-key",
    as_json: JsonOpt = False,
) -> None:
    """Generate an ECDSA key pair: NAME.pem (private, mode 0600) and NAME.pub.pem; never overwrites."""
    pair = generate_key_pair(output, curve.value, name)  # type: ignore[arg-type]

    def human() -> None:
        out.print(f"private key  {pair.private_key}  (mode 0600: keep it offline, back it up)")
        out.print(f"public key   {pair.public_key}  (give this to verifiers)")
        out.print(f"key hint     {pair.key_hint}")

    emit(pair.to_json(), as_json, human)


def register(app: typer.Typer) -> None:
    """Add the hashing and signing commands to the top-level app."""
    app.command("hash")(hash_cmd)
    app.command("sign")(sign_cmd)
    app.command("verify")(verify_cmd)
    app.add_typer(key_app, name="signing-key")
