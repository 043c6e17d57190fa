"""Benchmark the audit log: durable appends/s with group commit, and verify time for a large log.

Peers, run side by side in the same process on the same disk:
  * appends: the same SQLite table and record encoding with one transaction (one fsync) per append,
    i.e. what a log without group commit does;
  * verify: the RFC 6962 reference recursion MTH(D[n]) = H(0x01 || MTH(D[:k]) || MTH(D[k:])) over the
    same leaf hashes, which is how the RFC states it and how a straightforward verifier computes it.

Usage: .venv/bin/python bench/audit.py [--entries 1000000] [--appends 100000] [--clients 1000]
Writes bench/results/audit.json.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from bastion.audit import AuditLog, RequestRecord, create_keys, load_public_key, open_store
from bastion.audit.keys import load_signing_key, public_key_path
from bastion.audit.merkle import leaf_hash, node_hash
from bastion.audit.records import encode_leaf
from bastion.audit.verify import verify_log

RESULTS = Path(__file__).parent / "results" / "audit.json"


def record(i: int) -> RequestRecord:
    """A realistic request record (digest of a real-sized body, a real weights digest format)."""
    return RequestRecord(
        request_id=f"req-{i:012d}",
        principal=f"key_{i % 37:04d}",
        model=("smollm2", "gemma3")[i % 2],
        weights_digest="sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        backend="llama_cpp",
        decision="allow",
        status=200,
        tokens_in=40 + i % 100,
        tokens_out=7 + i % 50,
        latency_ms=180.0 + i % 300,
        request_sha256=hashlib.sha256(b"req%d" % i).hexdigest(),
        response_sha256=hashlib.sha256(b"resp%d" % i).hexdigest(),
    )


async def _drive(log: AuditLog, n: int, clients: int) -> float:
    counter = iter(range(n))

    async def client() -> None:
        for i in counter:
            await log.append_request(record(i))

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - started


def bench_group_commit(work: Path, n: int, clients: int) -> dict[str, float]:
    """Durable appends/s through AuditLog.append_request with ``clients`` concurrent callers."""
    log = AuditLog(
        open_store(work / "gc.db"), signer=load_signing_key(work / "signing.key"), sth_interval_s=1.0
    )
    seconds = asyncio.run(_drive(log, n, clients))
    log.close()
    return {"appends": n, "clients": clients, "seconds": seconds, "per_s": n / seconds}


def bench_commit_per_append(work: Path, seconds_budget: float) -> dict[str, float]:
    """The peer: one durable transaction per append (same table shape, synchronous=FULL, WAL)."""
    conn = sqlite3.connect(work / "naive.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE e (seq INTEGER PRIMARY KEY, leaf BLOB, leaf_hash BLOB)")
    n = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds_budget:
        leaf = encode_leaf(n, record(n), "hashes")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO e VALUES (?, ?, ?)", (n, leaf, leaf_hash(leaf)))
        conn.execute("COMMIT")
        n += 1
    seconds = time.perf_counter() - started
    conn.close()
    return {"appends": n, "seconds": seconds, "per_s": n / seconds}


def build_log(work: Path, n: int) -> Path:
    """A real log of ``n`` entries written through AuditLog (group commit, heads every 10,000)."""
    path = work / "big.db"
    log = AuditLog(open_store(path), signer=load_signing_key(work / "signing.key"), sth_every=10_000)
    asyncio.run(_drive(log, n, 2000))
    log.close()
    return path


def reference_root(hashes: list[bytes]) -> bytes:
    """RFC 6962 section 2.1 as written: recursive split at the largest power of two below n."""
    n = len(hashes)
    if n == 1:
        return hashes[0]
    k = 1 << ((n - 1).bit_length() - 1)
    return node_hash(reference_root(hashes[:k]), reference_root(hashes[k:]))


def bench_verify(work: Path, db: Path) -> dict[str, float | int | bool]:
    store = open_store(db)
    started = time.perf_counter()
    report = verify_log(store, load_public_key(public_key_path(work / "signing.key")))
    ours = time.perf_counter() - started
    # Peer: read the leaves, rehash them and compute only the final root the reference way.
    started = time.perf_counter()
    hashes = [leaf_hash(bytes(leaf)) for rows in store.scan() for _, leaf, *_ in rows]
    root = reference_root(hashes)
    peer = time.perf_counter() - started
    # Floor: SHA-256 of every leaf alone (no I/O, no tree), to show how loaded the machine was.
    leaves = [bytes(leaf) for rows in store.scan() for _, leaf, *_ in rows]
    started = time.perf_counter()
    _ = [hashlib.sha256(b"\x00" + leaf).digest() for leaf in leaves]
    floor = time.perf_counter() - started
    store.close()
    assert report.ok and root.hex() == report.root, "verify and the reference disagree"
    return {
        "entries": report.entries,
        "heads": report.heads,
        "ok": report.ok,
        "verify_s": ours,
        "reference_root_only_s": peer,
        "sha256_leaves_only_s": floor,
        "db_bytes": db.stat().st_size,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--appends", type=int, default=100_000)
    ap.add_argument("--clients", type=int, default=1000)
    args = ap.parse_args()
    load_at_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bastion-bench-audit-") as tmp:
        work = Path(tmp)
        create_keys(work / "signing.key", work / "body.key")
        gc = bench_group_commit(work, args.appends, args.clients)
        print(f"group commit: {gc['per_s']:,.0f} durable appends/s ({args.appends} appends)", file=sys.stderr)
        naive = bench_commit_per_append(work, 5.0)
        print(f"commit per append: {naive['per_s']:,.0f} appends/s", file=sys.stderr)
        t = time.perf_counter()
        db = build_log(work, args.entries)
        build_s = time.perf_counter() - t
        print(f"built {args.entries} entries in {build_s:.1f} s", file=sys.stderr)
        ver = bench_verify(work, db)
        print(
            f"verify: {ver['verify_s']:.2f} s; reference root only: {ver['reference_root_only_s']:.2f} s",
            file=sys.stderr,
        )
    result = {
        "machine": {
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "load_average_at_start": load_at_start,
        },
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "group_commit": gc,
        "commit_per_append": naive,
        "append_ratio": gc["per_s"] / naive["per_s"],
        "build_log_s": build_s,
        "verify": ver,
        "verify_ratio_vs_reference": ver["reference_root_only_s"] / ver["verify_s"],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
