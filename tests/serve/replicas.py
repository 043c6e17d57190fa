"""Several independent ``bastion serve`` replicas sharing one store, as replicas on several hosts would.

Each replica has its own home (pid file, log, ``bastion.toml``) and port; they share the key store,
registry, audit log and quota counters through ``store`` (a SQLite file for the tests that need no
server, or a PostgreSQL schema), the organisation's public key, and the operator's audit keys
(``BASTION_KEY_HOME``). Used by the nginx reference deployment test, the propagation and quota tests
across replicas, the kill test and ``bench/scale.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bastion.keys import KeyStore
from bastion.store import Target
from tests.conftest import store_toml
from tests.serve.conftest import admit_all, free_port, stop, wait_http

#: the bundled SmolLM2, one thread per replica (three replicas share two cores)
SMOLLM2 = """
[[models]]
name = "smollm2"
path = "bundled:smollm2"
n_threads = 1
"""


@dataclass
class Replicas:
    """Running replicas: ``bases[i]`` is replica i's URL; ``key`` an API key allowed every model."""

    shared: Path
    store: Target
    homes: list[Path]
    ports: list[int]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    key: str = ""

    @property
    def bases(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def env(self, i: int = 0) -> dict[str, str]:
        """The environment replica ``i`` (and a CLI command run beside it) runs with."""
        return {**os.environ, "BASTION_HOME": str(self.homes[i]), "BASTION_KEY_HOME": f"{self.shared}-keys",
                "HF_HUB_OFFLINE": "1"}

    def bastion(self, *args: str, i: int = 0, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a ``bastion`` command with replica ``i``'s configuration."""
        return subprocess.run([sys.executable, "-m", "bastion.cli.main", *args, "--config",
                               str(self.homes[i] / "bastion.toml")],
                              env=self.env(i), capture_output=True, text=True, timeout=timeout)

    def audited(self) -> list[str]:
        """Request ids of every request entry in the shared audit log."""
        found = self.bastion("audit", "search", "--kind", "request", "--limit", "100000", "--json")
        assert found.returncode == 0, found.stdout + found.stderr
        doc: Any = json.loads(found.stdout)
        return [str(e["request_id"]) for e in (doc["entries"] if isinstance(doc, dict) else doc)]

    def start(self, i: int, timeout: float = 180) -> None:
        """(Re)start replica ``i`` and wait until it answers /healthz."""
        home = self.homes[i]
        with (home / "serve.log").open("ab") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bastion.cli.main", "serve", "--config", str(home / "bastion.toml")],
                stdout=fh, stderr=fh, env=self.env(i))
        if i < len(self.procs):
            self.procs[i] = proc
        else:
            self.procs.append(proc)
        wait_http(f"{self.bases[i]}/healthz", proc, home / "serve.log", timeout=timeout)


@contextlib.contextmanager
def replicas(
    tmp: Path,
    store: Target | None = None,
    count: int = 3,
    models: str = SMOLLM2,
    admit: dict[str, str] | None = None,
    config: str = "",
    server: str = "",
    groups: tuple[str, ...] = (),
) -> Iterator[Replicas]:
    """Start ``count`` replicas sharing ``store`` (default: a SQLite file under ``tmp/shared``).

    ``models``: the ``[[models]]`` tables; ``admit``: name -> path admitted first (default: SmolLM2);
    ``config``: more configuration (other tables; ``{home}`` stands for each replica's own home, e.g. for
    a policy file per host); ``server``: more lines for ``[server]``; ``groups``:
    the groups of the key made for the test. Stops every replica still running on exit.
    """
    shared = tmp / "shared"
    shared.mkdir(parents=True, exist_ok=True)
    target: Target = store if store is not None else shared / "bastion.db"
    keys = KeyStore(target)
    key = keys.create("alice", ["*"], groups=list(groups)).key
    keys.close()
    admit_all(shared, admit if admit is not None else {"smollm2": "bundled:smollm2"}, store=target)
    ports = [free_port() for _ in range(count)]
    running = Replicas(shared, target, [tmp / f"replica{i}" for i in range(count)], ports, key=key)
    audit_path = shared / "audit" / "audit.db"
    for home, port in zip(running.homes, ports, strict=True):
        home.mkdir(parents=True, exist_ok=True)
        (home / "bastion.toml").write_text(
            f"[server]\nport = {port}\naccess_log = true\nadmin_loopback = false\n{server}\n\n"
            f"{store_toml(target)}\n[audit]\npath = \"{audit_path}\"\n\n"
            f"[registry]\npublic_key = \"{shared / 'org' / 'signing-key.pub.pem'}\"\n\n"
            f"{config.replace('{home}', str(home))}\n{models}",
            encoding="utf-8")
    init = running.bastion("audit", "init")
    assert init.returncode == 0, init.stdout + init.stderr
    try:
        for i in range(count):
            running.start(i)
        yield running
    finally:
        for proc in running.procs:
            if proc.poll() is None:
                stop(proc)
