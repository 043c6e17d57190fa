"""`bastion eval` end to end through the real CLI entry point, on the real SmolLM2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bastion.bundled import smollm2
from bastion.hashing import file_digest


def bastion(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bastion.cli.main", *args], capture_output=True, text=True,
                          timeout=600)


def _json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_run_list_show_compare_report(tmp_path: Path) -> None:
    a = _json(bastion("eval", "run", "--model", "smollm2", "--task", "arc_easy", "--limit", "2", "--json"))
    b = _json(bastion("eval", "run", "--model", "smollm2", "--task", "arc_easy", "--limit", "2", "--seed", "9",
                      "--no-context-reuse", "--json"))
    assert a["model_digest"] == file_digest(smollm2())
    assert a["suite_version"] == "core-1" and a["settings"]["limit"] == 2
    assert a["datasets"][0]["name"] == "arc_easy" and a["datasets"][0]["licence"] == "CC-BY-SA-4.0"
    assert b["target"]["detail"]["reuse_context"] is False
    assert [s["n"] for s in a["summaries"]] == [2]
    runs = _json(bastion("eval", "list", "--json"))
    assert {r["id"] for r in runs} == {a["id"], b["id"]}
    shown = _json(bastion("eval", "show", a["id"][:-2], "--items", "--json"))
    assert len(shown["items"]) == 2 and len(shown["items"][0]["output"]["logliks"]) == 4
    comp = _json(bastion("eval", "compare", a["id"], b["id"], "--json"))
    assert comp["tasks"][0]["task"] == "arc_easy"
    rep = _json(bastion("eval", "report", a["id"], b["id"], "-o", str(tmp_path / "r.html"), "--json"))
    assert Path(rep["report"]).read_text().count("<svg") >= 2


def test_model_and_base_url_together_is_a_usage_error() -> None:
    proc = bastion("eval", "run", "--model", "smollm2", "--base-url", "http://127.0.0.1:1/v1", "--json")
    assert proc.returncode == 2
    assert "exactly one of --model" in json.loads(proc.stdout)["error"]["message"]


def test_missing_model_file_exits_3_without_traceback(tmp_path: Path) -> None:
    proc = bastion("eval", "run", "--model", str(tmp_path / "nope.gguf"))
    assert proc.returncode == 3
    assert "Traceback" not in proc.stderr and "nope.gguf" in proc.stderr


def test_unknown_run_exits_5() -> None:
    proc = bastion("eval", "show", "no-such-run", "--json")
    assert proc.returncode == 5
    assert "bastion eval list" in json.loads(proc.stdout)["error"]["hint"]
