"""``bastion embed``: sentence embeddings from the bundled all-MiniLM-L6-v2, offline, without torch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bastion.bundled import resolve
from bastion.cli.options import JsonOpt
from bastion.cli.render import emit, err, out
from bastion.embeddings import EmbeddingResult, MiniLMEmbedder
from bastion.errors import UnusableInput, UsageError

#: Texts per progress step: large enough to batch well, small enough to show progress.
CHUNK = 64
HELP = (
    "Embed texts into unit-length vectors and show how similar they are to each other.\n\n"
    "Runs the bundled all-MiniLM-L6-v2 offline, without torch. With --json, prints one document with"
    " every vector in full; otherwise a table of token counts and the cosine similarity of each pair"
    " (up to 8 texts). Texts longer than the model's limit (256 tokens for all-MiniLM-L6-v2) are"
    " truncated, and marked so.\n\n"
    "Example: bastion embed 'A cat sits on the mat.' 'A kitten lies on a rug.'"
)
#: Pairwise similarities are shown for at most this many texts (the table grows as n^2).
MAX_MATRIX = 8


def _read_lines(path: Path) -> list[str]:
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UnusableInput(
            f"{path} does not exist", hint="Give a UTF-8 text file, one text per line."
        ) from None
    except UnicodeDecodeError as exc:
        raise UnusableInput(
            f"{path} is not UTF-8 text (byte {exc.start})", hint="Convert it to UTF-8, one text per line."
        ) from None
    except OSError as exc:
        raise UnusableInput(f"cannot read {path}: {exc.strerror or exc}", hint="Check the path.") from None
    return [line for line in raw.splitlines() if line.strip()]


def _embed_with_progress(embedder: MiniLMEmbedder, texts: list[str]) -> EmbeddingResult:
    if len(texts) <= CHUNK:
        return embedder.embed(texts)
    parts: list[EmbeddingResult] = []
    columns = (TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("embed", total=len(texts))
        for start in range(0, len(texts), CHUNK):
            parts.append(embedder.embed(texts[start : start + CHUNK]))
            progress.advance(task, len(parts[-1].token_counts))
    return EmbeddingResult(
        np.concatenate([p.vectors for p in parts]),
        [n for p in parts for n in p.token_counts],
        [t for p in parts for t in p.truncated],
    )


def embed(
    texts: Annotated[
        list[str] | None, typer.Argument(help="Texts to embed (each argument is one text).")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="Read texts from a UTF-8 file, one per non-blank line."),
    ] = None,
    model: Annotated[
        str, typer.Option("--model", "-m", help="Sentence-transformers BERT folder, or bundled:minilm.")
    ] = "bundled:minilm",
    as_json: JsonOpt = False,
) -> None:
    """Embed texts into unit-length vectors and show how similar they are to each other (see HELP)."""
    items = list(texts or []) + (_read_lines(file) if file else [])
    if not items:
        raise UsageError(
            "nothing to embed", hint="Give texts as arguments, or --file with one text per line."
        )
    embedder = MiniLMEmbedder.load(resolve(model))
    result = _embed_with_progress(embedder, items)
    sims = result.vectors @ result.vectors.T
    data: dict[str, Any] = {
        "model": str(embedder.path),
        "digest": embedder.digest,
        "dimensions": embedder.dimensions,
        "max_tokens": embedder.max_tokens,
        "data": [
            {"index": i, "tokens": n, "truncated": t, "embedding": v}
            for i, (n, t, v) in enumerate(
                zip(result.token_counts, result.truncated, result.vectors.tolist(), strict=True)
            )
        ],
    }

    def human() -> None:
        out.print(f"model  {embedder.path}")
        out.print(f"digest {embedder.digest}")
        out.print(
            f"{len(items)} texts -> {embedder.dimensions}-dimensional unit vectors"
            f" (max {embedder.max_tokens} tokens)"
        )
        table = Table("#", "tokens", "text", "first dimensions")
        for i, text in enumerate(items):
            cut = " [yellow](truncated)[/]" if result.truncated[i] else ""
            shown = text if len(text) <= 60 else text[:57] + "..."
            dims = " ".join(f"{x:+.3f}" for x in result.vectors[i, :4])
            table.add_row(str(i), f"{result.token_counts[i]}{cut}", shown, dims)
        out.print(table)
        n = min(len(items), MAX_MATRIX)
        if n >= 2:
            sim = Table("cosine", *[str(j) for j in range(n)], title="similarity")
            for i in range(n):
                sim.add_row(str(i), *[f"{sims[i, j]:.3f}" for j in range(n)])
            out.print(sim)

    emit(data, as_json, human)


def register(app: typer.Typer) -> None:
    """Add ``bastion embed`` to the CLI."""
    app.command("embed", help=HELP)(embed)
