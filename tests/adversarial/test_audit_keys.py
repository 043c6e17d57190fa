"""Finding 13: the audit signing key sat beside the database, so a writer of one could read the other,
rewrite history and re-sign it; ``verify --pubkey`` then passed.

Now the key lives outside BASTION_HOME and is refused when others can read it, and heads kept elsewhere
(``verify --against``, ``consistency``) catch a rewrite or truncation even by someone holding the key.
Every step runs the real CLI on a real SQLite log.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from bastion.audit import AuditLog, RequestRecord, SignedTreeHead
from bastion.audit.keys import load_signing_key
from bastion.audit.merkle import Frontier, leaf_hash
from bastion.config import load_settings

BASTION = [sys.executable, "-m", "bastion.cli.main"]


def bastion(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BASTION, *args], capture_output=True, text=True, env=env or dict(os.environ), timeout=120, check=False
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def append(n: int, start: int = 0) -> None:
    """Append ``n`` request entries as the gateway would; closing signs a tree head over them."""
    log = AuditLog.open(load_settings().audit)
    for i in range(start, start + n):
        log.append(
            RequestRecord(f"req-{i}", "key_0001", "smollm2", "sha256:" + "ab" * 32, "llama_cpp", "allow", 200,
                          3, 7, 120.0, request_body=b'{"q": %d}' % i, response_body=b'{"a": %d}' % i)
        )  # fmt: skip
    log.close()


def keep_head(path: Path) -> Path:
    """What an operator's cron job does: sign a head now and ship it off the box (here: another folder)."""
    signed = bastion("audit", "sign", "--json")
    assert signed.returncode == 0, signed.stderr
    path.write_text(signed.stdout)
    return path


