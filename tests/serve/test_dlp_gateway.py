"""Done-when for data-loss prevention, end to end: the real gateway, the local SmolLM2 and a "cloud"
upstream (a real HTTP server on 127.0.0.1 that records what it receives).

Under every bundled pack: marked, personal and secret prompts never reach the recorder un-redacted;
answers (streamed too) come back with placeholders restored; a scan that runs out of time blocks;
every decision is in the audit log with types and counts, never values.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import httpx
import pytest

from bastion.keys import KeyStore
from tests.serve.conftest import free_port, stop, wait_http

EMAIL, CARD, AWS = "jane.roe@example.org", "4111 1111 1111 1111", "AKIAIOSFODNN7EXAMPLE"
PERSONAL = f"Please write to {EMAIL} about the card {CARD}."
SECRET = f"Why does my key {AWS} not work?"
MARKED = "TOP SECRET//NOFORN\nSummarise the operation."
RAW_VALUES = (EMAIL, CARD, AWS, "4111111111111111", "TOP SECRET")


@dataclass
class Rig:
    base: str
    home: Path
    config: Path
    policy_file: Path
    recorder_log: Path
    key: str
    proc: subprocess.Popen[bytes]
    log: Path

    def use_pack(self, pack: str) -> None:
        """Switch the gateway's access policy to a bundled pack (SIGHUP reload, as an operator would)."""
        text = resources.files("bastion.policy").joinpath("packs", f"{pack}.cedar").read_text("utf-8")
        before = self.log.read_text().count("access policy reloaded")
        self.policy_file.write_text(text, encoding="utf-8")
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while self.log.read_text().count("access policy reloaded") == before:
            assert time.monotonic() < deadline, self.log.read_text()[-2000:]
            time.sleep(0.1)

    def post(self, model: str, content: str, stream: bool = False, **extra: object) -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 8,
                "temperature": 0, "stream": stream, **extra}
        return httpx.post(self.base + "/v1/chat/completions", json=body, timeout=120,
                          headers={"Authorization": f"Bearer {self.key}"})

    def received(self) -> str:
        return self.recorder_log.read_text(encoding="utf-8") if self.recorder_log.exists() else ""

    def audit(self) -> dict[str, dict[str, object]]:
        env = {**os.environ, "BASTION_HOME": str(self.home), "BASTION_KEY_HOME": f"{self.home}-keys"}
        out = subprocess.run([sys.executable, "-m", "bastion.cli.main", "audit", "search", "--json", "--limit",
                              "1000", "--config", str(self.config)], capture_output=True, text=True, env=env,
                             timeout=120, check=True)
        doc = json.loads(out.stdout)
        return {e["request_id"]: e for e in (doc["entries"] if isinstance(doc, dict) else doc)
                if e.get("kind") == "request"}


def streamed_text(response: httpx.Response) -> str:
    out = []
    for line in response.text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            for choice in json.loads(line[6:]).get("choices", []):
                out.append((choice.get("delta") or {}).get("content") or "")
    return "".join(out)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    home = tmp_path_factory.mktemp("dlp-gateway")
    recorder_log = home / "recorder.jsonl"
    rport, port = free_port(), free_port()
    recorder = subprocess.Popen([sys.executable, str(Path(__file__).with_name("recorder.py")), str(rport),
                                 str(recorder_log)])
    policy_file = home / "access.cedar"
    policy_file.write_text(resources.files("bastion.policy").joinpath("packs", "permissive.cedar")
                           .read_text("utf-8"), encoding="utf-8")
    config = home / "bastion.toml"
    config.write_text(f"""
[server]
port = {port}
max_body_bytes = 4194304

[store]
path = "{home / "bastion.db"}"

[registry]
enforce = false

[policy]
access = "{policy_file}"
clearance = {{ analysts = "secret" }}

[dlp]
timeout_ms = 1000

[[models]]
name = "smollm2"
path = "bundled:smollm2"
n_threads = 1
classification = "secret"

[[models]]
name = "cloud"
backend = "openai"
url = "http://127.0.0.1:{rport}/v1"
timeout_s = 30

[[models]]
name = "cloud-first"
backend = "openai"
url = "http://127.0.0.1:{rport}/v1"
upstream_model = "cloud"
fallbacks = ["smollm2"]
""", encoding="utf-8")
    env = {**os.environ, "BASTION_HOME": str(home), "BASTION_KEY_HOME": f"{home}-keys", "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-m", "bastion.cli.main", "audit", "init", "--config", str(config)],
                   env=env, check=True, capture_output=True)
    store = KeyStore(home / "bastion.db")
    key = store.create("analyst", ["*"], ["analysts"]).key
    store.close()
    log = home / "serve.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "bastion.cli.main", "serve", "--config", str(config)],
                                stdout=fh, stderr=fh, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/healthz", proc, log)
        wait_http(f"http://127.0.0.1:{rport}/v1/models", recorder, log)
        yield Rig(base, home, config, policy_file, recorder_log, key, proc, log)
    finally:
        stop(proc)
        stop(recorder)


