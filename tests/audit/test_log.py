"""AuditLog: durable group-committed appends, bodies, tree heads and the settings seam."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bastion.audit import AuditLog, BodyCipher, Filters, RequestRecord, open_store
from bastion.audit.records import encode_leaf, sha256_hex
from bastion.audit.verify import verify_log
from bastion.config import load_settings
from bastion.errors import ConfigError, IntegrityError, UsageError
from bastion.store import PostgresTarget, Target
from tests.conftest import raw_sql, store_toml

from .conftest import Keys, append_many, make_record


def test_append_request_returns_only_after_the_entry_is_committed(store_target: Target, keys: Keys) -> None:
    log = AuditLog(open_store(store_target), signer=keys.signer)

    async def run() -> None:
        ref = await log.append_request(make_record(1))
        # A separate connection (as another process would) already sees the committed row.
        rows = raw_sql(store_target, "SELECT leaf FROM audit_entries WHERE seq = ?", (ref.seq,))
        assert rows and b'"request_id":"req-00000001"' in bytes(rows[0][0])

    asyncio.run(run())
    log.close()


def test_concurrent_appends_are_group_committed_with_consecutive_indexes(store_target: Target, keys: Keys) -> None:
    log = AuditLog(open_store(store_target), signer=keys.signer)

    async def run() -> list[int]:
        refs = await asyncio.gather(*(log.append_request(make_record(i)) for i in range(2000)))
        return [r.seq for r in refs]

    seqs = asyncio.run(run())
    log.close()
    assert sorted(seqs) == list(range(2000))
    store = open_store(store_target)
    assert store.count() == 2000
    assert verify_log(store, keys.public).ok


def test_leaf_is_the_documented_encoding_and_digests_come_from_the_bodies(store_target: Target, keys: Keys) -> None:
    log = AuditLog(open_store(store_target), signer=keys.signer)
    rec = make_record(5)
    ref = log.append(rec)
    log.close()
    entry = open_store(store_target).entry(ref.seq)
    assert entry is not None
    assert entry.leaf == encode_leaf(ref.seq, rec, "hashes")
    assert entry.leaf.startswith(b'{"v":1,"seq":0,"kind":"request",')
    assert sha256_hex(rec.request_body or b"").encode() in entry.leaf


def test_store_bodies_none_records_no_digest_of_the_bodies(store_target: Target, keys: Keys) -> None:
    log = AuditLog(open_store(store_target), signer=keys.signer, store_bodies="none")
    ref = log.append(make_record(5))
    log.close()
    store = open_store(store_target)
    entry = store.entry(ref.seq)
    assert entry is not None and b'"request_sha256":null,"response_sha256":null' in entry.leaf
    assert store.bodies(ref.seq) == {}


def test_full_bodies_are_encrypted_at_rest_and_bound_to_their_entry(store_target: Target, keys: Keys) -> None:
    log = AuditLog(
        open_store(store_target), signer=keys.signer, body_cipher=keys.cipher, store_bodies="full"
    )
    first = log.append(make_record(1))
    second = log.append(make_record(2))
    log.close()
    store = open_store(store_target)
    stored = store.bodies(first.seq)
    assert set(stored) == {"request", "response"}
    assert b"question 1" not in stored["request"]  # ciphertext, not plaintext
    assert keys.cipher.decrypt(first.seq, "request", stored["request"]) == make_record(1).request_body
    # The same ciphertext moved to another entry fails authentication (AAD binds entry and part).
    with pytest.raises(IntegrityError, match="entry 1"):
        keys.cipher.decrypt(second.seq, "request", stored["request"])
    with pytest.raises(IntegrityError):
        keys.cipher.decrypt(first.seq, "response", stored["request"])
    other = BodyCipher(b"\x01" * 32)
    with pytest.raises(IntegrityError, match="wrong key"):
        other.decrypt(first.seq, "request", stored["request"])


def test_full_bodies_without_a_body_key_is_a_config_error(store_target: Target, keys: Keys) -> None:
    with pytest.raises(ConfigError, match="body key"):
        AuditLog(open_store(store_target), signer=keys.signer, store_bodies="full")


def test_a_digest_that_contradicts_the_body_is_refused_and_nothing_is_written(store_target: Target, keys: Keys) -> None:
    log = AuditLog(open_store(store_target), signer=keys.signer)
    bad = make_record(1, request_sha256="0" * 64)
    with pytest.raises(UsageError, match="request_sha256 does not match"):
        log.append(bad)
    log.close()
    assert open_store(store_target).count() == 0


def test_admin_details_that_are_not_json_are_refused(store_target: Target, keys: Keys) -> None:
    log = AuditLog(open_store(store_target), signer=keys.signer)
    with pytest.raises(UsageError, match="cannot be encoded"):
        log.append_admin("key.created", "os:alice", details={"when": object()})
    log.close()


def test_appending_after_close_is_refused(store_target: Target, keys: Keys) -> None:
    log = AuditLog(open_store(store_target), signer=keys.signer)
    log.close()
    with pytest.raises(UsageError, match="closed"):
        log.append_admin("x", "y")


def test_heads_are_signed_every_n_entries_and_on_close(store_target: Target, keys: Keys) -> None:
    log = AuditLog(open_store(store_target), signer=keys.signer, sth_every=100, sth_interval_s=3600)
    for i in range(250):
        log.append(make_record(i))
    final = log.close()
    heads = open_store(store_target).heads()
    assert [h.tree_size for h in heads] == [1, 101, 201, 250]  # first entry, every 100, then close
    assert final is not None and final.tree_size == 250
    assert all(h.verify(keys.public) for h in heads)


def test_an_idle_log_signs_its_unsigned_tail_after_the_interval(store_target: Target, keys: Keys) -> None:
    log = AuditLog(open_store(store_target), signer=keys.signer, sth_every=10**6, sth_interval_s=0.2)
    log.append(make_record(0))  # the very first head is signed at once
    log.append(make_record(1))
    store = open_store(store_target)
    deadline = asyncio.run(_wait_for(lambda: store.heads()[-1].tree_size == 2, 5.0))
    log.close()
    assert deadline, "the writer did not sign the idle tail within 5 s"


async def _wait_for(cond: object, timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if cond():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.05)
    return False


def test_open_from_settings_uses_the_configured_paths(tmp_path: Path, keys: Keys, store_target: Target) -> None:
    config = tmp_path / "bastion.toml"
    on_postgres = isinstance(store_target, PostgresTarget)
    config.write_text(
        (store_toml(store_target) if on_postgres else "")
        + "[audit]\n"
        f'path = "{tmp_path / "cfg.db"}"\n'
        f'signing_key = "{keys.files.signing_key}"\n'
        f'body_key = "{keys.files.body_key}"\n'
        'store_bodies = "full"\n'
    )
    settings = load_settings(config).audit
    assert settings.target() == (store_target if on_postgres else tmp_path / "cfg.db")
    log = AuditLog.open(settings)
    ref = log.append(make_record(3))
    log.close()
    assert open_store(settings.target()).bodies(ref.seq)


def test_missing_signing_key_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    settings = load_settings(None).audit
    with pytest.raises(ConfigError, match="signing.key does not exist") as exc:
        AuditLog.open(settings)
    assert "bastion audit init" in exc.value.hint


def test_a_cancelled_request_task_does_not_lose_or_break_the_log(store_target: Target, keys: Keys) -> None:
    log = AuditLog(open_store(store_target), signer=keys.signer)

    async def run() -> None:
        task = asyncio.ensure_future(log.append_request(make_record(1)))
        await asyncio.sleep(0)
        task.cancel()
        await log.append_request(make_record(2))

    asyncio.run(run())
    log.close()
    assert verify_log(open_store(store_target), keys.public).ok


def test_request_record_to_json_has_no_bodies() -> None:
    doc = RequestRecord(
        "r", "k", "m", "sha256:x", "llama_cpp", "allow", 200, request_body=b"secret"
    ).to_json()
    assert "secret" not in str(doc) and doc["request_sha256"] == sha256_hex(b"secret")


def test_many_appends_verify_with_every_head_consistent(store_target: Target, keys: Keys) -> None:
    log = AuditLog(open_store(store_target), signer=keys.signer, sth_every=250)
    append_many(log, 0, 3000)
    log.close()
    report = verify_log(open_store(store_target), keys.public)
    assert report.ok and report.entries == 3000 and report.signed_size == 3000 and report.heads >= 3


def test_create_keys_refuses_to_overwrite_and_writes_private_files_0600(tmp_path: Path, keys: Keys) -> None:
    from bastion.audit import create_keys

    with pytest.raises(UsageError, match="refusing to replace"):
        create_keys(keys.files.signing_key, tmp_path / "other-body.key")
    assert not (tmp_path / "other-body.key").exists()
    assert keys.files.signing_key.stat().st_mode & 0o777 == 0o600
    assert keys.files.body_key.stat().st_mode & 0o777 == 0o600


def test_create_keys_leaves_nothing_behind_when_a_file_cannot_be_written(tmp_path: Path) -> None:
    from bastion.audit import create_keys

    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the body key's directory should be")
    with pytest.raises(ConfigError, match="cannot write audit key"):
        create_keys(tmp_path / "k" / "signing.key", blocked / "body.key")
    assert list((tmp_path / "k").iterdir()) == []


def test_search_columns_with_quotes_control_characters_and_unicode_verify_cleanly(store_target: Target, keys: Keys) -> None:
    log = AuditLog(open_store(store_target), signer=keys.signer)
    odd = ['req "1"\\', "req\n\t\x01\x1f", "r\u00e9q-\u2028-\U0001f600", "</script>/"]
    for i, rid in enumerate(odd):
        log.append(make_record(i, request_id=rid, principal=rid[::-1], model=f"m/{rid}"))
    log.append_admin("key.created", 'os:"quoted"\n')
    log.close()
    store = open_store(store_target)
    report = verify_log(store, keys.public)
    assert report.ok, report.problems
    assert [e.request_id for e in reversed(store.find(Filters(kind="request"), 10))] == odd
