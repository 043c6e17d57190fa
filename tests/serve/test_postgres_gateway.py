"""The real gateway on PostgreSQL: keys, registry and audit log in one database, nothing else changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from openai import OpenAI

from bastion.keys import KeyStore
from tests import pg_server
from tests.conftest import postgres_target, raw_sql
from tests.serve.conftest import serving

ASK = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


def test_an_admitted_model_answers_from_postgresql_and_the_audit_log_verifies(
    tmp_path: Path, postgres: pg_server.Server
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    target = postgres_target(postgres, pool_size=4)
    store = KeyStore(target)
    key = store.create("alice", ["*"])
    store.close()
    config = """
[[models]]
name = "smol"
backend = "llama_cpp"
path = "bundled:smollm2"
"""
    with serving(home, config, {"smol": "bundled:smollm2"}, store=target) as base:
        client = OpenAI(base_url=base + "/v1", api_key=key.key, max_retries=0)
        raw = client.chat.completions.with_raw_response.create(model="smol", messages=ASK, max_tokens=8,
                                                               temperature=0)
        assert raw.http_response.status_code == 200
        assert raw.headers["x-bastion-model-digest"].startswith("sha256:b179c952")
        assert raw.parse().choices[0].message.content
    # Everything the gateway keeps is in the database, not in files under its home.
    assert not (home / "bastion.db").exists() and not (home / "audit" / "audit.db").exists()
    rows = raw_sql(target, "SELECT principal, model FROM audit_entries WHERE kind = 'request'")
    assert rows == [(key.record.id, "smol")]
    env = {**os.environ, "BASTION_HOME": str(home), "BASTION_KEY_HOME": f"{home}-keys"}
    verify = subprocess.run(
        [sys.executable, "-m", "bastion.cli.main", "audit", "verify", "--json", "--config", str(home / "bastion.toml")],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    report = json.loads(verify.stdout)
    assert report["ok"] and report["entries"] >= 2  # audit.init and the request, under signed heads
