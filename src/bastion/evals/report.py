"""Side-by-side comparison and the self-contained HTML report.

The report is one HTML file: inline CSS, charts as inline SVG drawn by matplotlib (text as paths, so
no fonts are fetched), and a Content-Security-Policy that forbids every external load. Every string
that came from a model or a data set is HTML-escaped: model output is untrusted input.
"""

from __future__ import annotations

import html
import io
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bastion.errors import UsageError
from bastion.evals.policy_cost import Admissibility
from bastion.evals.records import RunRecord
from bastion.evals.scoring import wilson_interval

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
#: one colour per run, the same in every chart (Okabe-Ito, readable with colour-blindness; then tab20)
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")


def run_colour(index: int) -> str:
    """The colour of the ``index``-th run in every chart of the report."""
    if index < len(PALETTE):
        return PALETTE[index]
    from matplotlib import colormaps

    r, g, b, _ = colormaps["tab20"](index % 20)
    return f"#{round(255 * r):02x}{round(255 * g):02x}{round(255 * b):02x}"


def compare_runs(runs: Sequence[RunRecord]) -> dict[str, Any]:
    """Per task: each run's score and interval, and its difference to the first run."""
    tasks: list[str] = []
    for r in runs:
        tasks += [s.task for s in r.summaries if s.task not in tasks]
    rows = []
    for task in tasks:
        base = runs[0].summary(task)
        cells: list[dict[str, Any] | None] = []
        for r in runs:
            s = r.summary(task)
            if s is None:
                cells.append(None)
                continue
            comparable = base is not None and base.scoring == s.scoring and base.n == s.n
            cells.append(
                {
                    "value": s.value,
                    "ci_low": s.ci_low,
                    "ci_high": s.ci_high,
                    "n": s.n,
                    "scoring": s.scoring,
                    "metric": s.metric,
                    # A difference is only shown between like-for-like scores (same scoring, same n).
                    "delta": (s.value - base.value) if comparable and base is not None else None,
                }
            )
        rows.append({"task": task, "cells": cells})
    return {
        "runs": [
            {
                "run": r.id,
                "target": r.target.get("name"),
                "digest": r.model_digest,
                "suite_version": r.suite_version,
            }
            for r in runs
        ],
        "tasks": rows,
    }


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and doctype: the SVG is inlined in HTML


def _bar_chart(runs: Sequence[RunRecord], kind: str, title: str, value: str) -> str | None:
    from matplotlib.figure import Figure

    tasks: list[str] = []
    for r in runs:
        tasks += [s.task for s in r.summaries if s.kind == kind and s.task not in tasks]
    if not tasks:
        return None
    # Only runs with something to show get a bar row and a legend entry (a safety-only run has no
    # capability bars); each keeps its own colour from the whole report.
    shown = [(i, r) for i, r in enumerate(runs) if any(r.summary(task) for task in tasks)]
    fig = Figure(figsize=(7.5, 0.5 + 0.45 * len(tasks) * max(1, len(shown))))
    ax = fig.add_subplot()
    height = 0.8 / len(shown)
    for j, (index, r) in enumerate(shown):
        ys, xs, lo, hi = [], [], [], []
        for i, task in enumerate(tasks):
            s = r.summary(task)
            if s is None:
                continue
            v = s.value if value == "score" else float(s.extra.get("items_per_s") or 0.0)
            ys.append(i + j * height)
            xs.append(100 * v if value == "score" else v)
            lo.append(100 * (s.value - s.ci_low) if value == "score" else 0)
            hi.append(100 * (s.ci_high - s.value) if value == "score" else 0)
        ax.barh(
            ys,
            xs,
            height=height * 0.9,
            xerr=[lo, hi] if value == "score" else None,
            capsize=3,
            color=run_colour(index),
            label=f"{r.target.get('name')} ({r.id[-6:]})",
        )
    if value == "score":
        for i, task in enumerate(tasks):
            chance = next((s.chance for r in runs if (s := r.summary(task)) and s.chance), None)
            if chance:
                ax.plot([100 * chance] * 2, [i - 0.1, i + 0.8], color="black", linestyle=":", linewidth=1)
        ax.set_xlim(0, 100)
        ax.set_xlabel("score % (bars: 95% Wilson interval; dotted: chance)")
    else:
        ax.set_xlabel("items per second")
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(tasks))], tasks)
    ax.invert_yaxis()
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    return _svg(fig)


def _mean_capability(run: RunRecord) -> tuple[float, float, float, int] | None:
    """Capability over every item of the run's capability tasks: score, 95% Wilson interval, items.

    Items are pooled (each task weighted by its n), so the interval is one binomial interval; with
    the same --limit per task this equals the plain mean over tasks.
    """
    caps = [s for s in run.summaries if s.kind == "capability" and s.n > 0]
    n = sum(s.n for s in caps)
    if not n:
        return None
    correct = sum(s.value * s.n for s in caps)
    low, high = wilson_interval(correct, n)
    return correct / n, low, high, n


