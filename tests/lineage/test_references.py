"""The reference store: named fingerprints in SQLite, all-or-nothing writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.errors import NotFound, UsageError
from bastion.lineage import Fingerprint, ReferenceStore


def test_add_get_and_list_a_reference(base_fp: Fingerprint, tmp_path: Path) -> None:
    store = ReferenceStore(tmp_path / "lineage.db")
    info = store.add("smollm2-135m", base_fp)
    assert info.family == "llama" and info.sha256 == base_fp.sha256
    assert [r.name for r in store.list()] == ["smollm2-135m"]
    back = store.get("smollm2-135m")
    assert back.arch == base_fp.arch and back.anchors == base_fp.anchors
    store.close()
    # survives reopening (migrations are not re-applied destructively)
    again = ReferenceStore(tmp_path / "lineage.db")
    assert [r.name for r in again.list()] == ["smollm2-135m"]


def test_duplicate_name_needs_replace(base_fp: Fingerprint, tmp_path: Path) -> None:
    store = ReferenceStore(tmp_path / "lineage.db")
    store.add("base", base_fp)
    with pytest.raises(UsageError, match="already exists") as err:
        store.add("base", base_fp)
    assert "--replace" in err.value.hint
    store.add("base", base_fp, replace=True)
    assert len(store.list()) == 1


def test_unknown_reference_is_not_found(tmp_path: Path) -> None:
    store = ReferenceStore(tmp_path / "lineage.db")
    with pytest.raises(NotFound, match="no lineage reference named 'qwen'"):
        store.get("qwen")


def test_names_with_spaces_are_refused(base_fp: Fingerprint, tmp_path: Path) -> None:
    store = ReferenceStore(tmp_path / "lineage.db")
    with pytest.raises(UsageError):
        store.add("my base", base_fp)
    assert store.list() == []
