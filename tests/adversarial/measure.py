"""Run a command and read its own peak RSS, whatever the size of the process that asks.

``ru_maxrss`` of a child counts the pages it shared with its parent at fork, so a child of a large
process (pytest with torch loaded, the bench) reports the parent's size. The command is therefore
started by a small intermediate interpreter, which waits for it with ``os.wait4`` and reports that
one process's rusage. Used by the budget tests (memory asserted) and bench/vet.py (time reported).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

_WRAPPER = r"""
import json, os, subprocess, sys, time
timeout, out, cmd = float(sys.argv[1]), sys.argv[2], sys.argv[3:]
with open(out, "wb") as fh:
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.DEVNULL)
    killed = False
    while True:
        pid, status, usage = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() - t > timeout:
            p.kill()
            _, status, usage = os.wait4(p.pid, 0)
            killed = True
            break
        time.sleep(0.02)
print(json.dumps({"exit": os.waitstatus_to_exitcode(status), "seconds": time.perf_counter() - t,
                  "max_rss_kib": usage.ru_maxrss, "timed_out": killed}))
"""


def run_measured(cmd: list[str], out: Path, env: dict[str, str], timeout: float = 300.0) -> dict[str, Any]:
    """Run ``cmd`` (stdout to ``out``): exit code, wall seconds, its own peak RSS in KiB, timed out."""
    res = subprocess.run(
        [sys.executable, "-c", _WRAPPER, str(timeout), str(out), *cmd],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout + 60,
        check=True,
    )
    result: dict[str, Any] = json.loads(res.stdout)
    return result
