"""``bastion bundle create|verify|install``: carry Bastion, its models and data across an air gap."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bastion.bundle import ModelSpec, create_bundle, install_bundle, read_trusted_key, verify_file
from bastion.cli.options import JsonOpt
from bastion.cli.render import emit, err, out

app = typer.Typer(
    help="Signed transfer bundles: create on a connected machine, verify and install inside the enclave.",
    no_args_is_help=True,
)

TrustOpt = Annotated[
    Path, typer.Option("--trust", help="The organisation's public key (PEM) the bundle must be signed by.")
]


@app.command("create")
def create(
    output: Annotated[Path, typer.Option("--output", "-o", help="Bundle file to write (.tar).")],
    key: Annotated[Path, typer.Option("--key", help="Organisation private key (PEM) that signs the bundle.")],
    models: Annotated[
        list[str] | None,
        typer.Option("--models", "-m", help="Model to carry: bundled name, NAME=PATH or PATH (repeatable)."),
    ] = None,
    eval_data: Annotated[
        bool, typer.Option("--eval-data", help="Carry the built evaluation data.")
    ] = False,
    lineage_refs: Annotated[
        bool, typer.Option("--lineage-refs", help="Carry the lineage references.")
    ] = False,
    since: Annotated[
        Path | None,
        typer.Option("--since", help="Previous bundle's .manifest.json: carry only what changed since."),
    ] = None,
    platform: Annotated[
        list[str] | None,
        typer.Option("--platform", help="Target wheel platform tag (repeatable)."),
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Use the local wheel caches only; never ask the package index.")
    ] = False,
    bastion_wheel: Annotated[
        Path | None, typer.Option("--bastion-wheel", help="Bastion wheel (default: built from source).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Build a signed bundle: wheelhouse with hashes, models, data, catalog, SBOM, bootstrap script."""
    from bastion.evals.data import eval_data_dir
    from bastion.lineage.references import default_path

    specs = [ModelSpec.parse(m) for m in (models or [])]
    with err.status(f"building {output} ..."):
        created = create_bundle(
            output,
            key,
            specs,
            eval_data=eval_data_dir() if eval_data else None,
            lineage_refs=default_path() if lineage_refs else None,
            since=since,
            platform=tuple(platform or ()),
            offline=offline,
            bastion_wheel=bastion_wheel,
        )

    def human() -> None:
        out.print(f"[green]bundle[/] {created.path} ({created.size / 1e6:.1f} MB, {created.carried} of "
                  f"{created.files} files carried, {created.wheels} wheels, models: "
                  f"{', '.join(created.models) or 'none'})")
        out.print(f"manifest  {created.manifest_path} (sha256 {created.manifest_sha256})")
        out.print(f"bootstrap {created.path}.bootstrap.sh (carry it separately: it pins the verifier):")
        out.print(created.bootstrap, markup=False)

    emit(created.to_json(), as_json, human)


@app.command("verify")
def verify(
    bundle: Annotated[Path, typer.Argument(help="Bundle file.")],
    trust: TrustOpt,
    as_json: JsonOpt = False,
) -> None:
    """Check the signature and every byte of a bundle, offline; name any altered, added or missing file."""
    with err.status(f"verifying {bundle} ..."):
        result = verify_file(bundle, read_trusted_key(trust))
    doc = {
        "verified": True,
        "bundle": str(bundle),
        "manifest_sha256": result.manifest_sha256,
        "key_hint": result.key_hint,
        "files": result.files,
        "bytes": result.bytes,
        "incremental": result.manifest.get("since"),
        "models": [m["name"] for m in result.manifest["models"]],
    }
    emit(doc, as_json, lambda: out.print(
        f"[green]verified[/] {bundle}: {result.files} files, {result.bytes:,} bytes, signed by key "
        f"{result.key_hint[:16]}... (manifest sha256 {result.manifest_sha256[:16]}...)"))


@app.command("install")
def install(
    bundle: Annotated[Path, typer.Argument(help="Bundle file.")],
    trust: TrustOpt,
    prefix: Annotated[Path, typer.Option("--prefix", help="Where to install.")] = Path("~/bastion"),
    key: Annotated[
        Path | None,
        typer.Option("--key", help="Organisation private key that signs admissions (without it, models are "
                     "installed but not admitted)."),
    ] = None,
    policy: Annotated[
        str, typer.Option("--policy", "-p", help="Admission policy pack or .cedar file.")
    ] = "sovereign-strict",
    org: Annotated[
        Path | None, typer.Option("--org", help="organisation.toml: denied countries, trusted signers.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify, build the venv from the wheelhouse (no index), install models and data, admit each model."""
    with err.status(f"installing {bundle} into {prefix} ..."):
        result = install_bundle(bundle, trust, prefix, key=key, policy=policy, org=org)

    def human() -> None:
        state = "already installed" if result.already_installed else "installed"
        out.print(f"[green]{state}[/] release {result.release} in {result.prefix}")
        for m in result.models:
            mark = "[green]admitted[/]" if m.admitted else "[red]not admitted[/]"
            out.print(f"  {m.name:12s} {mark}: {m.reason}")
        out.print(f"use it:  . {result.prefix / 'env.sh'} && bastion serve")

    emit(result.to_json(), as_json, human)
