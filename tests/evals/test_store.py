"""Runs and items round-trip through SQLite; a failed save writes nothing."""

from __future__ import annotations

import pytest
from tests.conftest import raw_sql

from bastion.errors import NotFound, UsageError
from bastion.evals.records import ItemRecord, RunRecord, TaskSummary
from bastion.evals.store import EvalStore
from bastion.store import ConstraintViolation, Target


def _run(run_id: str) -> RunRecord:
    s = TaskSummary("piqa", "capability", "loglikelihood", "acc_norm", 0.5, 2, 0.1, 0.9, 0.5, 0.5, 1.0,
                    {"acc": 0.5})
    target = {"name": "m", "kind": "llama.cpp", "digest": "sha256:ab"}
    datasets = [{"name": "piqa", "sha256": "sha256:cd"}]
    return RunRecord(run_id, "2026-01-01T00:00:00+00:00", target, "core", "core-1", {"seed": 1}, datasets,
                     [s], 2.0)


def test_run_and_items_round_trip(store_target: Target) -> None:
    store = EvalStore(store_target)
    items = [ItemRecord("piqa", "1", 1.0, {"logliks": [-1.0, -2.0]}), ItemRecord("piqa", "2", 0.0, {})]
    store.save(_run("20260101-000000-aaaaaa"), items)
    got = store.get("20260101-000000-a")
    assert got == _run("20260101-000000-aaaaaa")
    assert got.model_digest == "sha256:ab"
    assert store.items(got.id) == items
    assert [r.id for r in store.runs()] == [got.id]


def test_duplicate_run_id_writes_no_items(store_target: Target) -> None:
    store = EvalStore(store_target)
    store.save(_run("r1"), [ItemRecord("piqa", "1", 1.0, {})])
    with pytest.raises(ConstraintViolation):
        store.save(_run("r1"), [ItemRecord("piqa", "9", 1.0, {})])
    assert [i.item_id for i in store.items("r1")] == ["1"]


def test_unknown_and_ambiguous_ids(store_target: Target) -> None:
    store = EvalStore(store_target)
    store.save(_run("r-1"), [])
    store.save(_run("r-2"), [])
    with pytest.raises(NotFound):
        store.get("zzz")
    with pytest.raises(UsageError):
        store.get("r-")
    with pytest.raises(UsageError):
        store.get("")


def test_schema_is_created_by_a_migration(store_target: Target) -> None:
    EvalStore(store_target).close()
    assert raw_sql(store_target, "SELECT name FROM _migrations WHERE component='evals'") == [
        ("m001_runs_and_items",)]


def test_run_found_by_its_random_suffix(store_target: Target) -> None:
    store = EvalStore(store_target)
    store.save(_run("20260101-000000-abc123"), [])
    assert store.get("abc123").id == "20260101-000000-abc123"
