"""Make real models derived from (and unrelated to) SmolLM2-135M, on the fly, for lineage tests and bench.

Nothing here is committed as weights: every model is built from the bundled GGUF at test time and
cached under a temporary directory keyed by this file's content. Derived models:

  requant-q8_0, requant-q4_k_m  llama.cpp's own quantizer (llama_model_quantize) re-quantizing the Q4_1 file
  permuted       residual dims, MLP units, KV-head groups and heads permuted; norm scale absorbed
  finetuned      a real CPU fine-tune (torch, AdamW) on a small English text
  lora-merged    rank-16 updates (10% of each matrix's norm) merged into every block matrix
  pruned-10      10% magnitude pruning of every block matrix
  vocab-extended 512 new tokens appended to vocabulary and embedding

Unrelated: Gemma 3 270M (bundled) and SmolLM2-shaped models initialised from other seeds and
briefly trained on the same text.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from gguf import GGUFValueType, GGUFWriter

from bastion import bundled
from bastion.formats.gguf_tensors import GGUFTensors

Tensors = dict[str, np.ndarray]
SEEDS = (1, 2, 3)
#: the models make_all() builds, by how they relate to SmolLM2 (shared by tests/lineage and bench/)
DERIVED = (
    "requant-q8_0",
    "requant-q4_k_m",
    "permuted",
    "finetuned",
    "lora-merged",
    "pruned-10",
    "vocab-extended",
)
UNRELATED = ("gemma3-270m", "seed-1", "seed-2", "seed-3")
FT_STEPS = int(os.environ.get("BASTION_LINEAGE_FT_STEPS", "40"))
SEED_STEPS = 3
CACHE = Path(os.environ.get("BASTION_LINEAGE_CACHE", Path(tempfile.gettempdir()) / "bastion-lineage-cache"))


def cache_dir() -> Path:
    """Cache folder keyed by this script's content, so editing the recipes rebuilds the models."""
    here = Path(__file__).parent
    recipe = (here / "lineage_models.py").read_bytes() + (here / "lineage_train.py").read_bytes()
    key = hashlib.sha256(recipe + str(FT_STEPS).encode()).hexdigest()[:12]
    d = CACHE / key
    d.mkdir(parents=True, exist_ok=True)
    return d


def load_gguf(path: Path) -> tuple[GGUFTensors, Tensors]:
    """Every tensor of a GGUF, dequantized to float32 (135M params: about 540 MB)."""
    g = GGUFTensors(path)
    return g, {name: g.rows(name).reshape(info.shape) for name, info in g.tensors.items()}


def _array_subtype(val: object) -> GGUFValueType:
    if isinstance(val, np.ndarray):
        return {
            np.dtype("int32"): GGUFValueType.INT32,
            np.dtype("float32"): GGUFValueType.FLOAT32,
            np.dtype("uint8"): GGUFValueType.UINT8,
            np.dtype("uint32"): GGUFValueType.UINT32,
        }[val.dtype]
    return GGUFValueType.STRING


def write_gguf(
    src: GGUFTensors, tensors: Tensors, out: Path, meta_override: dict[str, object] | None = None
) -> Path:
    """Write ``tensors`` with ``src``'s metadata as an F16 GGUF (norms F32), atomically."""
    arch = str(src.metadata["general.architecture"])
    tmp = out.with_name(out.name + ".tmp")
    w = GGUFWriter(str(tmp), arch)
    meta = dict(src.metadata)
    meta.update(meta_override or {})
    for key, val in meta.items():
        if key in ("general.architecture", "general.alignment") or key.startswith("GGUF."):
            continue
        vtype = GGUFValueType(src.value_types.get(key, GGUFValueType.STRING))
        if key == "general.file_type":
            val = 1  # MOSTLY_F16: say honestly what this file now is
        if vtype == GGUFValueType.ARRAY:
            sub = _array_subtype(val)
            w.add_key_value(key, val.tolist() if isinstance(val, np.ndarray) else val, vtype, sub_type=sub)
        else:
            w.add_key_value(key, val, vtype)
    for name, t in tensors.items():
        arr = t.astype(np.float32 if t.ndim == 1 else np.float16)
        w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, out)
    return out


