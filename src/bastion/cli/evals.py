"""``bastion eval``: run offline capability and safety evaluations, list, show, compare and report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bastion.bundled import BUNDLED, resolve
from bastion.cli.options import ConfigOpt, JsonOpt, load_organisation
from bastion.cli.render import emit, err, out
from bastion.config import load_settings
from bastion.errors import UsageError
from bastion.evals import EvalStore, LlamaBackend, OpenAIBackend, RunOptions, RunRecord, run_eval
from bastion.evals.backends import Backend
from bastion.evals.policy_cost import admissibility
from bastion.evals.rag_eval import retrieval_summary, run_rag_eval, write_passages
from bastion.evals.report import compare_runs, write_report
from bastion.evals.runner import Progress as Progress_
from bastion.lineage import local_weight_evidence
from bastion.store import PostgresTarget

app = typer.Typer(help="Measure models offline: capability (ARC, HellaSwag, PIQA, GSM8K) and safety suites.",
                  no_args_is_help=True)

DbOpt = Annotated[Path | None,
                  typer.Option("--db", help="Results database (default: store.url when set, else "
                               "$BASTION_HOME/evals.db).")]


def _results(db: Path | None) -> EvalStore:
    """The results store: ``--db``, else the configured PostgreSQL database, else evals.db."""
    if db is not None:
        return EvalStore(db)
    target = load_settings(None).store.target()
    return EvalStore(target if isinstance(target, PostgresTarget) else None)


def _backend(model: str | None, base_url: str | None, api_key: str | None, model_name: str | None,
             reuse: bool, threads: int | None) -> Backend:
    if (model is None) == (base_url is None):
        raise UsageError("give exactly one of --model (GGUF path or bundled name) and --base-url",
                         hint="e.g. --model smollm2, or --base-url http://127.0.0.1:8080/v1 --api-key KEY")
    if base_url is not None:
        return OpenAIBackend(base_url, api_key=api_key, model=model_name)
    assert model is not None
    ref = f"bundled:{model}" if model in BUNDLED and not Path(model).exists() else model
    path = resolve(ref)
    return LlamaBackend(path, name=model if ref.startswith("bundled:") else path.name, reuse_context=reuse,
                        n_threads=threads)


def _fmt(v: float) -> str:
    return f"{100 * v:.1f}"


def _summary_table(run: RunRecord) -> Table:
    table = Table("task", "scoring", "metric", "score %", "95% CI", "n", "chance %", "items/s", "tok/s",
                  title=f"run {run.id}  {run.target.get('name')}  ({run.suite_version})")
    table.columns[0].no_wrap = True
    for s in run.summaries:
        tps = s.extra.get("tokens_per_s")
        ips = s.extra.get("items_per_s")
        table.add_row(s.task, s.scoring, s.metric, _fmt(s.value), f"{_fmt(s.ci_low)}-{_fmt(s.ci_high)}",
                      str(s.n), "" if s.chance is None else _fmt(s.chance), f"{ips:.2f}" if ips else "",
                      f"{tps:.1f}" if tps else "")
    return table


@app.command("run")
def run(
    model: Annotated[str | None, typer.Option("--model", "-m",
                     help=f"GGUF path or bundled model ({', '.join(BUNDLED[:2])}), run in-process.")] = None,
    base_url: Annotated[str | None, typer.Option("--base-url",
                        help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1 (Bastion serve)."
                        )] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="BASTION_EVAL_API_KEY",
                       help="API key for --base-url.")] = None,
    model_name: Annotated[str | None, typer.Option("--model-name",
                          help="Model id at --base-url (default: the first one listed).")] = None,
    suite: Annotated[str, typer.Option("--suite", "-s", help="core, safety or all.")] = "core",
    task: Annotated[list[str] | None, typer.Option("--task", "-t",
                    help="Run only these core tasks (repeatable): arc_easy, arc_challenge, hellaswag, "
                         "piqa, gsm8k.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n",
                     help="Items per task / safety category, sampled with --seed (default: all).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the subsample and the safety canary.")] = 1234,
    scoring: Annotated[str, typer.Option("--scoring",
                       help="auto (log-likelihood when the target supports it), loglikelihood, generative."
                       )] = "auto",
    no_reuse: Annotated[bool, typer.Option("--no-context-reuse",
                        help="Re-evaluate the shared context for every choice (for benchmarking).")] = False,
    threads: Annotated[int | None, typer.Option("--threads", help="llama.cpp threads (default 2).")] = None,
    cost_per_hour: Annotated[float | None, typer.Option("--cost-per-hour",
                             help="Hardware cost per hour, to report cost per 1M generated tokens.")] = None,
    rag: Annotated[str | None, typer.Option("--rag", help="Answer SciQ with and without retrieval from this "
                   "collection ('bastion eval sciq-passages' + 'bastion rag ingest' build one): the value of "
                   "retrieval as a number.")] = None,
    rag_key: Annotated[str | None, typer.Option("--rag-key", help="With --rag: search as this API key id."
                       )] = None,
    rag_group: Annotated[list[str] | None, typer.Option("--rag-group",
                         help="With --rag: search as an ad hoc principal in this group (repeatable).")
                         ] = None,
    rag_k: Annotated[int, typer.Option("--rag-k", min=1, max=20, help="With --rag: chunks put above each "
                     "question.")] = 3,
    config: ConfigOpt = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate a model offline and store the run (model digest, data digests, settings, every item)."""
    backend = _backend(model, base_url, api_key, model_name, not no_reuse, threads)
    options = RunOptions(suite=suite, tasks=tuple(task or ()), limit=limit, seed=seed, scoring=scoring,
                         cost_per_hour=cost_per_hour)
    try:
        with Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err, transient=True) as bar:
            job = bar.add_task("loading", total=None)

            def progress(label: str, done: int, total: int) -> None:
                bar.update(job, description=label, completed=done, total=total)

            if rag is not None:
                record, items = _run_with_retrieval(backend, rag, rag_key, rag_group, rag_k, config, options,
                                                    progress)
            else:
                record, items = run_eval(backend, options, progress)
    finally:
        backend.close()
    store = _results(db)
    store.save(record, items)
    store.close()

    def human() -> None:
        out.print(_summary_table(record))
        grounded = retrieval_summary(record)
        if grounded is not None:
            extra = grounded.extra
            out.print(f"retrieval from {extra['collection']!r}: {100 * extra['rag_gain']:+.1f}"
                      f" points of accuracy; the question's own passage retrieved for"
                      f" {100 * extra['support_retrieved']:.1f}% of questions")
        out.print(f"stored run {record.id} in {store.path} ({record.seconds:.0f} s)")

    emit(record.to_json(), as_json, human)


