"""The digest cache: unchanged files cost no reads; any change to a file is noticed."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from bastion.bundled import data_home
from bastion.errors import UnusableInput
from bastion.hashing import DigestCache, manifest_of
from bastion.hashing.digest_cache import default_path


class Counter:
    """Counts the bytes the hasher actually reads."""

    def __init__(self) -> None:
        self.total: int | None = None
        self.read = 0

    def on_total(self, n: int) -> None:
        self.total = n

    def on_progress(self, n: int) -> None:
        self.read += n


@pytest.fixture
def model(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    root.mkdir()
    (root / "weights.bin").write_bytes(os.urandom(1 << 20))
    (root / "config.json").write_text('{"hidden": 8}')
    return root


def _hash(model: Path, **kw: object) -> tuple[str, Counter]:
    c = Counter()
    m = manifest_of(model, on_total=c.on_total, on_progress=c.on_progress, **kw)  # type: ignore[arg-type]
    return m.root_digest(), c


def test_second_pass_over_an_unchanged_model_reads_no_bytes(model: Path) -> None:
    first, c1 = _hash(model)
    second, c2 = _hash(model)
    assert c1.read == (1 << 20) + len('{"hidden": 8}')
    assert (c2.total, c2.read) == (0, 0)
    assert first == second
    assert default_path().parent == data_home() and default_path().exists()


def test_no_cache_reads_every_byte_again(model: Path) -> None:
    _hash(model)
    _, c = _hash(model, use_cache=False)
    assert c.read == (1 << 20) + len('{"hidden": 8}')


def test_rewrite_with_same_size_and_restored_mtime_is_rehashed(model: Path) -> None:
    weights = model / "weights.bin"
    before, _ = _hash(model)
    st = weights.stat()
    data = bytearray(weights.read_bytes())
    data[12345] ^= 0xFF
    weights.write_bytes(bytes(data))
    # The attacker's trick: same size, mtime set back. ctime still moves, so the cache misses.
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert weights.stat().st_mtime_ns == st.st_mtime_ns
    after, c = _hash(model)
    assert c.read == 1 << 20  # only the changed file is read again
    assert after != before


def test_replaced_file_with_new_inode_is_rehashed(model: Path) -> None:
    before, _ = _hash(model)
    tmp = model / "weights.tmp"
    tmp.write_bytes(os.urandom(1 << 20))
    os.replace(tmp, model / "weights.bin")
    after, c = _hash(model)
    assert c.read == 1 << 20 and after != before


def test_algorithms_and_shard_sizes_are_cached_separately(model: Path) -> None:
    _hash(model)
    _, c = _hash(model, hash_type="blake2b")
    assert c.read > 0
    _, c = _hash(model, shard_size=4096)
    assert c.read > 0


def test_file_changed_while_being_hashed_is_refused_and_not_cached(model: Path) -> None:
    weights = model / "weights.bin"

    def grow(_: int) -> None:
        with weights.open("ab") as fh:
            fh.write(b"x")

    with pytest.raises(UnusableInput, match="changed while being hashed"):
        manifest_of(model / "weights.bin", on_progress=grow, workers=1)
    _, c = _hash(model / "weights.bin")
    assert c.read == weights.stat().st_size  # nothing was cached from the refused pass


def test_cache_database_is_created_by_migrations_and_reopens(tmp_path: Path, model: Path) -> None:
    path = tmp_path / "c.db"
    manifest_of(model, cache=DigestCache(path))
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT count(*) FROM digests").fetchone()[0]
        applied = [r[0] for r in conn.execute("SELECT name FROM _migrations WHERE component='digest_cache'")]
    assert rows == 2 and applied == ["m001_digests"]
    with DigestCache(path) as again:
        c = Counter()
        manifest_of(model, cache=again, on_progress=c.on_progress)
    assert c.read == 0


def test_unusable_cache_location_is_a_config_error_pointing_at_no_cache(tmp_path: Path, model: Path) -> None:
    from bastion.errors import ConfigError

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(ConfigError, match=r"not-a-dir") as exc:
        manifest_of(model, cache=DigestCache(blocker / "digests.db"))
    assert "--no-cache" in exc.value.hint
