"""The catalog overlay: signed updates applied in the data home, read on top of the shipped catalog.

The shipped ``catalog.toml`` is never written. Each applied update is kept verbatim as the TOML the
organisation signed (``update-<serial>-<sha>.toml``, its signature beside it), and ``applied.json``
lists them in order with each file's SHA-256. ``applied.json`` is replaced atomically last, so it is
the commit point: a crash mid-apply leaves an unlisted file behind and the catalog as it was.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bastion.bundled import data_home
from bastion.catalog.schema import CatalogEntry, read_toml
from bastion.errors import ConfigError, IntegrityError

STATE = "applied.json"
_FILE = re.compile(r"^update-\d{6}-[0-9a-f]{12}\.toml$")


def overlay_dir() -> Path:
    """Where applied catalog updates live: ``<data home>/catalog``."""
    return data_home() / "catalog"


class UpdateHeader(BaseModel):
    """The ``[update]`` table of a catalog update: its serial number and what it changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: strictly increasing per organisation: an update is refused unless its serial is higher than
    #: every applied one, so an old signed update cannot be replayed to roll facts back
    serial: int = Field(ge=1)
    description: str = Field(min_length=4, max_length=500)


class UpdateFile(BaseModel):
    """A catalog update: its header and the rows it adds or replaces (matched by ``name``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    update: UpdateHeader
    model: tuple[CatalogEntry, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> UpdateFile:
        names = [e.name for e in self.model]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"rows named {dup} appear more than once in the update")
        return self


def parse_update(text: str, origin: str) -> UpdateFile:
    """Parse and validate the TOML of a catalog update (every row against the catalog schema)."""
    return read_toml(UpdateFile, text, origin)


@dataclass(frozen=True)
class AppliedUpdate:
    """One update in the overlay: its serial, signer, file and content digest."""

    serial: int
    key_hint: str
    sha256: str
    file: str
    applied_at: str
    description: str

    def to_json(self) -> dict[str, Any]:
        """The record as a plain mapping (one item of ``applied.json``)."""
        return asdict(self)


def state_key(folder: Path) -> tuple[int, ...] | None:
    """Changes whenever ``applied.json`` is replaced; None when no update was ever applied."""
    try:
        st = (folder / STATE).stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def read_state(folder: Path) -> tuple[AppliedUpdate, ...]:
    """The applied updates, oldest first (empty when none)."""
    path = folder / STATE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ()
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{path}: cannot read the list of applied catalog updates: {exc}",
            hint="Restore the file from backup, or move the folder away to fall back to the shipped catalog.",
        ) from exc
    try:
        out = tuple(AppliedUpdate(**item) for item in raw["updates"])
    except (KeyError, TypeError) as exc:
        raise ConfigError(
            f"{path}: not a list of applied catalog updates",
            hint="Restore the file from backup, or move the folder away to fall back to the shipped catalog.",
        ) from exc
    for u in out:
        # The file names come from disk: refuse anything that could point outside the folder.
        if not _FILE.match(u.file):
            raise ConfigError(
                f"{path}: bad update file name {u.file!r}", hint="Restore the file from backup."
            )
    return out


def state_bytes(updates: tuple[AppliedUpdate, ...]) -> bytes:
    """``applied.json`` for ``updates``."""
    return (json.dumps({"format": 1, "updates": [u.to_json() for u in updates]}, indent=2) + "\n").encode()


def overlay_entries(folder: Path) -> list[CatalogEntry]:
    """Every row of every applied update, in the order applied (later rows replace earlier ones)."""
    rows: list[CatalogEntry] = []
    for u in read_state(folder):
        path = folder / u.file
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"applied catalog update {path} is missing: {exc.strerror or exc}",
                hint="Restore it from backup, or re-apply the signed update with 'bastion catalog update'.",
            ) from exc
        if hashlib.sha256(data).hexdigest() != u.sha256:
            raise IntegrityError(
                f"applied catalog update {path} was changed after it was verified and applied",
                hint="Restore the overlay from backup, or re-apply the signed updates; never edit it.",
            )
        rows.extend(parse_update(data.decode("utf-8"), str(path)).model)
    return rows
