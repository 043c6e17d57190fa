"""``bastion policy``: check Cedar policy files against Bastion's schema, explain admission decisions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bastion import bundled
from bastion.admission import Facts, Subject, decide
from bastion.catalog import identify, load_catalog
from bastion.cli.options import JsonOpt, load_organisation
from bastion.cli.render import emit, out
from bastion.errors import UsageError
from bastion.formats import open_artifact
from bastion.lineage import local_weight_evidence
from bastion.policy import PACKS, read_policy, schema_text
from bastion.policy.decision import VERDICTS

app = typer.Typer(
    help="Cedar policies: which models may be admitted, and who may call them.", no_args_is_help=True
)


@app.command("check")
def check(
    file: Annotated[str, typer.Argument(help="A .cedar file, or a bundled pack name.")],
    as_json: JsonOpt = False,
) -> None:
    """Validate a policy against Bastion's Cedar schema; every problem with its line number."""
    source, problems = read_policy(file)
    data = {
        "policy": source.origin,
        "valid": not problems,
        "statements": [s.to_json() for s in source.statements],
        "problems": [p.to_json() for p in problems],
    }

    def human() -> None:
        for p in problems:
            where = f" (statement {p.statement})" if p.statement else ""
            out.print(f"[red]{source.origin}:{p.line}:[/] {p.message}{where}")
        if not problems:
            out.print(f"{source.origin}: [green]valid[/], {len(source.statements)} statements")

    error = (
        UsageError(
            f"{source.origin}: {len(problems)} problem(s) found",
            hint="Fix the lines listed; the schema is printed by 'bastion policy schema'.",
        )
        if problems
        else None
    )
    if error is not None and as_json:
        # One document: the problems and the error together (exit 2), not a report followed by an error.
        emit({**data, "error": error.to_json()}, as_json, human)
        raise typer.Exit(error.exit_code)
    emit(data, as_json, human)
    if error is not None:
        raise error


@app.command("schema")
def schema_() -> None:
    """Print the Cedar schema policies are checked against."""
    out.print(schema_text(), markup=False, highlight=False)


@app.command("explain")
def explain(
    model: Annotated[
        str,
        typer.Argument(help="Catalog name, a .gguf file / model folder, or bundled:smollm2|gemma3|minilm."),
    ],
    policy: Annotated[
        str, typer.Option("--policy", help=f"Bundled pack ({', '.join(PACKS)}) or a .cedar file.")
    ],
    org: Annotated[
        Path | None,
        typer.Option(
            "--org",
            help="organisation.toml (default: policy.organisation, else $BASTION_HOME/organisation.toml, "
            "else bundled).",
        ),
    ] = None,
    vet: Annotated[
        str, typer.Option("--vet", help=f"Vet verdict to assume: {', '.join(VERDICTS)}.")
    ] = "pass",
    finding: Annotated[
        list[str] | None, typer.Option("--finding", help="Vet finding code to assume (repeat).")
    ] = None,
    signer: Annotated[
        str | None, typer.Option("--signer", help="Key id that signed it (default: the org's first).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the admission decision for a model and the policy statements that decided it."""
    if vet not in VERDICTS:
        raise UsageError(f"--vet must be one of {', '.join(VERDICTS)}", hint="For example --vet pass.")
    organisation = load_organisation(org)
    the_signer = signer if signer is not None else (organisation.trusted_signers or ("",))[0]
    cat = load_catalog()
    path = bundled.resolve(model) if model.startswith("bundled:") else Path(model)
    confidence, identified = 100, model
    if path.exists():
        # identified as admission identifies it: the file read once, the same weight evidence
        ident = identify(open_artifact(path), cat, evidence_sources=local_weight_evidence())
        if ident.best is None:
            raise UsageError(
                f"{model}: no catalog entry matches what the file says",
                hint="'bastion catalog identify PATH' shows what was read.",
            )
        identified, confidence = ident.best.name, ident.best.confidence
    facts = Facts(vet, tuple(finding or ()), the_signer)
    ruling = decide(Subject(identified, match_confidence=confidence, facts=facts), policy, organisation, cat)
    attrs, decision = ruling.attributes, ruling.decision

    def human() -> None:
        verdict = "[green]ALLOW[/]" if decision.allowed else "[red]DENY[/]"
        out.print(f"{verdict} admit {attrs.name} under {decision.policy}: {decision.note}")
        table = Table("statement", "effect", "line")
        for r in decision.reasons:
            table.add_row(r.id, r.effect, str(r.line))
        if decision.reasons:
            out.print(table)
        for e in decision.errors:
            out.print(f"[red]error:[/] {e}")
        out.print(
            f"lineage {' <- '.join(attrs.lineage)}; countries {', '.join(attrs.lineage_countries)}; "
            f"licences {'; '.join(attrs.lineage_licenses)}"
        )
        out.print(
            f"denied countries (organisation): {', '.join(organisation.denied_countries) or 'none'}; "
            f"vet {vet}; signer {the_signer or 'none'}; match confidence {confidence}"
        )

    emit(decision.to_json(), as_json, human)


@app.command("reload")
def reload_cmd(as_json: JsonOpt = False) -> None:
    """Make the running gateway re-read its access policy now (sends it SIGHUP); no restart needed."""
    import os
    import signal

    from bastion.bundled import data_home
    from bastion.errors import NotFound
    from bastion.serve.pidfile import running_gateway

    # Only a pid whose gateway still holds the pid file's lock is signalled: a stale file left by a
    # killed gateway could name a pid the kernel has since given to an unrelated process.
    pid_file = data_home() / "serve.pid"
    pid = running_gateway(pid_file)
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        raise NotFound(f"cannot signal gateway {pid} ({pid_file}): {exc}") from exc
    emit({"reloaded": True, "pid": pid}, as_json, lambda: out.print(f"asked gateway {pid} to reload"))
