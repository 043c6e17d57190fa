"""Attacks on the admission path: what vet read must be what is signed.

Before the one-read path, admission handed the path to each stage: vet hashed the file, the manifest
hashed it again, the weights digest a third time, so a file rewritten between those reads was vetted
in one version and signed in another. Now every stage works on one read, and admission refuses if
anything changed after it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from scripts.crafted import sharded_copy

from bastion import bundled
from bastion.audit import AdminAudit, open_store
from bastion.audit.store import Filters
from bastion.config import AuditSettings
from bastion.errors import ConfigError, UnusableInput
from bastion.formats import open_artifact
from bastion.policy import Organisation
from bastion.registry import Registry, admit
from bastion.signing import generate_key_pair
from tests.registry.conftest import audit_log


def _org(tmp_path: Path) -> tuple[Path, Organisation]:
    pair = generate_key_pair(tmp_path / "org")
    return pair.private_key, Organisation(("CN",), (pair.key_hint,))


def test_bytes_rewritten_after_vet_read_them_are_not_signed(tmp_path: Path) -> None:
    key, org = _org(tmp_path)
    audit = audit_log(tmp_path / "audit")
    copy = shutil.copyfile(bundled.smollm2(), tmp_path / "m.gguf")
    artifact = open_artifact(copy)  # what vet will judge
    with copy.open("r+b") as fh:  # the swap: same name, same size, different weights
        fh.seek(60_000_000)
        fh.write(b"\xff" * 16)
    registry = Registry(tmp_path / "b.db")
    with pytest.raises(UnusableInput, match="changed after it was read and hashed"):
        admit(registry, artifact, "m", "permissive", key, org, "tester", audit=AdminAudit(audit))
    assert registry.list(include_revoked=True) == []
    store = open_store(audit.path)
    try:
        leaves = [json.loads(r.leaf) for r in store.find(Filters(kind="admin"), 10)]
    finally:
        store.close()
    assert any("model.admit.refused" in json.dumps(leaf) for leaf in leaves)


def test_a_shard_swapped_in_after_the_read_is_not_signed(tmp_path: Path) -> None:
    key, org = _org(tmp_path)
    folder = sharded_copy(bundled.minilm(), tmp_path / "minilm")
    artifact = open_artifact(folder)
    shard = folder / "model-00002-of-00002.safetensors"
    data = bytearray(shard.read_bytes())
    data[-4:] = b"\x00\x00\x80\x7f"  # one weight becomes +inf
    tmp = folder / ".swap"
    tmp.write_bytes(bytes(data))
    tmp.replace(shard)  # atomically replaced: a new inode under the old name
    with pytest.raises(UnusableInput, match=r"changed: model-00002-of-00002\.safetensors"):
        admit(Registry(tmp_path / "b.db"), artifact, "m", "permissive", key, org, "tester",
              audit=AdminAudit(AuditSettings(enabled=False)))


def test_an_admission_whose_audit_entry_cannot_be_written_is_not_recorded(tmp_path: Path) -> None:
    key, org = _org(tmp_path)
    uninitialised = AuditSettings(
        path=tmp_path / "none" / "audit.db", signing_key=tmp_path / "none" / "k", body_key=tmp_path / "none" / "b"
    )
    registry = Registry(tmp_path / "b.db")
    with pytest.raises(ConfigError, match="audit log is not initialised"):
        admit(registry, bundled.smollm2(), "m", "permissive", key, org, "tester", audit=AdminAudit(uninitialised))
    assert registry.list(include_revoked=True) == []
