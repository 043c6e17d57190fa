"""A gateway raises its own soft limit on open files: under a shell's usual 1024 a replica holding ~500
streams (a client and an upstream socket each) ran out of descriptors (scale bench, issue 13)."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from tests.serve.conftest import serving

SMOLLM2 = """
[[models]]
name = "smollm2"
path = "bundled:smollm2"
n_threads = 1
"""


def soft_open_files(pid: int) -> int:
    limits = Path(f"/proc/{pid}/limits").read_text(encoding="utf-8")
    match = re.search(r"^Max open files\s+(\d+)\s+(\d+|unlimited)", limits, re.MULTILINE)
    assert match, limits
    return int(match.group(1))


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="prlimit (util-linux) is needed")
def test_serve_raises_a_low_soft_limit_up_to_the_hard_one(tmp_path: Path) -> None:
    launcher = [str(shutil.which("prlimit")), "--nofile=1024:8192", "--", sys.executable]
    with serving(tmp_path, SMOLLM2, {"smollm2": "bundled:smollm2"}, launcher=launcher):
        pid = int((tmp_path / "serve.pid").read_text().strip())
        assert soft_open_files(pid) == 8192  # the hard limit: what a process may take without privilege
