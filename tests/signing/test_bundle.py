"""Bounded mutation fuzzing of the two parsers that read attacker-supplied bytes: the bundle and the
signed statement. Any input must give a verified manifest or a BastionError, never another exception."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from bastion.errors import BastionError
from bastion.hashing import manifest_of
from bastion.signing import KeyPair, load_private_key, load_public_key, sign_manifest, verify_bundle
from bastion.signing.bundle import PAYLOAD_TYPE, Bundle, pae, parse_bundle
from bastion.signing.statement import statement_bytes

ITERATIONS = 1000
TOKENS = [
    b"{",
    b"}",
    b"[",
    b"]",
    b'"',
    b",",
    b":",
    b"null",
    b"1e999",
    b"-1",
    b"0.5",
    b"\\u0000",
    b"\xff",
    b"true",
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    """Flip, delete, duplicate or splice JSON-ish tokens at random places."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not b:
            break
        i = rng.randrange(len(b))
        op = rng.randrange(4)
        if op == 0:
            b[i] = rng.randrange(256)
        elif op == 1:
            del b[i : i + rng.randint(1, 16)]
        elif op == 2:
            b[i:i] = rng.choice(TOKENS)
        else:
            j = rng.randrange(len(b))
            b[i:i] = b[j : j + rng.randint(1, 64)]
    return bytes(b)


@pytest.fixture
def signed(tmp_path: Path, org_key: KeyPair) -> tuple[bytes, bytes]:
    model = tmp_path / "m"
    (model / "sub").mkdir(parents=True)
    (model / "w.bin").write_bytes(b"\x01" * 5000)
    (model / "sub" / "c.json").write_text("{}")
    manifest = manifest_of(model, shard_size=1024, use_cache=False)
    return sign_manifest(manifest, load_private_key(org_key.private_key)), statement_bytes(manifest)


def test_mutated_bundles_never_escape_as_non_bastion_errors(
    signed: tuple[bytes, bytes], org_key: KeyPair
) -> None:
    bundle, _ = signed
    pub = load_public_key(org_key.public_key)
    rng = random.Random(1234)
    outcomes: dict[str, int] = {}
    for _ in range(ITERATIONS):
        data = mutate(rng, bundle)
        try:
            verify_bundle(data, public_key=pub, source="fuzz.sig")
            outcomes["ok"] = outcomes.get("ok", 0) + 1
        except BastionError as exc:
            outcomes[type(exc).__name__] = outcomes.get(type(exc).__name__, 0) + 1
    # The fuzzer must actually reach past the JSON parser into the signature check.
    assert outcomes.get("UnusableInput", 0) > 0 and outcomes.get("IntegrityError", 0) > 0, outcomes


def test_mutated_statements_signed_by_the_right_key_never_crash(
    signed: tuple[bytes, bytes], org_key: KeyPair
) -> None:
    # A legitimate key holder who signs garbage: the statement parser itself must hold.
    _, statement = signed
    key = load_private_key(org_key.private_key)
    pub = load_public_key(org_key.public_key)
    rng = random.Random(5678)
    reasons: set[str] = set()
    for _ in range(ITERATIONS):
        payload = mutate(rng, statement)
        sig = key.sign(pae(PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
        data = Bundle(PAYLOAD_TYPE, payload, sig, org_key.key_hint).to_bytes()
        try:
            verify_bundle(data, public_key=pub, source="fuzz.sig")
        except BastionError as exc:
            reasons.add(exc.message.split(": ", 1)[-1][:40])
    assert len(reasons) > 5, reasons  # many distinct checks were exercised


def test_bundle_round_trips_through_its_parser(signed: tuple[bytes, bytes]) -> None:
    bundle, statement = signed
    parsed = parse_bundle(bundle, "x")
    assert parsed.payload == statement and parsed.mode == "key"
    assert json.loads(parsed.to_bytes()) == json.loads(bundle)
