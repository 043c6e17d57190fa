"""``bastion drill``: take deployments away from a live gateway, drive traffic, report what clients saw."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.table import Table

from bastion.audit import record_admin
from bastion.cli.options import ConfigOpt, JsonOpt
from bastion.cli.render import emit, out
from bastion.config import load_settings
from bastion.drill import Drill, DrillOptions, report, to_html
from bastion.drill.capability import EvalPlan
from bastion.errors import BackendUnavailable, UsageError, did_you_mean
from bastion.evals.tasks import TASKS
from bastion.signing.keys import write_atomic


def register(app: typer.Typer) -> None:
    """Add the ``drill`` command to ``app``."""

    @app.command("drill")
    def drill(
        gateway: Annotated[str, typer.Option("--gateway", help="Gateway URL, e.g. http://127.0.0.1:8080.")],
        key: Annotated[str, typer.Option("--key", envvar="BASTION_DRILL_KEY", help="API key for traffic.")],
        admin_key: Annotated[
            str | None, typer.Option("--admin-key", help="Administrator key (not on the gateway host).")
        ] = None,
        model: Annotated[
            list[str] | None, typer.Option("--model", help="Deployment (default: upstreams with fallbacks).")
        ] = None,
        requests: Annotated[int, typer.Option("--requests", min=1, help="Requests while it is away.")] = 40,
        concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=256)] = 4,
        output: Annotated[Path | None, typer.Option("--output", "-o", help="JSON report file.")] = None,
        html_out: Annotated[Path | None, typer.Option("--html", help="Write the HTML report here.")] = None,
        eval_task: Annotated[
            str | None, typer.Option("--eval", help="Also score this eval task on primary and fallbacks.")
        ] = None,
        limit: Annotated[int, typer.Option("--limit", min=1, help="Items of the --eval task.")] = 20,
        kill_pid: Annotated[
            int | None,
            typer.Option("--kill-pid", help="Instead of taking the deployment away, SIGKILL this process"
                         " (the upstream, on this host) once traffic flows; needs one --model."),
        ] = None,
        config: ConfigOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Take each deployment away in turn, drive traffic, give it back; exit 9 if a client saw an error."""
        settings = load_settings(config)
        if eval_task is not None and eval_task not in TASKS:
            raise UsageError(f"unknown eval task {eval_task!r}",
                             hint=did_you_mean(eval_task, list(TASKS), f"Tasks: {', '.join(TASKS)}."))
        plan = EvalPlan(eval_task, limit) if eval_task is not None else None
        options = DrillOptions(requests, concurrency, eval=plan)
        if kill_pid is not None:
            if len(model or []) != 1:
                raise UsageError("--kill-pid needs exactly one --model: the deployment that process serves")
            options = DrillOptions(requests, concurrency, take_away=False, on_failover=_killer(kill_pid),
                                   eval=plan)
        runner = Drill(gateway, key, admin_key)
        try:
            targets = runner.targets(model)
            results = [runner.run(t, options) for t in targets]
        finally:
            runner.close()
        doc = report(gateway, results)
        if output is not None:
            write_atomic(output, orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
        if html_out is not None:
            write_atomic(html_out, to_html(doc).encode())
        record_admin(settings.audit, "drill.report", details=doc)

        def human() -> None:
            table = Table("deployment", "fallbacks", "errors", "time to shift", "added p50", "answered by")
            for t in doc["targets"]:
                during = t["phases"][1]["answered_by"]
                table.add_row(t["model"], ", ".join(t["fallbacks"]), str(t["client_errors"]),
                              f"{t['time_to_shift_s']} s", f"{t['added_p50_ms_during_failover']} ms",
                              ", ".join(f"{k}: {v}" for k, v in during.items()))
            out.print(table)
            for t in doc["targets"]:
                cap = t.get("capability")
                if cap is None:
                    continue
                for m in [cap["primary"], *cap["fallbacks"]]:
                    score = f"not measured: {m['reason']}"
                    if m["measured"]:
                        score = f"{m['value']:.3f} (n={m['n']})"
                    diff = f", {m['difference']:+.3f} against {t['model']}" if "difference" in m else ""
                    out.print(f"{cap['task']} on {m['model']}: {score}{diff}")
            if not doc["targets"]:
                out.print("No upstream deployment with fallbacks to drill; name one with --model.")

        emit(doc, as_json, human)
        if not doc["ok"]:
            raise typer.Exit(BackendUnavailable.exit_code)


def _killer(pid: int) -> Callable[[], None]:
    """SIGKILL ``pid`` once the drill's failover phase starts (a process that is already gone is fine)."""
    if pid <= 1:
        raise UsageError(f"--kill-pid {pid} is not a process the drill may kill")
    try:
        os.kill(pid, 0)
    except ProcessLookupError as exc:
        raise UsageError(f"--kill-pid {pid}: no such process") from exc

    def kill() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    return kill
