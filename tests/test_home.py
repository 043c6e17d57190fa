"""``bastion init``: one step to a consistent home, safe to re-run, keys replaced only with --force."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bastion.config import load_settings
from bastion.errors import Busy, UsageError
from bastion.home import init_home
from bastion.policy import Organisation
from bastion.signing import key_hint, load_public_key


def bastion(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BASTION_HOME": str(home)}
    env.pop("BASTION_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "bastion.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


def test_init_writes_a_home_whose_every_path_points_at_what_it_made(tmp_path: Path) -> None:
    home = tmp_path / "h"
    result = init_home(home, org_name="Acme Défense", country="FR", denied_countries=("CN", "RU"), port=0)
    assert [s.outcome for s in result.steps] == ["created"] * 4
    settings = load_settings(result.config)
    for path in (settings.store.path.parent, settings.registry.public_key, settings.registry.signing_key,
                 settings.audit.path, settings.policy.organisation):
        assert path is not None and path.is_relative_to(home.resolve()), path
    for path in (settings.audit.signing_key, settings.audit.body_key):  # the operator's, outside the home
        assert path.is_relative_to(Path(os.environ["BASTION_KEY_HOME"])) and not path.is_relative_to(home), path
    for path in (settings.registry.public_key, settings.registry.signing_key, settings.audit.path,
                 settings.audit.signing_key, settings.audit.body_key, settings.policy.organisation):
        assert path is not None and path.exists(), path
    assert stat.S_IMODE(settings.registry.signing_key.stat().st_mode) == 0o600
    org = Organisation.load(settings.policy.organisation)
    assert org.name == "Acme Défense" and org.country == "FR" and org.denied_countries == ("CN", "RU")
    assert org.trusted_signers == (key_hint(load_public_key(settings.registry.public_key)),)
    assert result.next_commands[0].startswith("bastion admit bundled:smollm2 --name smollm2")


def test_rerunning_init_keeps_everything_and_force_moves_the_old_key_aside(tmp_path: Path) -> None:
    home = tmp_path / "h"
    first = init_home(home, org_name="acme", port=0)
    again = init_home(home, org_name="someone else", port=0)
    assert [s.outcome for s in again.steps] == ["kept"] * 4
    assert again.key_hint == first.key_hint
    assert Organisation.load(home / "organisation.toml").name == "acme"
    forced = init_home(home, org_name="acme", port=0, force=True)
    assert forced.key_hint != first.key_hint
    assert [s.outcome for s in forced.steps] == ["replaced", "replaced", "replaced", "kept"]  # never the audit log
    assert Organisation.load(home / "organisation.toml").trusted_signers == (forced.key_hint,)
    assert len(list((home / "org").glob("signing-key.pem.replaced-*"))) == 1
    old_public = next((home / "org").glob("signing-key.pub.pem.replaced-*"))
    assert key_hint(load_public_key(old_public)) == first.key_hint


def test_init_refuses_a_port_in_use_and_bad_country_codes(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        with pytest.raises(Busy, match="in use"):
            init_home(tmp_path / "h", org_name="acme", port=held.getsockname()[1])
    with pytest.raises(UsageError, match="ISO 3166"):
        init_home(tmp_path / "h2", org_name="acme", denied_countries=("China",))


def test_init_from_the_cli_is_non_interactive_and_prints_the_next_commands(tmp_path: Path) -> None:
    done = bastion(tmp_path / "default-home", "init", "--home", str(tmp_path / "h"), "--port", "0", "--json",
                   "--denied-countries", "cn, ru")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["next"][0] == f"export BASTION_HOME={(tmp_path / 'h').resolve()}"
    assert doc["next"][1:] == ["bastion admit bundled:smollm2 --name smollm2 --policy sovereign-strict",
                               "bastion keys create alice --model smollm2", "bastion serve"]
    org = tomllib.loads((tmp_path / "h" / "organisation.toml").read_text())
    assert org["denied_countries"] == ["CN", "RU"] and org["name"] == "my-organisation"
    # The home's bastion.toml is what every command reads once BASTION_HOME points at it.
    checks = {c["name"]: c for c in json.loads(bastion(tmp_path / "h", "doctor", "--json").stdout)["checks"]}
    assert checks["configuration"]["detail"].startswith(f"valid ({(tmp_path / 'h').resolve() / 'bastion.toml'})")