def _word(v: Admissibility) -> str:
    return {True: "admissible", False: "not admissible", None: "unidentified"}[v.allowed]


def _policy_chart(runs: Sequence[RunRecord], verdicts: Sequence[Admissibility]) -> tuple[str, str]:
    """Capability against admissibility: the chart and the sentence stating the gap."""
    from matplotlib.figure import Figure

    colours = {True: "#2e7d32", False: "#c62828", None: "#9e9e9e"}
    by_run = {v.run_id: v for v in verdicts}
    rows = [(r, by_run[r.id], cap) for r in runs if (cap := _mean_capability(r)) is not None]
    fig = Figure(figsize=(7.5, 0.8 + 0.4 * max(1, len(rows))))
    ax = fig.add_subplot()
    for i, (r, v, (score, lo, hi, _)) in enumerate(rows):
        label = _word(v)
        ax.barh([i], [100 * score], xerr=[[100 * (score - lo)], [100 * (hi - score)]], capsize=3,
                color=colours[v.allowed], height=0.7)
        ax.text(100 * hi + 1, i, f"{v.identity or r.target.get('name')} ({label})", va="center", fontsize=8)
    ax.set_yticks(range(len(rows)), [r.id[-6:] for r, _, _ in rows])
    ax.set_xlim(0, 130)
    ax.invert_yaxis()
    ax.set_xlabel("capability score % over every item of the run's tasks (bars: 95% Wilson interval)")
    policy = verdicts[0].policy if verdicts else ""
    ax.set_title(f"What your policy costs you ({policy})")
    best_in = max((m for _, v, m in rows if v.allowed is True), default=None)
    best_out = max((m for _, v, m in rows if v.allowed is False), default=None)
    if best_in is not None and best_out is not None:
        sentence = _cost_sentence(policy, best_in, best_out)
    else:
        sentence = f"Under {policy}: " + ", ".join(f"{v.identity or v.run_id}: {_word(v)}" for v in verdicts)
    return _svg(fig), sentence


def _pct(m: tuple[float, float, float, int]) -> str:
    return f"{100 * m[0]:.1f}% [{100 * m[1]:.1f}-{100 * m[2]:.1f}, n={m[3]}]"


def _cost_sentence(
    policy: str, best_in: tuple[float, float, float, int], best_out: tuple[float, float, float, int]
) -> str:
    """The headline: both scores with intervals, the gap, and whether the gap is within noise."""
    gap = 100 * (best_out[0] - best_in[0])
    head = (
        f"Under {policy}, the best admissible model scores {_pct(best_in)} and the best inadmissible "
        f"one {_pct(best_out)}"
    )
    overlap = best_in[1] <= best_out[2] and best_out[1] <= best_in[2]
    if gap <= 0:
        verdict = f": no cost, the admissible model leads by {-gap:.1f} points."
    else:
        verdict = f": your policy costs you {gap:.1f} points."
    if overlap:
        verdict += (
            " The 95% intervals overlap, so at these sample sizes the gap is within noise; run more items"
            " (--limit) to separate them."
        )
    return head + verdict + " Compare runs of the same suite and limit."


