"""Attacks on revocation by someone with write access to the registry database (issue 10, 6-7).

Wave 1 revoked a *name*: ``UPDATE admitted_models SET revoked_at = NULL`` brought a revoked model back,
and so did admitting another file under the revoked name (the running gateway kept serving the revoked
bytes). Now a revocation names digests, is kept in an append-only table, is never forgotten by a
running :class:`Registry`, and is witnessed by the audit log, which the database writer cannot edit
without breaking its signed Merkle tree.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import httpx
import psycopg
import pytest

from bastion import bundled
from bastion.audit import AdminAudit, AuditLog, create_keys, record_admin
from bastion.config import AuditSettings
from bastion.errors import IntegrityError, PolicyDenied
from bastion.policy import Organisation
from bastion.registry import AdmittedRef, Registry, admit, open_admitted, revoked_in_audit_log
from bastion.signing import generate_key_pair, load_public_key
from bastion.store import PostgresTarget, Target
from tests.adversarial.integrity_gateway import bastion, prepare, start_gateway
from tests.conftest import raw_connect
from tests.serve.conftest import stop

SMOL = "sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def attacker(db: Target, *sql: str) -> None:
    """SQL on the database directly (sqlite3 on the file, psycopg on the server), as someone with write
    access to it would run it."""
    conn = raw_connect(db)
    try:
        for statement in sql:
            conn.execute(statement)
        conn.commit()
    finally:
        conn.close()


#: admissions here are set-up: this file's audit log records only the revocations under test
NO_AUDIT = AdminAudit(AuditSettings(enabled=False))

DROP_GUARDS = (
    "DROP TRIGGER admitted_models_no_unrevoke",
    "DROP TRIGGER revocations_no_update",
    "DROP TRIGGER revocations_no_delete",
)
#: what the database answers when a guard refuses a statement, on either backend
REFUSED = (sqlite3.DatabaseError, psycopg.Error)


def drop_guards(db: Target) -> tuple[str, ...]:
    """The statements that remove the append-only guards on ``db``'s backend."""
    if isinstance(db, PostgresTarget):
        return ("DROP TRIGGER admitted_models_no_unrevoke ON admitted_models",
                "DROP TRIGGER revocations_append_only ON revocations")
    return DROP_GUARDS


@pytest.fixture()
def world(tmp_path: Path, store_target: Target) -> tuple[Target, Path, Organisation, AuditSettings]:
    """Registry and audit log on one backend (PostgreSQL: both in the one database, as store.url does)."""
    pair = generate_key_pair(tmp_path / "org")
    audit = AuditSettings(path=tmp_path / "audit" / "audit.db", signing_key=tmp_path / "audit" / "signing.key",
                          body_key=tmp_path / "audit" / "body.key")
    if isinstance(store_target, PostgresTarget):
        audit = audit.on_postgres(store_target)
    create_keys(audit.signing_key, audit.body_key)
    AuditLog.open(audit).close()
    return store_target, pair.private_key, Organisation(("CN",), (pair.key_hint,)), audit


def admit_smol(registry: Registry, key: Path, org: Organisation, name: str = "smol") -> AdmittedRef:
    admission, assessment = admit(registry, bundled.smollm2(), name, "permissive", key, org, "tester",
                                  audit=NO_AUDIT)
    return AdmittedRef(admission.id, name, admission.weights_digest, admission.root_digest)


def admitted_then_revoked(world: tuple[Target, Path, Organisation, AuditSettings]) -> tuple[Registry, AdmittedRef]:
    """SmolLM2 admitted as "smol", then revoked (registry row and audit entry)."""
    db, key, org, audit = world
    registry = Registry(db)
    ref = admit_smol(registry, key, org)
    revoke(registry, audit, "smol")
    return registry, ref


def revoke(registry: Registry, audit: AuditSettings, name: str) -> None:
    """What 'bastion models revoke' does: the registry row, then the audit log's witness entry."""
    a = registry.revoke(name, "tester", "backdoor found")
    record_admin(audit, "model.revoke", before_digest=a.weights_digest,
                 details={"name": name, "root_digest": a.root_digest, "admission_id": a.id})


