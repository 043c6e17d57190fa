"""A real PostgreSQL server for the tests: Debian's binaries, initdb in a temporary directory.

PostgreSQL refuses to run as root, and CI runs as root: then the server runs as the ``postgres`` system
user the Debian package creates (or ``bastion-pg``, created here, where that user is missing). It
listens on a Unix socket in its own directory (trust) and on 127.0.0.1 at a free port (password, so the
credential errors can be tested). fsync is off: the tests check behaviour, not durability on power loss
(benches that measure durable commits start it with ``durable=True``).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

PG_BIN_CANDIDATES = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin")
USER = "bastion"
PASSWORD = "s3cret-" + secrets.token_hex(4)


def pg_bin() -> Path | None:
    """The directory holding initdb and pg_ctl, or None when PostgreSQL is not installed."""
    for d in PG_BIN_CANDIDATES:
        if (Path(d) / "initdb").exists():
            return Path(d)
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


def _run_as() -> str | None:
    """The non-root user the server runs as (None: we are not root, run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "bastion-pg"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "bastion-pg"], check=True)
    return "bastion-pg"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running test server; :meth:`url` names a database (or schema) on it."""

    root: Path
    port: int
    bin: Path
    user: str | None

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    def url(self, database: str = "bastion", schema: str | None = None) -> str:
        """A URL over the Unix socket (trust), optionally confining every table to ``schema``."""
        url = f"postgresql://{USER}@/{database}?host={quote(str(self.socket_dir), safe='')}&port={self.port}"
        if schema:
            url += "&options=" + quote(f"-csearch_path={schema}", safe="")
        return url

    def tcp_url(self, password: str = PASSWORD, database: str = "bastion") -> str:
        """A URL over 127.0.0.1 with a password (scram-sha-256)."""
        return f"postgresql://{USER}:{quote(password, safe='')}@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str) -> None:
        """Run one statement as the superuser on the ``bastion`` database."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.encode())

    def stop(self) -> None:
        subprocess.run(
            [str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "stop"],
            user=self.user, capture_output=True, timeout=60, check=False,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def start(durable: bool = False) -> Server:
    """initdb in a new temporary directory and start the server (a few seconds).

    ``durable``: PostgreSQL's defaults (fsync, synchronous_commit, full_page_writes on): a commit
    returns after its WAL reached the disk. Otherwise all three are off (tests: faster, same logic).
    """
    binary = pg_bin()
    if binary is None:
        raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    user = _run_as()
    root = Path(tempfile.mkdtemp(prefix="bastion-pg-"))
    (root / "sock").mkdir()
    pwfile = root / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if user is not None:
        info = pwd.getpwnam(user)
        for p in (root, root / "sock", pwfile):
            os.chown(p, info.pw_uid, info.pw_gid)
    subprocess.run(
        [str(binary / "initdb"), "-D", str(root / "data"), "-U", USER, f"--pwfile={pwfile}", "-A", "trust",
         "--auth-host=scram-sha-256", "--no-sync", "-E", "UTF8", "--locale=C"],
        user=user, capture_output=True, check=True, timeout=300,
    )
    port = _free_port()
    options = f"-p {port} -k {root / 'sock'} -c listen_addresses=127.0.0.1 -c max_connections=300"
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    subprocess.run(
        [str(binary / "pg_ctl"), "-D", str(root / "data"), "-o", options, "-l", str(root / "log"), "-w",
         "-t", "120", "start"],
        user=user, capture_output=True, check=True, timeout=180,
    )
    server = Server(root, port, binary, user)
    subprocess.run(
        [str(binary / "createdb"), "-h", str(root / "sock"), "-p", str(port), "-U", USER, "bastion"],
        capture_output=True, check=True, timeout=60,
    )
    return server
