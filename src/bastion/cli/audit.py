"""``bastion audit``: the tamper-evident log of requests and admin actions (init, verify, proofs, export)."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bastion.audit import AuditLog, BodyCipher, Filters, initialise_log, load_public_key, open_store
from bastion.audit.admin import os_actor
from bastion.audit.db_store import DbStore, log_exists
from bastion.audit.heads import read_document, read_head
from bastion.audit.keys import public_key_path
from bastion.audit.proofs import build_proof, check_proof, iter_proofs, prove_consistency
from bastion.audit.records import decode_leaf, parse_time
from bastion.audit.verify import stale_after, verify_log
from bastion.cli.options import ConfigOpt, JsonOpt
from bastion.cli.render import emit, err, out
from bastion.config import AuditSettings, Settings, load_settings
from bastion.errors import IntegrityError, NotFound, UsageError
from bastion.keys import KeyStore

app = typer.Typer(
    help="Tamper-evident audit log: Merkle tree, signed tree heads, inclusion proofs.", no_args_is_help=True
)

PubkeyOpt = Annotated[
    Path | None,
    typer.Option("--pubkey", help="The log's Ed25519 public key (PEM). Default: <audit.signing_key>.pub."),
]


def _settings(config: Path | None) -> AuditSettings:
    return load_settings(config).audit


def _store(settings: AuditSettings) -> DbStore:
    """Open an existing log read-only in spirit (nothing is appended); refuse to create one."""
    if not log_exists(settings.target()):
        raise NotFound(
            f"no audit log at {settings.target()}",
            hint="Run 'bastion audit init' first, or set audit.path (or store.url) in the configuration.",
        )
    return open_store(settings.target())


@app.command("init")
def init(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Create the signing key (+ .pub), the body key and the log; record and sign the first entry."""
    settings = _settings(config)
    keys, ref, head, warnings = initialise_log(settings)
    data = {
        **keys.to_json(),
        "database": str(settings.target()),
        "entry": ref.to_json(),
        "head": head.to_json() if head else None,  # orjson would dump the dataclass's bytes as repr()
        "warnings": warnings,
    }

    def human() -> None:
        out.print(f"audit log   {settings.target()}")
        out.print(f"signing key {keys.signing_key}  (key id {keys.key_id}; mode 0600, outside BASTION_HOME)")
        out.print(f"public key  {keys.public_key}  (give this to auditors)")
        out.print(f"body key    {keys.body_key}  (needed to read bodies when store_bodies = 'full')")
        for warning in warnings:
            err.print(f"[yellow]warning:[/] {warning}")

    emit(data, as_json, human)


