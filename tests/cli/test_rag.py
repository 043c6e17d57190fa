"""``bastion rag`` end to end in real processes: ingest with a bad file (exit 3), search as keys and
groups, operator views, audited deletes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.rag.corpus import CLEARANCE, pdf_bytes

BASTION = [sys.executable, "-m", "bastion.cli.main"]


def bastion(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BASTION_CONFIG": str(config), "COLUMNS": "200"}
    return subprocess.run([*BASTION, *args], capture_output=True, text=True, env=env, timeout=300)


def test_rag_commands_end_to_end(tmp_path: Path) -> None:
    config = tmp_path / "bastion.toml"
    clearance = ", ".join(f'{g} = "{lvl}"' for g, lvl in CLEARANCE.items())
    config.write_text(f"[policy]\nclearance = {{ {clearance} }}\n")
    assert bastion(config, "audit", "init").returncode == 0
    docs = tmp_path / "docs"
    (docs / "secret").mkdir(parents=True)
    (docs / "secret" / "folder.meta.toml").write_text('classification = "secret"\ngroups = ["intel"]\n')
    (docs / "secret" / "op.pdf").write_bytes(
        pdf_bytes("Operation Nightjar", ["NIGHTJAR moves radar spares north."])
    )
    (docs / "secret" / "broken.docx").write_bytes(b"not a docx")
    (docs / "menu.md").write_text("# Canteen\n\nSoup on Tuesday, radar-free zone.\n")

    assert bastion(config, "rag", "create", "kb", "--description", "test").returncode == 0
    ingest = bastion(
        config, "rag", "ingest", "kb", str(docs), "--classification", "official", "-g", "staff", "--json"
    )
    assert ingest.returncode == 3, ingest.stderr
    report = json.loads(ingest.stdout)
    assert (report["ingested"], report["failed"]) == (2, 1)
    broken = next(f for f in report["files"] if f["status"] == "failed")
    assert "broken.docx" in broken["error"]["message"] and broken["error"]["hint"]
    human = bastion(config, "rag", "ingest", "kb", str(docs), "--classification", "official", "-g", "staff")
    assert human.returncode == 3 and "broken.docx" in human.stderr and "Traceback" not in human.stderr

    key = json.loads(bastion(config, "keys", "create", "bob", "-m", "*", "-g", "staff", "--json").stdout)
    as_bob = json.loads(
        bastion(config, "rag", "search", "kb", "NIGHTJAR radar", "--key", key["id"], "--json").stdout
    )
    assert [h["title"] for h in as_bob["hits"]] == ["Canteen"]
    as_intel = json.loads(
        bastion(config, "rag", "search", "kb", "NIGHTJAR radar", "-g", "intel", "--json").stdout
    )
    top = as_intel["hits"][0]
    assert top["title"] == "Operation Nightjar" and "NIGHTJAR" in top["text"]
    assert bastion(config, "rag", "search", "kb", "x").returncode == 2  # no principal

    shown = json.loads(bastion(config, "rag", "show", "kb", "--json").stdout)
    assert shown["documents"] == 2
    listed = json.loads(bastion(config, "rag", "list", "--json").stdout)
    assert [c["name"] for c in listed] == ["kb"]

    gone = bastion(config, "rag", "delete", "kb", "--document", top["document_id"], "--json")
    assert gone.returncode == 0 and json.loads(gone.stdout)["id"] == top["document_id"]
    assert bastion(config, "rag", "delete", "kb", "--document", top["document_id"]).returncode == 5
    entries = json.loads(bastion(config, "audit", "search", "--kind", "admin", "--json").stdout)
    actions = json.dumps(entries)
    assert "rag.document.delete" in actions and top["document_id"] in actions and "rag.ingest" in actions
    assert bastion(config, "rag", "delete", "kb").returncode == 0
    assert bastion(config, "rag", "show", "kb").returncode == 5
