"""Read pickle streams opcode by opcode with a symbolic stack, never unpickling.

The opcodes are decoded from a buffer (``bastion.formats.pickle_decode``: a memory map of the file or
a bounded in-memory copy of an archive member). On top of them this module keeps a symbolic stack and
memo so that every name the unpickler would import is recovered, however it was spelled:
``GLOBAL``/``INST`` arguments, ``STACK_GLOBAL`` names pushed as constants, fetched from the memo
(``BINGET``) or duplicated, and the class operands of ``OBJ``/``NEWOBJ``/``NEWOBJ_EX``. Calls are
recorded with their target (``REDUCE``, ``INST``, ``OBJ``, ``NEWOBJ``, ``BUILD``). Anything that cannot
be resolved statically (a ``STACK_GLOBAL`` whose names are computed, ``EXT*`` registry codes, a
truncated stream) is reported as an :class:`Anomaly` rather than guessed: the caller decides the
verdict, and the rule in ``bastion.vet`` is that what we cannot read is never ``pass``.

Several pickles may be concatenated (``torch.load`` of the legacy format reads five in a row, and the
"broken stream, payload first" trick relies on loaders stopping at the first ``STOP``); every one is
read. All of it draws on one :class:`~bastion.formats.budget.ScanBudget` per artifact: opcodes, memo
entries and retained text are bounded, and running out is an anomaly of kind ``budget``.
"""

from __future__ import annotations

import _compat_pickle
import mmap
import re
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from bastion.formats.budget import MAX_MEMO, MAX_OPS, MAX_PICKLE_BYTES, MAX_REFS, ScanBudget
from bastion.formats.pickle_decode import (
    A_NONE,
    BUILD,
    CALL,
    DUP,
    EXT,
    GENERIC,
    GET,
    GLOBAL,
    INST,
    INT,
    MEMOIZE,
    NEWOBJ_EX,
    OBJ,
    POP,
    PROTO,
    PUSH1,
    PUT,
    STACK_GLOBAL,
    STOP,
    TABLE,
    TEXT,
    Buffer,
    read_arg,
)

MAX_PICKLES = 1_000
_WINDOW = 32 << 20
#: A dotted Python name, as ``find_class`` would import it.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


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

    @property
    def plausible(self) -> bool:
        """True when both parts are dotted identifiers (what ``find_class`` can import)."""
        return bool(_IDENTIFIER.fullmatch(self.module) and _IDENTIFIER.fullmatch(self.name))


@dataclass(frozen=True)
class Anomaly:
    """Something in the stream that cannot be read statically or is malformed."""

    # "malformed" | "unresolved_global" | "unresolved_call" | "extension_code" | "build_on_global" | "budget"
    kind: str
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


class _Mark:
    pass


_MARK = _Mark()


@dataclass(frozen=True)
class _Global:
    ref: GlobalRef


@dataclass(frozen=True)
class _Value:
    """Any other stack value; ``source`` is the global whose call produced it, if any."""

    source: GlobalRef | None = None


#: Every value that is neither text, an imported name nor a call's result (one object, not one per push).
_OPAQUE = _Value()


def _normalise(module: str, name: str, proto: int) -> tuple[str, str]:
    # The unpickler maps Python 2 names (``__builtin__``, ``copy_reg``) to Python 3 ones for protocol < 3.
    if proto < 3:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            return _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    return module, name


def analyse_pickle(stream: BinaryIO, size: int, budget: ScanBudget | None = None) -> PickleAnalysis:
    """Read every pickle in ``stream`` (``size`` bytes from its current position) symbolically.

    A real file is memory-mapped (only the pages the opcodes touch are read); any other stream is
    copied into memory up to ``MAX_PICKLE_BYTES``.
    """
    budget = budget if budget is not None else ScanBudget()
    start = stream.tell()
    try:
        fileno = stream.fileno()
    except (OSError, AttributeError, ValueError):
        fileno = -1
    if fileno >= 0 and size > 0:
        try:
            with mmap.mmap(fileno, 0, access=mmap.ACCESS_READ) as mm:
                return analyse_buffer(mm, budget, start, min(start + size, len(mm)))
        except (OSError, ValueError):
            pass  # not mappable (a pipe, a special file): fall back to a bounded copy
    data = stream.read(min(size, MAX_PICKLE_BYTES + 1))
    if len(data) > MAX_PICKLE_BYTES:
        out = PickleAnalysis()
        out.anomalies.append(
            Anomaly("budget", 0, f"the pickle is larger than {MAX_PICKLE_BYTES >> 20} MiB in memory")
        )
        return out
    return analyse_buffer(data, budget)


