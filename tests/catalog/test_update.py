"""Signed catalog updates: sign a diff, verify, show the diff, apply atomically to the overlay, audit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bastion.catalog import load_catalog, reload_catalog
from bastion.catalog.overlay import read_state
from bastion.catalog.update import apply_update, plan_update, sign_update, verify_update
from bastion.cli.main import app
from bastion.errors import IntegrityError
from bastion.signing import generate_key_pair, load_private_key, load_public_key

DIFF = """
[update]
serial = {serial}
description = "Qwen3.5 35B context re-checked; a new national model"

[[model]]
name = "Qwen3.5-35B-A3B"
aliases = ["Qwen/Qwen3.5-35B-A3B"]
developer = "Alibaba Cloud (Qwen team)"
country = "CN"
released = "2026-02"
params_b = 35.0
active_params_b = 3.0
context = {context}
license = "Apache-2.0"
verified = false
source = "https://huggingface.co/Qwen/Qwen3.5-35B-A3B"
[[model.citations]]
facts = ["context"]
url = "https://huggingface.co/Qwen/Qwen3.5-35B-A3B"
quote = "Context Length: {context} natively"

[[model]]
name = "Borealis-7B"
developer = "Nordic Lab"
country = "NO"
released = "2026-09"
params_b = 7.0
license = "MIT"
base_model = "Qwen2.5-7B"
relation = "fine-tune"
verified = false
source = "https://example.org/borealis"
"""


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    pair = generate_key_pair(tmp_path / "org")
    return pair.private_key, pair.public_key


def _signed(tmp_path: Path, private: Path, serial: int = 1, context: int = 1048576) -> Path:
    diff = tmp_path / f"diff-{serial}.toml"
    diff.write_text(DIFF.format(serial=serial, context=context))
    out = tmp_path / f"update-{serial}.sig.json"
    out.write_bytes(sign_update(diff, load_private_key(private)))
    return out


def test_signed_update_round_trips_into_the_overlay(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    private, public = keys
    home = tmp_path / "overlay"
    signed = _signed(tmp_path, private)
    update = verify_update(signed.read_bytes(), load_public_key(public), str(signed))
    before = load_catalog(overlay=home)
    plan = plan_update(update, before)
    assert [e.name for e in plan.added] == ["Borealis-7B"]
    change = next(c for c in plan.changed if c.field == "context")
    assert (change.old, change.new) == (262144, 1048576)
    assert change.sources == ("https://huggingface.co/Qwen/Qwen3.5-35B-A3B",)

    diff = apply_update(update, home)
    assert diff.applied
    after = load_catalog(overlay=home)
    assert after.get("Qwen3.5-35B-A3B").context == 1048576
    assert after.ancestry("Borealis-7B").countries == ("NO", "CN")
    # The shipped catalog is untouched: without the overlay the old fact is still there.
    assert load_catalog(overlay=tmp_path / "empty").get("Qwen3.5-35B-A3B").context == 262144
    assert [u.serial for u in read_state(home)] == [1]


def test_replaying_an_old_update_is_refused(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    private, public = keys
    home = tmp_path / "overlay"
    pub = load_public_key(public)
    new = _signed(tmp_path, private, serial=2, context=524288)
    old = _signed(tmp_path, private, serial=1)
    apply_update(verify_update(new.read_bytes(), pub, "new"), home)
    with pytest.raises(IntegrityError, match="serial 1 is not newer"):
        apply_update(verify_update(old.read_bytes(), pub, "old"), home)
    assert load_catalog(overlay=home).get("Qwen3.5-35B-A3B").context == 524288


def test_a_tampered_overlay_file_is_detected(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    private, public = keys
    home = tmp_path / "overlay"
    signed = _signed(tmp_path, private)
    apply_update(verify_update(signed.read_bytes(), load_public_key(public), "u"), home)
    applied = home / read_state(home)[0].file
    applied.write_text(applied.read_text().replace('license = "MIT"', 'license = "Apache-2.0"'))
    with pytest.raises(IntegrityError, match="changed after it was verified"):
        reload_catalog(home)


def test_cli_update_shows_the_diff_applies_and_audits(
    tmp_path: Path, keys: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    private, public = keys
    monkeypatch.setenv("BASTION_HOME", str(tmp_path / "home"))
    # Settings defaults are bound at import time, so point the audit log at this test's folder explicitly.
    audit = tmp_path / "audit"
    config = tmp_path / "bastion.toml"
    config.write_text(
        f'[audit]\npath = "{audit}/audit.db"\nsigning_key = "{audit}/signing.key"\n'
        f'body_key = "{audit}/body.key"\n'
    )
    monkeypatch.setenv("BASTION_CONFIG", str(config))
    runner = CliRunner()
    assert runner.invoke(app, ["audit", "init"]).exit_code == 0
    diff = tmp_path / "diff.toml"
    diff.write_text(DIFF.format(serial=1, context=1048576))
    signed = tmp_path / "u.sig.json"
    r = runner.invoke(app, ["catalog", "sign-update", str(diff), "--key", str(private), "-o", str(signed)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["catalog", "update", str(signed), "--trust", str(public), "--dry-run", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["applied"] is False
    r = runner.invoke(app, ["catalog", "update", str(signed), "--trust", str(public), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["applied"] and [a["name"] for a in doc["added"]] == ["Borealis-7B"]
    r = runner.invoke(app, ["catalog", "show", "Borealis-7B", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["ancestry"]["countries"] == ["NO", "CN"]
    r = runner.invoke(app, ["audit", "verify", "--json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["audit", "search", "--kind", "admin", "--json"])
    actions = [e for e in json.loads(r.output) if e["action"] == "catalog.update"]
    assert len(actions) == 1 and actions[0]["after_digest"], actions
    assert (tmp_path / "home" / "catalog" / "applied.json").exists()