@app.command("sign")
def sign(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Sign a tree head now over every entry so far (the leading gateway also does this on a timer).

    With several processes on one log, the one holding the leadership signs: this command signs itself
    when it can take the lead, else waits a few seconds for the leader's head (exit 10 if none came)."""
    settings = _settings(config)
    _store(settings).close()
    log = AuditLog.open(settings)
    try:
        head = log.sign_now()
    finally:
        log.close(timeout_s=0)
    emit(
        {"head": head.to_json() if head else None},
        as_json,
        lambda: out.print(
            f"tree head: size {head.tree_size}, signed {head.time}" if head else "log is empty"
        ),
    )


@app.command("status")
def status(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Who leads the log (integrates and signs), how far it has integrated, and the newest signed head."""
    settings = _settings(config)
    store = _store(settings)
    try:
        sequenced = store.sequenced()
        integrated, _ = store.tree_state()
        head = store.latest_head()
        leader = store.leader()
    finally:
        store.close()
    data = {
        "sequenced": sequenced,
        "integrated": integrated,
        "leader": leader,
        "head": head.to_json() if head else None,
        "unsigned": sequenced - (head.tree_size if head else 0),
    }

    def human() -> None:
        out.print(f"entries     {sequenced} sequenced, {integrated} integrated into the tree")
        out.print(f"newest head {f'size {head.tree_size}, signed {head.time}' if head else 'none yet'}")
        out.print(f"leader      {leader or 'none (the next process with the signing key takes the lead)'}")

    emit(data, as_json, human)


AgainstOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--against",
        help="A signed tree head kept outside the database ('audit sign --json' output or a proof file);"
        " repeatable. Detects truncation and rewrites the database alone cannot show.",
    ),
]


@app.command("verify")
def verify(
    pubkey: PubkeyOpt = None, against: AgainstOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False
) -> None:
    """Recompute the whole tree, check every signed head and their consistency; exit 8 if tampered."""
    settings = _settings(config)
    public_key = load_public_key(pubkey or public_key_path(settings.signing_key))
    outside = [read_head(path) for path in against or ()]
    store = _store(settings)
    total = store.sequenced()
    columns = (TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("verify", total=total)
        report = verify_log(
            store,
            public_key,
            progress=lambda n: bar.update(task, completed=n),
            against=outside,
            stale_after_s=stale_after(settings.sth_interval_s),
        )
    store.close()

    def human() -> None:
        if report.ok:
            out.print(
                f"[green]OK[/] {report.entries} entries, {report.heads} signed tree heads,"
                f" key {report.key_id}, root {report.root[:16]}... ({report.seconds:.2f} s)"
            )
        else:
            stalled = all(p.kind == "stale" for p in report.problems)
            title = "NOT SIGNED" if stalled else "TAMPERED"
            out.print(f"[bold red]{title}[/] {len(report.problems)} problem(s):")
            for p in report.problems[:20]:
                out.print(f"  - {p.message}")
            if report.first_bad_entry is not None:
                out.print(f"first bad entry: {report.first_bad_entry}")
            if report.bad_range is not None:
                out.print(f"changed entries lie in {report.bad_range[0]}..{report.bad_range[1]}")
        for note in report.notes:
            out.print(f"[yellow]note:[/] {note}")

    emit(report.to_json(), as_json, human)
    if not report.ok:
        raise typer.Exit(IntegrityError.exit_code)


@app.command("consistency")
def consistency(
    old: Annotated[Path, typer.Argument(help="The older signed tree head (JSON), kept elsewhere.")],
    new: Annotated[Path, typer.Argument(help="The newer signed tree head (JSON).")],
    pubkey: PubkeyOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Prove (RFC 6962) from the log that NEW extends OLD: nothing OLD signed was changed or removed."""
    settings = _settings(config)
    public_key = load_public_key(pubkey or public_key_path(settings.signing_key))
    old_head, new_head = read_head(old), read_head(new)
    store = _store(settings)
    try:
        result = prove_consistency(store, old_head, new_head, public_key)
    finally:
        store.close()
    emit(
        result.to_json(),
        as_json,
        lambda: out.print(
            f"[green]OK[/] the log of {new_head.tree_size} entries (signed {new_head.time}) extends the log"
            f" of {old_head.tree_size} entries (signed {old_head.time}); proof of {len(result.path)} hashes"
        ),
    )


@app.command("proof")
def proof(
    entry_id: Annotated[int, typer.Argument(help="Entry number (leaf index) from 'search' or 'show'.")],
    config: ConfigOpt = None,
) -> None:
    """Print an inclusion proof (JSON) for one entry against the newest signed tree head."""
    store = _store(_settings(config))
    doc = build_proof(store, entry_id).to_json()
    store.close()
    sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")


@app.command("check-proof")
def check_proof_cmd(
    proof_file: Annotated[Path, typer.Argument(help="A proof written by 'bastion audit proof'.")],
    pubkey: Annotated[Path, typer.Option("--pubkey", help="The log's Ed25519 public key (PEM).")],
    as_json: JsonOpt = False,
) -> None:
    """Check a proof file with only the public key: no database, no configuration."""
    public_key = load_public_key(pubkey)
    doc = read_document(proof_file, "proof file")
    result = check_proof(doc, public_key, source=str(proof_file))
    emit(
        result.to_json(),
        as_json,
        lambda: out.print(
            f"[green]OK[/] entry {result.entry} is in the log of {result.tree_size} entries signed"
            f" by key {result.key_id} at {result.signed_at}"
        ),
    )


@app.command("export")
def export(
    since: Annotated[
        str | None, typer.Option(help="First time included (YYYY-MM-DD[THH:MM:SS], UTC).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Time excluded from here on.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Write entries as JSON Lines, one inclusion proof per line (each checkable with check-proof)."""
    start = parse_time(since, "--since") if since else None
    end = parse_time(until, "--until") if until else None
    store = _store(_settings(config))
    try:
        lines = (orjson.dumps(p.to_json()) + b"\n" for p in iter_proofs(store, start, end))
        written = _write_lines(lines, output)
        unsigned = store.sequenced() - store.heads()[-1].tree_size
    finally:
        store.close()
    if unsigned > 0:
        err.print(
            f"note: the {unsigned} newest entries are not yet under a signed tree head and were skipped"
        )
    err.print(f"exported {written} entries")


def _write_lines(lines: Any, output: Path | None) -> int:
    count = 0
    if output is None:
        for line in lines:
            sys.stdout.buffer.write(line)
            count += 1
        sys.stdout.flush()
        return count
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as fh:  # temp file + rename: never a half-written export
            for line in lines:
                fh.write(line)
                count += 1
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    return count


@app.command("show")
def show(
    entry_id: Annotated[int, typer.Argument(help="Entry number (leaf index).")],
    bodies: Annotated[bool, typer.Option("--bodies", help="Decrypt and print stored bodies.")] = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one entry: its recorded fields, leaf hash and (with --bodies) decrypted bodies."""
    settings = _settings(config)
    store = _store(settings)
    entry = store.entry(entry_id)
    stored = store.bodies(entry_id) if entry is not None else {}
    store.close()
    if entry is None:
        raise NotFound(f"audit entry {entry_id} does not exist", hint="'bastion audit search' lists entries.")
    data: dict[str, Any] = {
        "entry": entry_id,
        "leaf_hash": entry.leaf_hash.hex(),
        "record": _named(decode_leaf(entry.leaf), _key_names(load_settings(config))),
    }
    data["stored_bodies"] = sorted(stored)
    if bodies and stored:
        cipher = BodyCipher.from_file(settings.body_key)
        data["bodies"] = {
            part: cipher.decrypt(entry_id, part, blob).decode("utf-8", "replace")
            for part, blob in stored.items()
        }

    def human() -> None:
        table = Table("field", "value", show_header=False)
        for key, value in data["record"].items():
            table.add_row(key, str(value))
        table.add_row("leaf_hash", data["leaf_hash"])
        table.add_row("stored bodies", ", ".join(data["stored_bodies"]) or "none")
        for part, text in data.get("bodies", {}).items():
            table.add_row(f"{part} body", text)
        out.print(table)

    emit(data, as_json, human)


@app.command("search")
def search(
    kind: Annotated[str | None, typer.Option(help="'request' or 'admin'.")] = None,
    principal: Annotated[
        str | None, typer.Option(help="API key id or key name (requests), or actor (admin).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model name.")] = None,
    request_id: Annotated[str | None, typer.Option("--request-id", help="Gateway request id.")] = None,
    since: Annotated[str | None, typer.Option(help="From this time (YYYY-MM-DD[THH:MM:SS], UTC).")] = None,
    until: Annotated[str | None, typer.Option(help="Before this time.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many entries, newest first.")] = 50,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Find entries by kind, principal, model, request id or time, newest first."""
    if kind not in (None, "request", "admin"):
        raise UsageError(f"--kind must be 'request' or 'admin', not {kind!r}")
    filters = Filters(
        kind=kind,
        principal=principal,
        model=model,
        request_id=request_id,
        since=parse_time(since, "--since") if since else None,
        until=parse_time(until, "--until") if until else None,
    )
    settings = load_settings(config)
    names = _key_names(settings)
    store = _store(settings.audit)
    # A key name stands for every key id made under it (ids are what the log records).
    ids = [i for i, n in names.items() if n == principal] if principal and principal not in names else []
    rows = [e for i in ids for e in store.find(replace(filters, principal=i), limit)] if ids else []
    rows = sorted(rows, key=lambda e: -e.seq)[:limit] if ids else store.find(filters, limit)
    records = [_named(decode_leaf(e.leaf, e.seq), names) for e in rows]
    store.close()

    def human() -> None:
        table = Table("entry", "time", "kind", "who", "what", "status")
        for r in records:
            if r["kind"] == "request":
                who = r["principal"] + (f" ({r['principal_name']})" if r.get("principal_name") else "")
                table.add_row(str(r["seq"]), r["time"], "request", who, r["model"], str(r["status"]))
            else:
                table.add_row(str(r["seq"]), r["time"], "admin", r["actor"], r["action"], "")
        out.print(table)

    emit(records, as_json, human)


def _key_names(settings: Settings) -> dict[str, str]:
    """API key id -> key name, for showing who a request was (the log records ids only)."""
    if settings.store.url is None and not settings.store.path.exists():
        return {}
    store = KeyStore(settings.store.target())
    try:
        return {k.id: k.name for k in store.list(include_revoked=True)}
    finally:
        store.close()


def _named(record: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """``record`` with ``principal_name`` beside a request's key id, when the key store knows it."""
    if record.get("kind") == "request" and record.get("principal") in names:
        return {**record, "principal_name": names[record["principal"]]}
    return record


@app.command("prune")
def prune(
    before: Annotated[str, typer.Option("--before", help="Remove bodies of entries older than this date.")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete stored bodies older than a date; leaves and hashes stay, so the log still verifies."""
    cutoff = parse_time(before, "--before")
    settings = _settings(config)
    _store(settings).close()
    log = AuditLog.open(settings)
    try:
        removed = log.store.prune_bodies(cutoff)
        details = {"before": cutoff, "bodies_removed": removed}
        ref = log.append_admin("audit.prune", os_actor(), details=details)
    finally:
        log.close()
    emit(
        {"before": cutoff, "bodies_removed": removed, "entry": ref.to_json()},
        as_json,
        lambda: out.print(
            f"removed {removed} stored bodies older than {cutoff} (recorded as entry {ref.seq})"
        ),
    )