def analyse_buffer(
    buf: Buffer, budget: ScanBudget | None = None, start: int = 0, end: int | None = None
) -> PickleAnalysis:
    """Read every pickle in ``buf[start:end]`` symbolically (offsets in findings are from ``start``)."""
    budget = budget if budget is not None else ScanBudget()
    end = len(buf) if end is None else end
    out = PickleAnalysis()
    pos = start
    while pos < end and out.pickles < MAX_PICKLES:
        ok, pos = _one(buf, pos, start, end, out, budget)
        if not ok:
            break
        out.pickles += 1
        if out.pickles == 1 and _legacy_torch(out):
            # Legacy (pre-1.6) torch.save: five pickles, then raw storage bytes that are not pickles.
            for _ in range(4):
                if pos >= end:
                    break
                ok, pos = _one(buf, pos, start, end, out, budget)
                if not ok:
                    break
                out.pickles += 1
            break
    return out


def _legacy_torch(out: PickleAnalysis) -> bool:
    return out.first_int == 0x1950A86A20F9469CFC6C


def _int_line(raw: Any) -> int | None:
    if not isinstance(raw, bytes):
        return raw if isinstance(raw, int) else None
    text = raw.rstrip(b"L")
    if raw in (b"00", b"01"):
        return None  # protocol-0 booleans
    try:
        return int(text)
    except ValueError:
        return None


def _one(
    buf: Buffer, pos: int, base: int, end: int, out: PickleAnalysis, budget: ScanBudget
) -> tuple[bool, int]:
    """Read one pickle up to STOP; (False, pos) if it is malformed or over budget (anomaly recorded)."""
    stack: list[Any] = []
    push = stack.append
    memo: dict[int, Any] = {}
    proto = 0
    first = out.pickles == 0
    p = pos
    ops_left = budget.ops
    # A memory map's pages count towards RSS once read: drop them behind the reader every _WINDOW bytes,
    # so a large stream costs a window of memory, not its size.
    window = _WINDOW if isinstance(buf, mmap.mmap) else end + 1
    released = pos - pos % mmap.PAGESIZE
    try:
        while True:
            if pos - released > window:
                cut = pos - pos % mmap.PAGESIZE
                buf.madvise(mmap.MADV_DONTNEED, released, cut - released)  # type: ignore[union-attr]
                released = cut
            if pos >= end:
                out.anomalies.append(Anomaly("malformed", pos - base, "pickle ends without STOP"))
                return False, pos
            p = pos
            spec = TABLE[buf[pos]]
            if spec is None:
                raise ValueError(f"byte 0x{buf[pos]:02x} is not a pickle opcode")
            if ops_left <= 0:
                out.anomalies.append(
                    Anomaly("budget", p - base, f"more than {MAX_OPS:,} pickle opcodes (the per-file budget)")
                )
                return False, pos
            ops_left -= 1
            handler = spec.handler
            if spec.arg == A_NONE:
                arg: Any = None
                pos += 1
            else:
                arg, pos = read_arg(spec.arg, buf, pos + 1, end)
            if handler == PUSH1:
                push(_OPAQUE)
            elif handler == GENERIC:
                if spec.mark:
                    _pop_mark(stack)
                for _ in range(spec.pops):
                    _pop(stack)
                for is_mark in spec.pushes:
                    push(_MARK if is_mark else _OPAQUE)
            elif handler == TEXT:
                if isinstance(arg, str) and budget.text >= len(arg):
                    budget.text -= len(arg)
                    push(arg)
                else:
                    push(_OPAQUE)  # too long (or too much text) to be a name: kept opaque
            elif handler == PUT or handler == MEMOIZE:
                key = len(memo) if handler == MEMOIZE else _memo_key(arg)
                if key not in memo:
                    if budget.memo <= 0:
                        out.anomalies.append(
                            Anomaly(
                                "budget",
                                p - base,
                                f"more than {MAX_MEMO:,} memo entries (the per-file budget)",
                            )
                        )
                        return False, pos
                    budget.memo -= 1
                if not stack or stack[-1] is _MARK:
                    raise ValueError("memoize on an empty stack")
                memo[key] = stack[-1]
            elif handler == GET:
                key = _memo_key(arg)
                if key not in memo:
                    raise ValueError(f"memo key {key} read before it was written")
                push(memo[key])
            elif handler == INT:
                if first and out.first_int is None:
                    out.first_int = _int_line(arg)
                push(_OPAQUE)
            elif handler == PROTO:
                proto = int(arg)
                out.protocols.add(proto)
            elif handler == STOP:
                _pop(stack)
                return True, pos
            else:
                if handler in _RECORDING:
                    # imports and calls each keep a record (and cost ~10x a plain opcode): bounded apart
                    if budget.refs <= 0:
                        out.anomalies.append(
                            Anomaly(
                                "budget",
                                p - base,
                                f"more than {MAX_REFS:,} imports and calls (the per-file budget)",
                            )
                        )
                        return False, pos
                    budget.refs -= 1
                _special(handler, spec.name, arg, stack, out, p - base, proto)
    except (ValueError, IndexError, KeyError, UnicodeDecodeError, OverflowError, TypeError) as exc:
        out.anomalies.append(Anomaly("malformed", p - base, f"pickle stream cannot be read: {exc}"))
        return False, pos
    finally:
        out.opcodes += budget.ops - ops_left
        budget.ops = ops_left


