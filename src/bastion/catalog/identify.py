"""Identification: match an artifact to catalog entries from what its files *say*, with a confidence.

Everything read here is self-declared by whoever produced the file (names, architecture, tokenizer), so
a match is a *claimed* identity: strong when several independent claims agree (name, architecture,
parameter count, tokenizer digest), weak when one name is all there is. Proving lineage from the
weights is the job of ``bastion lineage``; its results plug in through :class:`EvidenceSource`.

Nothing here executes or renders anything from the artifact: GGUF headers are read by a bounded parser,
JSON with ``json.loads`` on a bounded read, and the model card only for its title and front matter.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bastion.catalog.catalog import Catalog, _norm, load_catalog
from bastion.catalog.gguf_header import ArraySummary, read_gguf_header
from bastion.catalog.schema import CatalogEntry
from bastion.errors import UnusableInput

MAX_JSON_BYTES = 16 * 1024 * 1024  # config.json is a few KB; a safetensors header a few MB
MAX_CARD_BYTES = 64 * 1024
SELF_DECLARED_CAP = 90
_TUNED = re.compile(r"(instruct|chat|\bit\b|-it\b|rl\b|distill)", re.IGNORECASE)


@dataclass(frozen=True)
class Claims:
    """What an artifact says about itself."""

    format: str  # "gguf" or "hf-folder"
    names: tuple[tuple[str, str], ...] = ()  # (where, name) pairs, strongest first
    declared_bases: tuple[str, ...] = ()
    architecture: str | None = None
    organization: str | None = None
    license: str | None = None
    params_b: float | None = None
    has_chat_template: bool | None = None
    tokenizer_sha256: str | None = None  # "<kind>:<hex>", see identify.py docstring

    def to_json(self) -> dict[str, Any]:
        """The claims as a plain mapping."""
        return {
            "format": self.format,
            "names": [{"from": w, "name": n} for w, n in self.names],
            "declared_bases": list(self.declared_bases),
            "architecture": self.architecture,
            "organization": self.organization,
            "license": self.license,
            "params_b": self.params_b,
            "has_chat_template": self.has_chat_template,
            "tokenizer_sha256": self.tokenizer_sha256,
        }


@dataclass(frozen=True)
class Evidence:
    """One reason for (positive points) or against (negative points) a candidate."""

    kind: str
    detail: str
    points: int

    def to_json(self) -> dict[str, Any]:
        """The evidence as a plain mapping."""
        return {"kind": self.kind, "detail": self.detail, "points": self.points}


@dataclass(frozen=True)
class Candidate:
    """A catalog entry the artifact may be, with a 0-100 confidence and the evidence behind it."""

    name: str
    confidence: int
    evidence: tuple[Evidence, ...]

    def to_json(self) -> dict[str, Any]:
        """The candidate as a plain mapping."""
        return {
            "name": self.name,
            "confidence": self.confidence,
            "evidence": [e.to_json() for e in self.evidence],
        }


@dataclass(frozen=True)
class Identification:
    """The claims read from an artifact and the candidates they point to, best first."""

    path: str
    claims: Claims
    candidates: tuple[Candidate, ...] = field(default_factory=tuple)

    @property
    def best(self) -> Candidate | None:
        """The best candidate, if any."""
        return self.candidates[0] if self.candidates else None

    def to_json(self) -> dict[str, Any]:
        """The identification as a plain mapping."""
        best = self.best
        return {
            "path": self.path,
            "claimed_identity": best.name if best else None,
            "confidence": best.confidence if best else 0,
            "claims": self.claims.to_json(),
            "candidates": [c.to_json() for c in self.candidates],
        }


class EvidenceSource(Protocol):
    """Seam for further evidence about a candidate, e.g. weight fingerprints from ``bastion lineage``."""

    def evidence(self, path: Path, claims: Claims, entry: CatalogEntry) -> Iterable[Evidence]:
        """Evidence for or against ``path`` being ``entry``."""
        ...


def _size_label_b(label: str | None) -> float | None:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMBT])\s*", label or "", re.IGNORECASE)
    if not m:
        return None
    scale = {"K": 1e-6, "M": 1e-3, "B": 1.0, "T": 1e3}[m.group(2).upper()]
    return float(m.group(1)) * scale


def _gguf_claims(path: Path) -> Claims:
    h = read_gguf_header(path)
    names: list[tuple[str, str]] = []
    if h.text("general.name"):
        names.append(("general.name", h.text("general.name") or ""))
    base, size = h.text("general.basename"), h.text("general.size_label")
    if base:
        names.append(("general.basename+size_label", f"{base} {size or ''}".strip()))
    bases = [
        v
        for k, v in h.metadata.items()
        if re.fullmatch(r"general\.base_model\.\d+\.(name|repo_url)", k) and isinstance(v, str)
    ]
    tokens = h.metadata.get("tokenizer.ggml.tokens")
    return Claims(
        format="gguf",
        names=tuple(names),
        declared_bases=tuple(bases),
        architecture=h.text("general.architecture"),
        organization=h.text("general.organization"),
        license=h.text("general.license"),
        params_b=_size_label_b(size),
        has_chat_template="tokenizer.chat_template" in h.metadata,
        tokenizer_sha256=f"gguf-tokens:{tokens.sha256}" if isinstance(tokens, ArraySummary) else None,
    )


def _read_bounded(path: Path, limit: int) -> bytes:
    with path.open("rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise UnusableInput(
            f"{path} is larger than {limit:,} bytes", hint="This is not a normal model metadata file."
        )
    return data


def _json_file(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(_read_bounded(path, MAX_JSON_BYTES))
    except (OSError, ValueError) as exc:
        raise UnusableInput(
            f"{path}: not readable JSON: {exc}", hint="Obtain the file again from its source."
        ) from exc
    if not isinstance(value, dict):
        raise UnusableInput(f"{path}: expected a JSON object", hint="Obtain the file again from its source.")
    return value


def _safetensors_params(path: Path) -> int | None:
    """Parameter count from a safetensors header (shapes only; the tensor data is never read)."""
    with path.open("rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            return None
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_JSON_BYTES:
            raise UnusableInput(
                f"{path}: safetensors header claims {n:,} bytes", hint="The file is damaged or crafted."
            )
        try:
            header = json.loads(fh.read(n))
        except ValueError as exc:
            raise UnusableInput(
                f"{path}: safetensors header is not JSON", hint="The file is damaged."
            ) from exc
    total = 0
    for name, info in header.items():
        if name != "__metadata__" and isinstance(info, dict):
            count = 1
            for dim in info.get("shape", []):
                count *= int(dim)
            total += count
    return total


def _card(path: Path) -> tuple[str | None, list[str], str | None]:
    """Title (first '# ' heading), declared base_model(s) and licence from a model card's front matter."""
    text = _read_bounded(path, MAX_CARD_BYTES * 16)[:MAX_CARD_BYTES].decode("utf-8", "replace")
    front, body = "", text
    if text.startswith("---"):
        end = text.find("\n---", 3)
        if end > 0:
            front, body = text[3:end], text[end + 4 :]
    bases = re.findall(r"(?m)^base_model:\s*([\w./-]+)\s*$", front)
    bases += re.findall(r"(?m)^base_model:\s*\n(?:\s*-\s*([\w./-]+)\s*\n)", front + "\n")
    lic = re.search(r"(?m)^license:\s*([\w.-]+)", front)
    title = re.search(r"(?m)^#\s+(.+?)\s*$", body)
    return (title.group(1) if title else None, bases, lic.group(1) if lic else None)


