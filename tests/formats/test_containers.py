"""Wrappers are recognised by magic and unwrapped in memory under the artifact's budget."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zlib

import pytest

from bastion.formats.budget import BudgetExceeded, ScanBudget
from bastion.formats.containers import compression_of, inflate, is_tar, looks_like_text, tar_members

PAYLOAD = b"weights " * 50_000
WRAPPED = {
    "gzip": gzip.compress(PAYLOAD),
    "bz2": bz2.compress(PAYLOAD),
    "xz": lzma.compress(PAYLOAD),
    "lzma": lzma.compress(PAYLOAD, format=lzma.FORMAT_ALONE),
    "zlib": zlib.compress(PAYLOAD),
}


@pytest.mark.parametrize("kind", sorted(WRAPPED))
def test_each_compression_is_recognised_and_inflated_exactly(kind: str) -> None:
    data = WRAPPED[kind]
    assert compression_of(data[:16]) == kind
    budget = ScanBudget()
    out = inflate(io.BytesIO(data), kind, budget, "f")
    assert (out.data, out.error) == (PAYLOAD, None)
    assert budget.inflated == ScanBudget().inflated - len(PAYLOAD)


def test_concatenated_gzip_members_are_read_on_as_loaders_do() -> None:
    out = inflate(io.BytesIO(gzip.compress(b"a") + gzip.compress(b"b")), "gzip", ScanBudget(), "f")
    assert out.data == b"ab"


def test_a_decompression_bomb_stops_at_the_in_memory_bound() -> None:
    bomb = zlib.compress(b"\0" * (80 << 20))  # 80 MiB from 80 KB; the bound is 64 MiB
    with pytest.raises(BudgetExceeded, match="inflates past"):
        inflate(io.BytesIO(bomb), "zlib", ScanBudget(), "bomb")


@pytest.mark.parametrize("kind", sorted(WRAPPED))
def test_every_compression_stops_at_the_artifact_budget(kind: str) -> None:
    with pytest.raises(BudgetExceeded):
        inflate(io.BytesIO(WRAPPED[kind]), kind, ScanBudget(inflated=100_000), "f")


def test_a_truncated_stream_returns_what_came_before_the_break() -> None:
    data = gzip.compress(bytes(range(256)) * 4000)
    out = inflate(io.BytesIO(data[: len(data) // 2]), "gzip", ScanBudget(), "f")
    assert out.error and out.data and bytes(range(256)).startswith(out.data[:256])


def test_tar_members_count_against_the_budget() -> None:
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for i in range(3):
            info = tarfile.TarInfo(f"m{i}")
            info.size = 1
            tf.addfile(info, io.BytesIO(b"x"))
    data = buf.getvalue()
    assert is_tar(data[:512])
    assert [m.name for m in tar_members(io.BytesIO(data), ScanBudget(), "t")] == ["m0", "m1", "m2"]
    with pytest.raises(BudgetExceeded):
        list(tar_members(io.BytesIO(data), ScanBudget(members=2), "t"))


def test_text_detection_allows_a_cut_character_but_not_nul() -> None:
    assert looks_like_text("résumé".encode()[:-1])
    assert not looks_like_text(b"abc\x00def")
    assert not looks_like_text(b"\xff\xfe\x00")