@pytest.mark.slow
@pytest.mark.parametrize("pack", ["permissive", "enterprise", "sovereign-strict"])
def test_nothing_sensitive_reaches_the_cloud_unredacted(rig: Rig, pack: str) -> None:
    rig.use_pack(pack)
    start = len(rig.received())
    ids: dict[str, tuple[str, int]] = {}

    marked = rig.post("cloud", MARKED)
    assert marked.status_code == 403 and marked.json()["error"]["code"] == "dlp_blocked"
    assert "marking" in marked.json()["error"]["message"]
    ids["marked"] = (marked.headers["x-request-id"], 403)

    for name, prompt in (("personal", PERSONAL), ("secret", SECRET)):
        for stream in (False, True):
            r = rig.post("cloud", prompt, stream=stream)
            ids[f"{name}-{stream}"] = (r.headers["x-request-id"], r.status_code)
            if pack == "sovereign-strict":
                assert r.status_code == 403 and r.json()["error"]["code"] == "dlp_blocked", r.text
                continue
            assert r.status_code == 200, r.text
            answer = streamed_text(r) if stream else r.json()["choices"][0]["message"]["content"]
            if name == "personal" or pack == "permissive":
                # Pseudonymised: the cloud saw placeholders, the client gets its own values back.
                assert answer == "You said: " + prompt
            else:
                # enterprise redacts secrets: nothing to restore.
                assert answer == "You said: Why does my key [REDACTED_AWS_ACCESS_KEY] not work?"

    sent = rig.received()[start:]
    for value in RAW_VALUES:
        assert value not in sent, f"{value!r} reached the cloud under {pack}"
    if pack != "sovereign-strict":
        assert "[EMAIL_1]" in sent and "[CREDIT_CARD_1]" in sent

    entries = rig.audit()
    for name, (rid, status) in ids.items():
        entry = entries[rid]
        assert entry["status"] == status, (name, entry)
        dlp = entry["dlp"]
        assert isinstance(dlp, dict) and dlp["findings"], (name, entry)
        if status == 403:
            assert entry["decision"] == "deny:dlp_blocked" and dlp["actions"]["cloud"] == "block"
        else:
            assert dlp["actions"]["cloud"] in ("pseudonymise", "redact")
    dump = json.dumps(entries)
    for value in RAW_VALUES:
        assert value not in dump


@pytest.mark.slow
def test_the_route_falls_back_to_the_local_model_when_the_cloud_may_not_see_the_data(rig: Rig) -> None:
    rig.use_pack("sovereign-strict")
    start = len(rig.received())
    r = rig.post("cloud-first", PERSONAL)
    assert r.status_code == 200 and r.headers["x-bastion-model"] == "smollm2", r.text
    assert rig.received()[start:] == ""
    entry = rig.audit()[r.headers["x-request-id"]]
    assert entry["dlp"]["actions"] == {"cloud-first": "block", "smollm2": "none"}  # type: ignore[index]
    # A marking within the local model's ceiling (secret) goes to it as is.
    local = rig.post("smollm2", "SECRET\nSummarise: the convoy leaves at dawn.")
    assert local.status_code == 200, local.text


@pytest.mark.slow
def test_a_scan_that_runs_out_of_time_blocks_and_is_audited(rig: Rig) -> None:
    rig.use_pack("permissive")
    start = len(rig.received())
    flood = "call 212 555 0199 or +44 20 7946 0958 now; " * 60000  # a couple of MB of phone numbers
    r = rig.post("cloud", flood)
    assert r.status_code == 503 and r.json()["error"]["code"] == "dlp_detector_failed", r.text[:300]
    assert rig.received()[start:] == ""
    entry = rig.audit()[r.headers["x-request-id"]]
    assert entry["decision"] == "deny:dlp_detector_failed" and entry["dlp"] == {"action": "error"}
