"""``bastion dlp scan``: a file or stdin, positions and types (never values), --json, --fail, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

MEMO = "TOP SECRET//NOFORN\nCall +44 20 7946 0958, mail a.b@example.com\nkey AKIAIOSFODNN7EXAMPLE\n"


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bastion.cli.main", "dlp", "scan", *args],
        input=stdin, capture_output=True, text=True, timeout=120, check=False,
    )


def test_scan_file_reports_positions_and_types(tmp_path: Path) -> None:
    memo = tmp_path / "memo.txt"
    memo.write_text(MEMO, encoding="utf-8")
    result = run(str(memo))
    assert result.returncode == 0, result.stderr
    assert f"{memo}:1:1  marking" in result.stdout
    assert f"{memo}:2:29  email" in result.stdout
    assert "a.b@example.com" not in result.stdout and "AKIA" not in result.stdout


def test_scan_stdin_json_and_fail(tmp_path: Path) -> None:
    result = run("-", "--json", "--fail", stdin=MEMO)
    assert result.returncode == 14
    doc = json.loads(result.stdout)
    assert doc["counts"] == {"aws_access_key": 1, "email": 1, "marking": 1, "phone": 1}
    assert doc["marking_level"] == 3 and doc["caveats"] == ["NOFORN"]
    assert "a.b@example.com" not in result.stdout
    clean = run("-", "--fail", stdin="A secret recipe, restricted to the family.\n")
    assert clean.returncode == 0, clean.stdout


def test_organisation_markings_come_from_the_configuration(tmp_path: Path) -> None:
    config = tmp_path / "bastion.toml"
    config.write_text('[dlp]\nmarkings = [{ label = "ACME CONFIDENTIAL", level = "secret" }]\n')
    result = run("-", "--json", "--config", str(config), stdin="acme confidential draft\n")
    assert json.loads(result.stdout)["marking_level"] == 2


def test_binary_or_missing_input_is_a_clear_error(tmp_path: Path) -> None:
    blob = tmp_path / "x.bin"
    blob.write_bytes(b"\xff\xfe\x00bad")
    result = run(str(blob))
    assert result.returncode == 3 and "not UTF-8" in result.stderr
    missing = run(str(tmp_path / "nope.txt"), "--json")
    assert missing.returncode == 3 and json.loads(missing.stdout)["error"]["code"] == "unusable_input"