def test_setting_revoked_at_back_to_null_does_not_unrevoke(
    world: tuple[Target, Path, Organisation, AuditSettings],
) -> None:
    db, key, org, audit = world
    registry = Registry(db)
    ref = admit_smol(registry, key, org)
    assert registry.still_admitted(ref.id, ref.weights_digest)
    revoke(registry, audit, "smol")
    assert not registry.still_admitted(ref.id, ref.weights_digest)
    with pytest.raises(REFUSED, match="cannot be undone"):
        attacker(db, "UPDATE admitted_models SET revoked_at = NULL")
    attacker(db, *drop_guards(db), "UPDATE admitted_models SET revoked_at = NULL")
    assert not registry.still_admitted(ref.id, ref.weights_digest)  # the revocations table names the bytes
    assert not Registry(db).still_admitted(ref.id, ref.weights_digest)  # also after a restart


def test_deleting_the_revocation_rows_too_does_not_unrevoke(
    world: tuple[Target, Path, Organisation, AuditSettings],
) -> None:
    db, key, org, audit = world
    registry = Registry(db, witness=lambda: revoked_in_audit_log(audit.target()))
    ref = admit_smol(registry, key, org)
    revoke(registry, audit, "smol")
    with pytest.raises(REFUSED, match="append-only"):
        attacker(db, "DELETE FROM revocations")
    attacker(db, *drop_guards(db), "DELETE FROM revocations", "UPDATE admitted_models SET revoked_at = NULL")
    assert not registry.still_admitted(ref.id, ref.weights_digest)  # a running registry never forgets
    # A restarted one learns it from the audit log, which the attacker cannot edit unnoticed.
    fresh = Registry(db, witness=lambda: revoked_in_audit_log(audit.target()))
    assert not fresh.still_admitted(ref.id, ref.weights_digest)
    with pytest.raises(PolicyDenied, match="revoked"):
        open_admitted(fresh, "smol", bundled.smollm2(), load_public_key(key.with_suffix(".pub.pem")))
    # Without a witness the database alone cannot know (the documented limit of audit.enabled = false).
    assert Registry(db).still_admitted(ref.id, ref.weights_digest)


def test_a_copied_admission_row_of_revoked_bytes_is_refused(
    world: tuple[Target, Path, Organisation, AuditSettings],
) -> None:
    db, key, _, _ = world
    admitted_then_revoked(world)
    # The signature covers the manifest, so a copied row carries a valid signature for the same bytes.
    attacker(db, "INSERT INTO admitted_models (name, path, weights_digest, root_digest, signature, signer,"
                 " verdict, findings, bom, identity, decision, policy, admitted_at, admitted_by)"
                 " SELECT 'smol-again', path, weights_digest, root_digest, signature, signer, verdict, findings,"
                 " bom, identity, decision, policy, admitted_at, admitted_by FROM admitted_models")
    with pytest.raises(PolicyDenied, match="revoked"):
        open_admitted(Registry(db), "smol-again", bundled.smollm2(), load_public_key(key.with_suffix(".pub.pem")))


def test_revocation_is_of_the_bytes_under_every_name(world: tuple[Target, Path, Organisation, AuditSettings]) -> None:
    db, key, org, audit = world
    registry = Registry(db)
    first = admit_smol(registry, key, org, "smol")
    twin = admit_smol(registry, key, org, "smol-twin")  # the same file admitted twice
    revoke(registry, audit, "smol")
    assert not registry.still_admitted(first.id, first.weights_digest)
    assert not registry.still_admitted(twin.id, twin.weights_digest)
    assert registry.list() == []  # both rows say so, not only the one named
    with pytest.raises(PolicyDenied, match="final for the bytes"):
        admit_smol(registry, key, org, "smol")


