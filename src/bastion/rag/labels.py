"""Who may read a document: its classification and groups, from flags, a sidecar or a folder rule.

The most specific source wins: a sidecar ``NAME.meta.toml`` beside the file (``report.pdf`` ->
``report.pdf.meta.toml``), else the nearest ``folder.meta.toml`` in the file's folder or a parent up
to the ingested folder, else the ``--classification``/``--group`` flags. ``--classification`` is also a
floor: a label file may raise a document above it, never lower it (label files sit where documents
are dropped, so whoever can write there must not be able to declassify). Groups in a label file replace
``--group``: protect the folder's label files as you protect the documents. A document with no
classification or no group is refused (fail closed): nobody would be able to read it, or worse,
everyone would be by accident. Every document records where its label came from.

A folder rule may label some files differently with ``[[rule]]`` tables matched by glob::

    classification = "official"
    groups = ["staff"]

    [[rule]]
    glob = "secret-*.md"
    classification = "secret"
    groups = ["intel"]
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.errors import UnusableInput, UsageError
from bastion.policy import LEVELS

SIDECAR_SUFFIX = ".meta.toml"
FOLDER_RULE = "folder.meta.toml"


@dataclass(frozen=True)
class Labels:
    """A document's classification (0 public ... 3 top secret), groups, and where they came from."""

    classification: int
    groups: tuple[str, ...]
    source: str

    @property
    def classification_name(self) -> str:
        """The level's name (public, official, secret, top-secret)."""
        return next(name for name, level in LEVELS.items() if level == self.classification)


def level(name: str, where: str) -> int:
    """A classification name as a level; UsageError naming ``where`` otherwise."""
    if name not in LEVELS:
        raise UsageError(
            f"{where}: classification {name!r} is not one of {', '.join(LEVELS)}",
            hint="Use public, official, secret or top-secret.",
        )
    return LEVELS[name]


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UnusableInput(
            f"{path}: cannot read labels ({exc})", hint="Fix the TOML and ingest again."
        ) from exc


def _partial(table: dict[str, Any], where: str) -> tuple[int | None, tuple[str, ...] | None]:
    unknown = set(table) - {"classification", "groups", "rule", "glob"}
    if unknown:
        raise UnusableInput(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}",
            hint='A label file holds classification = "...", groups = [...] and [[rule]] tables.',
        )
    cls = table.get("classification")
    groups = table.get("groups")
    if cls is not None and not isinstance(cls, str):
        raise UnusableInput(
            f"{where}: classification must be a string", hint='e.g. classification = "secret"'
        )
    if groups is not None and (not isinstance(groups, list) or not all(isinstance(g, str) for g in groups)):
        raise UnusableInput(f"{where}: groups must be a list of strings", hint='e.g. groups = ["intel"]')
    try:
        return (level(cls, where) if cls is not None else None), (
            tuple(groups) if groups is not None else None
        )
    except UsageError as exc:
        raise UnusableInput(exc.message, hint=exc.hint) from exc


def labels_for(file: Path, root: Path, classification: str | None, groups: tuple[str, ...]) -> Labels:
    """The labels of ``file`` ingested under ``root``; UnusableInput when it ends up with none."""
    cls: int | None = None
    grp: tuple[str, ...] | None = None
    source: list[str] = []
    sidecar = file.with_name(file.name + SIDECAR_SUFFIX)
    if sidecar.is_file():
        cls, grp = _partial(_read(sidecar), str(sidecar))
        source.append(sidecar.name)
    folder = file.parent
    while (cls is None or grp is None) and (folder == root or root in folder.parents):
        rule_file = folder / FOLDER_RULE
        if rule_file.is_file():
            table = _read(rule_file)
            rel = file.relative_to(folder).as_posix()
            candidates = [r for r in table.get("rule", []) if isinstance(r, dict)]
            for rule in [*(r for r in candidates if fnmatch.fnmatch(rel, str(r.get("glob", "")))), table]:
                c, g = _partial({k: v for k, v in rule.items() if k != "rule"}, str(rule_file))
                if cls is None and c is not None:
                    cls = c
                    source.append(rule_file.relative_to(root).as_posix())
                if grp is None and g is not None:
                    grp = g
        if folder == root:
            break
        folder = folder.parent
    if classification is not None:
        floor = level(classification, "--classification")
        # The flag is a floor, not a default: a label file beside the documents (anyone who can write
        # into the ingested folder can drop one) may raise a file's classification, never lower it.
        if cls is None or cls < floor:
            cls = floor
            source.append("--classification")
    if grp is None and groups:
        grp = groups
        source.append("--group")
    if cls is None:
        raise UnusableInput(
            f"{file}: no classification (no sidecar {sidecar.name}, no {FOLDER_RULE}, no --classification)",
            hint='Pass --classification, or write classification = "..." in a sidecar or folder rule.',
        )
    if not grp:
        raise UnusableInput(
            f"{file}: no group may read it (no groups in a sidecar or {FOLDER_RULE}, no --group)",
            hint="Pass --group NAME (repeatable), or write groups = [...] in a sidecar or folder rule.",
        )
    return Labels(cls, tuple(sorted(set(grp))), ", ".join(dict.fromkeys(source)))
