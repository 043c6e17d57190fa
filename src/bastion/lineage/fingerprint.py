"""Weight fingerprints that survive re-quantization, permutations, norm folding and fine-tuning.

For each stored block we describe every MLP hidden unit by how it responds to a fixed set of
*anchor tokens* (common English words, looked up by their text so a re-ordered or extended
vocabulary still finds them):

* ``up`` signature of unit i:   (W_up · diag(g_norm))[i] · â_j  for each anchor embedding â_j
* ``down`` signature of unit i:  W_down[:, i] · â_j

â_j is the anchor's embedding scaled to unit length. Both signatures are dot products inside the
residual basis, so any permutation or rotation of the residual stream (applied, as it must be, to the
embedding too) cancels; folding the norm weight in makes "scale absorbed into the norm" cancel;
z-scoring each unit's signature cancels rescaling a unit (up ×c, down ×1/c). Permuting hidden units
just permutes the rows, which the comparison re-discovers. Re-quantization and fine-tuning move the
signatures a little; the comparison only needs each unit to stay closer to itself than to the others.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bastion.errors import UnusableInput, UsageError
from bastion.formats import Artifact
from bastion.formats.safetensors import weight_file_names
from bastion.hashing.digest import file_digest, weights_digest
from bastion.lineage.sources import Architecture, WeightSource, open_source

FORMAT = "bastion-lineage-fingerprint/1"
MAX_LAYERS = 12  # evenly spaced blocks stored for small models
UNIT_BUDGET = 32768  # hidden units stored in all (7B-class: 4 blocks, ~7 MB of JSON); bounds size and time
SKETCH_K = 2048  # bottom-k hash sketch of vocabulary and merges (Jaccard estimate, ±~2%)
CLIP = 4.0  # z-scores are stored as int8 in [-CLIP, CLIP]

#: Anchor words: frequent English words that nearly every tokenizer keeps as one token.
ANCHORS = (
    " the",
    " of",
    " and",
    " to",
    " in",
    " is",
    " that",
    " for",
    " it",
    " with",
    " as",
    " was",
    " on",
    " be",
    " by",
    " this",
    " are",
    " from",
    " at",
    " or",
    " have",
    " an",
    " not",
    " which",
    " but",
    " they",
    " one",
    " you",
    " all",
    " were",
    " we",
    " can",
    " has",
    " more",
    " their",
    " will",
    " would",
    " there",
    " been",
    " when",
    " who",
    " time",
    " also",
    " new",
    " first",
    " people",
    " other",
    " some",
    " what",
    " out",
    " about",
    " only",
    " into",
    " year",
    " after",
    " most",
    " over",
    " world",
    " water",
    " city",
    " house",
    " music",
    " number",
    " light",
)


@dataclass(frozen=True)
class LayerSignature:
    """Per-unit anchor responses of one block, int8 z-scores (units × anchors)."""

    layer: int
    up: np.ndarray
    down: np.ndarray


@dataclass(frozen=True)
class Fingerprint:
    """A compact, comparable description of one model's weights and tokenizer."""

    source: str
    sha256: str
    arch: Architecture
    anchors: tuple[str, ...]
    layers: tuple[LayerSignature, ...]
    tokenizer: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The fingerprint file content (arrays as base64 int8, row-major)."""
        return {
            "format": FORMAT,
            "source": self.source,
            "sha256": self.sha256,
            "arch": self.arch.to_json(),
            "anchors": list(self.anchors),
            "tokenizer": self.tokenizer,
            "layers": [
                {"layer": s.layer, "units": int(s.up.shape[0]), "up": _b64(s.up), "down": _b64(s.down)}
                for s in self.layers
            ],
        }

    @classmethod
    def from_json(cls, data: Any, origin: str = "fingerprint") -> Fingerprint:
        """Rebuild a fingerprint from its JSON form, checking every shape (it may come from anyone)."""
        try:
            if data.get("format") != FORMAT:
                raise ValueError(f"format is {data.get('format')!r}, expected {FORMAT!r}")
            anchors = tuple(str(a) for a in data["anchors"])
            n = len(anchors)
            layers = []
            for item in data["layers"]:
                units = int(item["units"])
                up = _unb64(item["up"], units, n)
                down = _unb64(item["down"], units, n)
                layers.append(LayerSignature(int(item["layer"]), up, down))
            return cls(
                str(data["source"]),
                str(data["sha256"]),
                Architecture(**data["arch"]),
                anchors,
                tuple(layers),
                dict(data.get("tokenizer", {})),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UnusableInput(
                f"{origin} is not a valid lineage fingerprint: {exc}",
                hint="Re-create it with 'bastion lineage fingerprint MODEL -o FILE'.",
            ) from exc


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype=np.int8).tobytes()).decode("ascii")


def _unb64(text: str, rows: int, cols: int) -> np.ndarray:
    raw = base64.b64decode(text, validate=True)
    if len(raw) != rows * cols:
        raise ValueError(f"signature has {len(raw)} bytes, expected {rows}x{cols}")
    return np.frombuffer(raw, dtype=np.int8).reshape(rows, cols)


def normalise_token(tok: str, kind: str) -> str:
    """Token text with the word-start marker as a space (GPT-2 'Ġ', SentencePiece '▁', WordPiece)."""
    if kind in ("WordPiece", "bert"):
        return tok[2:] if tok.startswith("##") else " " + tok
    return tok.replace("\u0120", " ").replace("\u2581", " ")


def _sketch(items: list[str]) -> list[int]:
    """Bottom-k of 64-bit hashes: two sketches estimate the sets' Jaccard overlap."""
    hashes = {int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "big") for s in items}
    return sorted(hashes)[:SKETCH_K]


