"""Every gateway request lands in the tamper-evident audit log, bound to the key id and the weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
from openai import OpenAI

from tests.serve.conftest import Gateway

SMOL_DIGEST = "sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def audit(gw: Gateway, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BASTION_HOME": str(gw.home)}
    return subprocess.run(
        [sys.executable, "-m", "bastion.cli.main", "audit", *args, "--config", str(gw.config)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )


def entries(gw: Gateway) -> list[dict[str, object]]:
    out = audit(gw, "search", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    return list(doc["entries"] if isinstance(doc, dict) else doc)


def test_requests_are_recorded_with_principal_weights_and_body_digests(gateway: Gateway) -> None:
    client = OpenAI(base_url=gateway.v1, api_key=gateway.smol_only_key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="smollm2", messages=[{"role": "user", "content": "Say hello."}], max_tokens=4, temperature=0
    )
    request_id = raw.headers["x-request-id"]
    key_id = gateway.smol_only_key.split("_")[1]
    mine = [e for e in entries(gateway) if e.get("request_id") == request_id]
    assert len(mine) == 1
    entry = mine[0]
    assert entry["principal"] == key_id and gateway.smol_only_key not in json.dumps(entry)
    assert entry["weights_digest"] == SMOL_DIGEST
    assert entry["backend"] == "llama_cpp" and entry["decision"] == "allow" and entry["status"] == 200
    assert entry["tokens_out"] == 4
    assert len(str(entry["request_sha256"])) == 64 and len(str(entry["response_sha256"])) == 64


def test_denials_and_streams_are_recorded_and_the_log_verifies(gateway: Gateway) -> None:
    denied = httpx.post(gateway.v1 + "/chat/completions", json={"model": "gemma3", "messages": []},
                        headers={"Authorization": f"Bearer {gateway.smol_only_key}"})
    assert denied.status_code in (400, 403)
    unauth = httpx.post(gateway.v1 + "/chat/completions", json={})
    client = OpenAI(base_url=gateway.v1, api_key=gateway.admin_key, max_retries=0)
    stream = client.chat.completions.with_raw_response.create(
        model="smollm2", messages=[{"role": "user", "content": "Say hello."}], max_tokens=6, stream=True
    )
    stream_id = stream.headers["x-request-id"]
    list(stream.parse())
    by_id = {e.get("request_id"): e for e in entries(gateway)}
    assert by_id[unauth.headers["x-request-id"]]["decision"].startswith("deny")  # type: ignore[union-attr]
    assert by_id[unauth.headers["x-request-id"]]["status"] == 401
    streamed = by_id[stream_id]
    assert streamed["status"] == 200 and streamed["partial"] is False and streamed["tokens_out"] == 6
    verified = audit(gateway, "verify", "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
