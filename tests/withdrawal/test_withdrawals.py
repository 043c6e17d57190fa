"""Withdrawals reach a running gateway on its next request; only a signed restoration lifts one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bastion.signing import generate_key_pair, load_private_key, load_public_key
from bastion.store import Target
from bastion.withdrawal import WithdrawalStore
from tests.conftest import raw_sql, store_toml
from tests.serve.test_flow import CHAT, Flow, anyio_backend, flow, requests_in  # noqa: F401 - fixtures

pytestmark = pytest.mark.anyio


async def ask(flow: Flow) -> tuple[int, str]:  # noqa: F811
    async with flow.client("analyst") as c:
        r = await c.post("/v1/chat/completions", json={"model": "cloud", **CHAT})
    return r.status_code, r.headers.get("x-bastion-model", "")


@pytest.mark.parametrize(("kind", "target"), [("model", "cloud"), ("provider", "ACME-cloud"), ("country", "us")])
async def test_a_withdrawal_shifts_traffic_on_the_next_request(
    flow: Flow, tmp_path: Path, kind: str, target: str, store_target: Target  # noqa: F811
) -> None:
    pair = generate_key_pair(tmp_path / "org")
    db = store_target
    flow.gateway.withdrawals = WithdrawalStore(db, load_public_key(pair.public_key))
    assert await ask(flow) == (200, "cloud")
    admin = WithdrawalStore(db)  # another process would do the same: the CLI
    done = admin.withdraw(kind, target, "letter from the regulator", "os:test", load_private_key(pair.private_key))
    assert await ask(flow) == (200, "smol")
    assert requests_in(flow)[-1]["skipped"] == [{"model": "cloud", "reason": "withdrawn"}]
    # Someone with write access to the database but not the organisation key tries to lift it.
    raw_sql(db, "UPDATE withdrawals SET restored_at = '2026-01-01T00:00:00+00:00', restored_by = 'eve'")
    assert await ask(flow) == (200, "smol")
    raw_sql(db, "UPDATE withdrawals SET restored_at = NULL, restored_by = NULL")
    admin.restore(done.id, "os:test", load_private_key(pair.private_key))
    assert await ask(flow) == (200, "cloud")
    admin.close()


def test_withdraw_and_restore_commands_are_signed_and_audited(tmp_path: Path, store_target: Target) -> None:
    pair = generate_key_pair(tmp_path / "org")
    config = tmp_path / "bastion.toml"
    config.write_text(store_toml(store_target) + "[audit]\nenabled = false\n")
    env = {**os.environ, "BASTION_HOME": str(tmp_path)}

    def bastion(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bastion.cli.main", *args, "--config", str(config), "--json"],
                              capture_output=True, text=True, env=env, timeout=60, check=False)

    refused = bastion("withdraw", "--model", "cloud", "--key", str(pair.private_key))
    assert refused.returncode == 2 and "reason" in refused.stdout
    both = bastion("withdraw", "--model", "cloud", "--country", "US", "--reason", "x", "--key", str(pair.private_key))
    assert both.returncode == 2 and "exactly one" in both.stdout
    made = bastion("withdraw", "--country", "US", "--reason", "sanctions", "--key", str(pair.private_key))
    assert made.returncode == 0, made.stdout + made.stderr
    wid = json.loads(made.stdout)["id"]
    listed = json.loads(bastion("withdraw", "--list").stdout)
    assert [(w["kind"], w["target"], w["restored_at"]) for w in listed] == [("country", "US", None)]
    lifted = bastion("restore", str(wid), "--key", str(pair.private_key))
    assert lifted.returncode == 0 and json.loads(lifted.stdout)["restored_at"]
    store = WithdrawalStore(store_target, load_public_key(pair.public_key))
    assert store.active() == ()
    store.close()
