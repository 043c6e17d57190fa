"""For every start-up failure of the real ``bastion serve`` we can produce, ``bastion doctor`` reports it first.

Each case makes a fresh home with ``bastion init``, breaks one thing, runs the real ``bastion serve``
(a subprocess, real port, real llama.cpp import) and then ``bastion doctor --json`` against the same
home: doctor must exit non-zero and carry serve's exact message and hint in a failing check.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from bastion import bundled
from tests.serve.conftest import stop

ERROR = re.compile(r"^error: (?P<message>.*)\nhint: (?P<hint>.*)$", re.MULTILINE)


def bastion(home: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BASTION_HOME": str(home), "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    env.pop("BASTION_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "bastion.cli.main", *args],
        capture_output=True, text=True, env=env, timeout=timeout, check=False,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fresh_home(root: Path) -> Path:
    home = root / "home"
    made = bastion(home, "init", "--org-name", "acme", "--port", str(free_port()))
    assert made.returncode == 0, made.stderr
    return home


def edit_config(home: Path, old: str, new: str) -> None:
    config = home / "bastion.toml"
    text = config.read_text()
    assert old in text, f"{old!r} not in {config}"
    config.write_text(text.replace(old, new))


def port_of(home: Path) -> int:
    match = re.search(r"^port = (\d+)$", (home / "bastion.toml").read_text(), re.MULTILINE)
    assert match
    return int(match.group(1))


def serve_once(home: Path) -> tuple[int | None, str]:
    """Run the real gateway: (exit status, stderr) if it stops by itself, else (None, its log so far)."""
    env = {**os.environ, "BASTION_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env.pop("BASTION_CONFIG", None)
    log = home / "serve.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bastion.cli.main", "serve"], stdout=fh, stderr=subprocess.STDOUT, env=env
        )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return proc.returncode, log.read_text()
            try:
                httpx.get(f"http://127.0.0.1:{port_of(home)}/healthz", timeout=2)
                return None, log.read_text()  # up (healthy or not): start-up is over
            except httpx.HTTPError:
                time.sleep(0.3)
        raise AssertionError(f"serve neither started nor stopped in 90 s:\n{log.read_text()}")
    finally:
        if proc.poll() is None:
            stop(proc)


def doctor_failures(home: Path) -> list[dict[str, str]]:
    done = bastion(home, "doctor", "--json")
    assert done.returncode == 4, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is False
    return [c for c in report["checks"] if c["status"] == "fail"]


# -- ways to break a fresh home ------------------------------------------------------------------------


def no_public_key(home: Path) -> None:
    (home / "org" / "signing-key.pub.pem").unlink()


def garbage_public_key(home: Path) -> None:
    (home / "org" / "signing-key.pub.pem").write_text("not a key\n")


def audit_not_initialised(home: Path) -> None:
    shutil.rmtree(home / "audit")


def access_policy_typo(home: Path) -> None:
    edit_config(home, 'access = "permissive"', 'access = "permisive"')


def access_policy_invalid(home: Path) -> None:
    bad = home / "bad.cedar"
    bad.write_text('permit (principal, action, resource) when { resource.licence == "MIT" };\n')
    edit_config(home, 'access = "permissive"', f'access = "{bad}"')


def no_models(home: Path) -> None:
    config = home / "bastion.toml"
    text = config.read_text()
    config.write_text("models = []\n" + text[: text.index("[[models]]")])


def readable_audit_key(home: Path) -> None:
    *_, audit_key = re.findall(r'^signing_key = "(.*)"$', (home / "bastion.toml").read_text(), re.MULTILINE)
    assert "audit" in audit_key  # the [audit] table comes after [registry]
    Path(audit_key).chmod(0o644)


def invalid_toml(home: Path) -> None:
    edit_config(home, "[server]", "[server\n")


def bad_setting(home: Path) -> None:
    edit_config(home, "[server]\n", "[server]\nmax_body_bytes = 12\n")


FATAL: dict[str, Callable[[Path], None]] = {
    "no public key": no_public_key,
    "garbage public key": garbage_public_key,
    "audit log not initialised": audit_not_initialised,
    "audit signing key readable by others": readable_audit_key,
    "access policy typo": access_policy_typo,
    "access policy invalid": access_policy_invalid,
    "no models": no_models,
    "invalid TOML": invalid_toml,
    "invalid setting": bad_setting,
}


@pytest.mark.parametrize("case", list(FATAL))
def test_doctor_reports_what_stops_serve_with_the_same_message_and_hint(case: str, tmp_path: Path) -> None:
    home = fresh_home(tmp_path)
    FATAL[case](home)
    status, output = serve_once(home)
    assert status not in (None, 0), f"serve started despite {case}:\n{output}"
    match = ERROR.search(output)
    assert match, f"serve stopped without an error and a hint:\n{output}"
    assert "Traceback" not in output
    failures = doctor_failures(home)
    assert any(f["detail"] == match["message"] and f["fix"] == match["hint"] for f in failures), (
        f"doctor does not report serve's error {match['message']!r} / {match['hint']!r}: {failures}"
    )


def test_doctor_reports_a_port_serve_cannot_listen_on(tmp_path: Path) -> None:
    home = fresh_home(tmp_path)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port_of(home)))
        holder.listen()
        status, output = serve_once(home)
        failures = doctor_failures(home)
    assert status not in (None, 0)
    match = ERROR.search(output)
    assert match and "in use" in match["message"]
    assert {"name": "port", "status": "fail", "detail": match["message"], "fix": match["hint"]} in failures


def test_doctor_reports_a_gateway_already_running_from_the_home(tmp_path: Path) -> None:
    from bastion.serve.pidfile import PidFile

    home = fresh_home(tmp_path)
    held = PidFile.acquire(home / "serve.pid")  # as a running gateway holds it
    try:
        status, output = serve_once(home)
        failures = doctor_failures(home)
    finally:
        held.release()
    assert status not in (None, 0)
    match = ERROR.search(output)
    assert match and "already running" in match["message"]
    assert {"name": "gateway", "status": "fail", "detail": match["message"], "fix": match["hint"]} in failures


@pytest.fixture()
def served_copy(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    home = fresh_home(tmp_path)
    copy = home / "models" / "smol.gguf"
    copy.parent.mkdir()
    shutil.copyfile(bundled.smollm2(), copy)
    edit_config(home, 'path = "bundled:smollm2"', f'path = "{copy}"')
    yield home, copy


def test_doctor_reports_a_model_serve_refuses_because_it_is_not_admitted(served_copy: tuple[Path, Path]) -> None:
    home, _ = served_copy
    status, output = serve_once(home)
    assert status is None, output  # the gateway runs; the model is refused
    refused = re.search(r"model smollm2 REFUSED: (.*)", output)
    assert refused, output
    failures = doctor_failures(home)
    assert [f["name"] for f in failures] == ["model smollm2 admitted"]
    assert failures[0]["detail"] == refused.group(1)


def test_doctor_reports_a_model_changed_after_admission(served_copy: tuple[Path, Path]) -> None:
    home, copy = served_copy
    admitted = bastion(home, "admit", str(copy), "--name", "smollm2", "--policy", "sovereign-strict")
    assert admitted.returncode == 0, admitted.stderr
    assert bastion(home, "doctor").returncode == 0  # ready: init + admit is all serve needs
    with copy.open("r+b") as fh:  # one bit in the weights, after admission
        fh.seek(60_000_000)
        byte = fh.read(1)
        fh.seek(60_000_000)
        fh.write(bytes([byte[0] ^ 0x01]))
    status, output = serve_once(home)
    assert status is None, output
    refused = re.search(r"model smollm2 REFUSED: (.*)", output)
    assert refused and "changed after admission" in refused.group(1), output
    failures = doctor_failures(home)
    assert [f["detail"] for f in failures] == [refused.group(1)]
