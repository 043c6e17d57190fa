"""Admitting a 2 GB model: the one-read admission path vs the old path from git ``main``, side by side.

Builds a model folder (one 2 GB ``model.safetensors`` + a ``config.json`` claiming SmolLM2, so it is
identified), warms the page cache, then alternates, each in a fresh process and a fresh BASTION_HOME
(empty digest cache, no lineage references, so only the read path differs):

- ``old``: ``bastion.registry.admit`` from ``git archive <ref> src`` (default ``main``), which hands the
  path to vet (hashes every file), ``manifest_of`` (hashes again) and ``weights_digest`` (again);
- ``new``: ``admit`` from this tree, which reads the artifact once (``formats.open_artifact``);
- ``hash``: ``hashlib.file_digest`` over the weights file, one sha256 pass: the floor.

For each: wall time and the bytes the process read through read(2) (``rchar`` of /proc/self/io).

    .venv/bin/python bench/admit.py [--size-gb 2] [--runs 3] [--ref main]

Results: bench/results/admit.json and the table in bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WORKER = r"""
import hashlib, json, sys, time
from pathlib import Path

def rchar():
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])

mode, model, home = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
if mode == "hash":
    r0, t0 = rchar(), time.perf_counter()
    with (model / "model.safetensors").open("rb") as fh:
        hashlib.file_digest(fh, "sha256")
    t1, r1 = time.perf_counter(), rchar()
else:
    from bastion.policy import Organisation
    from bastion.registry import Registry, admit
    from bastion.signing import generate_key_pair

    pair = generate_key_pair(home / "org")
    org = Organisation((), (pair.key_hint,))
    registry = Registry(home / "bastion.db")
    kw = {}
    if mode == "new":
        from bastion.audit import AdminAudit
        from bastion.config import AuditSettings
        kw["audit"] = AdminAudit(AuditSettings(enabled=False))
    r0, t0 = rchar(), time.perf_counter()
    admission, _ = admit(registry, model, "big", "permissive", pair.private_key, org, "bench", **kw)
    t1, r1 = time.perf_counter(), rchar()
    assert admission.weights_digest.startswith("sha256:")
print(json.dumps({"seconds": t1 - t0, "read_bytes": r1 - r0}))
"""


def build_model(folder: Path, size: int) -> Path:
    """A valid safetensors folder: one U8 tensor of ``size`` bytes (random blocks) and a config."""
    folder.mkdir(parents=True, exist_ok=True)
    header = json.dumps({"weight": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}}).encode()
    header += b" " * (-len(header) % 8)
    block = os.urandom(64 << 20)
    with (folder / "model.safetensors").open("wb") as fh:
        fh.write(struct.pack("<Q", len(header)) + header)
        left, i = size, 0
        while left:
            n = min(left, len(block))
            fh.write(i.to_bytes(8, "little") + block[8:n] if n > 8 else block[:n])  # no two blocks alike
            left, i = left - n, i + 1
    config = {"model_type": "llama", "_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct"}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def run(mode: str, src: Path, model: Path, scratch: Path) -> dict[str, float]:
    home = Path(tempfile.mkdtemp(prefix=f"admit-{mode}-", dir=scratch))
    env = {
        **os.environ,
        "PYTHONPATH": str(src),
        "BASTION_HOME": str(home),
        "BASTION_LINEAGE_REFS": str(home / "no-references"),
        "HF_HUB_OFFLINE": "1",
    }
    out = subprocess.run(
        [sys.executable, "-c", WORKER, mode, str(model), str(home)],
        env=env, check=True, capture_output=True, text=True, timeout=1800,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-gb", type=float, default=2.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--ref", default="main", help="git ref of the old admission path")
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bastion-bench-admit-"))
    try:
        old_src = scratch / "old"
        old_src.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.ref, "src"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(old_src)], input=archive, check=True)
        old_commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", args.ref], check=True, capture_output=True, text=True
        ).stdout.strip()
        size = int(args.size_gb * 1e9)
        model = build_model(scratch / "model", size)
        run("hash", ROOT / "src", model, scratch)  # warm the page cache: every mode reads cached pages
        results: dict[str, list[dict[str, float]]] = {"old": [], "new": [], "hash": []}
        for i in range(args.runs):
            for mode in ("old", "new", "hash") if i % 2 == 0 else ("hash", "new", "old"):
                src = old_src / "src" if mode == "old" else ROOT / "src"
                results[mode].append(run(mode, src, model, scratch))
                r = results[mode][-1]
                print(f"run {i + 1} {mode:4}  {r['seconds']:6.2f} s  read {r['read_bytes'] / size:4.2f}x the model")
        med = {m: statistics.median(r["seconds"] for r in rs) for m, rs in results.items()}
        reads = {m: statistics.median(r["read_bytes"] for r in rs) / size for m, rs in results.items()}
        summary = {
            "size_bytes": size,
            "runs": args.runs,
            "old_ref": f"{args.ref} ({old_commit})",
            "median_seconds": med,
            "median_reads_of_the_model": reads,
            "old_over_new": med["old"] / med["new"],
            "new_over_one_hash_pass": med["new"] / med["hash"],
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "raw": results,
        }
        out = ROOT / "bench" / "results" / "admit.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(summary, indent=2) + "\n")
        print(json.dumps({k: v for k, v in summary.items() if k != "raw"}, indent=2))
    finally:
        subprocess.run(["rm", "-rf", str(scratch)], check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