def requant(src: Path, out: Path, ftype: int) -> Path:
    """Re-quantize with llama.cpp's own quantizer (the C API), as a site would with llama-quantize."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    params.nthread = 2
    tmp = out.with_name(out.name + ".tmp")
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize returned {rc}")
    os.replace(tmp, out)
    return out


def _n_layers(t: Tensors) -> int:
    return sum(1 for k in t if k.endswith("ffn_up.weight"))


def permute(t: Tensors, meta: dict[str, object], seed: int = 7) -> Tensors:
    """Function-preserving permutation of residual dims, MLP units and heads, plus norm-absorbed scaling."""
    rng = np.random.default_rng(seed)
    t = {k: v.copy() for k, v in t.items()}
    d = t["token_embd.weight"].shape[1]
    n_head, n_kv = int(meta["llama.attention.head_count"]), int(meta["llama.attention.head_count_kv"])  # type: ignore[call-overload]
    hd = d // n_head
    group = n_head // n_kv
    pr = rng.permutation(d)  # residual stream: columns of readers, rows of writers, embedding, norms
    for k, v in t.items():
        if k == "token_embd.weight" or k.endswith(
            ("attn_q.weight", "attn_k.weight", "attn_v.weight", "ffn_gate.weight", "ffn_up.weight")
        ):
            t[k] = v[:, pr]
        elif k.endswith(("attn_output.weight", "ffn_down.weight")):
            t[k] = v[pr, :]
        elif k.endswith("norm.weight"):
            t[k] = v[pr]
    for i in range(_n_layers(t)):
        b = f"blk.{i}."
        pu = rng.permutation(t[b + "ffn_up.weight"].shape[0])  # MLP hidden units
        t[b + "ffn_gate.weight"], t[b + "ffn_up.weight"] = (
            t[b + "ffn_gate.weight"][pu],
            t[b + "ffn_up.weight"][pu],
        )
        t[b + "ffn_down.weight"] = t[b + "ffn_down.weight"][:, pu]
        kv_perm = rng.permutation(n_kv)  # KV groups move with their query heads; heads move within a group
        q_heads = [g * group + j for g in kv_perm for j in rng.permutation(group)]
        q_rows = np.concatenate([np.arange(h * hd, (h + 1) * hd) for h in q_heads])
        kv_rows = np.concatenate([np.arange(g * hd, (g + 1) * hd) for g in kv_perm])
        t[b + "attn_q.weight"] = t[b + "attn_q.weight"][q_rows]
        t[b + "attn_output.weight"] = t[b + "attn_output.weight"][:, q_rows]
        t[b + "attn_k.weight"], t[b + "attn_v.weight"] = (
            t[b + "attn_k.weight"][kv_rows],
            t[b + "attn_v.weight"][kv_rows],
        )
        c = rng.uniform(0.5, 2.0, size=d).astype(np.float32)  # scale absorbed into the norm
        t[b + "ffn_norm.weight"] = t[b + "ffn_norm.weight"] * c
        t[b + "ffn_gate.weight"] = t[b + "ffn_gate.weight"] / c
        t[b + "ffn_up.weight"] = t[b + "ffn_up.weight"] / c
    return t


def _block_matrices(t: Tensors) -> list[str]:
    return [k for k, v in t.items() if k.startswith("blk.") and v.ndim == 2]


def lora_merge(t: Tensors, rank: int = 16, rel: float = 0.10, seed: int = 11) -> Tensors:
    """Merge a rank-``rank`` update whose norm is ``rel`` of each block matrix's norm."""
    rng = np.random.default_rng(seed)
    t = dict(t)
    for k in _block_matrices(t):
        w = t[k]
        a = rng.standard_normal((rank, w.shape[1])).astype(np.float32)
        b = rng.standard_normal((w.shape[0], rank)).astype(np.float32)
        delta = b @ a
        t[k] = w + delta * (rel * np.linalg.norm(w) / np.linalg.norm(delta))
    return t


def prune(t: Tensors, frac: float = 0.10) -> Tensors:
    """Zero the ``frac`` smallest-magnitude weights of every block matrix."""
    t = dict(t)
    for k in _block_matrices(t):
        w = t[k]
        cut = np.quantile(np.abs(w), frac)
        t[k] = np.where(np.abs(w) <= cut, 0.0, w).astype(np.float32)
    return t


