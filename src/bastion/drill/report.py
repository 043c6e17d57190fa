"""The drill report as one JSON document and as a self-contained HTML page (no scripts, no assets)."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

from bastion.drill.runner import TargetReport


def report(gateway: str, targets: list[TargetReport]) -> dict[str, Any]:
    """The whole drill: when, against what, and each target's outcome; ``ok`` when no client saw an error."""
    items = [t.to_json() for t in targets]
    return {
        "drill": "bastion",
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "gateway": gateway,
        "ok": all(t["client_errors"] == 0 and t["time_to_shift_s"] is not None for t in items),
        "targets": items,
    }


def to_html(doc: dict[str, Any]) -> str:
    """A page a person can read and file: one table per drilled deployment."""
    e = html.escape
    parts = [
        "<!doctype html><meta charset=utf-8><title>Bastion drill</title>",
        "<style>body{font:14px system-ui;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
        ".bad{color:#b00}.good{color:#070}</style>",
        f"<h1>Drill of {e(doc['gateway'])}</h1><p>{e(doc['time'])} — "
        + ("<b class=good>no client-visible errors</b></p>" if doc["ok"] else "<b class=bad>FAILED</b></p>"),
    ]
    for t in doc["targets"]:
        shift = "never" if t["time_to_shift_s"] is None else f"{t['time_to_shift_s']} s"
        parts.append(
            f"<h2>{e(t['model'])} → {e(', '.join(t['fallbacks']))}</h2>"
            f"<p>client errors: {t['client_errors']}; time to shift: {e(shift)}; "
            f"added p50 during failover: {t['added_p50_ms_during_failover']} ms</p>"
            "<table><tr><th>phase</th><th>requests</th><th>errors</th><th>p50 ms</th><th>p99 ms</th>"
            "<th>answered by</th></tr>"
        )
        for p in t["phases"]:
            by = ", ".join(f"{e(k)}: {v}" for k, v in p["answered_by"].items())
            parts.append(
                f"<tr><td>{e(p['phase'])}</td><td>{p['requests']}</td><td>{p['errors']}</td>"
                f"<td>{p['p50_ms']}</td><td>{p['p99_ms']}</td><td>{by}</td></tr>"
            )
        parts.append("</table>")
        parts.append(_capability_html(t.get("capability")))
    return "".join(parts)


def _capability_html(cap: dict[str, Any] | None) -> str:
    """The eval of primary and fallbacks (``--eval``), one row per deployment."""
    if cap is None:
        return ""
    e = html.escape
    rows = []
    for role, m in [("primary", cap["primary"]), *(("fallback", f) for f in cap["fallbacks"])]:
        if m["measured"]:
            score = f"{m['value']:.3f} [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}] (n={m['n']})"
        else:
            score = f"not measured: {e(m['reason'])}"
        diff = m.get("difference")
        rows.append(f"<tr><td>{role}</td><td>{e(m['model'])}</td><td>{score}</td>"
                    f"<td>{'' if diff is None else f'{diff:+.3f}'}</td></tr>")
    return (f"<p>capability on {e(cap['task'])} ({cap['limit']} items, {e(cap['scoring'])} scoring,"
            " through the gateway):</p><table><tr><th>role</th><th>deployment</th><th>score [95% CI]</th>"
            "<th>difference</th></tr>" + "".join(rows) + "</table>")
