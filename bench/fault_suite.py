"""Fault suite: the same 16 upstream faults against Bastion and the LiteLLM proxy, side by side, one run.

The scenarios, the outcome each must have and the judge are those of the test suite
(tests/serve/fault_server.py, tests/serve/fault_outcomes.py): nothing is re-stated here. Each gateway
serves one model per scenario whose primary deployment is the fault server's scenario path and whose
fallback is a healthy upstream (the fault server's ``/fallback`` path, an answer nobody else gives), with
the same per-attempt limits: 4 s in all, 2 s to the first streamed byte, no retries.

    .venv/bin/python bench/fault_suite.py [--skip-litellm] [--no-netns]

By default the run re-executes itself in a new network namespace (``unshare -rn``, loopback only), so
the DNS-failure scenario cannot reach a real resolver and nothing leaves the machine. LiteLLM is
installed into bench/.venv-litellm first (bench/gateway_overhead.py). Results:
bench/results/fault_suite.json and the table in bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]
from gateway_overhead import LITELLM_KEY, ensure_litellm, run_litellm, start_bastion, stop  # noqa: E402
from tests.serve.fault_outcomes import (  # noqa: E402
    FIRST_BYTE_TIMEOUT_S,
    MAX_RESPONSE_BYTES,
    TIMEOUT_S,
    Verdict,
    judge,
    run,
)
from tests.serve.fault_server import FALLBACK, FALLBACK_TEXT, SCENARIOS, FaultServer  # noqa: E402

NETNS_FLAG = "BASTION_FAULT_SUITE_NETNS"


def bastion_models(server: FaultServer) -> str:
    """One [[models]] table per scenario, each falling back to the healthy upstream."""
    tables = [
        f'[[models]]\nname = "{s}"\nbackend = "openai"\nurl = "{server.url(s)}"\nupstream_model = "up"\n'
        f'fallbacks = ["{FALLBACK}"]\ntimeout_s = {TIMEOUT_S}\nfirst_byte_timeout_s = {FIRST_BYTE_TIMEOUT_S}\n'
        f"max_response_bytes = {MAX_RESPONSE_BYTES}\n"
        for s in SCENARIOS
    ]
    tables.append(f'[[models]]\nname = "{FALLBACK}"\nbackend = "openai"\nurl = "{server.url(FALLBACK)}"\n'
                  f'upstream_model = "up"\ntimeout_s = {TIMEOUT_S}\n')
    return "\n".join(tables)


def litellm_config(server: FaultServer) -> str:
    """The equivalent LiteLLM proxy configuration, with its documented settings:

    - per deployment ``timeout`` (whole call) and ``stream_timeout`` (first chunk of a stream):
      https://docs.litellm.ai/docs/proxy/timeout
    - ``router_settings.fallbacks`` to another model group, ``num_retries: 0`` (Bastion does not retry
      either; a retry of these permanent faults only adds time): https://docs.litellm.ai/docs/proxy/reliability
    - LiteLLM has no cap on an upstream's response size (Bastion's ``max_response_bytes``).
    """
    lines = ["model_list:"]
    for name in [*SCENARIOS, FALLBACK]:
        lines += [
            f"  - model_name: {name}",
            "    litellm_params:",
            "      model: openai/up",
            f"      api_base: {server.url(name)}",
            "      api_key: none",
            f"      timeout: {TIMEOUT_S}",
            f"      stream_timeout: {FIRST_BYTE_TIMEOUT_S}",
        ]
    lines += ["router_settings:", "  num_retries: 0", f"  timeout: {TIMEOUT_S}", "  fallbacks:"]
    lines += [f'    - {{"{s}": ["{FALLBACK}"]}}' for s in SCENARIOS if s != "ok"]
    lines += ["litellm_settings:", "  telemetry: false", "  num_retries: 0", f"  request_timeout: {TIMEOUT_S}"]
    return "\n".join(lines) + "\n"


def run_scenarios(name: str, base: str, key: str, server: FaultServer) -> list[Verdict]:
    """Every scenario once against one gateway, judged with the fault server's counts for that request."""
    verdicts = []
    for scenario in SCENARIOS:
        before = dict(server.received)
        seen = run(base, key, scenario)
        time.sleep(0.2)  # a gateway that follows a redirect late is still counted
        delta = {k: v - before.get(k, 0) for k, v in server.received.items() if v != before.get(k, 0)}
        verdict = judge(scenario, seen, delta, FALLBACK_TEXT)
        verdicts.append(verdict)
        print(f"{name:8s} {scenario:20s} {'PASS' if verdict.passed else 'FAIL'}  {verdict.seconds:5.2f} s  "
              f"{verdict.why}", flush=True)
    return verdicts


def in_network_namespace(argv: list[str]) -> None:
    """Re-run this script inside a new user + network namespace with only loopback up."""
    env = {**os.environ, NETNS_FLAG: "1"}
    script = 'ip link set lo up && exec "$0" "$@"'
    os.execvpe("unshare", ["unshare", "-rn", "sh", "-c", script, sys.executable, __file__, *argv], env)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skip-litellm", action="store_true")
    ap.add_argument("--no-netns", action="store_true", help="run in this network namespace (DNS may leave)")
    args = ap.parse_args()
    version = None if args.skip_litellm else ensure_litellm()  # installs (needs the network) before unshare
    if not args.no_netns and os.environ.get(NETNS_FLAG) != "1" and shutil.which("unshare"):
        in_network_namespace(sys.argv[1:])
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average": os.getloadavg()},
        "network_namespace": os.environ.get(NETNS_FLAG) == "1",
        "litellm_version": version,
    }
    table: dict[str, list[Verdict]] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as d, FaultServer() as server:
        tmp = Path(d)
        proc, port, key = start_bastion(tmp, 0, audit=True, tag="faults", models=bastion_models(server), allow="*")
        try:
            table["bastion"] = run_scenarios("bastion", f"http://127.0.0.1:{port}/v1", key, server)
        finally:
            stop(proc)
        if not args.skip_litellm:
            config = litellm_config(server)
            results["litellm_config"] = config
            lproc, lport = run_litellm(tmp, config)
            try:
                table["litellm"] = run_scenarios("litellm", f"http://127.0.0.1:{lport}/v1", LITELLM_KEY, server)
            finally:
                stop(lproc)
    results["seconds"] = round(time.monotonic() - started, 1)
    results["scores"] = {g: f"{sum(v.passed for v in vs if v.scenario != 'ok')}/{len(SCENARIOS) - 1}"
                         for g, vs in table.items()}
    results["scenarios"] = {
        s: {"outcome": SCENARIOS[s], **{g: {"passed": vs[i].passed, "why": vs[i].why, "seconds": vs[i].seconds}
                                         for g, vs in table.items()}}
        for i, s in enumerate(SCENARIOS)
    }
    out = ROOT / "bench" / "results" / "fault_suite.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"scores (faults passed, 'ok' not counted): {results['scores']}  in {results['seconds']} s")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
