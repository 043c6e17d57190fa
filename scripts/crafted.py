"""Small real GGUF files whose metadata claims a given identity (the admission denial in the demo and tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def gguf_claiming(path: Path, basename: str, size_label: str, arch: str = "llama") -> Path:
    """Write a valid GGUF that says it is ``basename`` ``size_label`` (a distillation, say)."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(f"{basename} {size_label}")
    writer.add_basename(basename)
    writer.add_size_label(size_label)
    writer.add_context_length(2048)
    writer.add_tensor("token_embd.weight", np.zeros((16, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def sharded_copy(src: Path, dst: Path, shards: int = 2) -> Path:
    """Copy the Hugging Face folder ``src`` to ``dst`` with its model.safetensors split into shards.

    The layout ``transformers`` writes for large checkpoints: ``model-0000i-of-0000n.safetensors``
    plus ``model.safetensors.index.json`` mapping every tensor to its shard. Same tensors, same bytes.
    """
    import json
    import shutil

    from safetensors.numpy import load_file, save_file

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model.safetensors"))
    tensors = load_file(str(src / "model.safetensors"))
    names = list(tensors)
    size = -(-len(names) // shards)
    weight_map: dict[str, str] = {}
    total = 0
    for i in range(shards):
        part = {n: tensors[n] for n in names[i * size : (i + 1) * size]}
        file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file(part, str(dst / file))
        weight_map.update({n: file for n in part})
        total += sum(a.nbytes for a in part.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (dst / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return dst
