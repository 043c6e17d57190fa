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