def _folder_claims(path: Path) -> Claims:
    config_path = path / "config.json"
    if not config_path.is_file():
        raise UnusableInput(
            f"{path}: no config.json", hint="Point at a Hugging Face model folder or a .gguf file."
        )
    config = _json_file(config_path)
    names: list[tuple[str, str]] = []
    title: str | None = None
    bases: list[str] = []
    lic: str | None = None
    if (path / "README.md").is_file():
        title, bases, lic = _card(path / "README.md")
        if title:
            names.append(("README.md title", title))
    if isinstance(config.get("_name_or_path"), str) and config["_name_or_path"]:
        names.append(("config.json _name_or_path", config["_name_or_path"]))
    params = sum(_safetensors_params(p) or 0 for p in sorted(path.glob("*.safetensors"))[:64]) or None
    tok = path / "tokenizer.json"
    tok_digest = None
    if tok.is_file():
        tok_digest = "hf-tokenizer.json:" + hashlib.sha256(_read_bounded(tok, 64 * 1024 * 1024)).hexdigest()
    return Claims(
        format="hf-folder",
        names=tuple(names),
        declared_bases=tuple(bases),
        architecture=config.get("model_type") if isinstance(config.get("model_type"), str) else None,
        organization=None,
        license=lic,
        params_b=params / 1e9 if params else None,
        has_chat_template=("chat_template" in _json_file(path / "tokenizer_config.json"))
        if (path / "tokenizer_config.json").is_file()
        else None,
        tokenizer_sha256=tok_digest,
    )


def read_claims(path: Path) -> Claims:
    """What the artifact at ``path`` (a .gguf file or a Hugging Face folder) says about itself."""
    if path.is_dir():
        return _folder_claims(path)
    if not path.is_file():
        raise UnusableInput(f"{path} does not exist", hint="Check the path.")
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic == b"GGUF":
        return _gguf_claims(path)
    raise UnusableInput(
        f"{path}: identification reads GGUF files and Hugging Face folders; this file is neither",
        hint="For safetensors or PyTorch files, point at the folder that holds them and their config.json.",
    )


