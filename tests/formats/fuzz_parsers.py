"""atheris fuzz targets, one per parser. Run: python fuzz_parsers.py TARGET [libFuzzer flags] [SEED_DIR].

A target may raise UnusableInput (the parser refusing bad input); anything else - an uncaught
exception, a hang past -timeout, memory past -rss_limit_mb - is a crash libFuzzer reports.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
from pathlib import Path

import atheris

# Instrument only our own parsers: instrumenting numpy and jinja2 too costs ~10 s of start-up per target.
with atheris.instrument_imports(include=["bastion"]):
    from bastion.errors import UnusableInput
    from bastion.formats import (
        analyse_pickle,
        read_gguf,
        read_json,
        read_npy_header,
        read_safetensors,
        read_torch_zip,
    )
    from bastion.vet.template_scan import scan_template

_TMP = Path(tempfile.mkdtemp(prefix="bastion-fuzz-"))


def _via_file(name: str, data: bytes, reader) -> None:  # type: ignore[no-untyped-def]
    p = _TMP / name
    p.write_bytes(data)
    try:
        reader(p)
    except UnusableInput:
        pass


def gguf(data: bytes) -> None:
    _via_file("f.gguf", data, read_gguf)


def safetensors(data: bytes) -> None:
    _via_file("f.safetensors", data, read_safetensors)


def torch_zip(data: bytes) -> None:
    _via_file("f.pt", data, read_torch_zip)


def hf_json(data: bytes) -> None:
    _via_file("config.json", data, read_json)


def pickle_ops(data: bytes) -> None:
    analyse_pickle(io.BytesIO(data), len(data))


def npy(data: bytes) -> None:
    try:
        read_npy_header(io.BytesIO(data), "f.npy")
    except UnusableInput:
        pass


def template(data: bytes) -> None:
    scan_template(data.decode("utf-8", "replace"), "f", "t")


TARGETS = {f.__name__: f for f in (gguf, safetensors, torch_zip, hf_json, pickle_ops, npy, template)}

if __name__ == "__main__":
    target = TARGETS[sys.argv.pop(1)]
    sys.setrecursionlimit(10_000)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()
