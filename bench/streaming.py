"""Streaming throughput: SmolLM2 tokens/s through the gateway vs llama-cpp-python called directly.

Same GGUF, same prompt, same settings (temperature 0, fixed max_tokens, 2 threads), alternating runs so
both see the same machine load. The gateway runs in its own process; the direct run in this one.

    .venv/bin/python bench/streaming.py [--runs 5] [--max-tokens 200]

Results: bench/results/streaming.json and the table in bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from openai import OpenAI

from bastion import bundled

ROOT = Path(__file__).resolve().parent.parent
PROMPT = [{"role": "user", "content": "Write a detailed essay about the history of the printing press."}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def direct(llm: object, max_tokens: int) -> tuple[int, float]:
    t0 = time.perf_counter()
    first = None
    n = 0
    for chunk in llm.create_chat_completion(  # type: ignore[attr-defined]
        messages=PROMPT, max_tokens=max_tokens, temperature=0, stream=True
    ):
        if chunk["choices"][0]["delta"].get("content"):
            first = first or time.perf_counter()
            n += 1
    return n, time.perf_counter() - (first or t0)


def gateway(client: OpenAI, max_tokens: int) -> tuple[int, float]:
    t0 = time.perf_counter()
    first = None
    n = 0
    for chunk in client.chat.completions.create(
        model="smollm2", messages=PROMPT, max_tokens=max_tokens, temperature=0, stream=True  # type: ignore[arg-type]
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            first = first or time.perf_counter()
            n += 1
    return n, time.perf_counter() - (first or t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=200)
    args = ap.parse_args()
    from llama_cpp import Llama

    with tempfile.TemporaryDirectory() as d:
        home = Path(d)
        port = free_port()
        cfg = home / "b.toml"
        cfg.write_text(
            f'[server]\nport = {port}\n[store]\npath = "{home}/b.db"\n'
            '[[models]]\nname = "smollm2"\npath = "bundled:smollm2"\nn_threads = 2\n'
        )
        env = {**os.environ, "BASTION_HOME": str(home)}
        key = json.loads(subprocess.run(
            [sys.executable, "-m", "bastion.cli.main", "keys", "create", "b", "-m", "*", "--json", "-c", str(cfg)],
            env=env, capture_output=True, text=True, check=True).stdout)["key"]
        proc = subprocess.Popen([sys.executable, "-m", "bastion.cli.main", "serve", "-c", str(cfg)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(240):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)  # noqa: S310
                    break
                except OSError:
                    time.sleep(0.5)
            client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
            llm = Llama(model_path=str(bundled.smollm2()), n_ctx=2048, n_threads=2, verbose=False)
            direct(llm, 16)
            gateway(client, 16)  # warm-up both
            rates: dict[str, list[float]] = {"direct": [], "gateway": []}
            tokens: dict[str, list[int]] = {"direct": [], "gateway": []}
            for _ in range(args.runs):
                for name, fn in (("direct", lambda: direct(llm, args.max_tokens)),
                                 ("gateway", lambda: gateway(client, args.max_tokens))):
                    n, secs = fn()
                    rates[name].append((n - 1) / secs)
                    tokens[name].append(n)
            llm.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    med = {k: statistics.median(v) for k, v in rates.items()}
    result = {
        "runs": args.runs,
        "max_tokens": args.max_tokens,
        "tokens": tokens,
        "tokens_per_s": rates,
        "median_tokens_per_s": med,
        "ratio_gateway_over_direct": med["gateway"] / med["direct"],
    }
    print(json.dumps(result, indent=2))
    out = ROOT / "bench" / "results" / "streaming.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
