"""The README documents every audit command and setting, and its standalone proof checker really works."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from bastion.audit import AuditLog, open_store
from bastion.audit.proofs import build_proof
from bastion.cli.audit import app
from bastion.config import AuditSettings
from bastion.store import Target

from .conftest import Keys, make_record

README = Path(__file__).parents[2] / "README.md"


def audit_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Prove: the tamper-evident audit log")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_every_audit_command_and_setting_is_documented() -> None:
    section = audit_section()
    commands = [c.name for c in app.registered_commands]
    assert commands, "no commands registered"
    for name in commands:
        assert f"bastion audit {name}" in section or f"`{name}`" in section, f"'{name}' is not documented"
    for setting in AuditSettings.model_fields:
        assert f"`{setting}`" in section, f"audit.{setting} is not documented"


def readme_script() -> str:
    section = audit_section()
    match = re.search(r"<!-- audit-check-proof-script -->\n```python\n(.*?)```", section, re.S)
    assert match, "the standalone checker is missing from the README"
    return match.group(1)


def test_the_readme_proof_checker_accepts_a_real_proof_and_rejects_a_forged_one(store_target: Target, tmp_path: Path, keys: Keys) -> None:
    script = tmp_path / "check_proof.py"
    script.write_text(readme_script())
    assert len(script.read_text().splitlines()) <= 25
    log = AuditLog(open_store(store_target), signer=keys.signer)
    for i in range(11):
        log.append(make_record(i))
    log.close()
    store = open_store(store_target)
    for seq in (0, 6, 10):
        proof = tmp_path / f"proof{seq}.json"
        proof.write_text(json.dumps(build_proof(store, seq).to_json()))
        ok = subprocess.run(
            [sys.executable, str(script), str(proof), str(keys.files.public_key)],
            capture_output=True,
            text=True,
        )
        assert ok.returncode == 0 and f"OK: entry {seq} " in ok.stdout, ok.stderr
    doc = json.loads((tmp_path / "proof6.json").read_text())
    doc["leaf"] = doc["leaf"].replace('"status":200', '"status":500')
    (tmp_path / "forged.json").write_text(json.dumps(doc))
    bad = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "forged.json"), str(keys.files.public_key)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "NOT in the signed log" in bad.stderr
