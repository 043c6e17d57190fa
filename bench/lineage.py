"""Lineage benchmark: the full related / not-related matrix, fingerprint speed against the gguf package's
own reader (the peer), and time / peak memory on a synthetic 7B-class GGUF.

    .venv/bin/python bench/lineage.py            # everything (makes the models once, cached in $TMPDIR)
    .venv/bin/python bench/lineage.py --no-7b    # skip the 3.8 GB synthetic file

Writes bench/results/lineage.json; the table in bench/README.md is copied from its output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from lineage_models import DERIVED, UNRELATED, make_all  # noqa: E402

from bastion import bundled  # noqa: E402
from bastion.formats.gguf_tensors import GGUFTensors  # noqa: E402
from bastion.lineage import compare, fingerprint  # noqa: E402


def weight_change(base: Path, other: Path) -> float:
    """Mean over block matrices of ||W' - W|| / ||W||: how far a derivation moved the weights."""
    a, b = GGUFTensors(base), GGUFTensors(other)
    ratios = []
    for name, info in a.tensors.items():
        if name.startswith("blk.") and len(info.shape) == 2 and name in b.tensors:
            wa, wb = a.rows(name), b.rows(name)
            if wa.shape == wb.shape:
                ratios.append(float(np.linalg.norm(wb - wa) / np.linalg.norm(wa)))
    a.close()
    b.close()
    return float(np.mean(ratios))


class DictSource:
    """In-memory WeightSource over dequantized GGUF tensors, for the robustness sweep (no file writes)."""

    def __init__(self, g: GGUFTensors, t: dict[str, np.ndarray]) -> None:
        from bastion.lineage.sources import GGUFSource

        meta = GGUFSource(g.path)
        self.arch, self.tokenizer_kind, self.vocab, self.merges = (
            meta.arch,
            meta.tokenizer_kind,
            meta.vocab,
            meta.merges,
        )
        meta.close()
        self.t = t

    def embed_rows(self, ids: list[int]) -> np.ndarray:
        return self.t["token_embd.weight"][ids]

    def ffn_norm(self, layer: int) -> np.ndarray:
        return self.t[f"blk.{layer}.ffn_norm.weight"]

    def up_chunks(self, layer: int):  # type: ignore[no-untyped-def]
        yield 0, self.t[f"blk.{layer}.ffn_up.weight"]

    def down_chunks(self, layer: int):  # type: ignore[no-untyped-def]
        yield 0, self.t[f"blk.{layer}.ffn_down.weight"]

    def close(self) -> None:
        pass


def robustness_sweep(base_fp) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    """How far can the weights move before the verdict breaks? LoRA, pruning, full-rank noise."""
    from lineage_models import load_gguf, lora_merge, prune

    from bastion.lineage.fingerprint import fingerprint_source

    g, t = load_gguf(bundled.smollm2())
    rng = np.random.default_rng(5)
    cases = [(f"lora rank16 {r:.0%}", lambda r=r: lora_merge(t, rel=r)) for r in (0.3, 1.0, 3.0)]
    cases += [(f"prune {f:.0%}", lambda f=f: prune(t, frac=f)) for f in (0.3, 0.5, 0.7, 0.9)]

    def noise(rel: float) -> dict[str, np.ndarray]:
        out = dict(t)
        for k, w in t.items():
            if k.startswith("blk.") and w.ndim == 2:
                out[k] = w + rng.standard_normal(w.shape).astype(np.float32) * (rel * w.std())
        return out

    cases += [(f"full-rank noise {r:.0%}", lambda r=r: noise(r)) for r in (0.3, 1.0, 2.0)]
    rows = []
    for label, make in cases:
        fp = fingerprint_source(DictSource(g, make()), label, "")
        c = compare(base_fp, fp)
        rows.append({"transform": label, "verdict": c.verdict, "score": c.score, "log10_fpr": c.log10_p})
        print(f"  {label:<24} {c.verdict:<12} score {c.score:.3f}  log10 FPR {c.log10_p:.1f}")
    g.close()
    return rows


def timed(fn, repeat: int = 3):  # type: ignore[no-untyped-def]
    runs, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs), result


