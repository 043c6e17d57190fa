"""Many users on one model: the embedded engines side by side, through the gateway, in one run.

Engines, all serving the same bundled GGUF from one `bastion serve` process (audit on):

- ``lcp``: today's llama-cpp-python worker (one request at a time, the rest queue);
- ``xl``: xllamacpp, llama.cpp's server loop in-process (``parallel`` slots, continuous batching);
- ``pool``: 3 ``python -m llama_cpp.server`` upstreams behind the gateway as one model with the other
  two as fallbacks (what main routes today: fallbacks are tried only when one fails);
- ``pool-rr``: the same 3 upstreams, the clients spreading their requests over them round-robin (the
  bench does the spreading);
- ``pool-lo``: the same 3 upstreams as one model whose route is one tier of the three with
  ``balance = "least_outstanding"``: the gateway's router sends each request to the least busy one.

For 1, 4 and 16 concurrent streaming clients: aggregate generated tokens/s (content chunks of every
client over the wall time of the burst) and p95 time to first token. Same prompts, same max_tokens,
greedy, cells interleaved round by round so every engine sees the same machine load, which is logged.

Then greedy-answer identity: a fixed prompt set, sequential and concurrent, on each engine.

    .venv/bin/python bench/engines.py [--rounds 2] [--max-tokens 64] [--gemma]

Results: bench/results/engines.json and the tables in bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bastion import bundled

ROOT = Path(__file__).resolve().parent.parent
N_CTX = 1024
THREADS = 2

#: one prompt per client (16 clients); the identity check uses the first eight
CHAT = [
    "What is the capital of France? Answer in one word.",
    "Name three primary colours.",
    "What is 12 times 7?",
    "Write one sentence about the sea.",
    "Translate 'good morning' into Spanish.",
    "Who wrote Romeo and Juliet?",
    "List the days of the week.",
    "Explain in one sentence what a CPU does.",
    "Write a short poem about autumn.",
    "Give two tips for learning to cook.",
    "What is photosynthesis?",
    "Describe a cat in two sentences.",
    "Why is the sky blue?",
    "Suggest a name for a bakery.",
    "What does a librarian do?",
    "Summarise the story of Cinderella.",
]
COMPLETION = [
    "Q: What is the capital of France?\nA:",
    "The largest planet in the solar system is",
    "Water boils at",
    "The first president of the United States was",
    "A recipe for pancakes:\n1.",
    "The three primary colours are",
    "In 1492, Columbus",
    "def fibonacci(n):",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready in {timeout}s")


def start_upstream(home: Path, i: int, threads: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = (home / f"upstream{i}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(bundled.smollm2()), "--model_alias", "smol-up",
         "--host", "127.0.0.1", "--port", str(port), "--n_threads", str(threads), "--n_ctx", str(N_CTX),
         # its default cuts a running stream short (with [DONE]) whenever another request arrives
         "--interrupt_requests", "False"],
        stdout=log, stderr=log,
    )
    return proc, f"http://127.0.0.1:{port}/v1"


def config(home: Path, port: int, upstreams: list[str], parallel: int, gemma: bool) -> str:
    local = f"n_ctx = {N_CTX}\nn_threads = {THREADS}\nmax_queue = 64\n"
    body = (
        f'[server]\nport = {port}\n[store]\npath = "{home}/b.db"\n'
        "[registry]\nenforce = false\n"  # admission is measured elsewhere; this measures the engines
        f'[[models]]\nname = "lcp"\npath = "bundled:smollm2"\n{local}'
        f'[[models]]\nname = "xl"\npath = "bundled:smollm2"\nengine = "xllamacpp"\nparallel = {parallel}\n{local}'
    )
    if gemma:
        body += (
            f'[[models]]\nname = "gemma-lcp"\npath = "bundled:gemma3"\n{local}'
            f'[[models]]\nname = "gemma-xl"\npath = "bundled:gemma3"\nengine = "xllamacpp"\n'
            f"parallel = {parallel}\n{local}"
        )
    for i, url in enumerate(upstreams, 1):
        others = [f'"up{j}"' for j in range(1, len(upstreams) + 1) if j != i]
        body += (
            f'[[models]]\nname = "up{i}"\nbackend = "openai"\nurl = "{url}"\nupstream_model = "smol-up"\n'
            f"timeout_s = 600\nfirst_byte_timeout_s = 600\nfallbacks = [{', '.join(others)}]\n"
        )
    if upstreams:  # the three as one pool, balanced by the router
        body += (
            f'[[models]]\nname = "pool"\nbackend = "openai"\nurl = "{upstreams[0]}"\nupstream_model = "smol-up"\n'
            'timeout_s = 600\nfirst_byte_timeout_s = 600\nroute = [["pool", "up2", "up3"]]\n'
            'balance = "least_outstanding"\n'
        )
    return body


async def one_stream(
    client: httpx.AsyncClient, model: str, endpoint: str, prompt: str, max_tokens: int, t0: float
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "temperature": 0, "stream": True}
    if endpoint == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
        path = "/chat/completions"
    else:
        body["prompt"] = prompt
        path = "/completions"
    first = None
    n = 0
    text = []
    async with client.stream("POST", path, json=body) as resp:
        if resp.status_code != 200:
            raise RuntimeError(f"{model}: {resp.status_code} {(await resp.aread())[:300]!r}")
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(f"{model}: error event {chunk['error']}")
            if not chunk.get("choices"):
                continue
            choice = chunk["choices"][0]
            piece = choice.get("text") if endpoint == "completion" else (choice.get("delta") or {}).get("content")
            if piece:
                first = first or time.perf_counter()
                n += 1
                text.append(piece)
    end = time.perf_counter()
    return {"ttft": (first or end) - t0, "tokens": n, "start": t0, "end": end, "text": "".join(text)}


async def burst(
    client: httpx.AsyncClient, models: list[str], endpoint: str, prompts: list[str], n: int, max_tokens: int
) -> list[dict[str, Any]]:
    """``n`` clients start together; client i asks prompts[i] of models[i % len(models)]."""
    t0 = time.perf_counter()
    return await asyncio.gather(*(
        one_stream(client, models[i % len(models)], endpoint, prompts[i % len(prompts)], max_tokens, t0)
        for i in range(n)
    ))


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def throughput(client: httpx.AsyncClient, args: argparse.Namespace) -> dict[str, Any]:
    every: dict[str, list[str]] = {"lcp": ["lcp"], "xl": ["xl"], "pool": ["up1"], "pool-rr": ["up1", "up2", "up3"],
                                     "pool-lo": ["pool"]}
    engines = {k: v for k, v in every.items() if k in args.engines.split(",")}
    cells: dict[str, dict[str, Any]] = {}
    for rnd in range(args.rounds):
        for n in (1, 4, 16):
            order = list(engines) if rnd % 2 == 0 else list(reversed(engines))
            for name in order:
                load_before = os.getloadavg()[0]
                t = time.perf_counter()
                results = await burst(client, engines[name], "chat", CHAT, n, args.max_tokens)
                wall = max(r["end"] for r in results) - t
                cell = cells.setdefault(f"{name}@{n}", {"engine": name, "clients": n, "rates": [], "ttft": [],
                                                         "load": []})
                cell["rates"].append(sum(r["tokens"] for r in results) / wall)
                cell["ttft"].extend(r["ttft"] for r in results)
                cell["load"].append(round((load_before + os.getloadavg()[0]) / 2, 2))
                print(f"round {rnd} {name:8s} x{n:<3d} {cell['rates'][-1]:7.1f} tok/s  p95 ttft "
                      f"{p95([r['ttft'] for r in results]):6.2f} s  load {cell['load'][-1]}", flush=True)
    for cell in cells.values():
        cell["median_tokens_per_s"] = statistics.median(cell["rates"])
        cell["p95_ttft_s"] = p95(cell["ttft"])
    return cells


def fresh_answers(path: Path, endpoint: str, prompts: list[str], max_tokens: int) -> list[str]:
    """The reference: llama-cpp-python in this process, its KV cache reset before every prompt.

    A long-lived engine reuses the KV of the longest prefix it shares with the previous request, so
    the rest of the prompt is evaluated in a different batch and rounds differently: its greedy answer
    can depend on what was asked before. Reset, every prompt is evaluated whole, as on a fresh start.
    """
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=N_CTX, n_threads=THREADS, verbose=False)
    out = []
    try:
        for p in prompts:
            llm.reset()
            if endpoint == "chat":
                r = llm.create_chat_completion(messages=[{"role": "user", "content": p}], max_tokens=max_tokens,
                                               temperature=0)
                out.append(str(r["choices"][0]["message"]["content"]))
            else:
                out.append(str(llm.create_completion(prompt=p, max_tokens=max_tokens, temperature=0)
                               ["choices"][0]["text"]))
    finally:
        llm.close()
    return out


async def identity(client: httpx.AsyncClient, args: argparse.Namespace) -> dict[str, Any]:
    """Greedy answers of every engine on the same prompts: in order, in reverse order, all at once."""
    out: dict[str, Any] = {}
    sets = [("smollm2", bundled.smollm2(), "chat", CHAT[:8], {"lcp": "lcp", "xl": "xl", "llama_cpp.server": "up1"})]
    if args.gemma:
        sets.append(("gemma3", bundled.gemma3(), "completion", COMPLETION, {"lcp": "gemma-lcp", "xl": "gemma-xl"}))
    for model, path, endpoint, prompts, engines in sets:
        reference = await asyncio.to_thread(fresh_answers, path, endpoint, prompts, args.identity_tokens)
        answers: dict[str, list[str]] = {"fresh llama-cpp-python (reference)": reference}
        for label, name in engines.items():
            async def one(p: str, name: str = name, endpoint: str = endpoint) -> str:
                return str((await burst(client, [name], endpoint, [p], 1, args.identity_tokens))[0]["text"])

            answers[f"{label}, one at a time"] = [await one(p) for p in prompts]
            answers[f"{label}, one at a time, reverse order"] = [await one(p) for p in reversed(prompts)][::-1]
            answers[f"{label}, all {len(prompts)} at once"] = [
                r["text"] for r in await burst(client, [name], endpoint, prompts, len(prompts), args.identity_tokens)
            ]
        out[model] = {
            "endpoint": endpoint,
            "prompts": prompts,
            "answers": answers,
            "identical_to_reference": {k: sum(a == b for a, b in zip(v, reference, strict=True))
                                       for k, v in answers.items()},
            "of": len(prompts),
        }
        print(model, json.dumps(out[model]["identical_to_reference"]), flush=True)
    return out


async def measure(base: str, key: str, args: argparse.Namespace) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base + "/v1", headers={"Authorization": f"Bearer {key}"},
                                 timeout=900, limits=limits) as client:
        for name in ("lcp", "xl", "up1", "up2", "up3"):  # warm-up: first requests pay one-off costs
            await burst(client, [name], "chat", CHAT, 1, 8)
        result: dict[str, Any] = {}
        if not args.skip_identity:
            result["identity"] = await identity(client, args)
        result["throughput"] = await throughput(client, args)
        return result


def table(result: dict[str, Any]) -> str:
    """The markdown tables for bench/README.md, from a results document."""
    names = {"lcp": "llama-cpp-python worker (today)", "xl": "xllamacpp (`parallel` slots)",
             "pool": "3 llama_cpp.server upstreams, fallbacks", "pool-rr": "3 llama_cpp.server upstreams, round-robin",
             "pool-lo": "3 llama_cpp.server upstreams, least_outstanding route"}
    lines = ["| engine | clients | aggregate tok/s (median of rounds) | p95 TTFT | machine load (1-min avg) |",
             "|---|---|---|---|---|"]
    for cell in result["throughput"].values():
        lines.append(f"| {names[cell['engine']]} | {cell['clients']} | {cell['median_tokens_per_s']:.1f} "
                     f"| {cell['p95_ttft_s']:.2f} s | {min(cell['load']):.1f}-{max(cell['load']):.1f} |")
    for model, ident in result.get("identity", {}).items():
        lines += ["", f"Greedy answers identical to a fresh llama-cpp-python (KV reset per prompt), {model} "
                      f"({ident['endpoint']}, {ident['of']} prompts):", "",
                  "| engine, requests | identical |", "|---|---|"]
        lines += [f"| {k} | {v}/{ident['of']} |" for k, v in ident["identical_to_reference"].items()]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--identity-tokens", type=int, default=48)
    ap.add_argument("--parallel", type=int, default=16, help="xllamacpp slots")
    ap.add_argument("--upstream-threads", type=int, default=1)
    ap.add_argument("--gemma", action="store_true", help="also check Gemma 3 270M greedy identity")
    ap.add_argument("--skip-identity", action="store_true")
    ap.add_argument("--engines", default="lcp,xl,pool,pool-rr,pool-lo", help="throughput cells to run")
    ap.add_argument("--table", action="store_true", help="print the README tables of the stored results")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "engines.json")
    args = ap.parse_args()
    out = args.out
    if args.table:
        print(table(json.loads(out.read_text())))
        return
    import xllamacpp

    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as d:
        home = Path(d)
        env = {**os.environ, "BASTION_HOME": str(home), "BASTION_KEY_HOME": str(home / "keys"),
               "HF_HUB_OFFLINE": "1"}
        try:
            upstreams = []
            for i in range(3):
                proc, url = start_upstream(home, i, args.upstream_threads)
                procs.append(proc)
                upstreams.append(url)
            for proc, url in zip(procs, upstreams, strict=True):
                wait_ready(url + "/models", proc)
            port = free_port()
            cfg = home / "b.toml"
            cfg.write_text(config(home, port, upstreams, args.parallel, args.gemma))
            cli = [sys.executable, "-m", "bastion.cli.main"]
            subprocess.run([*cli, "audit", "init", "-c", str(cfg)], env=env, capture_output=True, check=True)
            key = json.loads(subprocess.run([*cli, "keys", "create", "b", "-m", "*", "--json", "-c", str(cfg)],
                                            env=env, capture_output=True, text=True, check=True).stdout)["key"]
            log = (home / "serve.log").open("wb")
            gw = subprocess.Popen([*cli, "serve", "-c", str(cfg)], env=env, stdout=log, stderr=log)
            procs.append(gw)
            wait_ready(f"http://127.0.0.1:{port}/healthz", gw)
            started = time.time()
            result = asyncio.run(measure(f"http://127.0.0.1:{port}", key, args))
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
    result["conditions"] = {
        "started_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime(started)),
        "cpus": os.cpu_count(),
        "model": "SmolLM2-135M-Instruct Q4_1 (bundled:smollm2)",
        "max_tokens": args.max_tokens,
        "rounds": args.rounds,
        "n_ctx": N_CTX,
        "threads": {"lcp": THREADS, "xl": THREADS, "upstream_each": args.upstream_threads},
        "xl_parallel": args.parallel,
        "xllamacpp": xllamacpp.__version__,
    }
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(table(result))


if __name__ == "__main__":
    main()
