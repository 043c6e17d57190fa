"""Each parser survives a few seconds of coverage-guided fuzzing (atheris), seeded with real files."""

from __future__ import annotations

import io
import json
import pickle
import struct
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("fuzz_parsers.py")
SECONDS = 3


def _seeds(target: str, d: Path) -> None:
    d.mkdir()
    if target in ("gguf", "gguf_tensors"):
        s = b"general.architecture"
        body = struct.pack("<Q", len(s)) + s + struct.pack("<IQ", 8, 5) + b"llama"
        t = struct.pack("<Q", 1) + b"t" + struct.pack("<IQIQ", 1, 8, 0, 0)
        head = b"GGUF" + struct.pack("<IQQ", 3, 1, 1) + body + t
        (d / "a").write_bytes(head + b"\x00" * (-len(head) % 32) + b"\x00" * 32)
    elif target == "artifact":
        h = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
        (d / "a").write_bytes(b"\x01" + struct.pack("<Q", len(h)) + h + b"\x00" * 8)
        (d / "b").write_bytes(b'\x03{"weight_map": {"w": "model-00001-of-00001.safetensors"}}')
        (d / "c").write_bytes(b'\x02{"model_type": "llama", "_name_or_path": "HuggingFaceTB/SmolLM2-135M"}')
    elif target == "safetensors":
        h = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
        (d / "a").write_bytes(struct.pack("<Q", len(h)) + h + b"\x00" * 8)
    elif target == "torch_zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("m/data.pkl", pickle.dumps(OrderedDict(a=1), protocol=2))
            z.writestr("m/version", "3\n")
        (d / "a").write_bytes(buf.getvalue())
    elif target == "pickle_ops":
        (d / "a").write_bytes(pickle.dumps({"a": [1, 2.0, "x", OrderedDict()]}, protocol=4))
        (d / "b").write_bytes(b"cos\nsystem\n(S'x'\ntR.")
    elif target == "npy":
        import numpy as np

        np.save(d / "a.npy", np.zeros((2, 3), np.float32))
        np.save(d / "b.npy", np.array([1, "x"], dtype=object), allow_pickle=True)
    elif target == "template":
        (d / "a").write_bytes(
            b"{% for m in messages %}{% if 'x' in m.content %}{{ m.__class__ }}{% endif %}{% endfor %}"
        )
    else:
        (d / "a").write_bytes(b'{"model_type": "llama", "auto_map": {"AutoModel": "m.X"}}')


@pytest.mark.parametrize(
    "target",
    [
        "gguf", "safetensors", "torch_zip", "hf_json", "pickle_ops", "npy", "template", "gguf_tensors",
        "artifact",
    ],
)
def test_parser_survives_fuzzing(tmp_path: Path, target: str) -> None:
    seeds = tmp_path / "seeds"
    _seeds(target, seeds)
    res = subprocess.run(
        [
            # Through a shell that forks: Linux carries a process's peak RSS across exec, so a fuzzer
            # exec'd straight from a large pytest process would start "out of memory" at its parent's size.
            "sh",
            "-c",
            '"$@"; exit $?',
            "sh",
            sys.executable,
            str(SCRIPT),
            target,
            f"-max_total_time={SECONDS}",
            "-timeout=10",
            "-rss_limit_mb=1024",
            "-max_len=4096",
            str(seeds),
        ],
        capture_output=True,
        text=True,
        timeout=SECONDS + 60,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Done" in res.stderr, res.stderr[-3000:]
