"""Allowlist-first classification of pickle imports."""

from __future__ import annotations

import pytest

from bastion.vet.pickle_scan import classify


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch", "FloatStorage"),
        ("collections", "OrderedDict"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    ],
)
def test_tensor_checkpoint_names_are_allowed(module: str, name: str) -> None:
    assert classify(module, name)[0] == "allowed"


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("os", "system"),
        ("posix", "system"),
        ("subprocess", "Popen"),
        ("builtins", "eval"),
        ("builtins", "exec"),
        ("builtins", "getattr"),
        ("builtins", "__import__"),
        ("importlib", "import_module"),
        ("runpy", "run_path"),
        ("pip", "main"),
        ("pty", "spawn"),
        ("socket", "socket"),
        ("webbrowser", "open"),
        ("pickle", "loads"),
        ("_pickle", "loads"),
        ("torch.utils.collect_env", "run"),
        ("asyncio.subprocess", "create_subprocess_exec"),
        ("pkgutil", "resolve_name"),
        ("bdb", "Bdb"),
        ("numpy.testing._private.utils", "runstring"),
        ("torch", "serialization.os.system"),
        ("collections", "__builtins__"),
    ],
)
def test_dangerous_names_are_dangerous(module: str, name: str) -> None:
    assert classify(module, name)[0] == "dangerous"


@pytest.mark.parametrize(
    ("module", "name"), [("argparse", "Namespace"), ("pydoc", "pipepager"), ("builtins", "zip")]
)
def test_everything_else_is_unknown_not_allowed(module: str, name: str) -> None:
    assert classify(module, name)[0] == "unknown"
