"""``bastion lineage`` end to end, as an operator runs it (real process, real files, --json)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def bastion(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BASTION_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "bastion.cli.main", "lineage", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.fixture(scope="module")
def fp_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    home = tmp_path_factory.mktemp("home")
    out = home / "smollm2.fp.json"
    r = bastion("fingerprint", "bundled:smollm2", "-o", str(out), "--json", home=home)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["arch"]["family"] == "llama" and doc["bytes"] == out.stat().st_size
    return home, out


def test_compare_two_fingerprints_prints_one_json_document(fp_file: tuple[Path, Path]) -> None:
    home, fp = fp_file
    r = bastion("compare", str(fp), str(fp), "--json", home=home)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["verdict"] == "related" and doc["score"] == 1.0
    assert doc["tokenizer"]["identical_vocab"] is True and doc["layers"]


def test_compare_across_mlp_kinds_is_inconclusive_for_people_too(fp_file: tuple[Path, Path]) -> None:
    home, fp = fp_file
    r = bastion("compare", str(fp), "bundled:minilm", home=home)
    assert r.returncode == 0, r.stderr
    assert "inconclusive" in r.stdout and "architectures differ" in r.stdout


def test_add_reference_then_check_supported(fp_file: tuple[Path, Path]) -> None:
    home, fp = fp_file
    r = bastion("add-reference", str(fp), "--name", "smollm2-135m", home=home)
    assert r.returncode == 0, r.stderr
    r = bastion("references", "--json", home=home)
    # the organisation's own reference, beside those shipped for the bundled models (made by make venv)
    names = [x["name"] for x in json.loads(r.stdout)]
    assert "smollm2-135m" in names and names.count("smollm2-135m") == 1
    r = bastion("check", "bundled:smollm2", "--claims", "base=smollm2-135m", "--json", home=home)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["claim"] == "supported" and "smollm2-135m" in doc["related_bases"]


def test_errors_have_distinct_exit_codes_and_no_traceback(fp_file: tuple[Path, Path], tmp_path: Path) -> None:
    home, fp = fp_file
    missing = bastion("fingerprint", str(tmp_path / "nope.gguf"), "-o", str(tmp_path / "o.json"), home=home)
    assert missing.returncode == 3 and "does not exist" in missing.stderr
    unknown = bastion("check", str(fp), "--claims", "base=no-such-base", home=home)
    assert unknown.returncode == 5 and "no lineage reference named" in unknown.stderr
    bad_claim = bastion("check", str(fp), "--claims", "origin=fr", home=home)
    assert bad_claim.returncode == 2 and "base=NAME" in bad_claim.stderr
    for r in (missing, unknown, bad_claim):
        assert "Traceback" not in r.stderr
    assert not (tmp_path / "o.json").exists()


def test_readme_documents_every_lineage_command() -> None:
    from bastion.cli.lineage import app

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    names = [c.name for c in app.registered_commands]
    assert {"fingerprint", "compare", "check", "add-reference", "references"} <= set(names)
    for name in names:
        assert f"bastion lineage {name}" in readme, name
