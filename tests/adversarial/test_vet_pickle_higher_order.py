"""Finding 8: a global that is merely referenced runs through an allowlisted higher-order call.

``list(map(pydoc.pipepager, ...))`` built with NEWOBJ passed as ``warn`` (exit 0) as a .pkl, as a
protocol-4 ``pytorch_model.bin``, in a torch zip with an odd archive name and inside an object .npy.
Every non-allowlisted global is now ``fail``, and the higher-order callables are named as dangerous.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bastion import bundled
from bastion.vet import Severity, Verdict, vet_path
from bastion.vet.pickle_scan import classify
from tests.adversarial.attacks import MARKER, Attack
from tests.adversarial.vet_corpus import attack_files, clean_torch_zip_file


@pytest.fixture(scope="session")
def attacks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Attack, Path]]:
    return attack_files(tmp_path_factory)


@pytest.fixture(scope="session")
def clean_torch_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clean_torch_zip_file(tmp_path_factory)


def _fails_with(path: Path, *codes: str) -> set[str]:
    """Vet ``path``: verdict fail with at least ``codes``, and nothing ran."""
    report = vet_path(path, digests=False)
    found = {f.code for f in report.findings if f.severity == Severity.FAIL}
    assert report.verdict == Verdict.FAIL, report.to_json()
    assert set(codes) <= found, found
    assert not (path.parent / MARKER).exists()
    return found


def test_map_over_pipepager_is_fail(attacks: dict[str, tuple[Attack, Path]]) -> None:
    found = _fails_with(attacks["map_pipepager.pkl"][1], "PICKLE_DANGEROUS_GLOBAL", "PICKLE_UNKNOWN_GLOBAL")
    assert found == {"PICKLE_DANGEROUS_GLOBAL", "PICKLE_UNKNOWN_GLOBAL"}  # builtins.map and pydoc.pipepager


def test_filter_over_imap_stream_is_fail(attacks: dict[str, tuple[Attack, Path]]) -> None:
    _fails_with(attacks["filter_imap.pkl"][1], "PICKLE_DANGEROUS_GLOBAL", "PICKLE_UNKNOWN_GLOBAL")


def test_starmap_over_pipepager_is_fail(attacks: dict[str, tuple[Attack, Path]]) -> None:
    _fails_with(attacks["starmap_pipepager.pkl"][1], "PICKLE_DANGEROUS_GLOBAL")


def test_map_as_protocol4_pytorch_model_bin_is_fail(attacks: dict[str, tuple[Attack, Path]]) -> None:
    _fails_with(attacks["pytorch_model.bin"][1], "PICKLE_DANGEROUS_GLOBAL", "PICKLE_UNKNOWN_GLOBAL")


def test_map_in_torch_zip_with_odd_archive_name_is_fail(attacks: dict[str, tuple[Attack, Path]]) -> None:
    path = attacks["odd_archive.pt"][1]
    _fails_with(path, "PICKLE_DANGEROUS_GLOBAL")
    report = vet_path(path, digests=False)
    assert report.files[0].metadata["archive"] == "0dd n@me"


def test_map_inside_object_npy_is_fail(attacks: dict[str, tuple[Attack, Path]]) -> None:
    _fails_with(attacks["map_object.npy"][1], "PICKLE_DANGEROUS_GLOBAL")


def test_referenced_only_global_fails_even_without_strict(tmp_path: Path) -> None:
    from tests.adversarial.attacks import PROTO2, STOP, glob

    p = tmp_path / "ref.pkl"
    p.write_bytes(PROTO2 + glob("pydoc", "pipepager") + STOP)  # imported, never called
    report = vet_path(p, digests=False)
    assert report.verdict == Verdict.FAIL
    assert [f.code for f in report.findings if f.severity == Severity.FAIL] == ["PICKLE_UNKNOWN_GLOBAL"]


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("builtins", "map"),
        ("builtins", "filter"),
        ("builtins", "sorted"),
        ("builtins", "iter"),
        ("builtins", "min"),
        ("functools", "partial"),
        ("functools", "reduce"),
        ("itertools", "starmap"),
        ("itertools", "filterfalse"),
        ("operator", "methodcaller"),
        ("operator", "attrgetter"),
        ("copyreg", "pickle"),
        ("atexit", "register"),
    ],
)
def test_higher_order_callables_are_dangerous(module: str, name: str) -> None:
    assert classify(module, name)[0] == "dangerous"


def test_payloads_really_run(attacks: dict[str, tuple[Attack, Path]], tmp_path: Path) -> None:
    # Proof the attacks are real: each is loaded with the loader it targets, in a child process and a
    # folder of its own; each one's marker appears. vet never gets here.
    script = r"""
import bz2, gzip, io, lzma, os, pickle, sys, tarfile, zlib
kind, path = sys.argv[1], sys.argv[2]
raw = open(path, 'rb').read()
unwrap = {'gzip': gzip.decompress, 'bz2': bz2.decompress, 'xz': lzma.decompress, 'zlib': zlib.decompress}
try:
    if kind == 'torch':
        import torch
        torch.load(path, weights_only=False)
    elif kind == 'numpy':
        import numpy
        numpy.load(path, allow_pickle=True)
    elif kind == 'tar':
        with tarfile.open(path) as tf:
            pickle.loads(tf.extractfile('pickle').read())
    elif kind in unwrap:
        pickle.loads(unwrap[kind](raw))
    else:
        pickle.load(io.BytesIO(raw))
except Exception:
    pass
print(os.path.exists('MARKER'))
"""
    ran = {}
    for name, (attack, path) in attacks.items():
        d = tmp_path / name
        d.mkdir()
        res = subprocess.run(
            [sys.executable, "-c", script, attack.loader, str(path)],
            cwd=d,
            capture_output=True,
            text=True,
            timeout=120,
        )
        ran[name] = res.stdout.strip() == "True"
    assert all(ran.values()), ran


def test_real_clean_files_still_pass(clean_torch_zip: Path, tmp_path: Path) -> None:
    import torch

    legacy = tmp_path / "legacy.bin"
    torch.save({"w": torch.ones(3)}, legacy, _use_new_zipfile_serialization=False)
    np.save(tmp_path / "a.npy", np.arange(6, dtype=np.float32))
    for path in (
        bundled.smollm2(),
        bundled.gemma3(),
        bundled.minilm(),
        clean_torch_zip,
        legacy,
        tmp_path / "a.npy",
    ):
        report = vet_path(path, digests=False)
        assert report.verdict == Verdict.PASS, (path, report.to_json()["findings"])
