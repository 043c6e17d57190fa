"""The symbolic pickle reader recovers every import, whatever the protocol or spelling."""

from __future__ import annotations

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
