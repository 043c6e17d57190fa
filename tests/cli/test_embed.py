"""``bastion embed`` run as a real process: one JSON document with --json, clear errors otherwise."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

from bastion.bundled import minilm
from bastion.hashing import file_digest


def bastion(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "bastion.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_json_is_one_document_with_unit_vectors_and_the_weights_digest() -> None:
    proc = bastion("embed", "A cat sits on the mat.", "A kitten lies on a rug.", "Revenue grew.", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["digest"] == file_digest(minilm() / "model.safetensors")
    assert (doc["dimensions"], doc["max_tokens"]) == (384, 256)
    vectors = np.array([d["embedding"] for d in doc["data"]])
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert [d["tokens"] for d in doc["data"]] == [9, 9, 5]


def test_human_output_shows_tokens_and_pairwise_similarity() -> None:
    proc = bastion("embed", "hello world", "goodbye world")
    assert proc.returncode == 0, proc.stderr
    assert "digest sha256:" in proc.stdout and "similarity" in proc.stdout
    assert "1.000" in proc.stdout  # the diagonal


def test_file_input_embeds_every_non_blank_line(tmp_path: Path) -> None:
    lines = [f"line number {i} about audit logs" for i in range(70)]
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(lines[:35] + ["", "   "] + lines[35:]) + "\n")
    proc = bastion("embed", "--file", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["data"]) == 70


def test_bad_model_folder_exits_3_with_a_hint_and_no_traceback(tmp_path: Path) -> None:
    proc = bastion("embed", "hi", "--model", str(tmp_path))
    assert proc.returncode == 3
    assert "config.json is missing" in proc.stderr and "hint:" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_bad_model_folder_with_json_prints_the_error_document(tmp_path: Path) -> None:
    proc = bastion("embed", "hi", "--model", str(tmp_path), "--json")
    assert proc.returncode == 3
    assert json.loads(proc.stdout)["error"]["code"] == "unusable_input"


def test_non_utf8_file_exits_3(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\xe9\n".encode("latin-1"))
    proc = bastion("embed", "--file", str(path))
    assert proc.returncode == 3 and "not UTF-8" in proc.stderr


def test_nothing_to_embed_is_a_usage_error() -> None:
    proc = bastion("embed")
    assert proc.returncode == 2 and "nothing to embed" in proc.stderr


def test_readme_example_output_is_what_the_command_prints() -> None:
    # The README shows real output; this keeps it from drifting (the model path line is machine-specific).
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## Embeddings") :]
    block = section[section.index("```console\n$ bastion embed ") + len("```console\n$ ") :]
    block = block[: block.index("```")]
    command, *expected = block.splitlines()
    proc = bastion(*shlex.split(command)[1:])
    assert proc.returncode == 0, proc.stderr
    got = [line.rstrip() for line in proc.stdout.splitlines()]
    assert got[1:] == [line.rstrip() for line in expected[1:]]
