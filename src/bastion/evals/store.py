"""Evaluation results in SQLite (``evals.db``) or PostgreSQL (``store.url``): one row per run, one row
per scored item (forward-only migrations)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bastion.bundled import data_home
from bastion.errors import NotFound, UsageError, did_you_mean
from bastion.evals.records import ItemRecord, RunRecord, TaskSummary
from bastion.store import Connection, Migrations, Target, open_database

migrations = Migrations("evals")


@migrations
def m001_runs_and_items(conn: Connection) -> None:
    """Runs (with the exact model digest, suite version, data set digests, settings) and items."""
    conn.execute(
        "CREATE TABLE eval_runs (id TEXT PRIMARY KEY, created_at TEXT NOT NULL, target_name TEXT NOT NULL,"
        " model_digest TEXT, suite TEXT NOT NULL, suite_version TEXT NOT NULL, target_json TEXT NOT NULL,"
        " settings_json TEXT NOT NULL, datasets_json TEXT NOT NULL, summaries_json TEXT NOT NULL,"
        " seconds REAL NOT NULL)"
    )
    conn.execute(
        "CREATE TABLE eval_items (run_id TEXT NOT NULL REFERENCES eval_runs(id) ON DELETE CASCADE,"
        " seq INTEGER NOT NULL, task TEXT NOT NULL, item_id TEXT NOT NULL, score REAL NOT NULL,"
        " output_json TEXT NOT NULL, PRIMARY KEY (run_id, seq))"
    )
    conn.execute("CREATE INDEX eval_items_task ON eval_items(run_id, task)")


def default_db() -> Path:
    """``$BASTION_HOME/evals.db``."""
    return data_home() / "evals.db"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True)


class EvalStore:
    """Read and write evaluation runs."""

    def __init__(self, path: Target | None = None) -> None:
        self.path = path or default_db()
        self.conn = open_database(self.path, migrations)

    def save(self, run: RunRecord, items: list[ItemRecord]) -> None:
        """Store a finished run and all its items in one transaction (all or nothing)."""
        with self.conn.transaction():
            self.conn.execute(
                "INSERT INTO eval_runs VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (run.id, run.created_at, run.target.get("name", ""), run.model_digest, run.suite,
                 run.suite_version, _dumps(run.target), _dumps(run.settings), _dumps(run.datasets),
                 _dumps([s.to_json() for s in run.summaries]), run.seconds),
            )
            self.conn.executemany(
                "INSERT INTO eval_items VALUES (?,?,?,?,?,?)",
                [(run.id, i, it.task, it.item_id, it.score, _dumps(it.output)) for i, it in enumerate(items)],
            )

    def _row(self, row: tuple[Any, ...]) -> RunRecord:
        (rid, created, _name, _digest, suite, version, target, settings, datasets, summaries, secs) = row
        return RunRecord(id=rid, created_at=created, target=json.loads(target), suite=suite,
                         suite_version=version, settings=json.loads(settings), datasets=json.loads(datasets),
                         summaries=[TaskSummary(**s) for s in json.loads(summaries)], seconds=secs)

    def runs(self) -> list[RunRecord]:
        """All runs, newest first."""
        rows = self.conn.execute("SELECT * FROM eval_runs ORDER BY created_at DESC, id").fetchall()
        return [self._row(r) for r in rows]

    def get(self, run_id: str) -> RunRecord:
        """The run whose id is ``run_id``, or starts or ends with it (unambiguous)."""
        if not run_id:
            raise UsageError("empty run id", hint="See 'bastion eval list'.")
        part = run_id.replace("%", "").replace("_", "")  # LIKE wildcards are not part of any run id
        exact = self.conn.execute("SELECT * FROM eval_runs WHERE id = ?", (run_id,)).fetchall()
        rows = exact or self.conn.execute("SELECT * FROM eval_runs WHERE id LIKE ? OR id LIKE ? ORDER BY id",
                                          (part + "%", "%" + part)).fetchall()
        if not rows:
            ids = [r[0] for r in self.conn.execute("SELECT id FROM eval_runs").fetchall()]
            spellings = {i[-6:]: i for i in ids} | {i: i for i in ids}  # people type the random suffix
            hint = did_you_mean(run_id, spellings, "See 'bastion eval list'.")
            raise NotFound(f"no evaluation run {run_id!r} in {self.path}", hint=hint)
        if len(rows) > 1:
            raise UsageError(f"run id prefix {run_id!r} is ambiguous ({len(rows)} runs)",
                             hint="Give more characters of the id.")
        return self._row(rows[0])

    def items(self, run_id: str, task: str | None = None) -> list[ItemRecord]:
        """The scored items of a run (optionally one task), in run order."""
        sql = "SELECT task, item_id, score, output_json FROM eval_items WHERE run_id = ?"
        args: tuple[str, ...] = (run_id,)
        if task:
            sql += " AND task = ?"
            args += (task,)
        rows = self.conn.execute(sql + " ORDER BY seq", args).fetchall()
        return [ItemRecord(t, i, s, json.loads(o)) for t, i, s, o in rows]

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()
