"""`make demo`: serve the bundled SmolLM2 with Bastion and talk to it with the official OpenAI SDK.

Runs entirely on this machine: starts `bastion serve` on a free 127.0.0.1 port, creates an API key,
sends a real chat completion (and a streamed one), prints the answer, the weights digest and the
latency, then stops the gateway. State lives in .demo/ so the demo can be run again and again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from openai import OpenAI
from rich.console import Console
from rich.panel import Panel

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from scripts.crafted import gguf_claiming  # noqa: E402 - the same crafted GGUF the tests use

BASTION = str(Path(sys.executable).parent / "bastion")
console = Console()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bastion(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run([BASTION, *args], env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        console.print(result.stdout, result.stderr)
        raise SystemExit(f"bastion {' '.join(args)} failed with exit status {result.returncode}")
    return result.stdout


def wait_healthy(base: str, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the gateway exited early with status {proc.returncode}; see .demo/serve.log")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2) as r:  # noqa: S310 - 127.0.0.1 only
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("the gateway did not become healthy in time; see .demo/serve.log")


def main() -> None:
    demo = ROOT / ".demo"
    home, keys, siem = demo / "home", demo / "keys", demo / "siem"
    for folder in (home, keys, siem):  # a fresh registry, key store, audit log and audit keys every run
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    # The audit signing key lives outside BASTION_HOME (a writer of the log must not read it); signed
    # heads are copied to a third place, as a SIEM or a witness would keep them.
    env = {**os.environ, "BASTION_HOME": str(home), "BASTION_KEY_HOME": str(keys), "HF_HUB_OFFLINE": "1"}
    env.pop("BASTION_CONFIG", None)
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    bastion("audit", "init", env=env)
    (siem / "head-start.json").write_text(bastion("audit", "sign", "--json", env=env))
    pair = json.loads(bastion("signing-key", "generate", "-o", str(home / "org"), "--json", env=env))
    org = home / "organisation.toml"
    org.write_text(f'denied_countries = ["CN", "RU", "IR", "KP"]\ntrusted_signers = ["{pair["key_hint"]}"]\n')
    console.print(f"[bold]0.[/] audit log initialised; organisation signing key {pair['key_hint'][:16]}...")

    admitted = json.loads(
        bastion("admit", "bundled:smollm2", "--name", "smollm2", "--policy", "sovereign-strict",
                "--key", pair["private_key"], "--org", str(org), "--json", env=env)
    )["admitted"]
    console.print(
        f"[bold]1.[/] admitted SmolLM2 under [cyan]sovereign-strict[/]: vet {admitted['verdict']}, "
        f"identified as {admitted['identity']} ({admitted['confidence']}%), signed and recorded"
    )
    crafted = gguf_claiming(demo / "distill.gguf", "DeepSeek-R1-Distill-Llama", "8B")
    denied = subprocess.run(
        [BASTION, "admit", str(crafted), "--name", "distill", "--policy", "sovereign-strict",
         "--key", pair["private_key"], "--org", str(org), "--json"],
        env=env, capture_output=True, text=True, check=False,
    )
    reason = json.loads(denied.stdout)["error"]["message"] if denied.stdout else denied.stderr
    console.print(f"   a file claiming DeepSeek-R1-Distill-Llama-8B: [red]denied[/] (exit {denied.returncode}): {reason}")

    key = json.loads(bastion("keys", "create", "demo", "--model", "smollm2", "--json", env=env))
    console.print(f"   created API key [cyan]{key['id']}[/] for model smollm2 (only its hash is stored)")
    (demo / "bastion.toml").write_text(
        f'[registry]\npublic_key = "{pair["public_key"]}"\n[policy]\naccess = "sovereign-strict"\n'
        '[[models]]\nname = "smollm2"\npath = "bundled:smollm2"\n'
    )

    console.print(f"[bold]2.[/] starting [cyan]bastion serve[/] on {base}: re-verifies the admission signature")
    console.print("   and re-hashes the weights before loading; egress guard on; Cedar authorises each request")
    log = (demo / "serve.log").open("wb")
    proc = subprocess.Popen(  # noqa: S603
        [BASTION, "serve", "--port", str(port), "--config", str(demo / "bastion.toml")], env=env, stdout=log, stderr=log
    )
    try:
        t0 = time.perf_counter()
        wait_healthy(base, proc)
        console.print(f"   gateway ready in {time.perf_counter() - t0:.1f} s")

        client = OpenAI(base_url=base + "/v1", api_key=key["key"], max_retries=0, timeout=120)
        question = "What is the capital of France? Answer in one word."
        console.print(f"[bold]3.[/] asking smollm2 through the OpenAI SDK: [italic]{question}[/]")
        t0 = time.perf_counter()
        raw = client.chat.completions.with_raw_response.create(
            model="smollm2", messages=[{"role": "user", "content": question}], max_tokens=32, temperature=0
        )
        latency = time.perf_counter() - t0
        completion = raw.parse()
        usage = completion.usage
        tokens = f"{usage.prompt_tokens} prompt + {usage.completion_tokens} completion" if usage else "?"
        digest = raw.headers.get("x-bastion-model-digest")
        request_id = raw.headers.get("x-request-id")

        t0 = time.perf_counter()
        first = None
        pieces = []
        for chunk in client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "Name three colours."}],
            max_tokens=32,
            temperature=0,
            stream=True,
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                first = first or time.perf_counter() - t0
                pieces.append(chunk.choices[0].delta.content)
        stream_total = time.perf_counter() - t0

        console.print(
            Panel.fit(
                f"[bold green]{completion.choices[0].message.content}[/]\n\n"
                f"model            {completion.model}\n"
                f"weights digest   {digest}\n"
                f"latency          {latency * 1000:.0f} ms ({tokens})\n"
                f"streamed answer  {''.join(pieces)!r}\n"
                f"streaming        first token {first * 1000 if first else 0:.0f} ms, "
                f"{len(pieces)} chunks in {stream_total * 1000:.0f} ms",
                title="answer from the gateway",
            )
        )
        with urllib.request.urlopen(base + "/metrics", timeout=5) as r:  # noqa: S310 - 127.0.0.1 only
            metrics = [ln for ln in r.read().decode().splitlines() if ln.startswith("bastion_requests_total")]
        console.print("[bold]4.[/] metrics: " + "; ".join(metrics))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        bastion("keys", "revoke", key["id"], env=env)
    entry = next(e for e in json.loads(bastion("audit", "search", "--json", env=env)) if e.get("request_id") == request_id)
    (siem / "head-end.json").write_text(bastion("audit", "sign", "--json", env=env))
    heads = [str(siem / "head-start.json"), str(siem / "head-end.json")]
    verify = json.loads(
        bastion("audit", "verify", "--against", heads[0], "--against", heads[1], "--json", env=env)
    )
    proof = json.loads(bastion("audit", "consistency", *heads, "--json", env=env))
    console.print(
        f"[bold]5.[/] audit entry #{entry['seq']}: key {entry['principal']} -> {entry['model']} "
        f"on {entry['weights_digest'][:19]}..., status {entry['status']}, {entry['tokens_out']} tokens out; "
        f"'bastion audit verify --against' the heads kept in .demo/siem: "
        f"{'ok' if verify.get('ok') else 'FAILED'} over {verify.get('entries')} entries; the log grew from "
        f"{proof['old_size']} to {proof['new_size']} entries without a rewrite (RFC 6962 consistency proof)"
    )
    how = (
        "graceful shutdown on SIGTERM"
        if proc.returncode in (0, -signal.SIGTERM)
        else f"status {proc.returncode}"
    )
    console.print(f"[bold]6.[/] gateway stopped ({how}); demo key revoked")


if __name__ == "__main__":
    main()
