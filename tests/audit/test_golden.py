"""Golden files for the formats other people store: leaves, signed tree heads and proof files.

Ed25519 signatures are deterministic, so a fixed test key, fixed records and a fixed clock give byte-identical
output. Regenerate only on purpose: ``BASTION_REGEN_GOLDEN=1 pytest tests/audit/test_golden.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bastion.audit import AdminRecord, AuditLog, open_store
from bastion.audit.proofs import build_proof, check_proof
from bastion.store import Target

from .conftest import make_record

GOLDEN = Path(__file__).with_name("golden")
# A fixed, public, test-only key: never use it for anything else.
TEST_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
FIXED_TIME = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def build(target: Target) -> dict[str, str]:
    key = Ed25519PrivateKey.from_private_bytes(TEST_SEED)
    store = open_store(target)
    store.set_meta_once("log_id", "golden")
    log = AuditLog(store, signer=key, wall_clock=lambda: FIXED_TIME)
    log.append(AdminRecord("audit.init", "os:golden", time="2026-01-01T00:00:00.000Z"))
    for i in range(1, 6):
        log.append(make_record(i, time=f"2026-01-01T00:00:0{i}.000Z"))
    log.close()
    store = open_store(target)
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "public_key.pem": pub.decode(),
        "proof_v1.json": json.dumps(build_proof(store, 3).to_json(), indent=2, sort_keys=True) + "\n",
        "heads_v1.json": json.dumps([h.to_json() for h in store.heads()], indent=2) + "\n",
    }


def test_formats_match_the_golden_files(store_target: Target) -> None:
    files = build(store_target)  # the same bytes whichever database holds the log
    if os.environ.get("BASTION_REGEN_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        for name, text in files.items():
            (GOLDEN / name).write_text(text)
    for name, text in files.items():
        assert (GOLDEN / name).read_text() == text, f"{name} changed: a stored format must not drift"


def test_the_v1_golden_proof_still_verifies() -> None:
    key = serialization.load_pem_public_key((GOLDEN / "public_key.pem").read_bytes())
    doc = json.loads((GOLDEN / "proof_v1.json").read_text())
    result = check_proof(doc, key)  # type: ignore[arg-type]
    assert result.entry == 3 and result.tree_size == 6 and result.record["request_id"] == "req-00000003"
