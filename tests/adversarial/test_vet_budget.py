"""Finding 11: a 19.5 KB torch zip whose data.pkl holds 20M opcodes took 35-48 s and 2.1 GB (and passed).

The work per artifact is bounded now (``bastion.formats.budget``): opcodes and memo entries across all
pickles and members, members per archive, decompressed bytes, nesting. Running out is a ``fail`` with
``FILE_BUDGET_EXCEEDED``. Memory is asserted from the child's own rusage; time is only reported (bench).
"""

from __future__ import annotations

import json
import os
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from bastion.formats import read_torch_zip
from bastion.formats.budget import BudgetExceeded, ScanBudget
from bastion.vet import Severity, Verdict, vet_path
from tests.adversarial.attacks import memo_bomb_pickle, opcode_bomb_zip
from tests.adversarial.measure import run_measured

ROOT = Path(__file__).resolve().parents[2]
MAX_RSS_KIB = 512 * 1024


def vet_in_child(path: Path, out: Path) -> tuple[int, dict[str, Any], int]:
    """Run ``bastion vet --json`` in a child: its exit code, report and own peak RSS in KiB."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    run = run_measured([sys.executable, "-m", "bastion.cli.main", "vet", str(path), "--json"], out, env)
    return int(run["exit"]), json.loads(out.read_text() or "{}"), int(run["max_rss_kib"])


def test_twenty_million_opcode_torch_zip_fails_within_512_mb(tmp_path: Path) -> None:
    bomb = opcode_bomb_zip(tmp_path / "model.pt")
    assert bomb.stat().st_size < 25_000  # the 19.5 KB class from the issue
    code, report, peak_kib = vet_in_child(bomb, tmp_path / "out.json")
    assert code == 12, report
    codes = {f["code"] for f in report["findings"]}
    assert "FILE_BUDGET_EXCEEDED" in codes
    assert peak_kib <= MAX_RSS_KIB, f"peak RSS {peak_kib // 1024} MiB"


def test_memo_bomb_fails_with_a_budget_finding(tmp_path: Path) -> None:
    p = tmp_path / "memo.pkl"
    p.write_bytes(memo_bomb_pickle(1_200_000))
    report = vet_path(p, digests=False)
    found = [f for f in report.findings if f.code == "FILE_BUDGET_EXCEEDED"]
    assert report.verdict == Verdict.FAIL
    assert found and "memo" in found[0].message and found[0].severity == Severity.FAIL


def test_deflate_bomb_member_fails_with_a_budget_finding(tmp_path: Path) -> None:
    # a clean data.pkl and a storage record that inflates to 520 MiB of zeros from about 500 KB
    p = tmp_path / "bomb.pt"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        with zf.open("archive/data/0", "w") as member:
            for _ in range(65):
                member.write(b"\0" * (8 << 20))
    assert p.stat().st_size < 4 << 20
    report = vet_path(p, digests=False)
    found = [f for f in report.findings if f.code == "FILE_BUDGET_EXCEEDED"]
    assert report.verdict == Verdict.FAIL
    assert found and "decompresses" in found[0].message


def test_inflation_budget_is_shared_across_members(tmp_path: Path) -> None:
    p = tmp_path / "two.pt"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        zf.writestr("archive/data/0", b"\0" * 1000)
        zf.writestr("archive/data/1", b"\0" * 1000)
    read_torch_zip(p, ScanBudget(inflated=2100))
    with pytest.raises(BudgetExceeded):
        read_torch_zip(p, ScanBudget(inflated=1900))


def test_member_budget_is_shared_across_an_archive(tmp_path: Path) -> None:
    p = tmp_path / "many.pt"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        for i in range(5):
            zf.writestr(f"archive/data/{i}", b"\0" * 16)
    assert read_torch_zip(p, ScanBudget(members=6)).archive_name == "archive"
    with pytest.raises(BudgetExceeded, match="archive members"):
        read_torch_zip(p, ScanBudget(members=5))


def test_member_count_is_refused_from_the_zip64_record_before_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A zip64 archive declares its count in the zip64 record (the classic record says 0xFFFF): 100,000
    # members once cost 6 s of central-directory parsing before the count was checked.
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 3)  # make zipfile write zip64 records for 6 members
    p = tmp_path / "z64.pt"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        for i in range(5):
            zf.writestr(f"archive/data/{i}", b"\0")
    raw = bytearray(p.read_bytes())
    eocd = raw.rindex(b"PK\x05\x06")
    raw[eocd + 8 : eocd + 12] = b"\xff\xff\xff\xff"
    p.write_bytes(bytes(raw))
    assert len(read_torch_zip(p, ScanBudget(members=10)).members) == 6
    with pytest.raises(BudgetExceeded, match="archive members"):
        read_torch_zip(p, ScanBudget(members=5))


def test_a_large_pickle_is_read_in_a_window_of_memory(tmp_path: Path) -> None:
    # The file is memory-mapped; read pages count towards RSS, so they are dropped behind the reader.
    # 160,000 strings of 1,000 bytes (160 MB) once cost their size in RSS; now a window.
    import struct

    big = tmp_path / "strings.pkl"
    with big.open("wb") as fh:
        fh.write(b"\x80\x04")
        for i in range(160_000):
            fh.write(b"X" + struct.pack("<I", 1000) + (b"%08d" % i) * 125 + b"0")
        fh.write(b"N.")
    small = tmp_path / "small.pkl"
    small.write_bytes(b"\x80\x04N.")
    _, _, base_kib = vet_in_child(small, tmp_path / "small.json")
    code, report, peak_kib = vet_in_child(big, tmp_path / "big.json")
    assert report["verdict"] == "pass", report
    assert (peak_kib - base_kib) < 100 * 1024, f"{(peak_kib - base_kib) // 1024} MiB above a tiny pickle"
