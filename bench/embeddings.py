"""Sentences per second: Bastion's numpy MiniLM against sentence-transformers (torch, CPU), same run.

    .venv/bin/python bench/embeddings.py [--texts 128] [--rounds 3]

Both embed the same texts from the same bundled all-MiniLM-L6-v2 folder with batch size 32. Rounds
are interleaved (ours with 1 and with 2 BLAS threads, the reference with its default
and with 1 thread, repeat) so that load from other processes
on a shared machine hits all of them alike; the best and the median round are reported. Cold start
(a fresh interpreter: import, load, first vector) is measured in subprocesses. Writes
bench/results/embeddings.json and prints a Markdown table for bench/README.md.

OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, when set on this machine, pin an older OpenBLAS kernel; run
this script with both unset (``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE ...``) for figures that
reflect a normal install. The kernel in use is recorded in the JSON either way.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
SENTENCES = [
    "The gateway refuses any connection that is not to a loopback address.",
    "A cat is sleeping on the warm windowsill.",
    "Quarterly revenue rose by four percent on strong demand for services.",
    "Every request is appended to a tamper-evident log with the digest of the weights that answered.",
    "Les modèles ouverts peuvent être exécutés sans accès au réseau.",
    "Der Prüfer verlangt einen Nachweis, welches Modell geantwortet hat.",
    "東京の天気は明日晴れるでしょう。",
    "Patch the firmware before the maintenance window closes on Friday.",
    "The supplier shall retain audit records of every model invocation for seven years.",
    "How many tokens per second does the small model generate on two cores?",
    "She signed the manifest with the organisation's key and stored the bundle next to the file.",
    "Mean pooling averages the token vectors, ignoring padding.",
]
COLD = {
    "bastion": (
        "from bastion.embeddings import MiniLMEmbedder; from bastion.bundled import minilm;"
        "MiniLMEmbedder.load(minilm()).embed(['hello'])"
    ),
    "sentence-transformers": (
        "from sentence_transformers import SentenceTransformer; from bastion.bundled import minilm;"
        "SentenceTransformer(str(minilm()), device='cpu').encode(['hello'])"
    ),
}


def workload(n: int, seed: int = 7) -> list[str]:
    """``n`` texts of one to twenty sentences (a few past the 256-token limit), fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    sizes = rng.choice([1, 1, 1, 2, 2, 3, 5, 8, 20], size=n)
    return [" ".join(rng.choice(SENTENCES, size=int(k))) for k in sizes]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def cold_start(code: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer
    from threadpoolctl import threadpool_info, threadpool_limits

    from bastion.bundled import minilm
    from bastion.embeddings import MiniLMEmbedder

    texts = workload(args.texts)
    ours = MiniLMEmbedder.load(minilm())  # BLAS limited to 1 thread (the default)
    ref = SentenceTransformer(str(minilm()), device="cpu")
    tokens = sum(ours.embed(texts).token_counts)

    def run_ours() -> np.ndarray:
        return ours.embed(texts, batch_size=32).vectors

    def run_ours_2() -> np.ndarray:
        with threadpool_limits(2, user_api="blas"):
            return ours.embed(texts, batch_size=32).vectors

    def run_ref() -> np.ndarray:
        return np.asarray(ref.encode(texts, batch_size=32, convert_to_numpy=True))

    torch_threads = torch.get_num_threads()

    def run_ref_1() -> np.ndarray:
        torch.set_num_threads(1)
        try:
            return run_ref()
        finally:
            torch.set_num_threads(torch_threads)

    peers = {
        "bastion numpy (BLAS 1 thread, default)": run_ours,
        "bastion numpy (BLAS 2 threads)": run_ours_2,
        f"sentence-transformers (torch {torch.__version__}, {torch_threads} threads, default)": run_ref,
        f"sentence-transformers (torch {torch.__version__}, 1 thread)": run_ref_1,
    }
    times: dict[str, list[float]] = {k: [] for k in peers}
    vectors: dict[str, np.ndarray] = {}
    load_before = os.getloadavg()
    for _ in range(args.rounds):
        for name, fn in peers.items():
            t = time.perf_counter()
            vectors[name] = fn()
            times[name].append(time.perf_counter() - t)
    load_after = os.getloadavg()
    names = list(peers)
    ref_vecs = vectors[names[2]]
    cos = (vectors[names[0]] * ref_vecs).sum(1) / np.linalg.norm(ref_vecs, axis=1)
    cold = {k: cold_start(v) for k, v in COLD.items()}

    rows = []
    best_ref = args.texts / min(times[names[2]])
    for name in names:
        best = args.texts / min(times[name])
        rows.append(
            {
                "peer": name,
                "sentences_per_s_best": round(best, 1),
                "sentences_per_s_median": round(args.texts / statistics.median(times[name]), 1),
                "ratio_vs_reference_best": round(best / best_ref, 2),
                "seconds_per_round": [round(t, 3) for t in times[name]],
            }
        )
    result: dict[str, Any] = {
        "benchmark": "embeddings",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "loadavg_before": load_before,
            "loadavg_after": load_after,
            "openblas_env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")},
            "blas": [
                {k: i.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
                for i in threadpool_info()
                if i.get("user_api") == "blas"
            ],
        },
        "workload": {"texts": args.texts, "tokens": tokens, "batch_size": 32, "rounds": args.rounds},
        "parity_min_cosine": round(float(cos.min()), 7),
        "rows": rows,
        "cold_start_s": {k: round(v, 2) for k, v in cold.items()},
    }
    out = HERE / "results" / "embeddings.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)

    print("| peer | sentences/s (best) | sentences/s (median) | ratio vs reference |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['peer']} | {r['sentences_per_s_best']} | {r['sentences_per_s_median']}"
            f" | {r['ratio_vs_reference_best']} |"
        )
    print(f"\ntexts {args.texts}, tokens {tokens}, min cosine vs reference {result['parity_min_cosine']}")
    print(f"cold start (import + load + first vector): {result['cold_start_s']}")
    print(f"load average before {load_before}, after {load_after}; BLAS {result['machine']['blas']}")


if __name__ == "__main__":
    main()
