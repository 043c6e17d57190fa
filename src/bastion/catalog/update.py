"""Signed catalog updates across the air gap: sign a TOML diff, verify it, show what it changes, apply it.

An update is the TOML of the rows it adds or replaces plus an ``[update]`` header (serial,
description), signed in the same DSSE bundle as model signatures with its own payload type, so a
model signature can never pass for a catalog update. Applying it re-validates the whole merged
catalog (lineage edges must resolve) before anything is written, then commits atomically to the
overlay (see ``overlay.py``); the shipped catalog stays read-only.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from bastion.catalog.catalog import Catalog, load_catalog, reload_catalog
from bastion.catalog.overlay import (
    STATE,
    AppliedUpdate,
    UpdateFile,
    overlay_dir,
    parse_update,
    read_state,
    state_bytes,
)
from bastion.catalog.schema import CatalogEntry
from bastion.errors import IntegrityError, UnusableInput
from bastion.signing import sign_payload, verify_payload
from bastion.signing.keys import read_small, write_atomic

PAYLOAD_TYPE = "application/vnd.bastion.catalog-update+toml"
MAX_UPDATE = 8 << 20  # the whole shipped catalog is ~100 KB; 8 MiB bounds memory on hostile input
#: fields compared when showing what changed (citations are shown as the changes' sources)
_SHOWN = tuple(f for f in CatalogEntry.model_fields if f not in ("citations", "benchmarks"))
_FACT_OF = {"relation": "base_model"}


@dataclass(frozen=True)
class VerifiedUpdate:
    """A catalog update whose signature checked out: its text, parsed rows and signer."""

    text: str
    parsed: UpdateFile
    key_hint: str
    sha256: str
    bundle: bytes


@dataclass(frozen=True)
class FactChange:
    """One fact of one row that the update changes, with the sources the new row cites for it."""

    name: str
    field: str
    old: Any
    new: Any
    sources: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The change as a plain mapping."""
        return {
            "name": self.name,
            "field": self.field,
            "old": self.old,
            "new": self.new,
            "sources": list(self.sources),
        }


@dataclass(frozen=True)
class UpdateDiff:
    """What an update does to the catalog: rows added, facts changed, rows already identical."""

    serial: int
    description: str
    key_hint: str
    sha256: str
    added: tuple[CatalogEntry, ...]
    changed: tuple[FactChange, ...]
    unchanged: tuple[str, ...]
    applied: bool = False

    def to_json(self) -> dict[str, Any]:
        """The diff as a plain mapping (``bastion catalog update --json``)."""
        return {
            "serial": self.serial,
            "description": self.description,
            "signer_key_hint": self.key_hint,
            "sha256": self.sha256,
            "applied": self.applied,
            "added": [
                {
                    "name": e.name,
                    "developer": e.developer,
                    "country": e.country,
                    "license": e.license,
                    "verified": e.verified,
                    "source": e.source,
                }
                for e in self.added
            ],
            "changed": [c.to_json() for c in self.changed],
            "unchanged": list(self.unchanged),
        }


def sign_update(diff: Path, private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """Validate the TOML diff at ``diff`` against the schema and the catalog, then sign it."""
    data = read_small(diff, "catalog diff", MAX_UPDATE)
    text = _text(data, str(diff))
    parsed = parse_update(text, str(diff))
    _merge(load_catalog(), parsed, str(diff))  # refuse to sign rows whose lineage cannot resolve
    return sign_payload(PAYLOAD_TYPE, text.encode("utf-8"), private_key)


def verify_update(data: bytes, public_key: ec.EllipticCurvePublicKey, source: str) -> VerifiedUpdate:
    """Check a signed update against the organisation's key and parse what it carries."""
    if len(data) > MAX_UPDATE:
        raise UnusableInput(
            f"{source} is larger than {MAX_UPDATE >> 20} MiB", hint="Pass a catalog update file."
        )
    signed = verify_payload(data, PAYLOAD_TYPE, public_key=public_key, source=source)
    text = _text(signed.payload, source)
    return VerifiedUpdate(
        text, parse_update(text, source), signed.key_hint, hashlib.sha256(signed.payload).hexdigest(), data
    )


def plan_update(update: VerifiedUpdate, catalog: Catalog) -> UpdateDiff:
    """What ``update`` would change in ``catalog``, fact by fact, with the sources cited for each."""
    added, changed, unchanged = [], [], []
    for row in update.parsed.model:
        old = next((e for e in catalog.entries if e.name == row.name), None)
        if old is None:
            added.append(row)
            continue
        diffs = []
        for f in _SHOWN:
            a, b = getattr(old, f), getattr(row, f)
            if a != b:
                fact = _FACT_OF.get(f, f)
                cites = tuple(c.url for c in row.citations if fact in c.facts) or (row.source,)
                diffs.append(FactChange(row.name, f, _plain(a), _plain(b), cites))
        if old.citations != row.citations:
            diffs.append(FactChange(row.name, "citations", len(old.citations), len(row.citations), ()))
        if old.benchmarks != row.benchmarks:
            diffs.append(FactChange(row.name, "benchmarks", len(old.benchmarks), len(row.benchmarks), ()))
        changed.extend(diffs)
        if not diffs:
            unchanged.append(row.name)
    h = update.parsed.update
    return UpdateDiff(
        h.serial,
        h.description,
        update.key_hint,
        update.sha256,
        tuple(added),
        tuple(changed),
        tuple(unchanged),
    )


def apply_update(update: VerifiedUpdate, folder: Path | None = None) -> UpdateDiff:
    """Apply a verified update to the overlay atomically; IntegrityError on a replayed or old serial."""
    folder = folder if folder is not None else overlay_dir()
    with _locked(folder):
        state = read_state(folder)
        last = max((u.serial for u in state), default=0)
        serial = update.parsed.update.serial
        if serial <= last:
            raise IntegrityError(
                f"catalog update serial {serial} is not newer than the last applied ({last})",
                hint="An old update cannot be replayed to roll facts back; ask for the current update.",
            )
        current = load_catalog(overlay=folder)
        diff = plan_update(update, current)
        _merge(current, update.parsed, "the update")  # the merged catalog must validate before any write
        name = f"update-{serial:06d}-{update.sha256[:12]}.toml"
        write_atomic(folder / name, update.text.encode("utf-8"))
        write_atomic(folder / (name.removesuffix(".toml") + ".sig.json"), update.bundle)
        record = AppliedUpdate(
            serial,
            update.key_hint,
            update.sha256,
            name,
            datetime.now(UTC).isoformat(timespec="seconds"),
            update.parsed.update.description,
        )
        write_atomic(folder / STATE, state_bytes((*state, record)))  # the commit point
    reload_catalog(folder)
    return UpdateDiff(
        diff.serial,
        diff.description,
        diff.key_hint,
        diff.sha256,
        diff.added,
        diff.changed,
        diff.unchanged,
        True,
    )


def state_digest(folder: Path | None = None) -> str | None:
    """SHA-256 of ``applied.json`` (the overlay's state), for the audit record; None before any update."""
    path = (folder if folder is not None else overlay_dir()) / STATE
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def _merge(current: Catalog, update: UpdateFile, origin: str) -> Catalog:
    rows = {e.name: e for e in current.entries}
    for row in update.model:
        rows[row.name] = row
    return Catalog(rows.values(), origin)


def _text(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnusableInput(
            f"{source}: the catalog update is not UTF-8 text", hint="Pass the TOML diff."
        ) from exc


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    # Two operators applying updates at once must not both read serial N and both commit N+1.
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