def extend_vocab(
    t: Tensors, meta: dict[str, object], extra: int = 512, seed: int = 13
) -> tuple[Tensors, dict[str, object]]:
    """Append ``extra`` tokens: new embedding rows near the mean, tokenizer arrays extended."""
    rng = np.random.default_rng(seed)
    t = dict(t)
    e = t["token_embd.weight"]
    new = e.mean(0) + rng.standard_normal((extra, e.shape[1])).astype(np.float32) * e.std()
    t["token_embd.weight"] = np.concatenate([e, new])
    tokens = list(meta["tokenizer.ggml.tokens"]) + [f"<|domain_{i}|>" for i in range(extra)]  # type: ignore[call-overload]
    types = np.concatenate([np.asarray(meta["tokenizer.ggml.token_type"]), np.full(extra, 4, np.int32)])
    return t, {
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types.astype(np.int32),
        "llama.vocab_size": len(tokens),
    }


def training_text() -> str:
    """A small, fixed English text available offline on every machine: CPython's licence."""
    lic = (
        Path(sys.base_prefix)
        / "lib"
        / f"python{sys.version_info.major}.{sys.version_info.minor}"
        / "LICENSE.txt"
    )
    if lic.exists():
        return lic.read_text(encoding="utf-8")
    import codecs
    import this  # noqa: F401  (fallback: any stable stdlib text)

    return codecs.decode(this.s, "rot13") * 20  # type: ignore[attr-defined]


def tokenize(model: Path, text: str) -> list[int]:
    """Token ids from llama.cpp's own tokenizer, in a child process.

    Loading llama.cpp into the training process leaves its OpenMP worker threads spinning, which
    slowed torch's CPU training tenfold on 2 cores; a child process keeps them apart.
    """
    import json
    import subprocess

    code = (
        "import sys, json; from llama_cpp import Llama; "
        "llm = Llama(sys.argv[1], vocab_only=True, verbose=False); "
        "print(json.dumps(llm.tokenize(sys.stdin.read().encode(), add_bos=False)))"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, str(model)],
        input=text,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return list(json.loads(res.stdout))


def make_all(log: Callable[[str], None] = print) -> dict[str, Path]:
    """Build (or reuse from the cache) every derived and unrelated model; returns name -> path."""
    from lineage_train import finetune, seed_model  # torch lives only in the training helpers

    d = cache_dir()
    base = bundled.smollm2()
    out: dict[str, Path] = {}
    t0 = time.time()
    for name, ftype in (("requant-q8_0", 7), ("requant-q4_k_m", 15)):
        p = d / f"{name}.gguf"
        out[name] = p if p.exists() else requant(base, p, ftype)
    recipes: dict[str, Callable[[GGUFTensors, Tensors], tuple[Tensors, dict[str, object]]]] = {
        "permuted": lambda g, t: (permute(t, g.metadata), {}),
        "lora-merged": lambda g, t: (lora_merge(t), {}),
        "pruned-10": lambda g, t: (prune(t), {}),
        "vocab-extended": lambda g, t: extend_vocab(t, g.metadata),
    }
    todo = [
        n for n in (*recipes, "finetuned", *(f"seed-{s}" for s in SEEDS)) if not (d / f"{n}.gguf").exists()
    ]
    if todo:
        g, t = load_gguf(base)
        text_ids = tokenize(base, training_text())
        for name in todo:
            t1 = time.time()
            if name in recipes:
                tensors, meta = recipes[name](g, t)
            elif name == "finetuned":
                tensors, meta = finetune(t, g.metadata, text_ids, FT_STEPS), {}
            else:
                tensors, meta = seed_model(t, g.metadata, text_ids, int(name.split("-")[1]), SEED_STEPS), {}
            write_gguf(g, tensors, d / f"{name}.gguf", meta)
            log(f"made {name} in {time.time() - t1:.1f} s")
        g.close()
    for n in (*recipes, "finetuned", *(f"seed-{s}" for s in SEEDS)):
        out[n] = d / f"{n}.gguf"
    out["gemma3-270m"] = bundled.gemma3()
    log(f"models ready in {time.time() - t0:.1f} s under {d}")
    return out


if __name__ == "__main__":
    for k, v in make_all().items():
        print(k, v)
