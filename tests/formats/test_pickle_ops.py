"""The symbolic pickle reader recovers every import, whatever the protocol or spelling."""

from __future__ import annotations

import _compat_pickle
import io
import pickle
from collections import OrderedDict

import pytest

from bastion.formats import analyse_pickle


class _Payload:
    def __reduce__(self) -> tuple[object, ...]:
        import os

        return (os.system, ("true",))


def _analyse(data: bytes):  # type: ignore[no-untyped-def]
    return analyse_pickle(io.BytesIO(data), len(data))


@pytest.mark.parametrize("protocol", range(6))
def test_every_protocol_reveals_the_called_global(protocol: int) -> None:
    a = _analyse(pickle.dumps({"x": [_Payload()]}, protocol=protocol))
    called = {g.qualname for g in a.globals if g.called}
    assert "posix.system" in called
    assert not a.anomalies


def test_python2_names_are_mapped_like_the_unpickler_does() -> None:
    a = _analyse(b"c__builtin__\neval\n(S'1'\ntR.")
    assert [g.qualname for g in a.globals if g.called] == ["builtins.eval"]


def test_plain_data_has_no_globals_beyond_ordered_dict() -> None:
    a = _analyse(pickle.dumps(OrderedDict(a=1, b=[1.5, "x", b"y"]), protocol=5))
    assert {g.qualname for g in a.globals} == {"collections.OrderedDict"}
    assert a.pickles == 1 and a.protocols == {5}


def test_memo_read_before_write_is_malformed() -> None:
    a = _analyse(b"\x80\x04h\x05.")
    assert a.anomalies[0].kind == "malformed"


def test_protocol0_line_without_newline_is_malformed_not_a_hang() -> None:
    a = _analyse(b"cos\n" + b"A" * 100_000)
    assert a.anomalies and a.anomalies[0].kind == "malformed"


def test_huge_declared_length_does_not_allocate() -> None:
    # BINUNICODE8 declaring 2**60 bytes: the bounded reader returns what exists and genops reports it.
    a = _analyse(b"\x80\x04\x8d" + (2**60).to_bytes(8, "little") + b"abc.")
    assert a.anomalies[0].kind == "malformed"


def test_calling_the_result_of_a_call_is_an_unresolved_call() -> None:
    # collections.OrderedDict() then call the result: the callee is only known at load time.
    a = _analyse(b"\x80\x02ccollections\nOrderedDict\n)R)R.")
    assert [x.kind for x in a.anomalies] == ["unresolved_call"]
    assert "collections.OrderedDict" in a.anomalies[0].detail


def _genops_view(data: bytes) -> tuple[int, set[str]]:
    """Opcode count and GLOBAL/INST names as the standard library's pickletools decodes them."""
    import pickletools

    count, names = 0, set()
    for op, arg, _ in pickletools.genops(data):
        count += 1
        if op.name in ("GLOBAL", "INST"):
            module, _, name = str(arg).partition(" ")
            module, name = _compat_pickle.NAME_MAPPING.get(
                (module, name), (_compat_pickle.IMPORT_MAPPING.get(module, module), name)
            )
            names.add(f"{module}.{name}")
    return count, names


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_decoder_agrees_with_pickletools_on_real_pickles(protocol: int) -> None:
    import collections
    import datetime
    import decimal

    value = {
        "ints": [0, 1, -1, 255, 256, 65535, 65536, 2**31, -(2**31), 2**64, -(2**200)],
        "floats": [0.0, -1.5, float("inf")],
        "text": ["", "ascii", "ünïcödé", "x" * 300, "y" * 70000],
        "bytes": [b"", b"\x00\xff" * 200, bytearray(b"abc")],
        "nested": collections.OrderedDict(a=(1, (2, (3,))), b={1, 2}, c=frozenset({3})),
        "objects": [datetime.date(2024, 1, 2), decimal.Decimal("1.5"), None, True, False],
    }
    data = pickle.dumps(value, protocol=protocol)
    analysis = analyse_pickle(io.BytesIO(data), len(data))
    count, names = _genops_view(data)
    assert analysis.anomalies == []
    assert analysis.pickles == 1
    assert analysis.opcodes == count
    if protocol < 4:  # protocol 4+ spells names with STACK_GLOBAL, which genops leaves on the stack
        assert {g.qualname for g in analysis.globals} >= names
    assert {"collections.OrderedDict", "datetime.date", "decimal.Decimal"} <= {
        g.qualname for g in analysis.globals
    }


def test_opcode_budget_is_shared_across_pickles_and_reported() -> None:
    from bastion.formats.budget import ScanBudget

    budget = ScanBudget(ops=10)
    data = pickle.dumps([1, 2, 3], protocol=2)
    first = analyse_pickle(io.BytesIO(data), len(data), budget)
    assert first.anomalies == [] and budget.ops < 10
    second = analyse_pickle(io.BytesIO(data * 3), len(data) * 3, budget)
    assert [a.kind for a in second.anomalies] == ["budget"]


def test_large_byte_arguments_are_skipped_not_kept() -> None:
    data = pickle.dumps(b"\x00" * (8 << 20), protocol=4)
    analysis = analyse_pickle(io.BytesIO(data), len(data))
    assert analysis.anomalies == [] and analysis.opcodes < 10
