"""How much work reading one artifact may take, shared by every member of an archive.

A 19.5 KB torch zip whose ``data.pkl`` inflates to 20 million opcodes once took 40 s and 2 GB to read.
Readers now draw on one :class:`ScanBudget` per artifact (the file and everything nested in it: archive
members, decompressed streams, pickles one after another), so the work is bounded by these constants
whatever the input. They sit well above real checkpoints: a 10,000-tensor ``torch.save`` state dict
is about 300,000 opcodes, a few megabytes of pickle and 10,000 members.
When a budget runs out the reader stops and says so; the scanner turns that into a ``fail`` finding,
because what was not read is never ``pass``.
"""

from __future__ import annotations

from dataclasses import dataclass

from bastion.errors import UnusableInput

#: Pickle opcodes read per artifact (all pickles and members together).
MAX_OPS = 2_000_000
#: Imports and calls recorded per artifact (a real checkpoint makes one call per tensor).
MAX_REFS = 100_000
#: Memo entries written per artifact (each one is kept in memory until its pickle ends).
MAX_MEMO = 1_000_000
#: Characters of pickled text kept as symbolic values (module and class names are short).
MAX_TEXT = 32 << 20
#: Members of one zip or tar archive (a torch zip has one per storage; checking each costs ~60 µs on a
#: loaded machine, so 100,000 took 6 s). Larger checkpoints are sharded by every exporter well before this.
MAX_MEMBERS = 20_000
#: Bytes produced by decompression (deflated zip members, gzip/bz2/xz/zlib streams, tar members).
MAX_INFLATED = 512 << 20
#: One pickle read into memory (a zip member or a decompressed stream); files on disk are memory-mapped.
MAX_PICKLE_BYTES = 64 << 20


class BudgetExceeded(UnusableInput):
    """Reading the artifact would take more work than :class:`ScanBudget` allows."""


@dataclass
class ScanBudget:
    """What is left to spend on one artifact; readers subtract as they go."""

    ops: int = MAX_OPS
    refs: int = MAX_REFS
    memo: int = MAX_MEMO
    text: int = MAX_TEXT
    members: int = MAX_MEMBERS
    inflated: int = MAX_INFLATED

    def take_members(self, n: int, where: str) -> None:
        """Spend ``n`` archive members, or raise :class:`BudgetExceeded` naming ``where``."""
        self.members -= n
        if self.members < 0:
            raise exceeded(where, f"more than {MAX_MEMBERS} archive members")

    def take_inflated(self, n: int, where: str) -> None:
        """Spend ``n`` decompressed bytes, or raise :class:`BudgetExceeded` naming ``where``."""
        self.inflated -= n
        if self.inflated < 0:
            raise exceeded(where, f"decompresses to more than {MAX_INFLATED >> 20} MiB")


def exceeded(where: str, what: str) -> BudgetExceeded:
    """The error for a budget that ran out while reading ``where``."""
    return BudgetExceeded(
        f"{where}: {what}; Bastion stops reading there (the bound keeps any input under 5 s and 512 MB)",
        hint="A real model checkpoint stays far below this bound: treat the file as hostile, or convert "
        "the weights to safetensors.",
    )
