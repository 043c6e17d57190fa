"""``bastion db status`` and ``bastion db migrate`` on either backend, as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bastion.keys.store import migrations as keys_migrations
from bastion.store import PostgresTarget, Target
from tests.conftest import store_toml

COMPONENTS = ["keys", "registry", "quota", "withdrawal", "openai_files", "audit", "evals"]


def db(config: Path, home: Path, *args: str) -> dict[str, Any]:
    env = {**os.environ, "BASTION_HOME": str(home)}
    run = subprocess.run([sys.executable, "-m", "bastion.cli.main", "db", *args, "--json", "--config", str(config)],
                         capture_output=True, text=True, env=env, timeout=120, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    doc: dict[str, Any] = json.loads(run.stdout)
    return doc


def test_status_shows_pending_then_migrate_applies_every_component_once(tmp_path: Path, store_target: Target) -> None:
    home = tmp_path / "home"
    config = tmp_path / "bastion.toml"
    config.write_text(store_toml(store_target))
    before = db(config, home, "status")
    assert [c["component"] for c in before["components"]] == COMPONENTS
    assert all(c["applied"] == [] and c["pending"] for c in before["components"])
    assert before["pending"] == sum(len(c["pending"]) for c in before["components"]) >= 7
    if isinstance(store_target, Path):
        assert not store_target.exists()  # status reads; it never creates a database
    first = db(config, home, "migrate")
    assert {c["component"]: c["applied"] for c in first["components"]}["keys"] == [
        name for name, _ in keys_migrations.steps]
    again = db(config, home, "migrate")
    assert all(c["applied"] == [] for c in again["components"])  # nothing twice
    after = db(config, home, "status")
    assert after["pending"] == 0
    locations = {c["location"] for c in after["components"]}
    if isinstance(store_target, PostgresTarget):
        assert locations == {str(store_target)}  # one database for every component
    else:
        assert locations == {str(store_target), str(home / "audit" / "audit.db"), str(home / "evals.db")}
