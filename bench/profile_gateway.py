"""Profile the gateway's request path in-process (cProfile) while wrk drives it through nginx.

The same set-up as bench/gateway_overhead.py (nginx mock upstream, one wrk connection, API key), but the
gateway runs inside this process under uvicorn so cProfile sees the event loop thread: what each
request spends in authentication, quotas, DLP, Cedar, the upstream call and the response.

    .venv/bin/python bench/profile_gateway.py [--quotas] [--audit] [--duration 8] [--top 40]

Prints the functions with the most cumulative and own time per request; writes the raw profile to
bench/results/profile-<variant>.prof (not kept in git; open it with ``python -m pstats``).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
import threading
import time
from pathlib import Path

import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_overhead import configure_bastion, start_nginx, stop, wrk  # noqa: E402

from bastion.config import load_settings  # noqa: E402
from bastion.serve.app import build_app  # noqa: E402
from bastion.serve.server import build_gateway  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quotas", action="store_true")
    ap.add_argument("--audit", action="store_true")
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    variant = "quotas" if args.quotas else "plain"
    variant += "-audit" if args.audit else ""
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        nginx, nport = start_nginx(tmp)
        try:
            home = tmp / "home"
            os.environ["BASTION_HOME"] = str(home)
            cfg, key, port = configure_bastion(home, nport, args.audit, args.quotas)
            settings = load_settings(cfg, dict(os.environ))
            server = uvicorn.Server(uvicorn.Config(build_app(build_gateway(settings)), host="127.0.0.1",
                                                   port=port, loop="asyncio", access_log=False,
                                                   log_level="warning", lifespan="on"))
            profiler = cProfile.Profile()
            figures: dict[str, dict[str, float]] = {}

            def drive() -> None:
                while not server.started:
                    time.sleep(0.05)
                wrk(port, key, 1, 2, tmp)  # warm-up, not profiled
                loop = server_loop[0]
                loop.call_soon_threadsafe(profiler.enable)  # the loop thread is the one to profile
                figures["c1"] = wrk(port, key, 1, args.duration, tmp)
                loop.call_soon_threadsafe(profiler.disable)
                time.sleep(0.2)
                server.should_exit = True

            server_loop: list[object] = []
            original_startup = server.startup

            async def startup(sockets: object = None) -> None:
                import asyncio

                server_loop.append(asyncio.get_running_loop())
                await original_startup(sockets)  # type: ignore[arg-type]

            server.startup = startup  # type: ignore[method-assign]
            threading.Thread(target=drive, daemon=True).start()
            server.run()
        finally:
            stop(nginx)
    requests = figures["c1"]["rps"] * args.duration
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"profile-{variant}.prof"
    profiler.dump_stats(out)
    print(f"{variant}: wrk 1 conn p50 {figures['c1']['p50_ms']:.3f} ms, {figures['c1']['rps']:.0f} req/s "
          f"(~{requests:.0f} requests profiled; cProfile itself slows every call)")
    for order in ("cumulative", "tottime"):
        buf = io.StringIO()
        pstats.Stats(profiler, stream=buf).sort_stats(order).print_stats(args.top)
        print(buf.getvalue())
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
