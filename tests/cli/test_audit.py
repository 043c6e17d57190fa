"""``bastion audit`` end to end: real processes, real files, the documented exit codes."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bastion.audit import AuditLog, open_store
from bastion.audit.keys import BodyCipher, load_signing_key
from bastion.audit.records import AdminRecord, RequestRecord

BASTION = [sys.executable, "-m", "bastion.cli.main"]


def bastion(*args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if config is not None:
        env["BASTION_CONFIG"] = str(config)
    return subprocess.run([*BASTION, *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def home() -> Path:
    return Path(os.environ["BASTION_HOME"])


@pytest.fixture
def keydir() -> Path:
    return Path(os.environ["BASTION_KEY_HOME"])


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "bastion.toml"
    path.write_text('[audit]\nstore_bodies = "full"\n')
    return path


def fill(home: Path, n: int) -> None:
    """Append ``n`` request records with bodies, as the gateway would, then sign on close."""
    keys = Path(os.environ["BASTION_KEY_HOME"])
    log = AuditLog(
        open_store(home / "audit" / "audit.db"),
        signer=load_signing_key(keys / "audit-signing.key"),
        body_cipher=BodyCipher.from_file(keys / "audit-body.key"),
        store_bodies="full",
    )
    for i in range(n):
        log.append(
            RequestRecord(
                f"req-{i}",
                "key_0001",
                "smollm2",
                "sha256:" + "ab" * 32,
                "llama_cpp",
                "allow",
                200,
                3,
                7,
                120.0,
                request_body=b'{"q": %d}' % i,
                response_body=b'{"a": %d}' % i,
                time=f"2026-01-0{1 + i % 3}T10:00:00.000Z",
            )  # fmt: skip
        )
    log.close()


def test_init_verify_proof_and_check_proof_without_the_database(
    home: Path, config: Path, tmp_path: Path
) -> None:
    init = bastion("audit", "init", "--json", config=config)
    assert init.returncode == 0, init.stderr
    keys = json.loads(init.stdout)
    assert Path(keys["public_key"]).exists() and (Path(keys["signing_key"]).stat().st_mode & 0o777) == 0o600
    fill(home, 30)
    signed = bastion("audit", "sign", "--json", config=config)
    assert signed.returncode == 0 and json.loads(signed.stdout)["head"]["tree_size"] == 31

    verify = bastion("audit", "verify", "--json", config=config)
    assert verify.returncode == 0, verify.stdout
    report = json.loads(verify.stdout)
    assert report["ok"] and report["entries"] == 31 and report["signed_size"] == 31

    proof = bastion("audit", "proof", "17", config=config)
    assert proof.returncode == 0, proof.stderr
    proof_file = tmp_path / "proof.json"
    proof_file.write_text(proof.stdout)
    pub = tmp_path / "auditor.pub"
    pub.write_bytes(Path(keys["public_key"]).read_bytes())
    (home / "audit" / "audit.db").rename(tmp_path / "elsewhere.db")  # the checker has no database
    check = bastion("audit", "check-proof", str(proof_file), "--pubkey", str(pub), "--json")
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)["record"]["request_id"] == "req-16"

    doc = json.loads(proof.stdout)
    doc["leaf"] = doc["leaf"].replace('"status":200', '"status":201')
    proof_file.write_text(json.dumps(doc))
    forged = bastion("audit", "check-proof", str(proof_file), "--pubkey", str(pub))
    assert forged.returncode == 8 and "not in the signed tree" in forged.stderr


def test_verify_exits_8_and_names_the_edited_entry(home: Path, config: Path) -> None:
    assert bastion("audit", "init", config=config).returncode == 0
    fill(home, 20)
    conn = sqlite3.connect(home / "audit" / "audit.db")
    conn.execute("UPDATE audit_entries SET leaf = replace(leaf, X'3230302c', X'3230342c') WHERE seq = 9")
    conn.commit()
    conn.close()
    result = bastion("audit", "verify", config=config)
    assert result.returncode == 8
    assert "TAMPERED" in result.stdout and "first bad entry: 9" in result.stdout


def test_show_decrypts_bodies_and_search_filters(home: Path, config: Path) -> None:
    assert bastion("audit", "init", config=config).returncode == 0
    fill(home, 6)
    show = bastion("audit", "show", "3", "--bodies", "--json", config=config)
    assert show.returncode == 0, show.stderr
    data = json.loads(show.stdout)
    assert data["bodies"] == {"request": '{"q": 2}', "response": '{"a": 2}'}
    found = bastion(
        "audit", "search", "--since", "2026-01-02", "--until", "2026-01-03", "--json", config=config
    )
    assert [r["request_id"] for r in json.loads(found.stdout)] == ["req-4", "req-1"]
    admin = bastion("audit", "search", "--kind", "admin", "--json", config=config)
    assert [r["action"] for r in json.loads(admin.stdout)] == ["audit.init"]


def test_prune_removes_bodies_but_the_log_still_verifies(home: Path, config: Path) -> None:
    assert bastion("audit", "init", config=config).returncode == 0
    fill(home, 6)
    pruned = bastion("audit", "prune", "--before", "2026-01-03", "--json", config=config)
    assert pruned.returncode == 0, pruned.stderr
    assert json.loads(pruned.stdout)["bodies_removed"] == 8  # 4 entries x (request, response)
    assert bastion("audit", "verify", config=config).returncode == 0
    assert json.loads(bastion("audit", "show", "1", "--json", config=config).stdout)["stored_bodies"] == []
    assert json.loads(bastion("audit", "show", "3", "--json", config=config).stdout)["stored_bodies"] == [
        "request",
        "response",
    ]


def test_export_writes_one_checkable_proof_per_line(home: Path, config: Path, tmp_path: Path) -> None:
    assert bastion("audit", "init", config=config).returncode == 0
    fill(home, 9)
    out = tmp_path / "export.jsonl"
    result = bastion(
        "audit", "export", "--since", "2026-01-02", "--until", "2026-01-03", "-o", str(out), config=config
    )
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == 3
    line = tmp_path / "line.json"
    line.write_text(lines[1])
    pub = Path(os.environ["BASTION_KEY_HOME"]) / "audit-signing.key.pub"
    assert bastion("audit", "check-proof", str(line), "--pubkey", str(pub)).returncode == 0


def test_errors_are_one_line_with_a_hint_and_distinct_exit_codes(home: Path, keydir: Path, tmp_path: Path) -> None:
    missing = bastion("audit", "verify")
    assert missing.returncode == 4 and "audit-signing.key.pub does not exist" in missing.stderr
    assert "bastion audit init" in missing.stderr and "Traceback" not in missing.stderr
    assert bastion("audit", "init").returncode == 0
    again = bastion("audit", "init")
    assert again.returncode == 2 and "an audit log already exists" in again.stderr
    nope = bastion("audit", "show", "999")
    assert nope.returncode == 5 and "entry 999 does not exist" in nope.stderr
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    bad = bastion("audit", "check-proof", str(junk), "--pubkey", str(keydir / "audit-signing.key.pub"))
    assert bad.returncode == 3 and "cannot read" in bad.stderr
    date = bastion("audit", "prune", "--before", "yesterday")
    assert date.returncode == 2 and "not a date" in date.stderr
    for name in ("audit-signing.key", "audit-signing.key.pub", "audit-body.key"):
        (keydir / name).unlink()
    rekey = bastion("audit", "init")  # new keys over an old log would orphan its signed heads
    assert rekey.returncode == 2 and "an audit log already exists" in rekey.stderr
    assert not (keydir / "audit-signing.key").exists()


def test_sign_while_another_process_leads_returns_the_leaders_head_and_verify_names_a_stale_tail(
    home: Path, keydir: Path, config: Path
) -> None:
    assert bastion("audit", "init", config=config).returncode == 0
    db = home / "audit" / "audit.db"
    leader = AuditLog(open_store(db), signer=load_signing_key(keydir / "audit-signing.key"), sth_interval_s=3600)
    leader.append_admin("test.leader", "os:tester")
    assert leader.sign_now() is not None and leader.is_leader
    follower = AuditLog(open_store(db), signer=None)  # appends like a gateway that does not lead
    follower.append_admin("test.follower", "os:tester")
    follower.close()
    signed = bastion("audit", "sign", "--json", config=config)  # cannot take the lead: asks the leader
    assert signed.returncode == 0, signed.stderr
    assert json.loads(signed.stdout)["head"]["tree_size"] == 3
    status = json.loads(bastion("audit", "status", "--json", config=config).stdout)
    assert status["leader"].startswith(f"{os.getpid()}@") and status["sequenced"] == 3
    assert status["head"]["tree_size"] == 3 and status["unsigned"] == 0
    leader.close()
    assert json.loads(bastion("audit", "status", "--json", config=config).stdout)["leader"] is None

    # An unsigned tail whose oldest entry was written two hours ago: nobody is signing, verify says so.
    old = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 7200))
    follower = AuditLog(open_store(db), signer=None)
    follower.append(AdminRecord("test.old", "os:tester", time=old))
    follower.close()
    stale = bastion("audit", "verify", config=config)
    assert stale.returncode == 8 and "NOT SIGNED" in stale.stdout and "no process holding" in stale.stdout
    # Nobody leads now: 'audit sign' takes the lead itself and signs the tail.
    assert bastion("audit", "sign", config=config).returncode == 0
    assert bastion("audit", "verify", config=config).returncode == 0
