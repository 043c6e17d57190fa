"""One operator key set may serve several logs; a partial set is refused, never completed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def init(home: Path, keys: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BASTION_HOME": str(home), "BASTION_KEY_HOME": str(keys)}
    return subprocess.run([sys.executable, "-m", "bastion.cli.main", "audit", "init", "--json"],
                          capture_output=True, text=True, env=env, timeout=60, check=False)


def test_a_second_log_reuses_the_operator_keys(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    first, second = init(tmp_path / "a", keys), init(tmp_path / "b", keys)
    assert first.returncode == 0 and second.returncode == 0, second.stdout + second.stderr
    assert json.loads(first.stdout)["key_id"] == json.loads(second.stdout)["key_id"]
    again = init(tmp_path / "a", keys)  # the log exists: refused, keys untouched
    assert again.returncode == 2 and "already exists" in again.stdout


def test_a_partial_key_set_is_refused(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    assert init(tmp_path / "a", keys).returncode == 0
    (keys / "audit-body.key").unlink()
    out = init(tmp_path / "b", keys)
    assert out.returncode == 2 and "incomplete" in out.stdout and "audit-body.key" in out.stdout
