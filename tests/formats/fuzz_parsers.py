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
    from bastion.catalog.identify import read_claims
    from bastion.errors import UnusableInput
    from bastion.formats import (
        analyse_pickle,
        open_artifact,
        read_gguf,
        read_json,
        read_npy_header,
        read_safetensors,
        read_torch_zip,
    )
    from bastion.formats.gguf_tensors import GGUFTensors
    from bastion.vet import vet_artifact
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


def gguf_tensors(data: bytes) -> None:
    p = _TMP / "t.gguf"
    p.write_bytes(data)
    try:
        with GGUFTensors(p) as g:
            for name in list(g.tensors)[:2]:
                g.rows(name, 0, 2)
    except UnusableInput:
        pass


_ARTIFACT_NAMES = ("model.gguf", "model.safetensors", "config.json", "model.safetensors.index.json")


def artifact(data: bytes) -> None:
    """The first byte picks which file of a model folder the rest becomes; then the whole one-read path."""
    if not data:
        return
    folder = _TMP / "artifact"
    if folder.exists():
        for f in folder.iterdir():
            f.unlink()
    folder.mkdir(exist_ok=True)
    name = _ARTIFACT_NAMES[data[0] % len(_ARTIFACT_NAMES)]
    if name != "config.json":
        (folder / "config.json").write_bytes(b'{"model_type": "llama", "_name_or_path": "x/SmolLM2-135M"}')
    (folder / name).write_bytes(data[1:])
    try:
        art = open_artifact(folder, use_cache=False)
        vet_artifact(art)
        art.weight_files()
        read_claims(art)
    except UnusableInput:
        pass


TARGETS = {
    f.__name__: f
    for f in (gguf, safetensors, torch_zip, hf_json, pickle_ops, npy, template, gguf_tensors, artifact)
}

if __name__ == "__main__":
    target = TARGETS[sys.argv.pop(1)]
    sys.setrecursionlimit(10_000)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()
