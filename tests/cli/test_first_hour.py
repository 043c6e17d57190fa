"""Small things a new user hit in the first hour, each as they met it: a real process, real files."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import bastion as bastion_pkg
from bastion.audit import AuditLog, RequestRecord
from bastion.config import load_settings
from bastion.errors import UsageError, did_you_mean
from bastion.evals.tasks import load_task


def bastion(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BASTION_HOME": str(home), "COLUMNS": "200"}
    env.pop("BASTION_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "bastion.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=180, check=False, input=stdin)


@pytest.fixture(scope="module")
def admitted_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home made by 'bastion init' with SmolLM2 admitted under sovereign-strict."""
    home = tmp_path_factory.mktemp("first-hour") / "home"
    assert bastion(home, "init", "--port", "0").returncode == 0
    admitted = bastion(home, "admit", "bundled:smollm2", "--name", "smollm2", "--policy", "sovereign-strict")
    assert admitted.returncode == 0, admitted.stderr
    return home


def test_version(tmp_path: Path) -> None:
    done = bastion(tmp_path, "--version")
    assert done.returncode == 0 and done.stdout.strip() == f"bastion {bastion_pkg.__version__}"


@pytest.mark.parametrize(
    "args",
    [("keys", "create", "--json"), ("policy", "check", "--no-such-flag", "--json"), ("vet", "--json")],
)
def test_a_usage_error_with_json_is_one_json_document(args: tuple[str, ...], tmp_path: Path) -> None:
    done = bastion(tmp_path, *args)
    assert done.returncode == 2
    doc = json.loads(done.stdout)  # the whole of stdout: exactly one document
    assert doc["error"]["code"] == "invalid_request" and doc["error"]["message"]
    assert "--help" in doc["error"]["hint"]


def test_policy_check_json_of_a_bad_policy_is_one_document(tmp_path: Path) -> None:
    bad = tmp_path / "mine.cedar"
    bad.write_text('permit (principal, action, resource) when { resource.licence == "MIT" };\n')
    done = bastion(tmp_path, "policy", "check", str(bad), "--json")
    assert done.returncode == 2
    doc = json.loads(done.stdout)
    assert doc["valid"] is False and doc["problems"] and doc["error"]["code"] == "invalid_request"


def test_bom_to_stdout_is_the_bom_alone(tmp_path: Path) -> None:
    done = bastion(tmp_path, "bom", "bundled:smollm2", "-o", "-")
    assert done.returncode == 0, done.stderr
    bom = json.loads(done.stdout)
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6"
    assert "verdict pass" in done.stderr
    assert not (tmp_path / "-").exists()


def test_bundled_names_work_where_a_path_is_taken(tmp_path: Path) -> None:
    identified = bastion(tmp_path, "catalog", "identify", "bundled:smollm2", "--json")
    assert identified.returncode == 0, identified.stderr
    assert json.loads(identified.stdout)["claimed_identity"] == "SmolLM2-135M-Instruct"
    explained = bastion(tmp_path, "policy", "explain", "bundled:gemma3", "--policy", "enterprise", "--json")
    assert explained.returncode == 0, explained.stderr
    assert json.loads(explained.stdout)["decision"] == "deny"


def test_every_kind_of_name_suggests_the_closest_on_a_typo(admitted_home: Path, tmp_path: Path) -> None:
    catalog = bastion(tmp_path, "catalog", "show", "SmolLM2-135M-Instruc")
    assert catalog.returncode == 5 and "Did you mean 'SmolLM2-135M-Instruct'" in catalog.stderr
    pack = bastion(tmp_path, "policy", "explain", "SmolLM2-135M-Instruct", "--policy", "permisive")
    assert pack.returncode == 5 and "Did you mean 'permissive'" in pack.stderr
    model = bastion(admitted_home, "models", "show", "smolm2")
    assert model.returncode == 5 and "Did you mean 'smollm2'" in model.stderr
    bundled = bastion(tmp_path, "vet", "bundled:smolm2")
    assert bundled.returncode == 5 and "Did you mean 'smollm2'" in bundled.stderr
    with pytest.raises(UsageError) as task:
        load_task("arc_easi", None, 0)
    assert "Did you mean 'arc_easy'" in (task.value.hint or "")
    created = json.loads(bastion(admitted_home, "keys", "create", "carol", "--model", "*", "--json").stdout)
    typo = created["id"][:-1] + ("0" if created["id"][-1] != "0" else "1")
    key = bastion(admitted_home, "keys", "revoke", typo)
    assert key.returncode == 5 and f"Did you mean '{created['id']}'" in key.stderr
    assert did_you_mean("zzz", ["smollm2"], "List them.") == "List them."


def test_keys_create_refuses_a_model_neither_configured_nor_admitted(admitted_home: Path) -> None:
    refused = bastion(admitted_home, "keys", "create", "bob", "--model", "gpt-4o")
    assert refused.returncode == 5 and "neither configured nor admitted" in refused.stderr
    assert "--allow-unknown" in refused.stderr
    assert bastion(admitted_home, "keys", "create", "bob", "--model", "gpt-4o", "--allow-unknown").returncode == 0
    assert bastion(admitted_home, "keys", "create", "bob", "--model", "smollm2").returncode == 0


@pytest.mark.skipif(shutil.which("script") is None, reason="util-linux 'script' gives the command a terminal")
def test_models_revoke_asks_on_a_terminal_and_yes_skips_the_question(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert bastion(home, "init", "--port", "0").returncode == 0
    assert bastion(home, "admit", "bundled:smollm2", "--name", "smollm2").returncode == 0
    command = f"{sys.executable} -m bastion.cli.main models revoke smollm2"
    env = {**os.environ, "BASTION_HOME": str(home)}
    declined = subprocess.run(["script", "-qec", command, "/dev/null"], input="n\n", capture_output=True,
                              text=True, env=env, timeout=120, check=False)
    assert "Revoke 'smollm2'?" in declined.stdout and declined.returncode != 0
    assert bastion(home, "models", "show", "smollm2").returncode == 0  # still admitted
    revoked = bastion(home, "models", "revoke", "smollm2", "--yes")  # no terminal here: never asks anyway
    assert revoked.returncode == 0 and "revoked 'smollm2'" in revoked.stdout


def test_audit_views_name_the_key_and_search_takes_its_name(admitted_home: Path) -> None:
    created = json.loads(bastion(admitted_home, "keys", "create", "alice", "--model", "smollm2", "--json").stdout)
    settings = load_settings(admitted_home / "bastion.toml")

    async def request() -> int:
        log = AuditLog.open(settings.audit)
        ref = await log.append_request(RequestRecord(
            request_id="req-alice", principal=created["id"], model="smollm2", weights_digest="sha256:" + "ab" * 32,
            backend="llama_cpp", decision="allow", status=200, tokens_in=3, tokens_out=5, latency_ms=12.0,
        ))
        log.close()
        return ref.seq

    seq = asyncio.run(request())
    found = json.loads(bastion(admitted_home, "audit", "search", "--principal", "alice", "--json").stdout)
    assert [(r["seq"], r["principal"], r["principal_name"]) for r in found] == [(seq, created["id"], "alice")]
    table = bastion(admitted_home, "audit", "search", "--kind", "request").stdout
    assert f"{created['id']} (alice)" in table
    shown = json.loads(bastion(admitted_home, "audit", "show", str(seq), "--json").stdout)
    assert shown["record"]["principal_name"] == "alice"
