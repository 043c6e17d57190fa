"""A strict safetensors header validator (the header only; tensor bytes are never read).

Checks, in the order a loader would trip over them: the 8-byte header length against the reference
implementation's 100 MB cap and the file size, UTF-8 JSON, duplicate keys (JSON allows them, parsers
disagree on which wins), dtype and shape types, and that the data offsets tile the data section
exactly: in bounds, contiguous, non-overlapping, sized ``prod(shape) * itemsize``, ending at EOF.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bastion.errors import UnusableInput
from bastion.formats.strict_json import loads_object, read_json

#: safetensors' own MAX_HEADER_SIZE (tensor.rs): a loader refuses more, so a larger header is crafted.
MAX_HEADER = 100_000_000
#: bits per element for every dtype safetensors 0.8 knows.
DTYPE_BITS = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "F64": 64,
    "I64": 64,
    "U64": 64,
    "C64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}


@dataclass(frozen=True)
class SafetensorsTensor:
    """One tensor entry of the header."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True)
class SafetensorsInfo:
    """A validated safetensors header."""

    path: Path
    header_size: int
    tensors: tuple[SafetensorsTensor, ...]
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def n_parameters(self) -> int:
        """Total elements over all tensors."""
        return sum(math.prod(t.shape) for t in self.tensors)

    def to_json(self) -> dict[str, Any]:
        """Header facts as a plain mapping."""
        dtypes: dict[str, int] = {}
        for t in self.tensors:
            dtypes[t.dtype] = dtypes.get(t.dtype, 0) + 1
        return {
            "format": "safetensors",
            "header_size": self.header_size,
            "metadata": self.metadata,
            "tensor_count": len(self.tensors),
            "tensor_dtypes": dtypes,
            "parameters": self.n_parameters,
        }


def _bad(path: Path, what: str) -> UnusableInput:
    return UnusableInput(
        f"{path}: malformed safetensors: {what}",
        hint="The file is truncated or crafted; obtain the model again from its publisher.",
    )


def read_safetensors(path: Path) -> SafetensorsInfo:
    """Validate the safetensors file at ``path``; raise UnusableInput naming the first defect."""
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(0)
            if size < 8:
                raise _bad(path, f"{size} bytes is too short for the 8-byte header length")
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > MAX_HEADER:
                raise _bad(path, f"header length {n} exceeds the {MAX_HEADER}-byte limit loaders enforce")
            if n > size - 8:
                raise _bad(path, f"header length {n} runs past the end of the {size}-byte file")
            raw = fh.read(n)
    except OSError as exc:
        raise UnusableInput(f"cannot read {path}: {exc.strerror or exc}", hint="Check the path.") from exc
    if not raw.startswith(b"{"):
        raise _bad(path, "the header does not start with '{'")
    try:
        header = loads_object(raw, "the header")
    except UnusableInput as exc:
        raise _bad(path, exc.message) from exc
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _bad(path, "__metadata__ must map strings to strings")
    tensors = [_tensor(path, name, entry) for name, entry in header.items()]
    data_size = size - 8 - n
    end = 0
    for t in sorted(tensors, key=lambda t: (t.begin, t.end)):
        if t.begin != end:
            what = "overlaps the previous tensor" if t.begin < end else f"leaves a gap at data byte {end}"
            raise _bad(path, f"tensor {t.name!r} {what}")
        end = t.end
    if end != data_size:
        raise _bad(path, f"tensors cover {end} data bytes but the file holds {data_size}")
    return SafetensorsInfo(path, n, tuple(tensors), dict(meta))


def _tensor(path: Path, name: str, entry: Any) -> SafetensorsTensor:
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise _bad(path, f"tensor {name!r} must have exactly dtype, shape and data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in DTYPE_BITS:
        raise _bad(path, f"tensor {name!r} has unknown dtype {dtype!r}")
    ints = (
        [x for x in [*shape, *offsets] if isinstance(x, int) and not isinstance(x, bool) and x >= 0]
        if isinstance(shape, list) and isinstance(offsets, list)
        else []
    )
    if (
        not isinstance(shape, list)
        or not isinstance(offsets, list)
        or len(offsets) != 2
        or len(ints) != len(shape) + 2
    ):
        raise _bad(path, f"tensor {name!r} needs a list of non-negative integer dims and two offsets")
    begin, end = offsets
    bits = math.prod(shape) * DTYPE_BITS[dtype]
    if begin > end or bits % 8 or end - begin != bits // 8:
        raise _bad(path, f"tensor {name!r}: offsets {offsets} do not hold {shape} x {dtype}")
    return SafetensorsTensor(name, dtype, tuple(shape), begin, end)


#: The index a sharded checkpoint ships (``model-00001-of-00002.safetensors`` ... plus this file).
INDEX_NAME = "model.safetensors.index.json"


def shard_map(index: dict[str, Any], origin: Path) -> dict[str, str]:
    """The ``weight_map`` (tensor name -> shard file name) of a parsed shard index, validated.

    A shard name must be a plain ``.safetensors`` file name beside the index: a path that climbs out
    (``../x``) or into a subfolder would make the loader read bytes that were never vetted.
    """
    wm = index.get("weight_map")
    if not isinstance(wm, dict) or not wm:
        raise UnusableInput(
            f"{origin}: no 'weight_map' object naming the shard of each tensor",
            hint="A sharded checkpoint's index maps every tensor name to a shard file name.",
        )
    for tensor, shard in wm.items():
        if not isinstance(shard, str) or "/" in shard or "\\" in shard or not shard.endswith(".safetensors"):
            raise UnusableInput(
                f"{origin}: tensor {tensor!r} is mapped to {shard!r}, "
                "not a .safetensors file beside the index",
                hint="Shard names are plain file names in the model folder.",
            )
    return dict(wm)


def weight_file_names(folder: Path) -> tuple[str, ...]:
    """The safetensors weight files of a model folder: ``model.safetensors`` or the index's shards."""
    if (folder / "model.safetensors").is_file():
        return ("model.safetensors",)
    if (folder / INDEX_NAME).is_file():
        return tuple(sorted(set(shard_map(read_json(folder / INDEX_NAME), folder / INDEX_NAME).values())))
    return tuple(sorted(p.name for p in folder.glob("*.safetensors")))
