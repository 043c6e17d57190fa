"""Finding 9: files were skipped by name. A protocol-0 pickle named ``model.sav`` passed, and so did
``.pkl.gz``, ``.joblib`` and ``.ckpt`` wrappers. Content decides now: whatever parses as a pickle, or
unwraps (gzip, bz2, xz, zlib, tar) to one, is scanned; an unknown binary in a model folder warns."""

from __future__ import annotations

import gzip
import json
import pickle
import random
import shutil
import struct
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from bastion.errors import UnusableInput
from bastion.vet import Severity, Verdict, vet_path
from tests.adversarial.attacks import MARKER, Attack, map_pipepager, tar_with
from tests.adversarial.vet_corpus import attack_files


@pytest.fixture(scope="session")
def attacks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Attack, Path]]:
    return attack_files(tmp_path_factory)


WRAPPED = ["model.sav", "model.pkl.gz", "model.joblib", "model.ckpt", "weights.xz", "checkpoint.tar"]


def _model_folder(root: Path) -> Path:
    from safetensors.numpy import save_file

    root.mkdir()
    save_file({"w": np.ones(4, np.float32)}, str(root / "model.safetensors"))
    (root / "config.json").write_text(json.dumps({"model_type": "x"}))
    (root / "README.md").write_text("---\nlicense: mit\n---\n# a model\n")
    return root


@pytest.mark.parametrize("name", WRAPPED)
def test_wrapped_or_unnamed_pickle_is_fail_alone_and_in_a_folder(
    attacks: dict[str, tuple[Attack, Path]], tmp_path: Path, name: str
) -> None:
    src = attacks[name][1]
    alone = vet_path(src, digests=False)
    assert alone.verdict == Verdict.FAIL, alone.to_json()
    assert "PICKLE_DANGEROUS_GLOBAL" in {f.code for f in alone.findings} or name == "model.sav"
    folder = _model_folder(tmp_path / "m")
    shutil.copy(src, folder / name)
    report = vet_path(folder, digests=False)
    failing = {(f.file, f.code) for f in report.findings if f.severity == Severity.FAIL}
    assert report.verdict == Verdict.FAIL
    assert any(file == name for file, _ in failing), failing
    assert not (folder / MARKER).exists()


def test_protocol0_sav_names_the_gadget(attacks: dict[str, tuple[Attack, Path]]) -> None:
    report = vet_path(attacks["model.sav"][1], digests=False)
    assert {f.code for f in report.findings} >= {"PICKLE_UNKNOWN_CALL"}
    assert any("pydoc.pipepager" in f.message for f in report.findings)


def test_unknown_binary_in_a_model_folder_warns_and_strict_fails(tmp_path: Path) -> None:
    folder = _model_folder(tmp_path / "m")
    (folder / "extra.weights").write_bytes(bytes(range(256)) * 64)
    report = vet_path(folder, digests=False)
    assert report.verdict == Verdict.WARN
    assert [(f.file, f.code) for f in report.findings] == [("extra.weights", "FILE_UNKNOWN_BINARY")]
    assert vet_path(folder, strict=True, digests=False).verdict == Verdict.FAIL


def test_text_files_and_clean_wrapped_pickles_do_not_warn(tmp_path: Path) -> None:
    folder = _model_folder(tmp_path / "m")
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n")
    (folder / "LICENSE").write_text("Copyright 2024 someone\nPermission is hereby granted\n")
    (folder / "notes").write_text("cats\nare\nfine\n")
    clean = pickle.dumps(OrderedDict(a=[1.0, 2.0]), protocol=4)
    (folder / "state.pkl.gz").write_bytes(gzip.compress(clean))
    report = vet_path(folder, digests=False)
    assert report.verdict == Verdict.PASS, report.to_json()["findings"]
    assert {f.format for f in report.files if f.path == "state.pkl.gz"} == {"gzip"}


def test_truncated_gzip_with_the_payload_first_is_fail(tmp_path: Path) -> None:
    # pickle.load(gzip.open(...)) runs the payload before it reaches the break.
    p = tmp_path / "cut.pkl.gz"
    noise = random.Random(0).randbytes(1 << 16)  # incompressible, so the cut lands after the payload
    p.write_bytes(gzip.compress(map_pipepager() + noise)[: -(1 << 15)])
    report = vet_path(p, digests=False)
    codes = {f.code for f in report.findings if f.severity == Severity.FAIL}
    assert {"PICKLE_DANGEROUS_GLOBAL", "STRUCTURE_INVALID"} <= codes


def test_wrappers_nested_too_deep_fail_with_a_budget_finding(tmp_path: Path) -> None:
    data = map_pipepager()
    for _ in range(6):
        data = gzip.compress(tar_with("inner", data))
    p = tmp_path / "deep.tgz"
    p.write_bytes(data)
    report = vet_path(p, digests=False)
    assert report.verdict == Verdict.FAIL
    assert "FILE_BUDGET_EXCEEDED" in {f.code for f in report.findings}


def test_unknown_single_file_that_is_not_a_pickle_is_still_unusable(tmp_path: Path) -> None:
    p = tmp_path / "weights.xyz"
    p.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(UnusableInput):
        vet_path(p)


def _sentencepiece_model(pieces: list[str]) -> bytes:
    """A SentencePiece ModelProto in protobuf wire format: pieces (field 1: piece, score, type) and an
    empty trainer_spec (field 2), as tokenizer.model files are laid out."""

    def field(number: int, payload: bytes) -> bytes:
        return bytes([number << 3 | 2, len(payload)]) + payload

    out = b""
    for i, piece in enumerate(pieces):
        body = field(1, piece.encode()) + b"\x15" + struct.pack("<f", -float(i)) + b"\x18\x01"
        out += field(1, body)
    return out + field(2, b"")


def test_a_sentencepiece_tokenizer_model_is_recognised_not_warned(tmp_path: Path) -> None:
    folder = _model_folder(tmp_path / "m")
    (folder / "tokenizer.model").write_bytes(_sentencepiece_model(["<unk>", "<s>", "</s>", "\u2581the", "a"]))
    report = vet_path(folder, digests=False)
    assert report.verdict == Verdict.PASS, report.to_json()["findings"]
    assert {f.path: f.format for f in report.files}["tokenizer.model"] == "sentencepiece"
    # the same bytes with one trailing byte are no longer a whole protobuf: an unknown binary
    (folder / "tokenizer.model").write_bytes(_sentencepiece_model(["<unk>", "a"]) + b"\xff")
    assert vet_path(folder, digests=False).verdict == Verdict.WARN
