"""`make demo`: serve the bundled SmolLM2 with Bastion and talk to it with the official OpenAI SDK.

Runs entirely on this machine: starts `bastion serve` on a free 127.0.0.1 port, creates an API key,
sends a real chat completion (and a streamed one), prints the answer, the weights digest and the
latency, then stops the gateway. State lives in .demo/ so the demo can be run again and again.
"""

from __future__ import annotations

import json
import os
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
    demo.mkdir(exist_ok=True)
    env = {**os.environ, "BASTION_HOME": str(demo / "home"), "HF_HUB_OFFLINE": "1"}
    env.pop("BASTION_CONFIG", None)
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    key = json.loads(bastion("keys", "create", "demo", "--model", "smollm2", "--json", env=env))
    console.print(
        f"[bold]1.[/] created API key [cyan]{key['id']}[/] for model smollm2 (only its hash is stored)"
    )

    console.print(f"[bold]2.[/] starting [cyan]bastion serve[/] on {base} (egress guard on) ...")
    log = (demo / "serve.log").open("wb")
    proc = subprocess.Popen([BASTION, "serve", "--port", str(port)], env=env, stdout=log, stderr=log)  # noqa: S603
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
    how = (
        "graceful shutdown on SIGTERM"
        if proc.returncode in (0, -signal.SIGTERM)
        else f"status {proc.returncode}"
    )
    console.print(f"[bold]5.[/] gateway stopped ({how}); demo key revoked")


if __name__ == "__main__":
    main()
