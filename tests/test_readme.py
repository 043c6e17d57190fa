"""Every ```sh block of the README runs, in order, against a fresh home, and does what the README says.

Conventions (also stated in README.md's "How the README is tested"):

- Blocks run one after another in bash with ``set -euo pipefail``, from one scratch working directory;
  exported variables and the working directory carry over from one block to the next. ```console,
  ```python and ```text blocks are transcripts and are not run.
- A line ending in ``# exit N`` must exit with status N (anything else fails the test); every other
  line must succeed.
- Long-running commands are started with ``&`` and stopped by the block itself (``kill %1``); the test
  kills whatever a block left running when the block ends.
- ``bastion`` and ``python`` are this checkout's. The gateway's port comes from ``bastion init``, which
  takes ``$BASTION_SERVER__PORT`` (set here to a free port) and every ``127.0.0.1:8080`` in a block is
  that port, so the test does not collide with a gateway already listening on 8080.
- ``$PG_URL`` is a fresh schema on the test session's real PostgreSQL server (the PostgreSQL section).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests import pg_server
from tests.conftest import postgres_target

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"^```sh\n(.*?)^```\s*$", re.DOTALL | re.MULTILINE)
EXPECT_EXIT = re.compile(r"\s#\s*exit (\d+)\b[^#]*$")
TIMEOUT_S = 900


def sh_blocks(text: str) -> list[tuple[int, str]]:
    """(first line number, body) of every ```sh block, in order."""
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in BLOCK.finditer(text)]


def expected_exit(line: str) -> tuple[str, int] | None:
    """``cmd  # exit 13 ...`` -> (cmd, 13); None for a line that must simply succeed."""
    match = EXPECT_EXIT.search(line)
    return (line[: match.start()].rstrip(), int(match.group(1))) if match else None


def script(body: str, port: int, state: Path) -> str:
    """The bash script for one block: previous state in, the block, state out."""
    lines = []
    heredoc: str | None = None
    for line in body.replace("127.0.0.1:8080", f"127.0.0.1:{port}").splitlines():
        if heredoc is not None:  # inside a here-document: text, not commands
            lines.append(line)
            heredoc = None if line.strip() == heredoc else heredoc
            continue
        opened = re.search(r"<<-?\s*'?\"?(\w+)'?\"?", line)
        if opened:
            heredoc = opened.group(1)
        wanted = expected_exit(line)
        if wanted is None:
            lines.append(line)
            continue
        command, code = wanted
        quoted = command.replace("'", "'\\''")
        lines.append(
            f"set +e; {command}; rc=$?; set -e; "
            f"if [ $rc -ne {code} ]; then echo 'README: expected exit {code}, got '$rc': {quoted}' >&2; exit 97; fi"
        )
    return "\n".join(
        [
            "set -euo pipefail",
            f'[ -f "{state}" ] && source "{state}"',
            *lines,
            f'export -p > "{state}"',
            f'echo "cd $(printf %q "$PWD")" >> "{state}"',
        ]
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_expected_exit_annotation_is_parsed() -> None:
    assert expected_exit("bastion admit x --policy enterprise   # exit 13: refused") == (
        "bastion admit x --policy enterprise",
        13,
    )
    assert expected_exit("bastion doctor") is None
    assert expected_exit("echo '# exit 3' # fine") is None


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("true\nfalse\necho unreachable\n", 1),  # a failing line fails its block
        ("sh -c 'exit 3'   # exit 3\n", 0),  # the annotated status is what the README says
        ("sh -c 'exit 4'   # exit 3\n", 97),  # ... and any other status is a failure
        ("sh -c 'exit 0'   # exit 3\n", 97),
        ("export A=1\n", 0),
    ],
)
def test_the_runner_holds_a_block_to_what_it_says(body: str, status: int, tmp_path: Path) -> None:
    done = subprocess.run(["bash", "-c", script(body, 9, tmp_path / "state.sh")], capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == status, done.stderr
    if status == 0 and "export" in body:
        assert "declare -x A=\"1\"" in (tmp_path / "state.sh").read_text()  # carried to the next block


def test_the_readme_has_a_quick_path_from_init_to_a_served_answer() -> None:
    text = "\n".join(body for _, body in sh_blocks(README.read_text(encoding="utf-8")))
    order = ["bastion init", "bastion admit", "bastion keys create", "bastion serve", "OpenAI("]
    positions = [text.find(step) for step in order]
    assert -1 not in positions and positions == sorted(positions), dict(zip(order, positions, strict=True))


@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT_S + 300)
def test_every_sh_block_of_the_readme_runs_against_a_fresh_home(tmp_path: Path, postgres: pg_server.Server) -> None:
    work = tmp_path / "work"
    work.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, target in (("bastion", f'"{sys.executable}" -m bastion.cli.main'), ("python", f'"{sys.executable}"')):
        wrapper = bin_dir / name
        wrapper.write_text(f'#!/bin/sh\nexec {target} "$@"\n')
        wrapper.chmod(0o755)
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "BASTION_HOME": str(tmp_path / "home"),
        "BASTION_SERVER__PORT": str(port),
        "HF_HUB_OFFLINE": "1",
        "COLUMNS": "120",
        "PG_URL": postgres_target(postgres).url,  # the PostgreSQL section runs against a real server
    }
    env.pop("BASTION_CONFIG", None)
    state = tmp_path / "state.sh"
    blocks = sh_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 3
    for line, body in blocks:
        proc = subprocess.Popen(
            ["bash", "-c", script(body, port, state)], cwd=work, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        try:
            output, _ = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            pytest.fail(f"README.md:{line}: the block did not finish in {TIMEOUT_S} s:\n{body}\n--- output ---\n{output}")
        finally:
            try:  # whatever the block left running in the background (its own process group)
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        assert proc.returncode == 0, f"README.md:{line}: the block failed:\n{body}\n--- output ---\n{output}"
        assert "Traceback" not in output, f"README.md:{line}: a traceback:\n{output}"
