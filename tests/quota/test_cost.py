"""Cost from real usage rows: local hardware time and the pinned cloud price table, in `bastion usage` and /metrics."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bastion.errors import ConfigError
from bastion.quota import UsageStore
from bastion.quota.cost import load_prices

MODELS = """
[[models]]
name = "smol"
path = "bundled:smollm2"

[[models]]
name = "cloud"
backend = "openai"
url = "http://127.0.0.1:9/v1"
"""


def usage(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BASTION_HOME": str(config.parent)}
    return subprocess.run([sys.executable, "-m", "bastion.cli.main", "usage", "--json", "--config", str(config),
                           *args], capture_output=True, text=True, env=env, timeout=60, check=False)


def test_usage_prices_local_time_and_every_cloud_model_from_recorded_rows(tmp_path: Path) -> None:
    db = tmp_path / "bastion.db"
    store = UsageStore(db)
    # Two days of a local model (2 h answering in all) and one of an upstream, as the gateway settles them.
    store.record(("org",), "2026-11-01", "2026-11-02", "k1", "smol", 400_000, 300_000, seconds=5400.0)
    store.record(("org",), "2026-11-01", "2026-11-03", "k1", "smol", 200_000, 100_000, seconds=1800.0)
    store.record(("org",), "2026-11-01", "2026-11-03", "k2", "cloud", 400_000, 100_000, seconds=10.0)
    store.close()
    config = tmp_path / "bastion.toml"
    config.write_text(f'[store]\npath = "{db}"\n\n[cost]\nhardware_usd_per_hour = 1.5\n{MODELS}')

    run = usage(config, "--by", "model")
    assert run.returncode == 0, run.stderr
    cost = json.loads(run.stdout)["cost"]
    local = cost["local"]
    # smol only: 7200 s at $1.50/h = $3.00 for 1M tokens; 400k completion tokens / 7200 s
    assert local == {"seconds": 7200.0, "tokens_in": 600_000, "tokens_out": 400_000, "tokens_per_s": 55.56,
                     "usd_per_hour": 1.5, "usd": 3.0, "usd_per_mtok": 3.0}
    cloud = {row["model"]: row for row in cost["cloud"]}
    # All traffic (1M in, 500k out) at each list price: pinned against the shipped table.
    assert cloud["deepseek-chat"]["usd"] == pytest.approx(0.56 + 0.5 * 1.68)
    assert cloud["gpt-5.5"]["usd"] == pytest.approx(5.00 + 0.5 * 30.00)
    assert cloud["claude-sonnet-4"]["usd"] == pytest.approx(3.00 + 0.5 * 15.00)
    assert cloud["claude-sonnet-4"]["source_kind"] == "provider"
    assert [r["usd"] for r in cost["cloud"]] == sorted(r["usd"] for r in cost["cloud"])

    since = json.loads(usage(config, "--by", "model", "--since", "2026-11-03").stdout)
    assert since["cost"]["local"]["seconds"] == 1800.0  # only the rows from that day on


def test_the_shipped_price_table_is_dated_and_sourced() -> None:
    table = load_prices()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", table.table_date)
    assert {p.provider for p in table.prices} >= {"openai", "anthropic", "google", "mistral", "deepseek"}
    for p in table.prices:
        assert p.source.startswith("https://") and re.fullmatch(r"\d{4}-\d{2}-\d{2}", p.retrieved), p
        assert p.source_kind in ("provider", "secondary")
        assert p.source_kind == "provider" or (p.via or "").startswith("https://"), p  # a secondary names its page
        assert 0 < p.input_usd_per_mtok <= p.output_usd_per_mtok


def test_a_bad_price_table_is_a_configuration_error_naming_the_file(tmp_path: Path) -> None:
    table = tmp_path / "prices.toml"
    table.write_text('table_date = "2026-11-30"\n[models.x]\nprovider = "y"\ninput_usd_per_mtok = -1\n')
    with pytest.raises(ConfigError, match="prices.toml is not valid"):
        load_prices(table)
    config = tmp_path / "bastion.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "b.db"}"\n[cost]\nprices = "{table}"\n')
    run = usage(config)
    assert run.returncode == 4 and str(table) in run.stdout


@pytest.mark.anyio
async def test_metrics_count_cloud_equivalents_and_local_cost(tmp_path: Path) -> None:
    import httpx

    from bastion.config import Settings
    from bastion.keys import KeyStore
    from bastion.policy import AccessPolicy, CedarAuthorizer
    from bastion.serve.app import build_app
    from bastion.serve.backends.scripted import ScriptedBackend
    from bastion.serve.gateway import Gateway
    from bastion.serve.router import Router

    settings = Settings.model_validate({"audit": {"enabled": False}, "cost": {"hardware_usd_per_hour": 3600.0},
                                        "models": [{"name": "smol", "path": "bundled:smollm2"}]})
    keys = KeyStore(tmp_path / "keys.db")
    key = keys.create("k", ["*"]).key
    gateway = Gateway(settings, keys, Router({"smol": ScriptedBackend("smol", "a b c d")}),
                      CedarAuthorizer(AccessPolicy("permissive")))
    await gateway.start()
    try:
        transport = httpx.ASGITransport(app=build_app(gateway), client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw",
                                     headers={"Authorization": f"Bearer {key}"}) as c:
            for _ in range(2):
                r = await c.post("/v1/chat/completions", json={"model": "smol", "max_tokens": 4,
                                                               "messages": [{"role": "user", "content": "hi"}]})
                assert r.status_code == 200
            text = (await c.get("/metrics")).text
    finally:
        await gateway.stop()
    # 2 requests x (1 prompt + 4 completion tokens) on deepseek-chat: (2 x 0.56 + 8 x 1.68) / 1M
    line = re.search(r'bastion_cloud_equivalent_usd_total\{cloud_model="deepseek-chat",model="smol"\} (\S+)', text)
    assert line and float(line.group(1)) == pytest.approx((2 * 0.56 + 8 * 1.68) / 1e6)
    seconds = re.search(r'bastion_request_duration_seconds_sum\{endpoint="chat",model="smol"\} (\S+)', text)
    local = re.search(r'bastion_local_cost_usd_total\{model="smol"\} (\S+)', text)
    assert seconds and local and float(local.group(1)) == pytest.approx(float(seconds.group(1)))  # $3600/h = $1/s


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_a_usage_database_from_before_durations_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    import sqlite3

    from bastion.quota.store import m001_usage
    from bastion.store import Migrations, SqliteConnection

    db = tmp_path / "bastion.db"
    conn = sqlite3.connect(db, isolation_level=None)
    previous = Migrations("quota")  # the store as it was: m001 only
    previous(m001_usage)
    previous.apply(SqliteConnection(conn, str(db)))
    conn.execute("INSERT INTO daily_usage VALUES ('2026-11-01', 'k1', 'smol', 2, 10, 20)")
    conn.close()
    store = UsageStore(db)
    try:
        (old,) = store.daily()
        assert (old.requests, old.tokens_in, old.tokens_out, old.seconds) == (2, 10, 20, 0.0)
        store.record(("org",), "2026-11-01", "2026-11-01", "k1", "smol", 1, 2, seconds=1.5)
        (row,) = store.daily()
        assert (row.requests, row.tokens_out, row.seconds) == (3, 22, 1.5)
    finally:
        store.close()
