"""``bastion import`` end to end through the real CLI: a declared fine-tune of SmolLM2, on a fresh home.

The base's lineage reference is the one shipped at install time (``make venv`` builds it into
~/.cache/bastion/lineage-references), so no ``add-reference`` is needed first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bastion.signing import generate_key_pair


def bastion(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BASTION_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "bastion.cli.main", *args], env=env, capture_output=True, text=True,
        timeout=300, check=False,
    )


def test_import_records_the_organisation_as_developer_on_the_bases_lineage(tmp_path: Path) -> None:
    pair = generate_key_pair(tmp_path / "org")
    org = tmp_path / "organisation.toml"
    org.write_text(
        f'name = "Acme Defence"\ncountry = "GB"\ndenied_countries = ["CN", "RU"]\n'
        f'trusted_signers = ["{pair.key_hint}"]\n'
    )
    assert bastion(tmp_path, "audit", "init").returncode == 0
    refs = json.loads(bastion(tmp_path, "lineage", "references", "--json").stdout)
    assert {"SmolLM2-135M-Instruct", "Gemma-3-270M"} <= {r["name"] for r in refs}  # shipped
    done = bastion(
        tmp_path, "import", "bundled:smollm2", "--name", "acme-assistant", "--base", "SmolLM2-135M-Instruct",
        "--key", str(pair.private_key), "--org", str(org), "--policy", "sovereign-strict", "--json",
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    attrs = doc["assessment"]["attributes"]
    assert (attrs["developer"], attrs["developer_country"]) == ("Acme Defence", "GB")
    assert attrs["lineage"][:2] == ["acme-assistant", "SmolLM2-135M-Instruct"]
    assert attrs["lineage_evidence"] == "supported"
    assert doc["assessment"]["identity"]["lineage"]["claim"] == "supported"
    shown = json.loads(bastion(tmp_path, "models", "show", "acme-assistant", "--json").stdout)
    assert shown["identity"]["declared_base"] == "SmolLM2-135M-Instruct"
    log = bastion(tmp_path, "audit", "search", "--json")
    assert "model.admit" in log.stdout and "acme-assistant" in log.stdout


def test_developer_without_a_base_is_a_usage_error(tmp_path: Path) -> None:
    pair = generate_key_pair(tmp_path / "org")
    done = bastion(
        tmp_path, "import", "bundled:smollm2", "--name", "x", "--developer", "Acme", "--key",
        str(pair.private_key),
    )
    assert done.returncode == 2 and "give its --base too" in done.stderr
