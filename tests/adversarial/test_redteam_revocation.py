"""Red team, wave 2: a registry-database writer makes a revocation name the wrong bytes.

``bastion models revoke`` took the digests to revoke from the admission row's ``weights_digest`` and
``root_digest`` columns, which nothing signs. Someone who can write the database edits them *before*
the administrator revokes; the revocation (registry rows and the audit log's witness entry) then names
digests nobody serves. Afterwards they put the columns back and set ``revoked_at`` to NULL: the running
gateway, which checks the admission's row and the digest of its sealed bytes, served the revoked model
again on the next request, and so would every restart. Fix: a revocation also names every digest the
audit log saw admitted under that name (the ``model.admit`` entries, which the database writer cannot
edit without breaking the signed tree), so edited columns cannot steer it away from the bytes.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bastion import bundled
from bastion.keys import KeyStore
from bastion.signing import generate_key_pair
from bastion.store import Target
from tests.adversarial.integrity_gateway import bastion, start_gateway
from tests.adversarial.test_integrity_revocation import DROP_GUARDS, SMOL, attacker
from tests.serve import conftest
from tests.serve.conftest import free_port, stop


def prepare_with_cli_admission(home: Path) -> tuple[int, str]:
    """SmolLM2 copied to ``home/smol.gguf`` and admitted with 'bastion admit' (so the audit log has the
    admission), a gateway configured for it: (port, key)."""
    model = home / "smol.gguf"
    model.write_bytes(bundled.smollm2().read_bytes())
    generate_key_pair(home / "org")
    port = free_port()
    (home / "bastion.toml").write_text(
        f'[server]\nport = {port}\n[store]\npath = "{home}/bastion.db"\n'
        f'[registry]\npublic_key = "{home}/org/signing-key.pub.pem"\n'
        f'[[models]]\nname = "smol"\npath = "{model}"\nn_threads = 1\nn_ctx = 256\n'
    )
    for args in (("audit", "init"), ("admit", str(model), "--name", "smol", "--policy", "permissive", "--key",
                                      str(home / "org" / "signing-key.pem"))):
        done = bastion(home, *args)
        assert done.returncode == 0, done.stdout + done.stderr
    return port, KeyStore(home / "bastion.db").create("ops", ["*"]).key


def test_edited_digest_columns_do_not_steer_a_revocation_away_from_the_bytes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    port, key = prepare_with_cli_admission(home)
    db = home / "bastion.db"
    proc = start_gateway(home, port)

    def ask() -> int:
        return httpx.post(f"http://127.0.0.1:{port}/v1/completions", headers={"Authorization": f"Bearer {key}"},
                          json={"model": "smol", "prompt": "Paris is", "max_tokens": 2}, timeout=120).status_code

    try:
        assert ask() == 200
        # Before the revocation: the unsigned columns name bytes that do not exist.
        attacker(db, "CREATE TABLE saved AS SELECT weights_digest, root_digest FROM admitted_models",
                 "UPDATE admitted_models SET weights_digest = 'sha256:' || hex(zeroblob(32)),"
                 " root_digest = 'sha256:' || hex(randomblob(32))")
        done = bastion(home, "models", "revoke", "smol", "--reason", "backdoor found")
        assert done.returncode == 0, done.stdout + done.stderr
        assert ask() == 403
        # After it: the columns back, the row un-revoked (guards dropped), the bogus revocations left in place.
        attacker(db, *DROP_GUARDS,
                 "UPDATE admitted_models SET revoked_at = NULL, weights_digest = (SELECT weights_digest FROM saved),"
                 " root_digest = (SELECT root_digest FROM saved)")
        assert ask() == 403, "the revoked model answered again"
    finally:
        stop(proc)
    # And at the next start, from the audit log alone (the only model refused: /healthz says 503).
    proc = start_gateway(home, port, ready="/openapi.json")
    try:
        assert ask() == 403
        assert SMOL in (home / "serve.log").read_text()
    finally:
        stop(proc)


def edit_before_start(monkeypatch: pytest.MonkeyPatch, *sql: str) -> None:
    """Make ``conftest.serving`` run ``sql`` on the registry after admitting and before the gateway starts
    (the database writer's moment). Only the test helper is patched: the gateway is untouched."""
    original = conftest.admit_all

    def admit_then_edit(
        home: Path, models: dict[str, str], policy: str = "permissive", store: Target | None = None
    ) -> Path:
        key = original(home, models, policy, store)
        attacker(home / "bastion.db", *sql)
        return key

    monkeypatch.setattr(conftest, "admit_all", admit_then_edit)


def ask(base: str, key: str, model: str) -> httpx.Response:
    return httpx.post(base + "/v1/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": model, "prompt": "Paris is", "max_tokens": 2}, timeout=120)