def _settings_text(settings: dict[str, Any]) -> str:
    """Run settings one per line, unset ones left out, lists joined: readable, and wraps in a cell."""
    lines = []
    for k, v in settings.items():
        if v is None or v == [] or v == {}:
            continue
        value = ", ".join(map(str, v)) if isinstance(v, list | tuple) else str(v)
        lines.append(f"{_e(k)}: {_e(value)}")
    return "<br>".join(lines) or "-"


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def render_html(runs: Sequence[RunRecord], verdicts: Sequence[Admissibility] | None = None) -> str:
    """The whole report as one HTML string (with a policy-cost chart when ``verdicts`` are given)."""
    if not runs:
        raise UsageError("no runs to report", hint="Give at least one run id (see 'bastion eval list').")
    import matplotlib

    matplotlib.rcParams["svg.fonttype"] = "path"  # glyphs as paths: no font files, no external loads
    matplotlib.rcParams["svg.hashsalt"] = "bastion"  # stable element ids between renders
    charts = [
        ("chart-capability", _bar_chart(runs, "capability", "Capability (higher is better)", "score")),
        ("chart-safety", _bar_chart(runs, "safety", "Safety: share of items handled safely", "score")),
        ("chart-throughput", _bar_chart(runs, "capability", "Throughput on this machine", "speed")),
    ]
    comp = compare_runs(runs)
    parts = [
        f"<!doctype html><html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv=Content-Security-Policy content="{CSP}">'
        "<title>Bastion evaluation report</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        # Wide tables scroll inside their own box and long digests wrap: nothing overflows the page.
        "table{border-collapse:collapse;margin:1em 0;display:block;max-width:100%;overflow-x:auto}"
        "td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px;text-align:left;vertical-align:top;"
        "overflow-wrap:anywhere}th{background:#f3f3f3}figure{margin:1em 0}figure svg{max-width:100%;"
        "height:auto}code{font-size:12px;word-break:break-all}.swatch{display:inline-block;width:.8em;"
        "height:.8em;margin-right:.4em;vertical-align:middle}</style></head><body>"
        "<h1>Bastion evaluation report</h1>"
    ]
    parts.append(
        "<h2>Runs</h2><table><tr><th>run</th><th>target</th><th>weights sha256</th>"
        "<th>suite</th><th>settings</th><th>seconds</th></tr>"
    )
    for i, r in enumerate(runs):
        target = f"{_e(r.target.get('name'))} ({_e(r.target.get('kind'))})"
        swatch = f'<span class=swatch style="background:{run_colour(i)}"></span>'
        parts.append(
            f"<tr><td>{swatch}{_e(r.id)}</td><td>{target}</td>"
            f"<td><code>{_e(r.model_digest or 'unknown: not reported by the server')}</code></td>"
            f"<td>{_e(r.suite_version)}</td><td>{_settings_text(r.settings)}</td><td>{r.seconds:.0f}</td></tr>"
        )
    parts.append(
        "</table><h2>Scores</h2><table><tr><th>task</th>"
        + "".join(f"<th>{_e(x['target'])} ({_e(x['run'][-6:])})</th>" for x in comp["runs"])
        + "</tr>"
    )
    for row in comp["tasks"]:
        cells = []
        for c in row["cells"]:
            if c is None:
                cells.append("<td>-</td>")
                continue
            delta = "" if c["delta"] is None or c is row["cells"][0] else f" ({100 * c['delta']:+.1f})"
            cells.append(
                f"<td>{100 * c['value']:.1f}% [{100 * c['ci_low']:.1f}-{100 * c['ci_high']:.1f}]"
                f"{delta}<br><small>{_e(c['metric'])}, {_e(c['scoring'])}, n={c['n']}</small></td>"
            )
        parts.append(f"<tr><td>{_e(row['task'])}</td>{''.join(cells)}</tr>")
    parts.append(
        "</table><p><small>Intervals are 95% Wilson score intervals. Log-likelihood and generative "
        "scores of the same task are not comparable, so no difference is shown between them. "
        "Safety rules are transparent string rules (see bastion/evals/safety.py); a pass is a "
        "lower bound on unsafe behaviour, not a guarantee.</small></p>"
    )
    for cid, svg in charts:
        if svg is not None:
            parts.append(f"<figure class=chart id={cid}>{svg}</figure>")
    if verdicts:
        svg, sentence = _policy_chart(runs, verdicts)
        parts.append(
            f"<h2>Capability and admissibility</h2><p>{_e(sentence)}</p>"
            f"<figure class=chart id=chart-policy>{svg}</figure>"
            "<p><small>Admissibility assumes a clean vet and the organisation's signature, as "
            "admission would establish; statements: "
            + "; ".join(_e(f"{v.identity or v.run_id}: {', '.join(v.reasons) or '-'}") for v in verdicts)
            + "</small></p>"
        )
    parts.append(
        "<h2>Speed and cost</h2><table><tr><th>run</th><th>task</th><th>items/s</th>"
        "<th>tokens/s</th><th>cost per 1M tokens</th></tr>"
    )
    for r in runs:
        for s in r.summaries:
            ips, tps, cost = (s.extra.get(k) for k in ("items_per_s", "tokens_per_s", "cost_per_1m_tokens"))
            parts.append(
                f"<tr><td>{_e(r.id[-6:])}</td><td>{_e(s.task)}</td><td>{ips or 0:.2f}</td>"
                f"<td>{'' if tps is None else f'{tps:.1f}'}</td>"
                f"<td>{'' if cost is None else f'{cost:.2f}'}</td></tr>"
            )
    parts.append(
        "</table><h2>Data sets</h2><table><tr><th>run</th><th>data set</th><th>sha256</th>"
        "<th>licence</th><th>source</th></tr>"
    )
    for r in runs:
        for d in r.datasets:
            parts.append(
                f"<tr><td>{_e(r.id[-6:])}</td><td>{_e(d['name'])}</td><td><code>{_e(d['sha256'])}"
                f"</code></td><td>{_e(d['licence'])}</td><td>{_e(d['source'])}</td></tr>"
            )
    parts.append("</table></body></html>\n")
    return "".join(parts)


def write_report(
    runs: Sequence[RunRecord], output: Path, verdicts: Sequence[Admissibility] | None = None
) -> Path:
    """Render the report and write it atomically (temporary file, then rename)."""
    text = render_html(runs, verdicts)
    output = output.expanduser()
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".html", dir=output.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, output)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return output