def _score(claims: Claims, entry: CatalogEntry, catalog: Catalog) -> list[Evidence]:
    keys = {_norm(k) for k in (entry.name, *entry.aliases, *(a.split("/", 1)[-1] for a in entry.aliases))}
    ev: list[Evidence] = []
    for where, name in claims.names:
        n, tail = _norm(name), _norm(name.split("/")[-1])
        if n in keys or tail in keys:
            pts = 40 if where.startswith("config.json") else 60
            ev.append(Evidence("name", f"{where} {name!r} is a name of this entry", pts))
            break
        if any(k.startswith(n) for k in keys) and len(n) >= 6:
            ev.append(Evidence("name", f"{where} {name!r} is the start of a name of this entry", 40))
            break
    if not ev:
        return []  # a candidate needs at least one name claim pointing at it
    ancestors = {_norm(e.name) for e in catalog.ancestry(entry.name).chain[1:]}
    ancestors |= {_norm(a.split("/")[-1]) for e in catalog.ancestry(entry.name).chain[1:] for a in e.aliases}
    for where, name in claims.names:
        if where.startswith("config.json") and _norm(name.split("/")[-1]) in ancestors:
            ev.append(
                Evidence("lineage", f"{where} {name!r} is an ancestor of this entry in the catalog", 15)
            )
    for base in claims.declared_bases:
        if _norm(base.split("/")[-1]) in ancestors:
            ev.append(Evidence("lineage", f"declared base model {base!r} matches the catalog lineage", 10))
    if claims.architecture and entry.architecture:
        if claims.architecture == entry.architecture:
            ev.append(Evidence("architecture", f"architecture {claims.architecture!r} as catalogued", 15))
        else:
            ev.append(
                Evidence(
                    "architecture",
                    f"architecture {claims.architecture!r}, catalog says {entry.architecture!r}",
                    -40,
                )
            )
    if claims.params_b:
        ratio = claims.params_b / entry.params_b
        if 0.8 <= ratio <= 1.25:
            ev.append(
                Evidence("size", f"{claims.params_b:.3g}B parameters as catalogued ({entry.params_b}B)", 10)
            )
        elif ratio < 0.5 or ratio > 2:
            ev.append(
                Evidence("size", f"{claims.params_b:.3g}B parameters, catalog says {entry.params_b}B", -30)
            )
    if claims.tokenizer_sha256 and entry.tokenizer_sha256:
        if claims.tokenizer_sha256 in entry.tokenizer_sha256:
            ev.append(Evidence("tokenizer", "tokenizer digest matches the catalogued one", 25))
        else:
            ev.append(Evidence("tokenizer", "tokenizer digest differs from the catalogued one", -30))
    if claims.has_chat_template is not None:
        tuned = entry.relation == "fine-tune" or bool(_TUNED.search(entry.name))
        if claims.has_chat_template and tuned:
            ev.append(
                Evidence("chat-template", "has a chat template, as an instruction-tuned release does", 10)
            )
        elif claims.has_chat_template and not tuned:
            ev.append(Evidence("chat-template", "has a chat template; this entry is a base model", -15))
        elif not claims.has_chat_template and not tuned:
            ev.append(Evidence("chat-template", "no chat template, as a base model", 10))
    if claims.organization and any(
        a.lower().startswith(claims.organization.lower() + "/") for a in entry.aliases
    ):
        ev.append(Evidence("organization", f"organization {claims.organization!r} publishes this entry", 10))
    return ev


def identify(
    path: Path,
    catalog: Catalog | None = None,
    evidence_sources: Sequence[EvidenceSource] = (),
    limit: int = 5,
) -> Identification:
    """Match the artifact at ``path`` against the catalog; candidates best first with a 0-100 confidence."""
    cat = catalog if catalog is not None else load_catalog()
    claims = read_claims(path)
    candidates = []
    for entry in cat.entries:
        ev = _score(claims, entry, cat)
        if not ev:
            continue
        # What a file says about itself can be forged by whoever wrote it, so self-declared claims alone
        # never reach more than SELF_DECLARED_CAP; only external evidence (weights) can go beyond.
        declared = min(SELF_DECLARED_CAP, sum(e.points for e in ev))
        external = [x for source in evidence_sources for x in source.evidence(path, claims, entry)]
        ev.extend(external)
        confidence = max(0, min(100, declared + sum(e.points for e in external)))
        candidates.append(Candidate(entry.name, confidence, tuple(ev)))
    candidates.sort(key=lambda c: (-c.confidence, c.name))
    return Identification(str(path), claims, tuple(candidates[:limit]))
