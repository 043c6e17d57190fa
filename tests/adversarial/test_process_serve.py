"""Finding 17: a second ``serve`` on a port in use loaded every model, then died on uvicorn's raw errno and
deleted the running gateway's ``serve.pid``; a stale pid after ``kill -9`` could make ``policy reload``
signal an unrelated process.

Real gateway processes, a real port held by another socket, a real unrelated process (``sleep``) given
the dead gateway's place in the pid file.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

from bastion.errors import Busy, NotFound
from tests.adversarial.net_gateway import CLI, setup_home, start
from tests.serve.conftest import stop


def test_serve_on_a_port_in_use_fails_at_once_without_loading_a_model(tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    home = tmp_path / "home"
    home.mkdir()
    local = '[registry]\nenforce = false\n[[models]]\nname = "smollm2"\npath = "bundled:smollm2"\nn_threads = 1\n'
    env = setup_home(home, port, models=local)
    try:
        result = subprocess.run([*CLI, "serve"], env=env, capture_output=True, text=True, timeout=120, check=False)
    finally:
        holder.close()
    assert result.returncode == Busy.exit_code, result.stderr[-2000:]
    assert f"127.0.0.1:{port}" in result.stderr and "already in use" in result.stderr
    assert "no model was loaded" in result.stderr
    assert "model smollm2 loaded" not in result.stderr and "Traceback" not in result.stderr  # no weights touched


def test_a_second_gateway_leaves_the_running_ones_pid_file_alone(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    first = start(home)
    pid_file = home / "serve.pid"
    try:
        assert pid_file.read_text().strip() == str(first.proc.pid)
        second = subprocess.run([*CLI, "serve", "--port", "0"], env=first.env, capture_output=True, text=True,
                                timeout=60, check=False)  # fmt: skip
        assert second.returncode == Busy.exit_code, second.stderr[-2000:]
        assert f"pid {first.proc.pid}" in second.stderr and "already running" in second.stderr
        assert pid_file.read_text().strip() == str(first.proc.pid), "the running gateway's pid file was touched"
        reload = subprocess.run([*CLI, "policy", "reload", "--json"], env=first.env, capture_output=True,
                                text=True, timeout=60, check=False)  # fmt: skip
        assert reload.returncode == 0, reload.stderr
        assert f'"pid": {first.proc.pid}' in reload.stdout
        assert first.proc.poll() is None  # SIGHUP reloads the policy; the gateway keeps running
    finally:
        stop(first.proc)
    assert not pid_file.exists()  # a clean stop removes it


def test_policy_reload_never_signals_a_process_that_took_a_dead_gateways_pid(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    gateway = start(home)
    pid_file = home / "serve.pid"
    gateway.proc.send_signal(signal.SIGKILL)
    gateway.proc.wait(timeout=30)
    assert pid_file.exists()  # kill -9: nobody removed it
    # The kernel hands the dead gateway's pid to an unrelated process (here: we write one in its place).
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        pid_file.write_text(f"{bystander.pid}\n")
        reload = subprocess.run([*CLI, "policy", "reload"], env=gateway.env, capture_output=True, text=True,
                                timeout=60, check=False)  # fmt: skip
        assert reload.returncode == NotFound.exit_code, reload.stderr
        assert "no gateway holds it" in reload.stderr and "nothing was signalled" in reload.stderr
        time.sleep(0.5)
        assert bystander.poll() is None, "policy reload sent SIGHUP to an unrelated process"
    finally:
        bystander.kill()
        bystander.wait()
    # A new gateway takes the stale file over.
    again = start(home)
    try:
        assert pid_file.read_text().strip() == str(again.proc.pid)
    finally:
        stop(again.proc)


def test_a_pid_file_naming_another_process_than_its_lock_holder_is_not_believed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    gateway = start(home)
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        (home / "serve.pid").write_text(f"{bystander.pid}\n")  # edited while the gateway holds the lock
        reload = subprocess.run([*CLI, "policy", "reload"], env=gateway.env, capture_output=True, text=True,
                                timeout=60, check=False)  # fmt: skip
        assert reload.returncode == NotFound.exit_code, reload.stderr
        assert f"held by [{gateway.proc.pid}]" in reload.stderr
        time.sleep(0.5)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
        stop(gateway.proc)