def _run_with_retrieval(
    backend: Backend, collection: str, key: str | None, groups: list[str] | None, k: int, config: Path | None,
    options: RunOptions, progress: Progress_,
) -> tuple[RunRecord, list[Any]]:
    """``--rag``: SciQ with and without retrieval, searching ``collection`` as the given principal."""
    from bastion.cli.rag import _principal
    from bastion.rag import RagStore

    settings = load_settings(config)
    principal = _principal(settings, key, groups)
    store = RagStore.open(settings)
    try:
        return run_rag_eval(
            backend, lambda q: store.search([collection], q, principal=principal, k=k), collection,
            limit=options.limit, seed=options.seed, scoring=options.scoring, k=k, progress=progress,
        )
    finally:
        store.close()


@app.command("sciq-passages")
def sciq_passages(
    folder: Annotated[Path, typer.Argument(help="Folder to write the passages into (created).")],
    classification: Annotated[str, typer.Option("--classification", help="Their label's classification.")
                              ] = "public",
    group: Annotated[list[str] | None, typer.Option("--group", "-g", help="Groups that may read them "
                     "(repeatable; default: everyone).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write SciQ's support passages (one text file each, with a folder.meta.toml label) for 'bastion rag
    ingest', so that 'eval run --rag' has the collection it measures."""
    written = write_passages(folder, classification, tuple(group or ("everyone",)))
    emit({"folder": str(folder), "passages": written}, as_json,
         lambda: out.print(f"wrote {written} SciQ passages and folder.meta.toml to {folder}"))


@app.command("list")
def list_(db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """List stored evaluation runs, newest first."""
    runs = _results(db).runs()

    def human() -> None:
        table = Table("target", "weights digest", "suite", "tasks", "seconds")
        table.add_column("run", no_wrap=True, min_width=22)
        for r in runs:
            table.add_row(str(r.target.get("name")), (r.model_digest or "unknown")[:19],
                          r.suite_version, str(len(r.summaries)), f"{r.seconds:.0f}", r.id)
        out.print(table)

    emit([r.to_json() for r in runs], as_json, human)


@app.command("show")
def show(
    run_id: Annotated[str, typer.Argument(help="Run id (or an unambiguous prefix).")],
    items: Annotated[bool, typer.Option("--items", help="Include every scored item.")] = False,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one run: scores with intervals, target and data set digests, and optionally its items."""
    store = _results(db)
    record = store.get(run_id)
    rows = store.items(record.id) if items else []
    data = {**record.to_json(), **({"items": [i.to_json() for i in rows]} if items else {})}

    def human() -> None:
        out.print(_summary_table(record))
        out.print(f"model digest: {record.model_digest or 'unknown (the server did not report it)'}")
        for d in record.datasets:
            out.print(f"  data {d['name']:24} {d['sha256'][:23]}  {d['licence']}")
        for it in rows:
            out.print(f"{it.task:20} {it.item_id:30} {it.score:.0f}")

    emit(data, as_json, human)


@app.command("compare")
def compare(
    run_ids: Annotated[list[str], typer.Argument(help="Two or more run ids.")],
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare runs side by side: score, interval and difference to the first run, per task."""
    if len(run_ids) < 2:
        raise UsageError("compare needs at least two runs", hint="See 'bastion eval list' for run ids.")
    store = _results(db)
    comp = compare_runs([store.get(r) for r in run_ids])

    def human() -> None:
        table = Table("task", *[f"{r['target']} ({r['run'][-6:]})" for r in comp["runs"]])
        table.columns[0].no_wrap = True
        for row in comp["tasks"]:
            cells = []
            for c in row["cells"]:
                if c is None:
                    cells.append("-")
                    continue
                delta = "" if c["delta"] is None else f" ({100 * c['delta']:+.1f})"
                cells.append(f"{_fmt(c['value'])} [{_fmt(c['ci_low'])}-{_fmt(c['ci_high'])}]{delta}")
            table.add_row(row["task"], *cells)
        out.print(table)

    emit(comp, as_json, human)


@app.command("report")
def report(
    run_ids: Annotated[list[str], typer.Argument(help="Runs to include.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write.")] = Path("report.html"),
    policy: Annotated[str | None, typer.Option(
        "--policy", help="Add 'what your policy costs you': pack name or .cedar file.")] = None,
    org: Annotated[Path | None, typer.Option("--org", help="organisation.toml for --policy.")] = None,
    identity: Annotated[list[str] | None, typer.Option(
        "--identity", help="RUN=CATALOG_NAME for runs whose model file cannot be identified.")] = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a self-contained HTML report (tables and SVG charts, no external assets)."""
    store = _results(db)
    runs = [store.get(r) for r in run_ids]
    verdicts = None
    if policy is not None:
        named = dict(pair.split("=", 1) for pair in identity or [] if "=" in pair)
        verdicts = admissibility(
            runs, policy, load_organisation(org), named, evidence_sources=local_weight_evidence()
        )
    path = write_report(runs, output, verdicts)
    emit({"report": str(path), "runs": [r.id for r in runs],
          "admissibility": [v.to_json() for v in verdicts or []]}, as_json,
         lambda: out.print(f"wrote {path} ({path.stat().st_size // 1024} KiB, {len(runs)} run(s))"))