def test_the_same_bytes_under_another_name_keep_their_classification(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registry-database writer copies the admission row of a model configured as "secret" under a new
    name. With ``registry.serve_admitted`` the gateway serves the copy (its signature is the
    organisation's, its bytes the admitted ones) at ``admitted_classification``: a key with no clearance
    read the secret model's bytes through it. An operator admitting one file twice did the same. Fix: the
    classification ceiling Cedar sees is the highest of every served model with the same verified bytes.
    """
    home = tmp_path / "home"
    home.mkdir()
    store = KeyStore(home / "bastion.db")
    uncleared = store.create("contractor", ["*"]).key
    store.close()
    config = ('[registry]\nserve_admitted = true\nadmitted_classification = "public"\n\n'
              '[[models]]\nname = "secret-smol"\npath = "bundled:smollm2"\nclassification = "secret"\nn_threads = 1\n')
    copy = ("INSERT INTO admitted_models (name, path, weights_digest, root_digest, signature, signer, verdict,"
            " findings, bom, identity, decision, policy, admitted_at, admitted_by) SELECT 'copy', path,"
            " weights_digest, root_digest, signature, signer, verdict, findings, bom, identity, decision, policy,"
            " admitted_at, admitted_by FROM admitted_models WHERE name = 'secret-smol'")
    edit_before_start(monkeypatch, copy)
    with conftest.serving(home, config, {"secret-smol": "bundled:smollm2"}) as base:
        assert ask(base, uncleared, "secret-smol").status_code == 403
        copied = ask(base, uncleared, "copy")
        assert copied.status_code == 403, (copied.status_code, copied.headers.get("x-bastion-model-digest"))
        listed = httpx.get(base + "/v1/models", headers={"Authorization": f"Bearer {uncleared}"}).json()
        assert listed["data"] == []


def test_a_damaged_admission_row_refuses_its_model_not_the_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registry-database writer puts text that is not JSON in one admission row's findings column
    (unsigned, like every column but the signature). Every read of that row raised JSONDecodeError: the
    gateway died at start-up with a traceback, and so would a reload. Fix: a damaged row is an
    IntegrityError naming the row, so its model is refused (403, audited) and the others serve."""
    home = tmp_path / "home"
    home.mkdir()
    store = KeyStore(home / "bastion.db")
    key = store.create("ops", ["*"]).key
    store.close()
    config = ('[[models]]\nname = "smol"\npath = "bundled:smollm2"\nn_threads = 1\n\n'
              '[[models]]\nname = "other"\npath = "bundled:smollm2"\nn_threads = 1\n')
    edit_before_start(monkeypatch, "UPDATE admitted_models SET findings = 'not json' WHERE name = 'other'")
    with conftest.serving(home, config, {"smol": "bundled:smollm2", "other": "bundled:smollm2"}) as base:
        assert ask(base, key, "smol").status_code == 200
        damaged = ask(base, key, "other")
        assert damaged.status_code == 403 and "damaged" in damaged.text, damaged.text
