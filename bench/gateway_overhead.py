"""Gateway overhead: Bastion (audit off/on, quotas on) vs the LiteLLM proxy, same mock upstream, same run.

The mock upstream is nginx returning a fixed OpenAI chat-completion body (steady, ~0.05 ms). wrk sends
POST /v1/chat/completions with an API key to (a) nginx directly, (b) Bastion proxying to it and (c) the
LiteLLM proxy proxying to it, both with key auth on. We report p50/p99 latency on one connection (the
overhead is the difference to nginx alone) and the request rate with 32 connections.

    .venv/bin/python bench/gateway_overhead.py [--duration 10] [--skip-litellm] [--postgres]
        [--baseline-src DIR] [--rounds N] [--output FILE]

Needs Debian's nginx and wrk (installed when missing) and creates bench/.venv-litellm for LiteLLM.
Results: bench/results/gateway_overhead.json and the table in bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
BODY = json.dumps(
    {
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": 0,
        "model": "mock",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }
)
REQUEST = json.dumps({"model": "mock", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_debian(*packages: str) -> None:
    missing = [p for p in packages if shutil.which(p if p != "nginx-light" else "nginx") is None]
    if missing:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def wait(url: str, timeout: float = 120, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(req, timeout=2) as r:  # noqa: S310 - loopback only
                if r.status < 500:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{url} did not come up in {timeout}s")


def start_nginx(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  server {{
    listen 127.0.0.1:{port};
    location = /v1/models {{ default_type application/json; return 200 '{{"object":"list","data":[]}}'; }}
    location / {{ default_type application/json; return 200 '{BODY}'; }}
  }}
}}
"""
    )
    proc = subprocess.Popen(["nginx", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait(f"http://127.0.0.1:{port}/v1/models")
    return proc, port


#: limits far above what the bench sends, so every request is reserved and settled but none is refused
QUOTAS = ("[quotas]\nenabled = true\n[quotas.key]\nrpm = 100000000\ntpm = 100000000000\n"
          "budget_tokens = 100000000000\n[quotas.organisation]\nrpm = 100000000\n")


def bastion_env(home: Path, src: str | None = None) -> dict[str, str]:
    """The environment of a Bastion process for ``home``, from the source folder ``src`` if given."""
    env = {**os.environ, "BASTION_HOME": str(home)}
    if src:
        env["PYTHONPATH"] = src
    return env


def configure_bastion(
    home: Path, upstream: int, audit: bool, quotas: bool = False, extra: str = "", models: str | None = None,
    allow: str = "mock", src: str | None = None, store_url: str | None = None,
) -> tuple[Path, str, int]:
    """A gateway home: config, audit log, one key for the models matching ``allow``; (config, key, port).

    It serves model "mock" proxied to ``upstream`` unless ``models`` gives other [[models]] tables.
    ``src``: run Bastion from this source folder (PYTHONPATH) instead of the installed one.
    ``store_url``: keep keys, quotas and usage in this PostgreSQL database instead of a SQLite file.
    """
    port = free_port()
    home.mkdir()
    cfg = home / "bastion.toml"
    cfg.write_text(
        f'[server]\nport = {port}\n'
        + (f'[store]\nurl = "{store_url}"\n' if store_url else f'[store]\npath = "{home}/b.db"\n')
        + f'[audit]\nenabled = {str(audit).lower()}\n'
        + (QUOTAS if quotas else "")
        + extra
        + (models or f'[[models]]\nname = "mock"\nbackend = "openai"\nurl = "http://127.0.0.1:{upstream}/v1"\n')
    )
    env = bastion_env(home, src)
    if audit:
        subprocess.run([sys.executable, "-m", "bastion.cli.main", "audit", "init", "--config", str(cfg)],
                       env=env, capture_output=True, check=True)
    out = subprocess.run(
        [sys.executable, "-m", "bastion.cli.main", "keys", "create", "bench", "-m", allow, "--json",
         "--config", str(cfg)],
        env=env, capture_output=True, text=True, check=True,
    )
    return cfg, json.loads(out.stdout)["key"], port


def start_bastion(
    tmp: Path, upstream: int, audit: bool, quotas: bool = False, extra: str = "", tag: str = "",
    models: str | None = None, allow: str = "mock", src: str | None = None, store_url: str | None = None,
) -> tuple[subprocess.Popen[bytes], int, str]:
    """``bastion serve`` on a home made by :func:`configure_bastion`, once /healthz answers."""
    home = tmp / (f"bastion-home-{tag}" if tag else
                  f"bastion-home-{'audit' if audit else 'noaudit'}{'-quotas' if quotas else ''}")
    cfg, key, port = configure_bastion(home, upstream, audit, quotas, extra, models, allow, src, store_url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bastion.cli.main", "serve", "--config", str(cfg)],
        env=bastion_env(home, src), stdout=(home / "bastion.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    wait(f"http://127.0.0.1:{port}/healthz")
    return proc, port, key


LITELLM_VENV = BENCH / ".venv-litellm"
LITELLM_KEY = "sk-bench-master-key"


def ensure_litellm() -> str:
    """Install the LiteLLM proxy into bench/.venv-litellm when missing; its version."""
    if not (LITELLM_VENV / "bin" / "litellm").exists():
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run([str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"], check=True)
    out = subprocess.run([str(LITELLM_VENV / "bin" / "python"), "-c",
                          "import importlib.metadata as m; print(m.version('litellm'))"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def run_litellm(tmp: Path, config: str) -> tuple[subprocess.Popen[bytes], int]:
    """The LiteLLM proxy (one worker, offline, master key LITELLM_KEY) on ``config``, once it is live."""
    ensure_litellm()
    port = free_port()
    cfg = tmp / "litellm.yaml"
    cfg.write_text(config + f"general_settings:\n  master_key: {LITELLM_KEY}\n")
    env = {**os.environ, "LITELLM_OFFLINE_MODE": "true", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "LITELLM_LOG": "ERROR", "NO_DOCS": "true"}
    proc = subprocess.Popen(
        [str(LITELLM_VENV / "bin" / "litellm"), "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port),
         "--num_workers", "1"],
        env=env, stdout=(tmp / "litellm.log").open("wb"), stderr=subprocess.STDOUT,
    )
    wait(f"http://127.0.0.1:{port}/health/liveliness", timeout=300)
    return proc, port


def start_litellm(tmp: Path, upstream: int) -> tuple[subprocess.Popen[bytes], int, str]:
    proc, port = run_litellm(
        tmp,
        "model_list:\n"
        "  - model_name: mock\n"
        "    litellm_params:\n"
        "      model: openai/mock\n"
        f"      api_base: http://127.0.0.1:{upstream}/v1\n"
        "      api_key: none\n"
        "litellm_settings:\n"
        "  telemetry: false\n",
    )
    return proc, port, LITELLM_KEY


def wrk(
    port: int, key: str | None, connections: int, duration: int, tmp: Path, body: str = REQUEST
) -> dict[str, float]:
    script = tmp / "post.lua"
    headers = 'wrk.headers["Content-Type"] = "application/json"\n'
    if key:
        headers += f'wrk.headers["Authorization"] = "Bearer {key}"\n'
    script.write_text(f'wrk.method = "POST"\nwrk.body = [[{body}]]\n{headers}')
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script),
         f"http://127.0.0.1:{port}/v1/chat/completions"],
        capture_output=True, text=True, check=True,
    ).stdout
    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    requests = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return {"p50_ms": ms("50"), "p99_ms": ms("99"), "rps": rps, "non_2xx": float(errors.group(1)) if errors else 0,
            "requests": requests}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by process ``pid`` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(port: int, key: str | None, pid: int | None, connections: int, duration: int,
             tmp: Path) -> dict[str, float]:
    """:func:`wrk`, plus the gateway process's CPU time per request (robust to other load on the machine,
    which inflates latency but not the CPU a request costs)."""
    before = cpu_seconds(pid) if pid else 0.0
    result = wrk(port, key, connections, duration, tmp)
    if pid:
        result["cpu_ms_per_request"] = (cpu_seconds(pid) - before) * 1000 / max(result["requests"], 1)
    return result


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--skip-litellm", action="store_true")
    ap.add_argument("--skip-audit", action="store_true")
    ap.add_argument("--baseline-src", help="also run Bastion from this source folder (e.g. an export of main's"
                    " src/) with and without quotas: before/after in the same run")
    ap.add_argument("--postgres", action="store_true", help="also Bastion with and without quotas on a"
                    " temporary PostgreSQL (started like the tests') instead of SQLite files")
    ap.add_argument("--output", type=Path, default=BENCH / "results" / "gateway_overhead.json")
    ap.add_argument("--rounds", type=int, default=1, help="one-connection runs per target, taken in turns"
                    " (the median p50 is reported), so that load changes hit every target alike")
    args = ap.parse_args()
    ensure_debian("nginx-light", "wrk")
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_start": os.getloadavg()},
        "duration_s": args.duration,
        "rounds": args.rounds,
    }
    pg: Any = None
    if args.postgres:
        sys.path.insert(0, str(BENCH.parent))
        from tests import pg_server

        pg = pg_server.start()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        nginx, nport = start_nginx(tmp)
        procs = [nginx]
        try:
            targets: dict[str, tuple[int, str | None, int | None]] = {
                "nginx (mock upstream alone)": (nport, None, None)}
            gateways: list[tuple[str, dict[str, Any]]] = [("bastion -> nginx", {"audit": False})]
            if not args.skip_audit:
                gateways.append(("bastion+audit -> nginx", {"audit": True}))
            gateways.append(("bastion+quotas -> nginx", {"audit": False, "quotas": True}))
            if args.baseline_src:
                src = str(Path(args.baseline_src).resolve())
                gateways += [("baseline bastion -> nginx", {"audit": False, "src": src, "tag": "base"}),
                             ("baseline bastion+quotas -> nginx",
                              {"audit": False, "quotas": True, "src": src, "tag": "base-quotas"})]
            if pg is not None:
                for schema in ("plain", "quotas"):
                    pg.execute(f"CREATE SCHEMA {schema}")
                gateways += [("bastion (PostgreSQL) -> nginx",
                              {"audit": False, "store_url": pg.url(schema="plain"), "tag": "pg"}),
                             ("bastion+quotas (PostgreSQL) -> nginx",
                              {"audit": False, "quotas": True, "store_url": pg.url(schema="quotas"),
                               "tag": "pg-quotas"})]
                if args.baseline_src:  # before/after on PostgreSQL too (e.g. the per-request change checks)
                    for schema in ("base_plain", "base_quotas"):
                        pg.execute(f"CREATE SCHEMA {schema}")
                    gateways += [("baseline bastion (PostgreSQL) -> nginx",
                                  {"audit": False, "src": src, "store_url": pg.url(schema="base_plain"),
                                   "tag": "base-pg"}),
                                 ("baseline bastion+quotas (PostgreSQL) -> nginx",
                                  {"audit": False, "quotas": True, "src": src,
                                   "store_url": pg.url(schema="base_quotas"), "tag": "base-pg-quotas"})]
            for name, kwargs in gateways:
                proc, port, key = start_bastion(tmp, nport, **kwargs)
                procs.append(proc)
                targets[name] = (port, key, proc.pid)
            if not args.skip_litellm:
                lproc, lport, lkey = start_litellm(tmp, nport)
                procs.append(lproc)
                targets["litellm -> nginx"] = (lport, lkey, lproc.pid)
            for port, key, _ in targets.values():
                wrk(port, key, 1, 2, tmp)  # warm-up
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
            for _ in range(args.rounds):
                for name, (port, key, pid) in targets.items():
                    runs[name].append(measured(port, key, pid, 1, args.duration, tmp))
            for name, (port, key, pid) in targets.items():
                one = sorted(runs[name], key=lambda r: r["p50_ms"])[len(runs[name]) // 2]
                many = measured(port, key, pid, 32, args.duration, tmp)
                results[name] = {"c1": one, "c32": many, "c1_rounds": runs[name]}
                cpu = min((r.get("cpu_ms_per_request", float("nan")) for r in runs[name]), default=float("nan"))
                results[name]["cpu_ms_per_request_c1_best"] = cpu
                print(f"{name:34s} p50 {one['p50_ms']:.3f} ms  p99 {one['p99_ms']:.3f} ms  "
                      f"rps(c1) {one['rps']:.0f}  rps(c32) {many['rps']:.0f}  non-2xx {many['non_2xx']:.0f}  "
                      f"CPU/request (c1, best round) {cpu:.3f} ms")
            results["machine"]["load_average_end"] = os.getloadavg()
        finally:
            for p in procs:
                stop(p)
            if pg is not None:
                pg.stop()
    base = results["nginx (mock upstream alone)"]["c1"]
    for name in results:
        if "->" in name and not name.startswith("nginx"):
            r = results[name]
            r["overhead_p50_ms"] = r["c1"]["p50_ms"] - base["p50_ms"]
            r["overhead_p99_ms"] = r["c1"]["p99_ms"] - base["p99_ms"]
            print(f"{name}: overhead p50 {r['overhead_p50_ms']:.3f} ms, p99 {r['overhead_p99_ms']:.3f} ms")
    b = results["bastion -> nginx"]
    if "bastion+audit -> nginx" in results:
        a = results["bastion+audit -> nginx"]
        results["audit_p50_overhead_increase"] = a["overhead_p50_ms"] / max(b["overhead_p50_ms"], 1e-6) - 1
        print(f"audit on vs off: p50 overhead +{results['audit_p50_overhead_increase'] * 100:.0f}%")
    for prefix, suffix in (("", ""), ("baseline ", ""), ("", " (PostgreSQL)"), ("baseline ", " (PostgreSQL)")):
        if f"{prefix}bastion+quotas{suffix} -> nginx" in results:
            q, plain = (results[f"{prefix}bastion+quotas{suffix} -> nginx"],
                        results[f"{prefix}bastion{suffix} -> nginx"])
            added = q["overhead_p50_ms"] - plain["overhead_p50_ms"]
            label = f"{prefix}quotas{suffix}"
            results[f"{label}_p50_overhead_added_ms".replace(" ", "_")] = added
            print(f"{label} on vs off: p50 overhead {added:+.3f} ms "
                  f"(goal: total p50 overhead with quotas <= 1 ms: {q['overhead_p50_ms']:.3f} ms)")
    if "litellm -> nginx" in results:
        lite = results["litellm -> nginx"]
        results["ratios"] = {
            "litellm_over_bastion_p50_overhead": lite["overhead_p50_ms"] / max(b["overhead_p50_ms"], 1e-6),
            "bastion_over_litellm_rps_c32": b["c32"]["rps"] / max(lite["c32"]["rps"], 1e-6),
        }
        print("ratios:", json.dumps(results["ratios"]))
    out = args.output
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
