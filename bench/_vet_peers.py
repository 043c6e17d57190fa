"""Runs inside bench/.venv-peers: scan each file with modelscan and picklescan, print one JSON document.

Usage: python _vet_peers.py [--tool modelscan|picklescan] FILE... ; kept separate because modelscan pins
an older rich than Bastion. ``--tool`` runs one scanner only (the bench times each alone on the bombs).
"""

from __future__ import annotations

import json
import logging
import sys
import time

logging.disable(logging.CRITICAL)


def _modelscan(path: str) -> dict[str, object]:
    from modelscan.modelscan import ModelScan

    t = time.perf_counter()
    res = ModelScan().scan(path)
    dt = time.perf_counter() - t
    issues = res.get("issues", [])
    summary = res.get("summary", {})
    skipped = summary.get("skipped", {}).get("skipped_files", []) if isinstance(summary, dict) else []
    errors = res.get("errors", [])
    detail = "; ".join(sorted({f"{i.get('severity')} {i.get('operator')}" for i in issues}))[:120]
    if not issues and skipped:
        detail = "skipped (not scanned)"
    elif not issues and errors:
        detail = "error: " + str(errors[0].get("description", ""))[:100]
    return {"detected": bool(issues), "detail": detail, "seconds": dt, "error": bool(errors)}


def _picklescan(path: str) -> dict[str, object]:
    from picklescan.scanner import scan_file_path

    t = time.perf_counter()
    res = scan_file_path(path)
    dt = time.perf_counter() - t
    dangerous = sorted({f"{g.module}.{g.name}" for g in res.globals if str(g.safety).endswith("DANGEROUS")})
    detail = ", ".join(dangerous)[:120] or ("scan error" if res.scan_err else "")
    return {"detected": res.infected_files > 0, "detail": detail, "seconds": dt, "error": bool(res.scan_err)}


def main() -> None:
    args = sys.argv[1:]
    tools = (("modelscan", _modelscan), ("picklescan", _picklescan))
    if args[:1] == ["--tool"]:
        tools = tuple(t for t in tools if t[0] == args[1])
        args = args[2:]
    out: dict[str, dict[str, object]] = {name: {} for name, _ in tools}
    for path in args:
        for name, fn in tools:
            try:
                out[name][path] = fn(path)
            except Exception as exc:  # a peer crashing on a file is a result, not a bench failure
                out[name][path] = {
                    "detected": False,
                    "detail": f"crash: {type(exc).__name__}",
                    "seconds": 0.0,
                    "error": True,
                }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