@pytest.fixture
def log_with_heads(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A log of 1 + 10 entries with a head kept elsewhere, then 10 more entries and a second kept head."""
    assert bastion("audit", "init").returncode == 0
    siem = tmp_path / "siem"
    siem.mkdir()
    append(10)
    old = keep_head(siem / "head-11.json")
    append(10, start=10)
    new = keep_head(siem / "head-21.json")
    return Path(os.environ["BASTION_HOME"]) / "audit" / "audit.db", old, new


def resign_everything(db: Path, rewrite: dict[int, bytes]) -> None:
    """Mallory holds the signing key: replace leaves, recompute hashes, frontier and every signed root."""
    key = load_signing_key(load_settings().audit.signing_key)
    conn = sqlite3.connect(db)
    for seq, leaf in rewrite.items():  # leaf, its hash and its search column, as a careful forger would
        principal = orjson.loads(leaf)["principal"]
        conn.execute(
            "UPDATE audit_entries SET leaf = ?, leaf_hash = ?, principal = ? WHERE seq = ?",
            (leaf, leaf_hash(leaf), principal, seq),
        )
    hashes = [bytes(r[0]) for r in conn.execute("SELECT leaf_hash FROM audit_entries ORDER BY seq")]
    frontier = Frontier()
    for h in hashes:
        frontier.append(h)
    conn.execute("UPDATE audit_tree SET size = ?, frontier = ?", (frontier.size, frontier.to_bytes()))
    conn.execute("UPDATE audit_sequence SET next = ?", (frontier.size,))  # the writers' counter too
    for head_id, origin, size, ts in conn.execute(
        "SELECT id, origin, tree_size, timestamp_ms FROM audit_heads ORDER BY id"
    ).fetchall():
        part = Frontier()
        for h in hashes[:size]:
            part.append(h)
        head = SignedTreeHead.sign(key, origin, size, part.root(), ts)
        conn.execute("UPDATE audit_heads SET root = ?, signature = ? WHERE id = ?", (head.root, head.signature, head_id))
    conn.commit()
    conn.close()


def test_the_signing_key_is_not_kept_in_bastion_home_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as m:  # nothing set: the defaults under $HOME
        for var in ("BASTION_HOME", "BASTION_KEY_HOME", "XDG_CONFIG_HOME"):
            m.delenv(var, raising=False)
        m.setenv("HOME", str(tmp_path / "operator"))
        defaults = load_settings(environ={}).audit
        data = (tmp_path / "operator" / ".local" / "share" / "bastion").resolve()
        assert not defaults.signing_key.resolve().is_relative_to(data)
        assert not defaults.body_key.resolve().is_relative_to(data)
        assert not defaults.signing_key.resolve().is_relative_to(defaults.path.resolve().parent)
    home = Path(os.environ["BASTION_HOME"]).resolve()
    init = bastion("audit", "init", "--json")
    assert init.returncode == 0, init.stderr
    assert not Path(json.loads(init.stdout)["signing_key"]).resolve().is_relative_to(home)
    leaked = [p for p in home.rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()[:64]]
    assert leaked == [], f"a private key was written inside BASTION_HOME: {leaked}"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_signing_key_others_can_read_is_refused_by_sign_and_by_the_gateway(mode: int, tmp_path: Path) -> None:
    assert bastion("audit", "init").returncode == 0
    key = load_settings().audit.signing_key
    key.chmod(mode)
    signed = bastion("audit", "sign")
    assert signed.returncode == 4, signed.stderr
    assert str(key) in signed.stderr and f"chmod 600 {key}" in signed.stderr and "Traceback" not in signed.stderr
    config = tmp_path / "bastion.toml"
    config.write_text('[registry]\nenforce = false\n[[models]]\nname = "smollm2"\npath = "bundled:smollm2"\n')
    served = bastion("serve", "--config", str(config), "--port", str(free_port()))
    assert served.returncode == 4 and f"chmod 600 {key}" in served.stderr
    doctor = json.loads(bastion("doctor", "--json").stdout)
    check = next(c for c in doctor["checks"] if c["name"] == "audit signing key")
    assert check["status"] == "fail" and f"chmod 600 {key}" in check["fix"]
    key.chmod(0o600)
    assert bastion("audit", "sign").returncode == 0


def test_a_body_key_others_can_read_is_refused(tmp_path: Path) -> None:
    assert bastion("audit", "init").returncode == 0
    body = load_settings().audit.body_key
    body.chmod(0o644)
    config = tmp_path / "bastion.toml"
    config.write_text('[audit]\nstore_bodies = "full"\n')
    shown = bastion("audit", "sign", "--config", str(config))
    assert shown.returncode == 4 and f"chmod 600 {body}" in shown.stderr


def test_a_rewrite_re_signed_with_the_real_key_is_caught_by_a_head_kept_elsewhere(
    log_with_heads: tuple[Path, Path, Path],
) -> None:
    db, old, new = log_with_heads
    conn = sqlite3.connect(db)
    leaf = bytes(conn.execute("SELECT leaf FROM audit_entries WHERE seq = 5").fetchone()[0])
    conn.close()
    doc = orjson.loads(leaf)
    doc["principal"] = "key_9999"  # hide who asked
    resign_everything(db, {5: orjson.dumps(doc)})

    plain = bastion("audit", "verify", "--json")
    assert plain.returncode == 0, "the database alone cannot show a rewrite re-signed with the real key"
    against = bastion("audit", "verify", "--against", str(new), "--json")
    assert against.returncode == 8, against.stdout
    kinds = [p["kind"] for p in json.loads(against.stdout)["problems"]]
    assert kinds == ["outside-rewritten"]
    both = bastion("audit", "verify", "--against", str(old), "--against", str(new))
    assert both.returncode == 8 and "rewritten" in both.stdout
    proof = bastion("audit", "consistency", str(old), str(new))
    assert proof.returncode == 8 and "rewritten" in proof.stderr


def test_cutting_the_log_back_to_an_earlier_head_is_caught_by_a_head_kept_elsewhere(
    log_with_heads: tuple[Path, Path, Path],
) -> None:
    db, old, new = log_with_heads
    size = json.loads(old.read_text())["head"]["tree_size"]
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM audit_entries WHERE seq >= ?", (size,))
    conn.execute("DELETE FROM audit_heads WHERE tree_size > ?", (size,))
    conn.commit()
    conn.close()
    resign_everything(db, {})  # the frontier matches the shorter log again

    assert bastion("audit", "verify").returncode == 0  # the database alone: a shorter, valid log
    against = bastion("audit", "verify", "--against", str(new), "--json")
    assert against.returncode == 8
    problem = json.loads(against.stdout)["problems"][0]
    assert problem["kind"] == "outside-truncated" and problem["entry"] == size
    assert bastion("audit", "verify", "--against", str(old)).returncode == 0
    proof = bastion("audit", "consistency", str(old), str(new))
    assert proof.returncode == 8 and "truncated" in proof.stderr


def test_consistency_proves_an_untouched_log_extends_its_older_head(
    log_with_heads: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, old, new = log_with_heads
    proof = bastion("audit", "consistency", str(old), str(new), "--json")
    assert proof.returncode == 0, proof.stderr
    doc = json.loads(proof.stdout)
    assert doc["ok"] and doc["old_size"] == 11 and doc["new_size"] == 21 and doc["path"]
    assert bastion("audit", "consistency", str(new), str(old)).returncode == 2  # wrong order: a usage error
    forged = json.loads(new.read_text())
    forged["head"]["tree_size"] = 20
    fake = tmp_path / "fake.json"
    fake.write_text(json.dumps(forged))
    refused = bastion("audit", "consistency", str(old), str(fake))
    assert refused.returncode == 8 and "not signed by key" in refused.stderr
