"""Loading the catalog and answering questions about it: lookup, filters, ancestry chains."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from bastion.catalog.overlay import overlay_dir, overlay_entries, state_key
from bastion.catalog.schema import CatalogEntry, CatalogFile, read_toml
from bastion.errors import ConfigError, NotFound, did_you_mean

BUNDLED = "catalog.toml"


@dataclass(frozen=True)
class Ancestry:
    """An entry and every ancestor, nearest first, with the countries and licences along the chain.

    Licence terms are inherited: a derivative stays bound by its base's licence (a fine-tune cannot
    shed Meta's terms by relabelling itself MIT), unless the base's licence releases derivatives
    (``license_binds_derivatives = false``, with the clause cited). ``licenses`` and ``license_flags``
    are therefore the *effective* set: the entry's own terms plus every binding ancestor's.
    """

    chain: tuple[CatalogEntry, ...]

    @property
    def binding(self) -> tuple[CatalogEntry, ...]:
        """The entry and every ancestor whose licence terms reach it."""
        return (self.chain[0], *(e for e in self.chain[1:] if e.license_binds_derivatives))

    @property
    def countries(self) -> tuple[str, ...]:
        """Distinct developer headquarters countries along the chain, in chain order."""
        return tuple(dict.fromkeys(e.country for e in self.chain))

    @property
    def developed_in(self) -> tuple[str, ...]:
        """Distinct countries where each model along the chain was developed, in chain order."""
        return tuple(dict.fromkeys(e.made_in for e in self.chain))

    @property
    def licenses(self) -> tuple[str, ...]:
        """The effective licences: the entry's and every binding ancestor's, in chain order."""
        return tuple(dict.fromkeys(e.license for e in self.binding))

    @property
    def license_flags(self) -> tuple[str, ...]:
        """Every licence flag of the entry and of every binding ancestor."""
        return tuple(dict.fromkeys(f for e in self.binding for f in e.license_flags))

    def to_json(self) -> dict[str, Any]:
        """The chain as a plain mapping."""
        return {
            "chain": [
                {
                    "name": e.name,
                    "developer": e.developer,
                    "country": e.country,
                    "developed_in": e.made_in,
                    "license": e.license,
                    "license_flags": list(e.license_flags),
                    "license_binds_derivatives": e.license_binds_derivatives,
                    "relation_to_base": e.relation,
                }
                for e in self.chain
            ],
            "countries": list(self.countries),
            "developed_in": list(self.developed_in),
            "licenses": list(self.licenses),
            "license_flags": list(self.license_flags),
        }


def _norm(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


class Catalog:
    """The validated catalog, indexed by name and alias (case- and punctuation-insensitive)."""

    def __init__(self, entries: Iterable[CatalogEntry], origin: str = "catalog") -> None:
        self.entries: tuple[CatalogEntry, ...] = tuple(entries)
        self.origin = origin
        self._index: dict[str, CatalogEntry] = {}
        for e in self.entries:
            for key in (e.name, *e.aliases, *(a.split("/", 1)[1] for a in e.aliases if "/" in a)):
                other = self._index.get(_norm(key))
                if other is not None and other.name != e.name:
                    raise ConfigError(
                        f"{origin}: name or alias {key!r} is used by both {other.name!r} and {e.name!r}",
                        hint="Every name and alias must point to exactly one entry.",
                    )
                self._index[_norm(key)] = e
        names = {e.name for e in self.entries}
        for e in self.entries:
            if e.base_model is not None and e.base_model not in names:
                raise ConfigError(
                    f"{origin}: entry {e.name!r} has base_model {e.base_model!r}, not in the catalog",
                    hint="base_model must be the exact name of another entry; add the base entry first.",
                )
        for e in self.entries:
            self.ancestry(e.name)  # raises on cycles

    def find(self, name: str) -> CatalogEntry | None:
        """The entry called ``name`` (or with that alias / Hugging Face repo), if any."""
        return self._index.get(_norm(name))

    def get(self, name: str) -> CatalogEntry:
        """The entry called ``name``; NotFound with close names as a hint otherwise."""
        entry = self.find(name)
        if entry is None:
            key = _norm(name)
            close = [e.name for e in self.entries if key and key[:5] in _norm(e.name)][:5]
            spellings = {e.name: e.name for e in self.entries}
            spellings |= {a: e.name for e in self.entries for a in e.aliases if a not in spellings}
            similar = f"Similar: {', '.join(close)}." if close else "See 'bastion catalog list'."
            raise NotFound(f"no catalog entry named {name!r}", hint=did_you_mean(name, spellings) or similar)
        return entry

    def ancestry(self, name: str) -> Ancestry:
        """The entry and all its ancestors via ``base_model``, nearest first."""
        chain = [self.get(name)]
        while chain[-1].base_model is not None:
            parent = self.get(chain[-1].base_model)
            if any(parent.name == e.name for e in chain):
                raise ConfigError(
                    f"{self.origin}: base_model cycle through {parent.name!r}",
                    hint="Lineage must end in a model trained from scratch.",
                )
            chain.append(parent)
        return Ancestry(tuple(chain))

    def select(
        self,
        *,
        country: str | None = None,
        license: str | None = None,
        max_params_b: float | None = None,
    ) -> list[CatalogEntry]:
        """Entries matching every given filter (country code, licence substring, total parameters)."""
        out = []
        for e in self.entries:
            if country and e.country != country.upper():
                continue
            if license and license.lower() not in e.license.lower():
                continue
            if max_params_b is not None and e.params_b > max_params_b:
                continue
            out.append(e)
        return out


def load_catalog(path: Path | None = None, *, overlay: Path | None = None) -> Catalog:
    """Load and validate the catalog at ``path``; by default the shipped catalog with the applied
    signed updates of the overlay folder (``overlay``, default ``<data home>/catalog``) on top."""
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise NotFound(
                f"cannot read catalog {path}: {exc.strerror or exc}", hint="Check the path."
            ) from exc
        return parse_catalog(text, str(path))
    folder = overlay if overlay is not None else overlay_dir()
    return _merged(folder, state_key(folder))


def reload_catalog(overlay: Path | None = None) -> Catalog:
    """Forget cached catalogs and load again: what a running gateway calls after ``catalog update``."""
    _merged.cache_clear()
    return load_catalog(overlay=overlay)


@lru_cache(maxsize=1)
def _bundled_text() -> str:
    return resources.files("bastion.catalog").joinpath(BUNDLED).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _base() -> Catalog:
    return parse_catalog(_bundled_text(), BUNDLED)


@lru_cache(maxsize=4)
def _merged(folder: Path, key: tuple[int, ...] | None) -> Catalog:
    # ``key`` changes whenever an update is applied (the state file is replaced), so a long-running
    # process sees a new overlay on its next load even without reload_catalog().
    base = _base()
    if key is None:
        return base
    merged = {e.name: e for e in base.entries}
    for entry in overlay_entries(folder):
        merged[entry.name] = entry
    return Catalog(merged.values(), f"{BUNDLED} + updates in {folder}")


def parse_catalog(text: str, origin: str) -> Catalog:
    """Parse and validate catalog TOML text; ConfigError naming the entry and field on any problem."""
    return Catalog(read_toml(CatalogFile, text, origin).model, origin)
