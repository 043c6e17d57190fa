"""Hashing a multi-GB model: Bastion vs the model_signing package vs coreutils sha256sum, same run.

Builds a model folder (one 2 GB weights file + a config, like a single-file checkpoint), warms the
page cache, then times, alternating the tools so each sees the same machine load:

- Bastion ``manifest_of`` with whole-file digests (method ``files``) and with 1 GB shards
  (method ``shards``, the one that lets two cores work on one file), cache disabled;
- model_signing 1.1.1 ``hashing.Config`` with the same two methods;
- ``hashlib.file_digest`` on one thread (the single-core ceiling of sha256 here) and ``sha256sum``;
- verifying a signature with Bastion (``verify_model``) with a cold and a warm digest cache, and
  with model_signing, plus the whole ``bastion verify`` command (process start included).

    .venv/bin/python bench/hash.py [--size-gb 2] [--runs 3] [--keep]

The folder is deleted afterwards. Results: bench/results/hash.json and the table in bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import model_signing as ms

from bastion.hashing import manifest_of
from bastion.signing import generate_key_pair, load_private_key, load_public_key, sign_model, verify_model

ROOT = Path(__file__).resolve().parent.parent
SHARD = 1_000_000_000  # model_signing's default shard size


def build(folder: Path, size: int) -> Path:
    """Write ``size`` bytes of incompressible data plus a config.json."""
    model = folder / "bench-model"
    model.mkdir(parents=True)
    block = bytearray(os.urandom(64 << 20))
    with (model / "model.safetensors").open("wb") as fh:
        written = 0
        i = 0
        while written < size:
            block[:8] = i.to_bytes(8, "little")  # every block differs
            n = min(len(block), size - written)
            fh.write(block[:n])
            written += n
            i += 1
    (model / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}\n')
    return model


CPU: dict[str, list[float]] = {}


def timed(fn: Callable[[], object], runs: int, name: str = "") -> list[float]:
    """Wall times of ``runs`` calls; CPU seconds (all threads, and child processes) go to CPU[name]."""
    out = []
    for _ in range(runs):
        c0 = time.process_time() + _children()
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
        CPU.setdefault(name, []).append(time.process_time() + _children() - c0)
    return out


def _children() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-gb", type=float, default=2.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="do not delete the model folder")
    args = ap.parse_args()
    size = int(args.size_gb * 1e9)
    tmp = Path(tempfile.mkdtemp(prefix="bastion-bench-hash-"))
    os.environ["BASTION_HOME"] = str(tmp / "home")  # a private digest cache, empty at start
    try:
        t0 = time.perf_counter()
        model = build(tmp, size)
        print(f"built {size / 1e9:.1f} GB in {time.perf_counter() - t0:.1f} s: {model}", file=sys.stderr)
        total = sum(p.stat().st_size for p in model.iterdir())
        weights = model / "model.safetensors"
        hashlib.file_digest(weights.open("rb"), "sha256")  # warm the page cache

        cases: dict[str, Callable[[], object]] = {
            "bastion files (whole-file sha256)": lambda: manifest_of(model, use_cache=False),
            "bastion shards (1 GB)": lambda: manifest_of(model, shard_size=SHARD, use_cache=False),
            "model_signing files": lambda: ms.hashing.Config().hash(model),
            "model_signing shards (1 GB)": lambda: (
                ms.hashing.Config().use_shard_serialization(shard_size=SHARD).hash(model)
            ),
            "hashlib.file_digest, 1 thread": lambda: hashlib.file_digest(weights.open("rb"), "sha256"),
        }
        times: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(args.runs):  # alternate tools so each sees the same load
            for name, fn in cases.items():
                times[name] += timed(fn, 1, name)
                print(f"  {name}: {times[name][-1]:.2f} s", file=sys.stderr)
        times["sha256sum (coreutils)"] = timed(
            lambda: subprocess.run(["sha256sum", str(weights)], check=True, capture_output=True),
            1,
            "sha256sum (coreutils)",
        )

        # Signatures: sign once with each tool, verify cold and warm.
        keys = generate_key_pair(tmp / "keys")
        sig = tmp / "bastion.sig"
        sig.write_bytes(
            sign_model(model, load_private_key(keys.private_key), shard_size=SHARD, use_cache=False)[1]
        )
        ms_sig = tmp / "ms.sig"
        ms.signing.Config().use_elliptic_key_signer(private_key=keys.private_key).set_hashing_config(
            ms.hashing.Config().use_shard_serialization(shard_size=SHARD)
        ).sign(model, ms_sig)
        ms_files_sig = tmp / "ms-files.sig"
        ms.signing.Config().use_elliptic_key_signer(private_key=keys.private_key).sign(model, ms_files_sig)
        pub = load_public_key(keys.public_key)
        times["bastion verify (shards), no cache"] = timed(
            lambda: verify_model(model, sig, public_key=pub, use_cache=False),
            args.runs,
            "bastion verify (shards), no cache",
        )
        verify_model(model, sig, public_key=pub)  # fills the cache
        times["bastion verify (shards), cached (unchanged model)"] = timed(
            lambda: verify_model(model, sig, public_key=pub),
            args.runs,
            "bastion verify (shards), cached (unchanged model)",
        )
        times["model_signing verify (files, its default)"] = timed(
            lambda: (
                ms.verifying.Config()
                .use_elliptic_key_verifier(public_key=keys.public_key)
                .verify(model, ms_files_sig)
            ),
            args.runs,
            "model_signing verify (files, its default)",
        )
        times["model_signing verify (shards)"] = timed(
            lambda: (
                ms.verifying.Config()
                .use_elliptic_key_verifier(public_key=keys.public_key)
                .set_hashing_config(ms.hashing.Config().use_shard_serialization(shard_size=SHARD))
                .verify(model, ms_sig)
            ),
            args.runs,
            "model_signing verify (shards)",
        )
        cli = [str(Path(sys.executable).parent / "bastion"), "verify", str(model), "--sig", str(sig)]
        times["`bastion verify` command, cached (incl. start-up)"] = timed(
            lambda: subprocess.run([*cli, "--key", str(keys.public_key)], check=True, capture_output=True),
            args.runs,
            "`bastion verify` command, cached (incl. start-up)",
        )
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    ref = med["model_signing shards (1 GB)"]
    rows = []
    for name, t in med.items():
        hashes_all = not name.startswith(("hashlib", "sha256sum"))
        nbytes = total if hashes_all else size
        cached = "cached" in name
        rows.append(
            {
                "case": name,
                "median_s": round(t, 4),
                "runs_s": [round(x, 4) for x in times[name]],
                "gb_per_s": None if cached else round(nbytes / 1e9 / t, 3),
                "speedup_vs_model_signing_shards": None if cached else round(ref / t, 2),
                "cpu_s": round(statistics.median(CPU[name]), 3),
                "cores_used": round(statistics.median(CPU[name]) / t, 2),
                "gb_per_cpu_s": None if cached else round(nbytes / 1e9 / statistics.median(CPU[name]), 3),
            }
        )
    result = {
        "what": f"hash a {size / 1e9:.1f} GB model folder (warm page cache)",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_end": os.getloadavg(),
            "sched_autogroup": Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip()
            if Path("/proc/sys/kernel/sched_autogroup_enabled").exists()
            else None,
            "note": "2 cores shared with other users; compare ratios from the same run",
        },
        "model_signing": ms.__version__,
        "bytes": total,
        "rows": rows,
    }
    out = ROOT / "bench" / "results" / "hash.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("| case | median wall s | GB/s | vs model_signing shards | CPU s | cores used | GB per CPU s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        gbs = "" if r["gb_per_s"] is None else f"{r['gb_per_s']:.2f}"
        ratio = (
            ""
            if r["speedup_vs_model_signing_shards"] is None
            else f"{r['speedup_vs_model_signing_shards']:.2f}x"
        )
        per_cpu = "" if r["gb_per_cpu_s"] is None else f"{r['gb_per_cpu_s']:.2f}"
        print(
            f"| {r['case']} | {r['median_s']:.3f} | {gbs} | {ratio} | {r['cpu_s']:.2f} | "
            f"{r['cores_used']:.2f} | {per_cpu} |"
        )
    print(f"\nwrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
