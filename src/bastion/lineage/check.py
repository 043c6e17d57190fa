"""Test a model's claimed base against the reference store: the admission pipeline's entry point."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.formats import Artifact
from bastion.lineage.compare import Comparison, compare
from bastion.lineage.fingerprint import Fingerprint, fingerprint, load
from bastion.lineage.references import ReferenceStore


@dataclass(frozen=True)
class LineageVerdict:
    """Outcome of ``check``: is the claimed base supported, and which reference matches best.

    ``claim`` is one of:
      * ``"supported"``: the weights are related to the claimed base;
      * ``"contradicted"``: not related to the claimed base, but related to another reference
        (``best_match``) - the "fine-tune a foreign base and relabel it" case;
      * ``"unsupported"``: related to no reference at all (the base may be missing from the store);
      * ``"inconclusive"``: the weights cannot decide (see ``claimed.reason``).
    """

    path: str
    claimed_base: str
    claim: str
    claimed: Comparison
    best_match: str | None
    best: Comparison | None
    others: tuple[tuple[str, Comparison], ...]

    @property
    def related_bases(self) -> list[str]:
        """Every reference the model is related to (the lineage the admission policy checks)."""
        names = [self.claimed_base] if self.claimed.verdict == "related" else []
        return names + [n for n, c in self.others if c.verdict == "related"]

    def to_json(self) -> dict[str, Any]:
        """Plain mapping (the ``--json`` output)."""
        return {
            "path": self.path,
            "claimed_base": self.claimed_base,
            "claim": self.claim,
            "related_bases": self.related_bases,
            "best_match": self.best_match,
            "claimed": self.claimed.to_json(),
            "best": None if self.best is None else self.best.to_json(),
            "others": {n: c.to_json() for n, c in self.others},
        }


def load_or_fingerprint(
    target: Artifact | Path, progress: Callable[[int, int], None] | None = None
) -> Fingerprint:
    """A fingerprint file (``.json``) is read; anything else is fingerprinted from its weights."""
    if isinstance(target, Path) and target.is_file() and target.suffix == ".json":
        return load(target)
    return fingerprint(target, progress)


def check_lineage(
    path: Artifact | Path,
    claimed_base: str,
    store: ReferenceStore | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> LineageVerdict:
    """Compare the model (an Artifact or a path) with reference ``claimed_base`` and every other one."""
    own = store is None
    refs = store or ReferenceStore.default()
    try:
        base = refs.get(claimed_base)  # NotFound before any heavy work
        fp = load_or_fingerprint(path, progress)
        claimed = compare(base, fp)
        others = tuple(
            (info.name, compare(refs.get(info.name), fp)) for info in refs.list() if info.name != claimed_base
        )
    finally:
        if own:
            refs.close()
    related = [(n, c) for n, c in ((claimed_base, claimed), *others) if c.verdict == "related"]
    best_name, best = (None, None)
    if related:
        best_name, best = min(related, key=lambda nc: nc[1].log10_p if nc[1].log10_p is not None else 0.0)
    if claimed.verdict == "related":
        claim = "supported"
    elif claimed.verdict == "inconclusive":
        claim = "inconclusive"
    else:
        claim = "contradicted" if related else "unsupported"
    where = path.path if isinstance(path, Artifact) else path
    return LineageVerdict(str(where), claimed_base, claim, claimed, best_name, best, others)
