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


def _distinct_calls(n: int) -> bytes:
    """os.f0(), os.f1(), ... as protocol 4 writes them (STACK_GLOBAL, EMPTY_TUPLE, REDUCE, POP)."""
    body = b"".join(
        b"\x8c\x02os\x8c" + bytes([len(name)]) + name + b"\x93)R0"
        for name in (f"f{i}".encode() for i in range(n))
    )
    return b"\x80\x04" + body + b"N."


def test_imports_and_calls_have_their_own_budget() -> None:
    import io

    from bastion.formats import analyse_pickle
    from bastion.formats.budget import ScanBudget

    data = _distinct_calls(100)
    analysis = analyse_pickle(io.BytesIO(data), len(data), ScanBudget(refs=50))
    assert [a.kind for a in analysis.anomalies] == ["budget"]
    assert len(analysis.globals) == 50


def test_findings_per_code_are_capped_with_a_count_of_the_rest() -> None:
    import io

    from bastion.formats import analyse_pickle
    from bastion.vet.pickle_scan import MAX_PER_CODE, scan_pickle

    data = _distinct_calls(300)
    findings = scan_pickle(analyse_pickle(io.BytesIO(data), len(data)), "f", strict=False)
    dangerous = [f for f in findings if f.code == "PICKLE_DANGEROUS_GLOBAL"]
    assert len(dangerous) == MAX_PER_CODE + 1
    assert dangerous[-1].message == f"and {300 - MAX_PER_CODE} more findings like these"