def peer_read_same_tensors(path: Path) -> int:
    """The peer: gguf.GGUFReader (the gguf package's reader) + dequantize of the same tensors we read."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    from bastion.lineage.fingerprint import stored_layers

    r = GGUFReader(str(path))
    by_name = {t.name: t for t in r.tensors}
    n_layers = sum(1 for n in by_name if n.endswith("ffn_up.weight"))
    d_ffn = int(by_name["blk.0.ffn_up.weight"].shape[1])
    total = 0
    for layer in stored_layers(n_layers, d_ffn):
        for kind in ("ffn_up", "ffn_down"):
            t = by_name[f"blk.{layer}.{kind}.weight"]
            total += dequantize(t.data, t.tensor_type).size
    return total


# --- a synthetic 7B-class GGUF (Llama-2-7B shapes, Q4_0 blocks of random data) -------------------------


def _gguf_string(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


SHAPES = {"1B-class (TinyLlama shape)": (2048, 5632, 22), "7B-class (Llama-2-7B shape)": (4096, 11008, 32)}


def write_synthetic(out: Path, vocab: list[str], d: int, ffn: int, n_layers: int) -> int:
    """Stream a Llama-shaped Q4_0 GGUF of random blocks to ``out`` without holding it in memory."""
    q4_0 = 2  # GGML type id; block of 32 weights = f16 scale + 16 bytes
    shapes: list[tuple[str, tuple[int, int], int]] = [("token_embd.weight", (len(vocab), d), q4_0)]
    for i in range(n_layers):
        b = f"blk.{i}."
        shapes += [(b + "attn_norm.weight", (1, d), 0), (b + "ffn_norm.weight", (1, d), 0)]
        shapes += [
            (b + n, (d, d), q4_0)
            for n in ("attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight")
        ]
        shapes += [(b + "ffn_gate.weight", (ffn, d), q4_0), (b + "ffn_up.weight", (ffn, d), q4_0)]
        shapes += [(b + "ffn_down.weight", (d, ffn), q4_0)]
    kv = [
        ("general.architecture", 8, _gguf_string("llama")),
        ("llama.block_count", 4, struct.pack("<I", n_layers)),
    ]
    kv.append(("tokenizer.ggml.model", 8, _gguf_string("gpt2")))
    tokens = b"".join(_gguf_string(t) for t in vocab)
    kv.append(("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, len(vocab)) + tokens))

    def nbytes(shape: tuple[int, int], t: int) -> int:
        return shape[0] * shape[1] * 4 if t == 0 else shape[0] * shape[1] // 32 * 18

    rng = np.random.default_rng(0)
    with out.open("wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", 3, len(shapes), len(kv)))
        for k, t, v in kv:
            f.write(_gguf_string(k) + struct.pack("<I", t) + v)
        offset = 0
        for name, (rows, cols), t in shapes:
            dims = (cols,) if rows == 1 else (cols, rows)
            f.write(
                _gguf_string(name)
                + struct.pack("<I", len(dims))
                + b"".join(struct.pack("<Q", x) for x in dims)
            )
            f.write(struct.pack("<IQ", t, offset))
            offset += (nbytes((rows, cols), t) + 31) // 32 * 32
        f.write(b"\0" * ((-f.tell()) % 32))
        scale = np.float16(0.02).tobytes()
        for _name, shape, t in shapes:
            n = nbytes(shape, t)
            if t == 0:
                f.write(np.ones(shape[0] * shape[1], np.float32).tobytes())
            else:
                blocks = rng.integers(0, 256, size=(n // 18, 18), dtype=np.uint8)
                blocks[:, :2] = np.frombuffer(scale, np.uint8)
                f.write(blocks.tobytes())
            f.write(b"\0" * ((-n) % 32))
        return f.tell()


def measure_in_child(path: Path) -> dict[str, float]:
    """Fingerprint ``path`` in a fresh process; report wall time and that process's peak RSS."""
    code = (
        "import sys, time, resource, json; from pathlib import Path; from bastion.lineage import fingerprint;"
        "t = time.perf_counter(); fp = fingerprint(Path(sys.argv[1])); dt = time.perf_counter() - t;"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec from the (large) parent.
        "rss = [int(x.split()[1]) for x in open('/proc/self/status') if x.startswith('VmHWM')][0] / 1024;"
        "print(json.dumps({'seconds': dt, 'peak_rss_mb': rss,"
        "'blocks': len(fp.layers), 'bytes': len(json.dumps(fp.to_json()))}))"
    )
    r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    return dict(json.loads(r.stdout))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-7b", action="store_true")
    args = ap.parse_args()
    results: dict[str, object] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average_at_start": os.getloadavg()[0],
    }
    t = time.perf_counter()
    models = make_all(log=lambda m: print(m, file=sys.stderr))
    results["model_making_seconds"] = round(time.perf_counter() - t, 1)

    base = bundled.smollm2()
    ours, base_fp = timed(lambda: fingerprint(base))
    peer, _ = timed(lambda: peer_read_same_tensors(base), repeat=1)
    header_ours, _ = timed(lambda: GGUFTensors(base).close())
    print(
        f"fingerprint SmolLM2-135M Q4_1: {ours:.2f} s (median of 3); "
        "gguf.GGUFReader reading the same tensors: "
        f"{peer:.2f} s -> {peer / ours:.1f}x; our header parse {header_ours * 1000:.0f} ms"
    )
    results["fingerprint_135m"] = {
        "bastion_s": round(ours, 2),
        "peer_gguf_reader_s": round(peer, 2),
        "ratio_peer_over_bastion": round(peer / ours, 1),
        "header_parse_ms": round(header_ours * 1000, 1),
    }

    fps = {"smollm2-135m": base_fp}
    for name in (*DERIVED, *UNRELATED):
        dt, fps[name] = timed(lambda n=name: fingerprint(models[n]), repeat=1)
        print(f"  fingerprinted {name} in {dt:.1f} s", file=sys.stderr)
    changes = {
        n: weight_change(base, models[n]) for n in ("requant-q4_k_m", "finetuned", "lora-merged", "pruned-10")
    }
    results["relative_weight_change"] = changes
    print("relative weight change vs base: " + ", ".join(f"{k} {v:.3f}" for k, v in changes.items()))
    rows = []
    print(
        f"\n{'model':<16} {'truth':<10} {'verdict':<12} {'score':>6} {'log10 FPR':>10} "
        f"{'vocab':>6} {'sec':>5}"
    )
    for name in (*DERIVED, *UNRELATED):
        dt, c = timed(lambda n=name: compare(base_fp, fps[n]), repeat=1)
        truth = "derived" if name in DERIVED else "unrelated"
        ok = (c.verdict == "related") == (truth == "derived") and c.verdict != "inconclusive"
        rows.append(
            {
                "model": name,
                "truth": truth,
                "verdict": c.verdict,
                "correct": ok,
                "score": c.score,
                "log10_fpr": c.log10_p,
                "vocab_jaccard": c.tokenizer.vocab_jaccard,
                "seconds": round(dt, 2),
            }
        )
        print(
            f"{name:<16} {truth:<10} {c.verdict:<12} {c.score:>6.3f} {c.log10_p:>10.1f} "
            f"{c.tokenizer.vocab_jaccard:>6.2f} {dt:>5.1f}"
        )
    results["vs_base"] = rows
    derived_min = min(float(r["score"]) for r in rows if r["truth"] == "derived")  # type: ignore[arg-type]
    unrelated_max = max(float(r["score"]) for r in rows if r["truth"] == "unrelated")  # type: ignore[arg-type]
    results["score_gap"] = {"derived_min": derived_min, "unrelated_max": unrelated_max}
    print(f"score gap: lowest derived {derived_min:.3f} vs highest unrelated {unrelated_max:.3f}")

    print("\nrobustness sweep (in memory, escalating):")
    results["robustness_sweep"] = robustness_sweep(base_fp)

    names = list(fps)
    matrix = {}
    print("\nfull matrix (score; R related, . not related, ? inconclusive)")
    print(" " * 16 + " ".join(f"{n[:7]:>7}" for n in names))
    for a in names:
        line = []
        for b in names:
            c = compare(fps[a], fps[b])
            matrix[f"{a}|{b}"] = {"verdict": c.verdict, "score": c.score}
            mark = {"related": "R", "not related": ".", "inconclusive": "?"}[c.verdict]
            line.append(f"{(c.score or 0):>6.2f}{mark}")
        print(f"{a:<16}" + " ".join(line))
    results["matrix"] = matrix

    if not args.no_7b:
        vocab = list(GGUFTensors(base).metadata["tokenizer.ggml.tokens"])
        results["synthetic"] = {}
        for label, (d, ffn, n_layers) in SHAPES.items():
            with tempfile.TemporaryDirectory(dir=os.environ.get("BASTION_BENCH_TMP")) as td:
                path = Path(td) / "synthetic.gguf"
                t = time.perf_counter()
                size = write_synthetic(path, vocab, d, ffn, n_layers)
                print(
                    f"wrote {label} GGUF {size / 1e9:.2f} GB in {time.perf_counter() - t:.0f} s",
                    file=sys.stderr,
                )
                m = measure_in_child(path)
                print(
                    f"{label}: {n_layers} blocks, d {d}, ffn {ffn}, Q4_0, {size / 1e9:.1f} GB: "
                    f"{m['seconds']:.1f} s, peak RSS {m['peak_rss_mb']:.0f} MB, "
                    f"{m['blocks']:.0f} blocks kept, "
                    f"fingerprint {m['bytes'] / 1e6:.1f} MB"
                )
                results["synthetic"][label] = {**m, "file_gb": round(size / 1e9, 2)}  # type: ignore[index]
    small = measure_in_child(base)
    results["smollm2_child"] = small
    print(f"135M in a fresh process: {small['seconds']:.1f} s, peak RSS {small['peak_rss_mb']:.0f} MB")
    results["load_average_at_end"] = os.getloadavg()[0]
    out = ROOT / "bench" / "results" / "lineage.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=float))
    print(f"\nwrote {out}; self peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
