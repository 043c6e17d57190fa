"""`bastion drill --eval`: what the fallback costs in capability, measured through a real gateway.

Gemma 3 270M (primary) falls back to SmolLM2 135M; both are the bundled GGUFs on real llama.cpp.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bastion.keys import KeyStore
from tests.serve.conftest import serving

CONFIG = """
[[models]]
name = "gemma"
path = "bundled:gemma3"
chat_format = "gemma"
n_threads = 1
fallbacks = ["smol"]

[[models]]
name = "smol"
path = "bundled:smollm2"
n_threads = 1
"""


def test_drill_reports_the_capability_difference_of_each_fallback(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    store = KeyStore(home / "bastion.db")
    key = store.create("drill", ["*"]).key
    store.close()
    with serving(home, CONFIG, {"gemma": "bundled:gemma3", "smol": "bundled:smollm2"}) as base:
        env = {**os.environ, "BASTION_HOME": str(home), "BASTION_KEY_HOME": f"{home}-keys"}
        run = subprocess.run(
            [sys.executable, "-m", "bastion.cli.main", "drill", "--gateway", base, "--key", key, "--model", "gemma",
             "--requests", "4", "--concurrency", "2", "--eval", "arc_easy", "--limit", "4", "--json",
             "--html", str(tmp_path / "drill.html"), "--config", str(home / "bastion.toml")],
            capture_output=True, text=True, env=env, timeout=900, check=False)
        assert run.returncode == 0, run.stdout + run.stderr
        (target,) = json.loads(run.stdout)["targets"]
        cap = target["capability"]
        assert cap["task"] == "arc_easy" and cap["limit"] == 4 and cap["scoring"] == "generative"
        primary, (fallback,) = cap["primary"], cap["fallbacks"]
        assert primary["model"] == "gemma" and primary["measured"] and primary["n"] == 4
        assert fallback["model"] == "smol" and fallback["measured"] and fallback["n"] == 4
        assert primary["digest"] != fallback["digest"]  # each measured on its own weights
        assert fallback["difference"] == round(fallback["value"] - primary["value"], 4)
        assert "capability on arc_easy" in (tmp_path / "drill.html").read_text()
        audit = subprocess.run([sys.executable, "-m", "bastion.cli.main", "audit", "search", "--json",
                                "--config", str(home / "bastion.toml")],
                               capture_output=True, text=True, env=env, timeout=120, check=True)
        assert '"capability"' in audit.stdout  # the drill report, with the difference, is audited

        bad = subprocess.run(
            [sys.executable, "-m", "bastion.cli.main", "drill", "--gateway", base, "--key", key, "--model", "gemma",
             "--eval", "arc_eazy", "--json", "--config", str(home / "bastion.toml")],
            capture_output=True, text=True, env=env, timeout=120, check=False)
        assert bad.returncode == 2 and "arc_easy" in bad.stdout
