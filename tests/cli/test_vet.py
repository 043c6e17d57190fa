"""`bastion vet` and `bastion bom` from the command line: exit statuses, one JSON document, messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bastion import bundled
from tests.vet.corpus import exec_pickle


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bastion.cli.main", *args], capture_output=True, text=True, timeout=120
    )


def test_vet_pass_exits_zero_and_prints_the_verdict() -> None:
    res = _run("vet", str(bundled.smollm2()))
    assert res.returncode == 0, res.stderr
    assert "verdict: pass" in res.stdout


def test_vet_fail_exits_12_with_one_json_document(tmp_path: Path) -> None:
    p = tmp_path / "pytorch_model.bin"
    p.write_bytes(exec_pickle())
    res = _run("vet", str(p), "--json")
    assert res.returncode == 12
    doc = json.loads(res.stdout)
    assert doc["verdict"] == "fail"
    assert any(
        f["code"] == "PICKLE_DANGEROUS_GLOBAL" and "builtins.exec" in f["message"] for f in doc["findings"]
    )


def test_vet_unusable_input_exits_3_with_a_hint(tmp_path: Path) -> None:
    p = tmp_path / "empty.bin"
    p.write_bytes(b"")
    res = _run("vet", str(p))
    assert res.returncode == 3
    assert "is empty" in res.stderr and "hint:" in res.stderr
    assert "Traceback" not in res.stderr
    res = _run("vet", str(p), "--json")
    assert json.loads(res.stdout)["error"]["code"] == "unusable_input"


def test_bom_writes_a_cyclonedx_file(tmp_path: Path) -> None:
    out = tmp_path / "bom.json"
    res = _run("bom", str(bundled.smollm2()), "-o", str(out), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["verdict"] == "pass"
    assert json.loads(out.read_text())["bomFormat"] == "CycloneDX"


def test_readme_shows_the_real_output_of_vet_on_smollm2() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    res = _run("vet", "bundled:smollm2")
    assert res.returncode == 0
    for line in res.stdout.splitlines():
        assert line in readme, f"README is stale: {line!r} is what 'bastion vet bundled:smollm2' prints now"