def tokenizer_summary(kind: str, vocab: list[str], merges: list[str]) -> dict[str, Any]:
    """Hashes and overlap sketches of the vocabulary and merges (the second, independent signal)."""
    norm = [normalise_token(t, kind) for t in vocab]
    return {
        "kind": kind,
        "vocab_size": len(vocab),
        "merges": len(merges),
        "vocab_sha256": hashlib.sha256("\n".join(vocab).encode()).hexdigest(),
        "merges_sha256": hashlib.sha256("\n".join(merges).encode()).hexdigest() if merges else None,
        "vocab_sketch": _sketch(norm),
        "merges_sketch": _sketch(merges) if merges else [],
    }


def _zscore(sig: np.ndarray) -> np.ndarray:
    sig = sig - sig.mean(axis=1, keepdims=True)
    sd = sig.std(axis=1, keepdims=True)
    sd[sd == 0] = 1.0
    out: np.ndarray = np.clip(np.round(sig / sd * (127 / CLIP)), -127, 127).astype(np.int8)
    return out


def stored_layers(n_layers: int, d_ffn: int) -> list[int]:
    """Which blocks a fingerprint keeps: evenly spaced (first and last kept), within the unit budget."""
    keep = min(n_layers, MAX_LAYERS, max(4, UNIT_BUDGET // max(1, d_ffn)))
    return sorted({int(round(x)) for x in np.linspace(0, n_layers - 1, keep)})


def fingerprint_source(
    src: WeightSource, source: str, sha256: str, progress: Callable[[int, int], None] | None = None
) -> Fingerprint:
    """Compute the fingerprint of an opened model (see the module docstring for the construction)."""
    index: dict[str, int] = {}
    for i, tok in enumerate(src.vocab):
        index.setdefault(normalise_token(tok, src.tokenizer_kind), i)
    found = [(a, index[a]) for a in ANCHORS if a in index and index[a] < src.arch.vocab_size]
    if len(found) < 16:
        raise UnusableInput(
            f"{source}: only {len(found)} of {len(ANCHORS)} anchor words are single tokens in its vocabulary",
            hint="Lineage needs the tokenizer (GGUF metadata or tokenizer.json) and a vocabulary with "
            "common English words.",
        )
    anchors = tuple(a for a, _ in found)
    emb = src.embed_rows([i for _, i in found])
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    a_hat = emb / norms  # (anchors, d): unit length, so embedding scale (e.g. Gemma's sqrt(d)) cancels
    layers = stored_layers(src.arch.n_layers, src.arch.d_ffn)
    sigs = []
    for done, layer in enumerate(layers):
        g = src.ffn_norm(layer)
        a_in = a_hat * g if g is not None else a_hat  # (W diag g) â == W (g ⊙ â)
        up = np.concatenate([rows @ a_in.T for _, rows in src.up_chunks(layer)])
        down = np.zeros((a_hat.shape[0], src.arch.d_ffn), dtype=np.float32)
        for start, rows in src.down_chunks(layer):
            down += a_hat[:, start : start + rows.shape[0]] @ rows
        sigs.append(LayerSignature(layer, _zscore(up), _zscore(down.T)))
        if progress:
            progress(done + 1, len(layers))
    return Fingerprint(
        source,
        sha256,
        src.arch,
        anchors,
        tuple(sigs),
        tokenizer_summary(src.tokenizer_kind, src.vocab, src.merges),
    )


def fingerprint(target: Artifact | Path, progress: Callable[[int, int], None] | None = None) -> Fingerprint:
    """Fingerprint a GGUF file or safetensors model (an :class:`Artifact` read once, or a path)."""
    src = open_source(target)
    try:
        if isinstance(target, Artifact):
            digest, name = target.weights_digest(), target.path.name
        else:
            digest, name = (file_digest(target) if target.is_file() else _folder_digest(target)), target.name
        return fingerprint_source(src, name, digest, progress)
    finally:
        src.close()


def _folder_digest(folder: Path) -> str:
    """The weights digest of a folder model (``hashing.weights_digest`` over its weight files)."""
    return weights_digest([(n, file_digest(folder / n)) for n in weight_file_names(folder)])


def save(fp: Fingerprint, out: Path) -> None:
    """Write the fingerprint as JSON atomically (temp file + rename: never a half-written file)."""
    import orjson

    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(orjson.dumps(fp.to_json()))
        os.replace(tmp, out)
    except OSError as exc:
        raise UsageError(
            f"cannot write the fingerprint to {out}: {exc.strerror or exc}",
            hint="Check that the directory exists and is writable.",
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)


def load(path: Path) -> Fingerprint:
    """Read a fingerprint JSON file written by :func:`save`."""
    import orjson

    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise UnusableInput(f"cannot read fingerprint {path}: {exc}", hint="Check the path.") from exc
    return Fingerprint.from_json(data, str(path))
