"""Identification: match an artifact to catalog entries from what its files *say*, with a confidence.

Everything read here is self-declared by whoever produced the file (names, architecture, tokenizer), so
a match is a *claimed* identity: strong when several independent claims agree (name, architecture,
parameter count, tokenizer digest), weak when one name is all there is. Proving lineage from the
weights is the job of ``bastion lineage``; its results plug in through :class:`EvidenceSource`.

Nothing here reads a file: claims come from the :class:`~bastion.formats.Artifact` that
``formats.open_artifact`` parsed once (bounded GGUF and safetensors readers, strict JSON, the first
64 KiB of the model card for its title and front matter); nothing is executed or rendered.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bastion.catalog.catalog import Catalog, _norm, load_catalog
from bastion.catalog.schema import CatalogEntry
from bastion.errors import UnusableInput
from bastion.formats import Artifact, GGUFInfo, SafetensorsInfo
from bastion.formats.gguf import ArraySummary

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

    def evidence(self, artifact: Artifact, claims: Claims, entry: CatalogEntry) -> Iterable[Evidence]:
        """Evidence for or against ``artifact`` being ``entry``."""
        ...


def _size_label_b(label: str | None) -> float | None:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMBT])\s*", label or "", re.IGNORECASE)
    if not m:
        return None
    scale = {"K": 1e-6, "M": 1e-3, "B": 1.0, "T": 1e3}[m.group(2).upper()]
    return float(m.group(1)) * scale


def _gguf_claims(info: GGUFInfo) -> Claims:
    meta = info.metadata

    def text(key: str) -> str | None:
        value = meta.get(key)
        return value if isinstance(value, str) else None

    names: list[tuple[str, str]] = []
    if text("general.name"):
        names.append(("general.name", text("general.name") or ""))
    base, size = text("general.basename"), text("general.size_label")
    if base:
        names.append(("general.basename+size_label", f"{base} {size or ''}".strip()))
    bases = [
        v
        for k, v in meta.items()
        if re.fullmatch(r"general\.base_model\.\d+\.(name|repo_url)", k) and isinstance(v, str)
    ]
    tokens = meta.get("tokenizer.ggml.tokens")
    return Claims(
        format="gguf",
        names=tuple(names),
        declared_bases=tuple(bases),
        architecture=text("general.architecture"),
        organization=text("general.organization"),
        license=text("general.license"),
        params_b=_size_label_b(size),
        has_chat_template="tokenizer.chat_template" in meta,
        tokenizer_sha256=f"gguf-tokens:{tokens.sha256}" if isinstance(tokens, ArraySummary) else None,
    )


def _card(text: str) -> tuple[str | None, list[str], str | None]:
    """Title (first '# ' heading), declared base_model(s) and licence from a model card's front matter."""
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


def _folder_claims(artifact: Artifact) -> Claims:
    config = artifact.json("config.json")
    if config is None:
        raise UnusableInput(
            f"{artifact.path}: no config.json", hint="Point at a Hugging Face model folder or a .gguf file."
        )
    names: list[tuple[str, str]] = []
    title, bases, lic = _card(artifact.card) if artifact.card else (None, [], None)
    if title:
        names.append(("README.md title", title))
    if isinstance(config.get("_name_or_path"), str) and config["_name_or_path"]:
        names.append(("config.json _name_or_path", config["_name_or_path"]))
    params = sum(
        f.require().n_parameters for f in artifact.weight_files() if isinstance(f.parsed, SafetensorsInfo)
    ) or None
    tok = artifact.get("tokenizer.json")
    # the manifest's digest of tokenizer.json: the file was hashed once, with everything else
    tok_digest = "hf-tokenizer.json:" + tok.digest.split(":", 1)[1] if tok is not None else None
    tok_config = artifact.json("tokenizer_config.json")
    return Claims(
        format="hf-folder",
        names=tuple(names),
        declared_bases=tuple(bases),
        architecture=config.get("model_type") if isinstance(config.get("model_type"), str) else None,
        organization=None,
        license=lic,
        params_b=params / 1e9 if params else None,
        has_chat_template=("chat_template" in tok_config) if tok_config is not None else None,
        tokenizer_sha256=tok_digest,
    )


def read_claims(artifact: Artifact) -> Claims:
    """What the artifact (a .gguf file or a Hugging Face folder) says about itself."""
    if artifact.is_folder:
        return _folder_claims(artifact)
    info = artifact.gguf
    if info is not None:
        return _gguf_claims(info)
    raise UnusableInput(
        f"{artifact.path}: identification reads GGUF files and Hugging Face folders; this file is neither",
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
    artifact: Artifact,
    catalog: Catalog | None = None,
    evidence_sources: Sequence[EvidenceSource] = (),
    limit: int = 5,
) -> Identification:
    """Match ``artifact`` against the catalog; candidates best first with a 0-100 confidence."""
    cat = catalog if catalog is not None else load_catalog()
    claims = read_claims(artifact)
    candidates = []
    for entry in cat.entries:
        ev = _score(claims, entry, cat)
        if not ev:
            continue
        # What a file says about itself can be forged by whoever wrote it, so self-declared claims alone
        # never reach more than SELF_DECLARED_CAP; only external evidence (weights) can go beyond.
        declared = min(SELF_DECLARED_CAP, sum(e.points for e in ev))
        external = [x for source in evidence_sources for x in source.evidence(artifact, claims, entry)]
        ev.extend(external)
        confidence = max(0, min(100, declared + sum(e.points for e in external)))
        candidates.append(Candidate(entry.name, confidence, tuple(ev)))
    candidates.sort(key=lambda c: (-c.confidence, c.name))
    return Identification(str(artifact.path), claims, tuple(candidates[:limit]))
