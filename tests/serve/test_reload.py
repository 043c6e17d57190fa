"""A model admitted while the gateway runs is served after a reload, never before, and only once verified."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
from openai import OpenAI

from bastion import bundled
from bastion.audit import AdminAudit
from bastion.config import AuditSettings
from bastion.keys import KeyStore
from bastion.policy import Organisation
from bastion.registry import Registry, admit
from bastion.signing import key_hint, load_private_key
from tests.serve.conftest import serving

ASK = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


def test_an_admission_made_while_serving_is_served_after_reload(tmp_path: Path) -> None:
    home = tmp_path
    store = KeyStore(home / "bastion.db")
    key = store.create("alice", ["*"]).key
    store.close()
    config = """
[registry]
serve_admitted = true
admitted_classification = "public"

[[models]]
name = "minilm"
backend = "minilm"
path = "bundled:minilm"
"""
    with serving(home, config, {"minilm": "bundled:minilm"}) as base:
        client = OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
        assert [m.id for m in client.models.list().data] == ["minilm"]
        # An in-house copy of SmolLM2, admitted with the same organisation key while the gateway runs.
        ours = home / "models" / "acme-smol.gguf"
        ours.parent.mkdir()
        shutil.copyfile(bundled.smollm2(), ours)
        registry = Registry(home / "bastion.db")
        org_key = home / "org" / "signing-key.pem"
        signer = key_hint(load_private_key(org_key).public_key())
        # the library call writes its audit entry into the running gateway's log, as the CLI would
        keys = Path(f"{home}-keys")  # where serving() keeps the operator's keys (BASTION_KEY_HOME)
        audit = AuditSettings(path=home / "audit" / "audit.db", signing_key=keys / "audit-signing.key",
                              body_key=keys / "audit-body.key")
        admit(registry, ours, "acme-smol", "permissive", org_key, Organisation((), (signer,)), "test",
              audit=AdminAudit(audit))
        registry.close()
        assert "acme-smol" not in [m.id for m in client.models.list().data]  # never by name alone
        reloaded = httpx.post(base + "/admin/reload", timeout=120).json()
        assert reloaded["models"]["acme-smol"] == "loaded", reloaded
        raw = client.chat.completions.with_raw_response.create(model="acme-smol", messages=ASK, max_tokens=16,
                                                               temperature=0)
        assert raw.headers["x-bastion-model-digest"].startswith("sha256:b179c952")
        assert "Paris" in (raw.parse().choices[0].message.content or "")
