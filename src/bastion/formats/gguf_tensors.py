"""Tensor access for GGUF files: the header comes from :mod:`bastion.formats.gguf`, rows from the map.

Lineage reads a handful of tensors (a few embedding rows, each block's MLP) of a model it never loads;
``gguf.quants.dequantize`` turns only the rows asked for into float32. The header is parsed by the same
bounded reader vet uses, so there is one GGUF parser, and every tensor has already been checked to lie
inside the file. Given the identity of the file an :class:`~bastion.formats.artifact.Artifact` read,
opening refuses a file that changed since (the bytes fingerprinted are the bytes hashed and signed).
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import dequantize

from bastion.errors import UnusableInput
from bastion.formats.gguf import GGUFInfo, parse_gguf
from bastion.formats.gguf import TensorInfo as HeaderTensor


@dataclass(frozen=True)
class Tensor:
    """Where one tensor lives in the file: numpy-order shape (rows first), quant type, byte range."""

    name: str
    shape: tuple[int, ...]
    qtype: GGMLQuantizationType
    offset: int  # absolute, from the start of the file
    nbytes: int

    @property
    def row_bytes(self) -> int:
        """Bytes of one row (the innermost dimension), which quantized blocks never cross."""
        block, size = GGML_QUANT_SIZES[self.qtype]
        return self.shape[-1] // block * size


def _tensor(t: HeaderTensor, data_offset: int, path: Path) -> Tensor:
    try:
        qtype = GGMLQuantizationType(t.type_id)
    except ValueError as exc:  # a type our header table knows but this gguf package does not
        raise UnusableInput(f"{path}: tensor {t.name!r} has ggml type {t.ggml_type}, unknown here") from exc
    return Tensor(t.name, tuple(reversed(t.shape)), qtype, data_offset + t.offset, t.nbytes)


class GGUFTensors:
    """An open GGUF file: ``info`` (the header), ``metadata`` with whole arrays, ``tensors``, rows."""

    def __init__(self, path: Path, expect: os.stat_result | None = None) -> None:
        self.path = path
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise UnusableInput(f"cannot read {path}: {exc.strerror or exc}", hint="Check the path.") from exc
        try:
            st = os.fstat(fd)
            if expect is not None and _identity(st) != _identity(expect):
                raise UnusableInput(
                    f"{path} changed after it was read and hashed",
                    hint="Wait until nothing writes to the model, then run the command again.",
                )
            if st.st_size == 0:
                raise UnusableInput(f"{path} is empty", hint="Copy the file again.")
            self._buf = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        view = memoryview(self._buf)
        try:
            self.info: GGUFInfo = parse_gguf(view, path, keep_arrays=True)
        except BaseException:
            view.release()
            self._buf.close()
            raise
        view.release()
        self.metadata: dict[str, Any] = {**self.info.metadata, **self.info.arrays}
        self.value_types = self.info.value_types
        self.tensors = {t.name: _tensor(t, self.info.data_offset, path) for t in self.info.tensors}

    def rows(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows ``start:stop`` of a 2-D tensor (or the whole 1-D tensor), dequantized to float32."""
        info = self.tensors[name]
        try:
            if len(info.shape) == 1:
                raw = np.frombuffer(self._buf, np.uint8, info.nbytes, info.offset)
                return np.array(dequantize(raw, info.qtype), dtype=np.float32).reshape(info.shape)
            n_rows = int(np.prod(info.shape[:-1]))
            stop = n_rows if stop is None else min(stop, n_rows)
            rb = info.row_bytes
            raw = np.frombuffer(self._buf, np.uint8, (stop - start) * rb, info.offset + start * rb)
            return np.array(dequantize(raw.reshape(stop - start, rb), info.qtype), dtype=np.float32)
        except (ValueError, NotImplementedError) as exc:  # a type gguf cannot dequantize, a bad shape
            raise UnusableInput(
                f"{self.path}: cannot read tensor {name!r} ({info.qtype.name}): {exc}",
                hint="Lineage reads the float, Q4/Q5/Q8 and K-quant types llama.cpp writes.",
            ) from exc

    def take_rows(self, name: str, ids: list[int]) -> np.ndarray:
        """Selected rows of a 2-D tensor (e.g. a few token embeddings), dequantized to float32."""
        return np.concatenate([self.rows(name, i, i + 1) for i in ids]) if ids else np.zeros((0, 0))

    def row_chunks(self, name: str, chunk_bytes: int = 64 << 20) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_row, rows)`` blocks so a large tensor is never dequantized all at once."""
        info = self.tensors[name]
        n_rows = int(np.prod(info.shape[:-1]))
        step = max(1, chunk_bytes // (info.shape[-1] * 4))
        for start in range(0, n_rows, step):
            yield start, self.rows(name, start, start + step)

    def close(self) -> None:
        """Release the memory map."""
        self._buf.close()

    def __enter__(self) -> GGUFTensors:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
