"""The signed bundle vs the plain wheelhouse workflow (``pip download`` + ``pip install --no-index``).

Both carry the same software (Bastion's wheel and every dependency, from the same local caches); the
bundle also carries SmolLM2 with its signature, the catalog, the SBOM and the bootstrap. Measured in one
run, one after the other, both installs with no network (``unshare -n``):

- plain: ``pip download --no-index --find-links CACHES -d wheelhouse bastion.whl``, tar the folder;
  on the other side ``python -m venv`` + ``pip install --no-index --find-links wheelhouse bastion``.
- bundle: ``bastion bundle create`` then ``bastion bundle verify`` and ``bastion bundle install``
  (verify every byte, venv from the wheelhouse with ``--require-hashes``, model signature, admission).

    .venv/bin/python bench/bundle.py   ->   bench/results/bundle.json (+ the table in bench/README.md)
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from bastion.bundle import ModelSpec, create_bundle
from bastion.bundle.wheelhouse import default_find_links
from bastion.signing import generate_key_pair

ROOT = Path(__file__).resolve().parent.parent
ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("PIP_")}


def timed(cmd: list[str], **kw: object) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, **kw)  # type: ignore[call-overload]
    return time.perf_counter() - t0


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-bundle-"))
    try:
        keys = generate_key_pair(work / "org")
        # bundle
        t0 = time.perf_counter()
        created = create_bundle(work / "bastion.tar", keys.private_key, [ModelSpec.parse("smollm2")], offline=True)
        create_s = time.perf_counter() - t0
        cli = [sys.executable, "-m", "bastion.cli.main", "bundle"]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        verify_s = timed(["unshare", "-n", *cli, "verify", str(created.path), "--trust", str(keys.public_key)], env=env)
        install_s = timed(["unshare", "-n", *cli, "install", str(created.path), "--trust", str(keys.public_key),
                           "--prefix", str(work / "pfx"), "--key", str(keys.private_key), "--policy", "enterprise"],
                          env=env)
        reinstall_s = timed(["unshare", "-n", *cli, "install", str(created.path), "--trust", str(keys.public_key),
                             "--prefix", str(work / "pfx"), "--key", str(keys.private_key), "--policy", "enterprise"],
                            env=env)
        # plain wheelhouse: same Bastion wheel, same caches
        wh = work / "wheelhouse"
        bastion_whl = next((work / "pfx" / "current" / "wheels").glob("bastion-*.whl"))
        links = [a for p in default_find_links() for a in ("--find-links", str(p))]
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-index", *links, "-d", str(wh),
                        "--only-binary=:all:", str(bastion_whl)], check=True, env=ENV, capture_output=True)
        with tarfile.open(work / "wheelhouse.tar", "w") as tf:
            tf.add(wh, arcname="wheelhouse")
        plain_create_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        subprocess.run(["unshare", "-n", sys.executable, "-m", "venv", str(work / "plainvenv")], check=True, env=ENV)
        subprocess.run(["unshare", "-n", str(work / "plainvenv" / "bin" / "pip"), "install", "-q", "--no-index",
                        "--find-links", str(wh), "bastion"], check=True, env=ENV, capture_output=True)
        plain_install_s = time.perf_counter() - t0
        wheels_bytes = sum(p.stat().st_size for p in (work / "pfx" / "current" / "wheels").glob("*.whl"))
        result = {
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load": os.getloadavg()},
            "bundle": {
                "bytes": created.size, "wheels_bytes": wheels_bytes, "files": created.files, "wheels": created.wheels,
                "create_s": round(create_s, 1), "verify_s": round(verify_s, 1), "install_s": round(install_s, 1),
                "reinstall_s": round(reinstall_s, 1),
            },
            "plain": {
                "bytes": (work / "wheelhouse.tar").stat().st_size, "wheels": len(list(wh.glob("*.whl"))),
                "create_s": round(plain_create_s, 1), "install_s": round(plain_install_s, 1),
            },
        }
        out = ROOT / "bench" / "results" / "bundle.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