def test_a_new_admission_under_a_revoked_name_does_not_revive_the_verified_one(
    world: tuple[Target, Path, Organisation, AuditSettings], tmp_path: Path
) -> None:
    _, key, org, _ = world
    registry, ref = admitted_then_revoked(world)
    other = tmp_path / "other.gguf"
    other.write_bytes(bundled.smollm2().read_bytes()[:-1] + b"\x00")
    admit(registry, other, "smol", "permissive", key, org, "tester", audit=NO_AUDIT)
    assert registry.get("smol").weights_digest != SMOL
    assert not registry.still_admitted(ref.id, ref.weights_digest)  # what the gateway asks: its own admission


def test_an_edited_weights_digest_column_is_caught_at_load(
    world: tuple[Target, Path, Organisation, AuditSettings],
) -> None:
    db, key, org, _ = world
    registry = Registry(db)
    admit_smol(registry, key, org)
    attacker(db, "UPDATE admitted_models SET weights_digest = 'sha256:" + "0" * 64 + "'")
    with pytest.raises(IntegrityError, match="signed manifest"):
        open_admitted(Registry(db), "smol", bundled.smollm2(), load_public_key(key.with_suffix(".pub.pem")))


# -- the same attacks against a real gateway process and the real CLI -------------------------------


def ask(port: int, key: str) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{port}/v1/completions", timeout=120,
                      json={"model": "smol", "prompt": "The capital of France is", "max_tokens": 4, "temperature": 0},
                      headers={"Authorization": f"Bearer {key}"})


@pytest.mark.slow
def test_gateway_revocation_survives_readmission_by_name_and_database_edits(tmp_path: Path) -> None:
    home = tmp_path
    model, port, key = prepare(home)
    proc = start_gateway(home, port)
    try:
        assert ask(port, key).headers["x-bastion-model-digest"] == SMOL
        done = bastion(home, "models", "revoke", "smol", "--reason", "backdoor found")
        assert done.returncode == 0, done.stderr
        assert ask(port, key).status_code == 403

        # Finding 6: the operator deploys another build at the same path and admits it under the name.
        tmp = home / "new.gguf"
        tmp.write_bytes(bundled.smollm2().read_bytes()[:-1] + b"\x00")
        os.replace(tmp, model)
        readmitted = bastion(home, "admit", str(model), "--name", "smol", "--key", str(home / "org" / "signing-key.pem"),
                             "--policy", "permissive", "--json")
        assert readmitted.returncode == 0, readmitted.stderr
        new_digest = json.loads(readmitted.stdout)["admitted"]["weights_digest"]
        for _ in range(3):  # neither the revoked bytes it holds nor the new ones it never verified
            refused = ask(port, key)
            assert refused.status_code == 403, refused.text
            assert "revoked" in refused.json()["error"]["message"]
    finally:
        stop(proc)

    # The new admission takes effect once verified and loaded: at the next start.
    proc = start_gateway(home, port)
    try:
        served = ask(port, key)
        assert served.status_code == 200 and served.headers["x-bastion-model-digest"] == new_digest
        assert bastion(home, "models", "revoke", "smol").returncode == 0
        assert ask(port, key).status_code == 403
        # Finding 7: undo the revocation in the database, guards and revocation rows included.
        attacker(home / "bastion.db", *DROP_GUARDS, "DELETE FROM revocations",
                 "UPDATE admitted_models SET revoked_at = NULL, revoked_by = NULL WHERE weights_digest = '"
                 + new_digest + "'")
        for _ in range(3):
            assert ask(port, key).status_code == 403
    finally:
        stop(proc)

    # After a restart the audit log's model.revoke entry still says no (/healthz is 503: nothing serves).
    proc = start_gateway(home, port, ready="/openapi.json")
    try:
        refused = ask(port, key)
        assert refused.status_code == 403 and "revoked" in refused.json()["error"]["message"]
        assert "smol REFUSED" in (home / "serve.log").read_text()
    finally:
        stop(proc)
