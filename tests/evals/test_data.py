"""Data sets are verified against the manifest; a modified file is refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bastion.errors import IntegrityError, NotFound
from bastion.evals.data import eval_data_dir, load_dataset


def test_every_dataset_has_a_licence_and_a_matching_digest() -> None:
    for name in ("arc_easy", "hellaswag", "piqa", "gsm8k", "safety_harmbench"):
        ds = load_dataset(name)
        assert ds.licence and ds.sha256.startswith("sha256:") and len(ds.records) > 0


def test_modified_data_file_is_an_integrity_error(tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(eval_data_dir(), root)
    with (root / "piqa.jsonl").open("a") as fh:
        fh.write('{"id": "x", "goal": "g", "choices": ["a", "b"], "gold": 0}\n')
    with pytest.raises(IntegrityError) as exc:
        load_dataset("piqa", root)
    assert "piqa.jsonl" in exc.value.message


def test_missing_data_says_how_to_build_it(tmp_path: Path) -> None:
    with pytest.raises(NotFound) as exc:
        load_dataset("piqa", tmp_path)
    assert "make eval-data" in exc.value.hint
