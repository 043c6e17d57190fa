"""The acceptance test of issue 14: a bundle built in this run installs and serves with no network.

Inside ``unshare -n`` (a new network namespace: loopback only, no route anywhere) the bootstrap script
printed by ``bastion bundle create`` verifies the bundle with Debian's /usr/bin/python3 run with -S
(no site-packages: the standard library, then the pinned cryptography wheels from the bundle), builds
the venv from the wheelhouse with no index, admits SmolLM2 through vet -> Cedar (enterprise) -> sign, and the installed gateway answers a
chat request made with the openai SDK. A second install is a no-op; an incremental bundle (made with
--since, carrying only what changed) installs on top, reusing the venv and the admitted model; the
gateway then starts from that release. Wall times are printed (-s).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bastion.bundle import ModelSpec, create_bundle
from tests.bundle.built import Built

DRIVER = Path(__file__).with_name("airgap_driver.py")
pytestmark = pytest.mark.skipif(shutil.which("unshare") is None or shutil.which("ip") is None,
                                reason="needs unshare (util-linux) and ip (iproute2)")


@pytest.mark.slow
def test_bundle_installs_admits_and_serves_inside_unshare_n(built: Built, tmp_path: Path) -> None:
    script = tmp_path / "bootstrap.sh"
    script.write_text(built.created.bootstrap)  # the printed copy, carried out of band
    prefix = tmp_path / "enclave"
    incremental = create_bundle(tmp_path / "incr.tar", built.private_key, [ModelSpec.parse("smollm2")],
                                since=built.created.manifest_path, offline=True)
    assert incremental.carried < incremental.files / 4
    started = time.perf_counter()
    proc = subprocess.run(
        ["unshare", "-n", sys.executable, str(DRIVER), str(script), str(built.created.path),
         str(built.public_key), str(built.private_key), str(prefix), str(incremental.path)],
        capture_output=True, text=True, timeout=900,
    )
    total = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "failed" not in result, result
    assert result["isolated"] is True  # nothing but loopback was reachable
    verified = next(line for line in result["stderr"].splitlines() if line.startswith("verified: "))
    assert "(cryptography 50." in verified and "/usr/lib/python3" not in verified  # the bundle's own wheel
    install = result["install"]
    assert [(m["name"], m["admitted"]) for m in install["models"]] == [("smollm2", True)]
    assert install["already_installed"] is False
    assert result["reinstall"]["already_installed"] is True
    assert result["reinstall"]["models"][0]["reason"] == "already admitted"
    incr = result["incremental"]
    assert incr["already_installed"] is False and incr["release"] != install["release"]
    assert incr["manifest_sha256"] == incremental.manifest_sha256
    assert [(m["name"], m["reason"]) for m in incr["models"]] == [("smollm2", "already admitted")]
    assert (prefix / "current").resolve().name == incr["release"]
    assert len(list((prefix / "venvs").iterdir())) == 1  # same wheels: the venv is shared, not rebuilt
    assert result["answer"]["model"] == "smollm2"
    assert result["answer"]["content"].strip()
    assert (prefix / "current" / ".complete").exists()
    assert not list(prefix.glob(".staging-*"))
    assert (prefix / "keys" / "audit-signing.key").is_file()  # the audit key lives outside the data folder
    assert not list((prefix / "data").rglob("*.key"))
    assert "BASTION_KEY_HOME" in (prefix / "env.sh").read_text()
    print(f"\nair-gap install: bundle built in {built.seconds:.1f} s ({built.created.size / 1e6:.0f} MB; "
          f"incremental {incremental.size / 1e6:.1f} MB); "
          f"inside unshare -n: {json.dumps(result['times'])}; total {total:.1f} s")