_RECORDING = frozenset({GLOBAL, INST, STACK_GLOBAL, CALL, NEWOBJ_EX, OBJ, EXT, BUILD})


def _special(
    handler: int, name: str, arg: Any, stack: list[Any], out: PickleAnalysis, off: int, proto: int
) -> None:
    """The opcodes that import, call, build or duplicate: where names and calls are recorded."""
    if handler == GLOBAL or handler == INST:
        module, qual = _normalise(arg[0], arg[1], proto)
        ref = GlobalRef(module, qual, off, name, called=handler == INST)
        out.globals.append(ref)
        if handler == INST:
            _pop_mark(stack)
            stack.append(_Value(ref))
        else:
            stack.append(_Global(ref))
    elif handler == STACK_GLOBAL:
        qual_v, mod_v = _pop(stack), _pop(stack)
        if type(qual_v) is str and type(mod_v) is str:
            module, qual = _normalise(mod_v, qual_v, proto)
            ref = GlobalRef(module, qual, off, name)
            out.globals.append(ref)
            stack.append(_Global(ref))
        else:
            out.anomalies.append(
                Anomaly(
                    "unresolved_global", off, "STACK_GLOBAL takes its module or name from a computed value"
                )
            )
            stack.append(_OPAQUE)
    elif handler == DUP:
        if not stack:
            raise ValueError("DUP on an empty stack")
        stack.append(stack[-1])
    elif handler == POP:
        if not stack:
            raise ValueError("stack underflow")
        stack.pop()  # the unpickler's POP also discards a MARK
    elif handler == EXT:
        # copyreg's extension registry maps an integer to (module, name) at load time; its
        # contents are process state we cannot see, so the import cannot be resolved statically.
        out.anomalies.append(Anomaly("extension_code", off, f"{name} {arg} imports via copyreg's registry"))
        stack.append(_OPAQUE)
    elif handler == CALL:
        _pop(stack)
        stack.append(_call(_pop(stack), out, off, name))
    elif handler == NEWOBJ_EX:
        _pop(stack)
        _pop(stack)
        stack.append(_call(_pop(stack), out, off, name))
    elif handler == OBJ:
        items = _pop_mark(stack)
        if not items:
            raise ValueError("OBJ without a class")
        stack.append(_call(items[0], out, off, name))
    elif handler == BUILD:
        _pop(stack)
        if not stack or stack[-1] is _MARK:
            raise ValueError("BUILD on an empty stack")
        target = stack[-1]
        if isinstance(target, _Global):
            # BUILD on an imported class or function sets attributes on it: the way allowlisted
            # names are overwritten (ShadowPickle) before a later, innocent-looking import.
            out.anomalies.append(
                Anomaly("build_on_global", off, f"BUILD sets attributes on {target.ref.qualname}")
            )
    else:  # pragma: no cover - every handler is dispatched above
        raise ValueError(f"no handler for {name}")


def _memo_key(arg: Any) -> int:
    key = _int_line(arg)
    if key is None or key < 0:
        raise ValueError(f"memo key {arg!r} is not a non-negative integer")
    return key


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
    return _OPAQUE
