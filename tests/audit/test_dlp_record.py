"""DLP in the audit log: types, counts and actions in the leaf; the sent body stored apart, encrypted."""

from __future__ import annotations

import dataclasses
import json

from bastion.audit import AuditLog, open_store
from bastion.audit.records import encode_leaf
from bastion.store import Target

from .conftest import Keys, make_record

DLP = {"findings": {"email": 1}, "marking_level": -1, "actions": {"cloud": "pseudonymise"}}


def test_dlp_summary_is_in_the_leaf_and_absent_when_dlp_did_not_run() -> None:
    record = dataclasses.replace(make_record(1), dlp=DLP)
    leaf = json.loads(encode_leaf(0, record, "hashes"))
    assert leaf["dlp"] == DLP and list(leaf)[-1] == "dlp"
    assert "dlp" not in json.loads(encode_leaf(0, make_record(1), "hashes"))  # older leaves keep their form


def test_full_bodies_keep_the_sent_body_apart_from_the_original(store_target: Target, keys: Keys) -> None:
    log = AuditLog(
        open_store(store_target), signer=keys.signer, body_cipher=keys.cipher, store_bodies="full"
    )
    sent = b'{"messages":[{"role":"user","content":"mail [EMAIL_1]"}]}'
    ref = log.append(dataclasses.replace(make_record(1), dlp=DLP, sent_body=sent))
    log.close()
    stored = open_store(store_target).bodies(ref.seq)
    assert set(stored) == {"request", "response", "sent"}
    assert b"EMAIL_1" not in stored["sent"]  # encrypted at rest
    assert keys.cipher.decrypt(ref.seq, "sent", stored["sent"]) == sent
