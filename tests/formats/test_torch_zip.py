"""Zip-based torch.save archives read strictly, the way torch.load reads them."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from bastion.errors import UnusableInput
from bastion.formats import read_torch_zip


def test_real_torch_save_archive_is_read(tmp_path: Path) -> None:
    import torch

    p = tmp_path / "m.pt"
    torch.save({"w": torch.ones(2, 2)}, p)
    arc = read_torch_zip(p)
    assert arc.archive_name == "m"
    globals_ = {g.qualname for g in arc.pickles["m/data.pkl"].globals}
    # _rebuild_tensor_v2 takes an OrderedDict of backward hooks, hence the third name
    assert globals_ == {"torch._utils._rebuild_tensor_v2", "torch.FloatStorage", "collections.OrderedDict"}


def test_zip_without_data_pkl_is_not_a_torch_archive(tmp_path: Path) -> None:
    p = tmp_path / "x.zip"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("a/readme.txt", "hi")
    with pytest.raises(UnusableInput, match="data.pkl"):
        read_torch_zip(p)


def test_truncated_archive_is_refused(tmp_path: Path) -> None:
    import torch

    p = tmp_path / "m.pt"
    torch.save({"w": torch.ones(2, 2)}, p)
    p.write_bytes(p.read_bytes()[:300])
    with pytest.raises(UnusableInput, match="torch.load"):
        read_torch_zip(p)
