"""The reference systemd unit: valid for systemd, and its sandbox does not break the gateway.

systemd does not run in the test machine, so the unit itself is checked with ``systemd-analyze
verify``; the one sandbox option a Python + llama.cpp process could trip over,
``MemoryDenyWriteExecute`` (no writable and executable memory: ctypes callbacks, JITs), is applied for
real with the same kernel mechanism (``prctl(PR_SET_MDWE)``) to a real gateway serving SmolLM2.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).parents[2] / "deploy" / "bastion.service"
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    bastion = Path(sys.executable).with_name("bastion")
    assert bastion.exists(), "the venv's bastion entry point"
    text = UNIT.read_text(encoding="utf-8")
    assert "/opt/bastion/.venv/bin/bastion serve" in text
    unit = tmp_path / "bastion.service"  # the installed path, pointed at this venv's entry point
    unit.write_text(text.replace("/opt/bastion/.venv/bin/bastion", str(bastion)), encoding="utf-8")
    verify = shutil.which("systemd-analyze")
    assert verify, "systemd-analyze (Debian package systemd) is needed"
    run = subprocess.run([verify, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and not run.stderr.strip(), run.stdout + run.stderr


def test_the_unit_sandboxes_the_service() -> None:
    text = UNIT.read_text(encoding="utf-8")
    for option in ("ProtectSystem=strict", "ProtectHome=yes", "NoNewPrivileges=yes", "PrivateTmp=yes",
                   "MemoryDenyWriteExecute=yes", "CapabilityBoundingSet=\n", "RestrictAddressFamilies=",
                   "SystemCallFilter=@system-service", "User=bastion", "ExecReload=/bin/kill -HUP $MAINPID"):
        assert option in text, option


def _mdwe_supported() -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", f"import ctypes;print(ctypes.CDLL(None).prctl({PR_SET_MDWE}, "
                               f"{PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0))"],
        capture_output=True, text=True, timeout=30,
    )
    return probe.stdout.strip() == "0"


def test_the_gateway_serves_under_memory_deny_write_execute(tmp_path: Path) -> None:
    if not _mdwe_supported():
        pytest.skip("this kernel has no PR_SET_MDWE (Linux < 6.3)")
    from tests.serve.conftest import serving

    wrapper = tmp_path / "mdwe.py"  # what systemd does for MemoryDenyWriteExecute=yes, then exec
    wrapper.write_text(
        "import ctypes, os, sys\n"
        f"assert ctypes.CDLL(None, use_errno=True).prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) == 0\n"
        # the flag survives execve and is inherited by every child (the llama.cpp worker included)
        "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])\n",
        encoding="utf-8",
    )
    from bastion.keys import KeyStore

    home = tmp_path / "home"
    home.mkdir()
    store = KeyStore(home / "bastion.db")
    key = store.create("alice", ["*"]).key
    store.close()
    config = '[[models]]\nname = "smollm2"\npath = "bundled:smollm2"\nn_threads = 1\n'
    import httpx

    with serving(home, config, {"smollm2": "bundled:smollm2"}, launcher=[sys.executable, str(wrapper)]) as base:
        reply = httpx.post(base + "/v1/chat/completions", timeout=120, headers={"Authorization": f"Bearer {key}"},
                           json={"model": "smollm2", "max_tokens": 8, "temperature": 0,
                                 "messages": [{"role": "user", "content": "What is the capital of France?"}]})
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"]
