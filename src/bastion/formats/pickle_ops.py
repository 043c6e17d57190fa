"""Read pickle streams opcode by opcode with a symbolic stack, never unpickling.

``pickletools.genops`` decodes opcodes without executing them. On top of it this module keeps a
symbolic stack and memo so that every name the unpickler would import is recovered, however it was
spelled: ``GLOBAL``/``INST`` arguments, ``STACK_GLOBAL`` names pushed as constants, fetched from the
memo (``BINGET``) or duplicated, and the class operands of ``OBJ``/``NEWOBJ``/``NEWOBJ_EX``. Calls are
recorded with their target (``REDUCE``, ``INST``, ``OBJ``, ``NEWOBJ``, ``BUILD``). Anything that cannot
be resolved statically (a ``STACK_GLOBAL`` whose names are computed, ``EXT*`` registry codes, a
truncated stream) is reported as an :class:`Anomaly` rather than guessed: the caller decides the
verdict, and the rule in ``bastion.vet`` is that what we cannot read is never ``pass``.

Several pickles may be concatenated (``torch.load`` of the legacy format reads five in a row, and the
"broken stream, payload first" trick relies on loaders stopping at the first ``STOP``); every one is read.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickletools
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO, cast

#: A protocol-0 text line longer than this is refused (readline on a crafted file would otherwise
#: pull the whole file into memory looking for a newline).
MAX_LINE = 16 << 20
#: Bound the work on a hostile stream: real checkpoint pickles are far below this.
MAX_OPS = 50_000_000
MAX_PICKLES = 1_000


@dataclass(frozen=True)
class GlobalRef:
    """A name the unpickler would import (``module``, ``name``) and how it is used."""

    module: str
    name: str
    offset: int
    opcode: str
    called: bool = False

    @property
    def qualname(self) -> str:
        """``module.name`` as it would be resolved."""
        return f"{self.module}.{self.name}"


@dataclass(frozen=True)
class Anomaly:
    """Something in the stream that cannot be read statically or is malformed."""

    kind: str  # "malformed" | "unresolved_global" | "extension_code" | "build_on_global" | "trailing_data"
    offset: int
    detail: str


@dataclass
class PickleAnalysis:
    """Everything the opcode reader learned about one pickle file or archive member."""

    globals: list[GlobalRef] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    pickles: int = 0
    protocols: set[int] = field(default_factory=set)
    opcodes: int = 0
    #: the first integer constant of the first pickle (the legacy torch.save magic number lives here)
    first_int: int | None = None

    def to_json(self) -> dict[str, Any]:
        """Summary as a plain mapping."""
        return {
            "format": "pickle",
            "pickles": self.pickles,
            "protocols": sorted(self.protocols),
            "opcodes": self.opcodes,
            "globals": sorted({g.qualname for g in self.globals}),
        }


class _Bounded(io.RawIOBase):
    """A reader that never returns (or allocates) more than what is left in the underlying stream."""

    def __init__(self, raw: BinaryIO, size: int) -> None:
        self.raw, self.size = raw, size
        self.start = raw.tell()

    def tell(self) -> int:
        return self.raw.tell() - self.start

    def read(self, n: int | None = -1) -> bytes:
        left = self.size - self.tell()
        n = left if n is None or n < 0 else min(n, left)
        return self.raw.read(max(n, 0))

    def readline(self, limit: int | None = -1) -> bytes:
        return self.raw.readline(min(MAX_LINE, self.size - self.tell()))


class _Mark:
    pass


_MARK = _Mark()


@dataclass(frozen=True)
class _Str:
    value: str


@dataclass(frozen=True)
class _Global:
    ref: GlobalRef


@dataclass(frozen=True)
class _Value:
    """Any other stack value; ``source`` is the global whose call produced it, if any."""

    source: GlobalRef | None = None


_TEXT_OPS = {
    "SHORT_BINUNICODE",
    "BINUNICODE",
    "BINUNICODE8",
    "UNICODE",
    "STRING",
    "BINSTRING",
    "SHORT_BINSTRING",
}


def _normalise(module: str, name: str, proto: int) -> tuple[str, str]:
    # The unpickler maps Python 2 names (``__builtin__``, ``copy_reg``) to Python 3 ones for protocol < 3.
    if proto < 3:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            return _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    return module, name


def analyse_pickle(stream: BinaryIO, size: int) -> PickleAnalysis:
    """Read every pickle in ``stream`` (``size`` bytes from its current position) symbolically."""
    out = PickleAnalysis()
    f = _Bounded(stream, size)
    while f.tell() < size and out.pickles < MAX_PICKLES:
        start = f.tell()
        if not _one(f, out):
            break
        out.pickles += 1
        if out.pickles == 1 and _legacy_torch(out):
            # Legacy (pre-1.6) torch.save: five pickles, then raw storage bytes that are not pickles.
            for _ in range(4):
                if f.tell() >= size or not _one(f, out):
                    break
                out.pickles += 1
            break
        if f.tell() == start:  # pragma: no cover - genops always consumes at least one byte
            break
    return out


def _legacy_torch(out: PickleAnalysis) -> bool:
    return out.first_int == 0x1950A86A20F9469CFC6C


def _one(f: _Bounded, out: PickleAnalysis) -> bool:
    """Read one pickle up to STOP; return False if the stream is malformed (anomaly recorded)."""
    stack: list[Any] = []
    memo: dict[int, Any] = {}
    proto = 0
    first = out.pickles == 0
    try:
        for op, arg_, pos in pickletools.genops(cast(IO[bytes], f)):
            arg: Any = arg_
            out.opcodes += 1
            if out.opcodes > MAX_OPS:
                out.anomalies.append(Anomaly("malformed", pos or 0, f"more than {MAX_OPS} opcodes"))
                return False
            p = pos or 0
            name = op.name
            if name == "PROTO":
                proto = int(arg)
                out.protocols.add(proto)
                continue
            if first and name in ("LONG1", "LONG4", "INT", "LONG", "BININT") and isinstance(arg, int):
                if out.first_int is None:
                    out.first_int = arg
            if name == "STOP":
                return True
            if name in _TEXT_OPS:
                stack.append(_Str(arg if isinstance(arg, str) else str(arg)))
            elif name in ("GLOBAL", "INST"):
                module, _, qual = str(arg).partition(" ")
                module, qual = _normalise(module, qual, proto)
                ref = GlobalRef(module, qual, p, name, called=name == "INST")
                out.globals.append(ref)
                if name == "INST":
                    _pop_mark(stack)
                    stack.append(_Value(ref))
                else:
                    stack.append(_Global(ref))
            elif name == "STACK_GLOBAL":
                qual_v, mod_v = _pop(stack), _pop(stack)
                if isinstance(qual_v, _Str) and isinstance(mod_v, _Str):
                    module, qual = _normalise(mod_v.value, qual_v.value, proto)
                    ref = GlobalRef(module, qual, p, name)
                    out.globals.append(ref)
                    stack.append(_Global(ref))
                else:
                    out.anomalies.append(
                        Anomaly(
                            "unresolved_global",
                            p,
                            "STACK_GLOBAL takes its module or name from a computed value",
                        )
                    )
                    stack.append(_Value())
            elif name in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):
                key = len(memo) if name == "MEMOIZE" else int(arg)
                memo[key] = stack[-1] if stack else _raise("memoize on an empty stack")
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                if int(arg) not in memo:
                    raise ValueError(f"memo key {arg} read before it was written")
                stack.append(memo[int(arg)])
            elif name == "DUP":
                stack.append(stack[-1] if stack else _raise("DUP on an empty stack"))
            elif name in ("EXT1", "EXT2", "EXT4"):
                # copyreg's extension registry maps an integer to (module, name) at load time; its
                # contents are process state we cannot see, so the import cannot be resolved statically.
                out.anomalies.append(
                    Anomaly("extension_code", p, f"{name} {arg} imports via copyreg's registry")
                )
                stack.append(_Value())
            elif name == "REDUCE":
                _pop(stack)
                stack.append(_call(_pop(stack), out, p, name))
            elif name == "NEWOBJ":
                _pop(stack)
                stack.append(_call(_pop(stack), out, p, name))
            elif name == "NEWOBJ_EX":
                _pop(stack)
                _pop(stack)
                stack.append(_call(_pop(stack), out, p, name))
            elif name == "OBJ":
                items = _pop_mark(stack)
                if not items:
                    raise ValueError("OBJ without a class")
                stack.append(_call(items[0], out, p, name))
            elif name == "BUILD":
                _pop(stack)
                target = stack[-1] if stack else _raise("BUILD on an empty stack")
                if isinstance(target, _Global):
                    # BUILD on an imported class or function sets attributes on it: the way allowlisted
                    # names are overwritten (ShadowPickle) before a later, innocent-looking import.
                    out.anomalies.append(
                        Anomaly("build_on_global", p, f"BUILD sets attributes on {target.ref.qualname}")
                    )
            elif name in ("PERSID", "BINPERSID"):
                if name == "BINPERSID":
                    _pop(stack)
                stack.append(_Value())
            else:
                _generic(op, stack)
    except (ValueError, IndexError, KeyError, UnicodeDecodeError, OverflowError, EOFError) as exc:
        pos = f.tell()
        out.anomalies.append(Anomaly("malformed", pos, f"pickle stream cannot be read: {exc}"))
        return False
    out.anomalies.append(Anomaly("malformed", f.tell(), "pickle ends without STOP"))
    return False


def _raise(msg: str) -> Any:
    raise ValueError(msg)


def _pop(stack: list[Any]) -> Any:
    if not stack or stack[-1] is _MARK:
        raise ValueError("stack underflow")
    return stack.pop()


def _pop_mark(stack: list[Any]) -> list[Any]:
    for i in range(len(stack) - 1, -1, -1):
        if stack[i] is _MARK:
            items = stack[i + 1 :]
            del stack[i:]
            return items
    raise ValueError("no MARK on the stack")


def _call(target: Any, out: PickleAnalysis, pos: int, opcode: str) -> _Value:
    if isinstance(target, _Global):
        ref = GlobalRef(target.ref.module, target.ref.name, pos, opcode, called=True)
        out.globals.append(ref)
        return _Value(ref)
    # Calling anything but a directly imported name (a call's result, a memo entry holding one, a
    # constant) means the callee is only known at load time; tensor checkpoints never do this.
    what = (
        f"the result of {target.source.qualname}"
        if isinstance(target, _Value) and target.source
        else "a value"
    )
    out.anomalies.append(Anomaly("unresolved_call", pos, f"{opcode} calls {what} computed at load time"))
    return _Value()


def _generic(op: pickletools.OpcodeInfo, stack: list[Any]) -> None:
    """Apply an opcode's documented stack effect with opaque values."""
    before = op.stack_before
    if pickletools.markobject in before:
        # everything above the mark (stackslice) plus the mark itself, then fixed items below it
        _pop_mark(stack)
        below = before[: before.index(pickletools.markobject)]
        for _ in below:
            _pop(stack)
    else:
        for _ in before:
            _pop(stack)
    for item in op.stack_after:
        stack.append(_MARK if item is pickletools.markobject else _Value())
