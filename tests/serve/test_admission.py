"""The gateway serves only admitted, unchanged models; revocation and policy reload need no restart."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import httpx
import pytest

from bastion import bundled
from bastion.keys import KeyStore
from tests.adversarial.integrity_gateway import environment
from tests.serve.conftest import admit_all, free_port, stop, wait_http

CHAT = {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 2, "temperature": 0}


def bastion(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = environment(home)
    return subprocess.run([sys.executable, "-m", "bastion.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def enforced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path, Path]]:
    home = tmp_path_factory.mktemp("enforced")
    good, tampered = home / "good.gguf", home / "tampered.gguf"
    for copy in (good, tampered):
        copy.write_bytes(bundled.smollm2().read_bytes())
    admit_all(home, {"good": str(good), "tampered": str(tampered)})
    with tampered.open("r+b") as fh:  # one bit in the weights, after admission
        fh.seek(60_000_000)
        b = fh.read(1)
        fh.seek(60_000_000)
        fh.write(bytes([b[0] ^ 0x01]))
    policy = home / "access.cedar"
    policy.write_text(resources.files("bastion.policy").joinpath("packs", "permissive.cedar").read_text())
    port = free_port()
    config = home / "bastion.toml"
    config.write_text(
        f'[server]\nport = {port}\n[store]\npath = "{home}/bastion.db"\n'
        f'[registry]\npublic_key = "{home}/org/signing-key.pub.pem"\n[policy]\naccess = "{policy}"\n'
        f'[[models]]\nname = "good"\npath = "{good}"\nn_threads = 1\n'
        f'[[models]]\nname = "tampered"\npath = "{tampered}"\nn_threads = 1\n'
        f'[[models]]\nname = "stranger"\npath = "bundled:smollm2"\nn_threads = 1\n'
    )
    assert bastion(home, "audit", "init").returncode == 0
    key = KeyStore(home / "bastion.db").create("ops", ["*"]).key
    log = home / "serve.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "bastion.cli.main", "serve", "--config", str(config)],
                                env=environment(home), stdout=fh, stderr=fh)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc, log)
        yield f"http://127.0.0.1:{port}/v1", key, home, policy
    finally:
        stop(proc)


def chat(base: str, key: str, model: str) -> httpx.Response:
    return httpx.post(base + "/chat/completions", json={**CHAT, "model": model},
                      headers={"Authorization": f"Bearer {key}"}, timeout=60)


def test_admitted_model_serves_and_changed_or_unadmitted_ones_are_refused(enforced: tuple[str, str, Path, Path]) -> None:
    base, key, home, _ = enforced
    assert chat(base, key, "good").status_code == 200
    tampered = chat(base, key, "tampered")
    assert tampered.status_code == 403
    assert "changed after admission" in tampered.json()["error"]["message"]
    stranger = chat(base, key, "stranger")
    assert stranger.status_code == 403 and "no model named 'stranger' is admitted" in stranger.json()["error"]["message"]
    assert "tampered REFUSED" in (home / "serve.log").read_text()
    refusals = [e for e in __import__("json").loads(bastion(home, "audit", "search", "--json").stdout)
                if e.get("action") == "model.refused"]
    assert {e["details"]["name"] for e in refusals} == {"tampered", "stranger"}


def test_policy_reload_takes_effect_without_restart(enforced: tuple[str, str, Path, Path]) -> None:
    base, key, home, policy = enforced
    assert chat(base, key, "good").status_code == 200
    original = policy.read_text()
    policy.write_text(original + '\n@id("test.no-good")\nforbid (principal, action, resource)\n'
                      'when { resource.name == "good" };\n')
    try:
        assert bastion(home, "policy", "reload").returncode == 0
        for _ in range(50):
            denied = chat(base, key, "good")
            if denied.status_code == 403:
                break
            time.sleep(0.1)
        assert denied.status_code == 403 and "test.no-good" in denied.json()["error"]["message"]
    finally:
        policy.write_text(original)
        bastion(home, "policy", "reload")
    for _ in range(50):
        if chat(base, key, "good").status_code == 200:
            break
        time.sleep(0.1)
    assert chat(base, key, "good").status_code == 200


def test_revocation_takes_effect_on_the_next_request(enforced: tuple[str, str, Path, Path]) -> None:
    base, key, home, _ = enforced
    revoked = bastion(home, "models", "revoke", "good", "--reason", "superseded")
    assert revoked.returncode == 0, revoked.stderr
    refused = chat(base, key, "good")
    assert refused.status_code == 403 and "revoked" in refused.json()["error"]["message"]
