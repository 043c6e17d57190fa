"""The CLI as a user runs it: a real process, real exit codes, one JSON document with --json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def bastion(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, "BASTION_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "bastion.cli.main", *args], capture_output=True, text=True, env=env, timeout=120,
        check=False,
    )


def test_keys_lifecycle_with_json_output_is_recorded_in_the_audit_log(tmp_path: Path) -> None:
    assert bastion("audit", "init", home=tmp_path).returncode == 0
    created = bastion("keys", "create", "alice", "--model", "smollm2", "--group", "ops", "--json", home=tmp_path)
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["key"].startswith(f"bst_{key['id']}_")
    listed = json.loads(bastion("keys", "list", "--json", home=tmp_path).stdout)
    assert [k["id"] for k in listed] == [key["id"]]
    assert "key" not in listed[0]
    revoked = bastion("keys", "revoke", key["id"], "--json", home=tmp_path)
    assert json.loads(revoked.stdout)["revoked_at"]
    assert json.loads(bastion("keys", "list", "--json", home=tmp_path).stdout) == []
    entries = json.loads(bastion("audit", "search", "--json", home=tmp_path).stdout)
    actions = [e.get("action") for e in entries]
    assert {"audit.init", "key.create", "key.revoke"} == set(actions)
    assert bastion("audit", "verify", home=tmp_path).returncode == 0


def test_key_creation_is_refused_while_the_audit_log_is_not_initialised(tmp_path: Path) -> None:
    refused = bastion("keys", "create", "alice", "--model", "smollm2", home=tmp_path)
    assert refused.returncode == 4
    assert "bastion audit init" in refused.stderr
    assert bastion("keys", "list", "--json", home=tmp_path).stdout.strip() == "[]"


def test_errors_have_a_message_a_hint_and_a_distinct_exit_code(tmp_path: Path) -> None:
    bastion("audit", "init", home=tmp_path)
    missing = bastion("keys", "revoke", "feedfeedfeed", home=tmp_path)
    assert missing.returncode == 5
    assert "no API key with id" in missing.stderr and "hint:" in missing.stderr
    assert "Traceback" not in missing.stderr
    as_json = bastion("keys", "revoke", "feedfeedfeed", "--json", home=tmp_path)
    assert json.loads(as_json.stdout)["error"]["code"] == "not_found"
    bad_config = bastion("keys", "list", "--config", str(tmp_path / "nope.toml"), home=tmp_path)
    assert bad_config.returncode == 4
    usage = bastion("keys", "create", home=tmp_path)
    assert usage.returncode == 2


def test_doctor_reports_a_healthy_install_and_a_broken_config(tmp_path: Path) -> None:
    fresh = json.loads(bastion("doctor", "--json", home=tmp_path / "empty").stdout)
    assert fresh["ok"] is False  # nothing initialised: serve would refuse to start
    key = next(c for c in fresh["checks"] if c["name"] == "audit signing key")
    assert key["status"] == "fail" and "bastion audit init" in key["fix"]
    assert bastion("init", "--port", "0", home=tmp_path).returncode == 0
    assert bastion("admit", "bundled:smollm2", "--name", "smollm2", home=tmp_path).returncode == 0
    ok = bastion("doctor", "--json", home=tmp_path)
    assert ok.returncode == 0, ok.stdout
    report = json.loads(ok.stdout)
    assert report["ok"] is True
    assert {c["name"] for c in report["checks"]} >= {
        "llama.cpp", "bundled model smollm2", "store", "egress guard", "audit log", "audit signing key",
        "model smollm2 admitted", "registry public key", "access policy", "port", "gateway",
    }
    cfg = tmp_path / "b.toml"
    cfg.write_text('[[models]]\nname = "x"\npath = "/nonexistent/model.gguf"\n[egress]\nguard = false\n')
    broken = json.loads(bastion("doctor", "--config", str(cfg), "--json", home=tmp_path).stdout)
    statuses = {c["name"]: c["status"] for c in broken["checks"]}
    assert statuses["model x"] == "fail" and statuses["egress guard"] == "warn"
    assert broken["ok"] is False
