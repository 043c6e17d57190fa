"""``bastion rag``: collections of documents, searched with Cedar deciding per document."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from bastion.audit import os_actor
from bastion.cli.options import ConfigOpt, JsonOpt
from bastion.cli.render import emit, err, out
from bastion.config import Settings, load_settings
from bastion.errors import PermissionDenied, UnusableInput, UsageError
from bastion.keys import KeyStore, Principal
from bastion.rag import MAX_K, MODES, RagStore

app = typer.Typer(
    help="Retrieval over your documents: collections, ingestion, search (Cedar decides per document).",
    no_args_is_help=True,
)

KeyOpt = Annotated[
    str | None, typer.Option("--key", help="Search as this API key (its id from 'bastion keys list').")
]
GroupOpt = Annotated[
    list[str] | None,
    typer.Option("--group", "-g", help="Search as an ad hoc principal in this group (repeatable)."),
]


def _open(config: Path | None) -> tuple[Settings, RagStore]:
    settings = load_settings(config)
    return settings, RagStore.open(settings)


def _principal(settings: Settings, key: str | None, groups: list[str] | None) -> Principal:
    """The principal a command reads as: an API key's, or this OS user in the given groups."""
    if key and groups:
        raise UsageError("give --key or --group, not both", hint="--key searches exactly as that key would.")
    if key:
        store = KeyStore(settings.store.path)
        try:
            record = store.get(key)
        finally:
            store.close()
        if record.revoked_at:
            raise PermissionDenied(f"API key {key} was revoked at {record.revoked_at}")
        return Principal(record.id, record.name, record.models, record.groups)
    if not groups:
        raise UsageError(
            "say whom to search as: --key KEY_ID or --group NAME",
            hint="Retrieval is authorised per document by Cedar, so every search has a principal.",
        )
    actor = os_actor()
    return Principal(f"cli:{actor}", actor, (), tuple(groups))


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Collection name (letters, digits, '-', '_', '.').")],
    description: Annotated[str, typer.Option("--description", "-d", help="What the collection holds.")] = "",
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an empty collection."""
    info = _open(config)[1].create_collection(name, description)
    emit(info.to_json(), as_json, lambda: out.print(f"created collection {info.name!r}"))


@app.command("ingest")
def ingest(
    name: Annotated[str, typer.Argument(help="The collection.")],
    path: Annotated[Path, typer.Argument(help="A document, or a folder (every .md .txt .html .pdf .docx).")],
    classification: Annotated[
        str | None,
        typer.Option(
            "--classification",
            help="public, official, secret or top-secret, for files no sidecar or folder.meta.toml labels.",
        ),
    ] = None,
    group: Annotated[
        list[str] | None, typer.Option("--group", "-g", help="Group that may read the files (repeatable).")
    ] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ingest documents; a changed file replaces its chunks, an unchanged one is skipped.

    Exit 3 when any file could not be ingested (each is named with its problem and fix); the
    others are ingested all the same.
    """
    report = _open(config)[1].ingest(name, path, classification=classification, groups=tuple(group or ()))

    def human() -> None:
        table = Table("file", "status", "chunks", "classification", "groups", "labels from")
        for f in report.files:
            if f.status != "ignored":
                table.add_row(
                    f.path,
                    f.status,
                    str(f.chunks),
                    f.classification or "",
                    ", ".join(f.groups),
                    f.label_source,
                )
        out.print(table)
        totals = report.to_json()
        out.print(
            f"{totals['ingested']} ingested, {totals['replaced']} replaced,"
            f" {totals['relabelled']} relabelled, {totals['skipped']} unchanged, {totals['failed']} failed;"
            f" {report.chunks} chunks"
            f" in {report.seconds:.1f} s"
        )
        for f in report.failed:
            assert f.error is not None
            err.print(f"[bold red]error:[/] {escape(f.error['message'])}")
            if f.error.get("hint"):
                err.print(f"[yellow]hint:[/] {escape(f.error['hint'])}")

    emit(report.to_json(), as_json, human)
    if report.failed:
        raise typer.Exit(UnusableInput.exit_code)


@app.command("list")
def list_(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """List collections with their document and chunk counts."""
    infos = _open(config)[1].list_collections()

    def human() -> None:
        table = Table("collection", "documents", "chunks", "created", "description")
        for c in infos:
            table.add_row(c.name, str(c.documents), str(c.chunks), c.created_at, c.description)
        out.print(table)

    emit([c.to_json() for c in infos], as_json, human)


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="The collection.")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a collection's documents with their labels (the operator's view: every document)."""
    info = _open(config)[1].show(name)

    def human() -> None:
        out.print(f"collection {info.name!r}: {info.documents} documents, {info.chunks} chunks")
        table = Table("document", "title", "source", "classification", "groups", "chunks")
        for d in info.document_list:
            table.add_row(d.id, d.title, d.source_name, d.classification, ", ".join(d.groups), str(d.chunks))
        out.print(table)

    emit(info.to_json(), as_json, human)


@app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(help="The collection.")],
    document: Annotated[
        str | None,
        typer.Option("--document", help="Delete only this document (its id from 'bastion rag show')."),
    ] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete a collection, or one document of it: every chunk, FTS row and vector goes. Audited."""
    store = _open(config)[1]
    if document is not None:
        doc = store.delete_document(name, document)
        emit(
            {"deleted": "document", "collection": name, **doc.to_json()},
            as_json,
            lambda: out.print(
                f"deleted document {doc.id} ({doc.source_name}, {doc.chunks} chunks) from {name!r}"
            ),
        )
        return
    count = store.delete_collection(name)
    emit(
        {"deleted": "collection", "collection": name, "documents": count},
        as_json,
        lambda: out.print(f"deleted collection {name!r} and its {count} documents"),
    )


@app.command("search")
def search(
    name: Annotated[str, typer.Argument(help="Collection(s), comma-separated.")],
    query: Annotated[str, typer.Argument(help="The question or words to look for.")],
    key: KeyOpt = None,
    group: GroupOpt = None,
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=MAX_K, help="How many chunks to return.")] = 5,
    mode: Annotated[str, typer.Option("--mode", help=f"One of {', '.join(MODES)}.")] = "hybrid",
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Search as a principal: only documents Cedar lets it retrieve are ranked, counted or shown."""
    settings, store = _open(config)
    principal = _principal(settings, key, group)
    hits = store.search([c for c in name.split(",") if c], query, principal=principal, k=k, mode=mode)

    def human() -> None:
        if not hits:
            out.print("no results")
        for i, h in enumerate(hits, start=1):
            out.print(
                f"[bold]{i}. {escape(h.title)}[/] ({escape(h.source_name)}, {h.document_id}"
                f" {h.start}-{h.end}) score {h.score:.4f}"
            )
            out.print("   " + escape(" ".join(h.text.split())[:300]))

    emit(
        {"principal": principal.to_json(), "mode": mode, "hits": [h.to_json() for h in hits]}, as_json, human
    )
