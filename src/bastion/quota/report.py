"""Usage summed by key, group or model over a period (``bastion usage``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from bastion.quota.store import UsageRow

By = Literal["key", "group", "model"]


@dataclass(frozen=True)
class UsageLine:
    """Requests and tokens of one key, group or model."""

    name: str
    requests: int
    tokens_in: int
    tokens_out: int
    #: seconds spent answering them (what throughput and local cost are measured from)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def summarise(
    rows: Sequence[UsageRow], by: By, keys: Mapping[str, tuple[str, tuple[str, ...]]]
) -> list[UsageLine]:
    """Sum ``rows`` by key ("id (name)"), by group (a key counts in each of its groups) or by model.

    ``keys`` maps a key id to its name and groups; a key no longer in the store shows by id alone.
    """
    sums: dict[str, list[float]] = {}
    for row in rows:
        name, groups = keys.get(row.key_id, ("", ()))
        if by == "key":
            labels = [f"{row.key_id} ({name})" if name else row.key_id]
        elif by == "group":
            labels = list(groups) or ["(no group)"]
        else:
            labels = [row.model]
        for label in labels:
            acc = sums.setdefault(label, [0, 0, 0, 0.0])
            acc[0] += row.requests
            acc[1] += row.tokens_in
            acc[2] += row.tokens_out
            acc[3] += row.seconds
    return [UsageLine(label, int(a[0]), int(a[1]), int(a[2]), round(a[3], 3))
            for label, a in sorted(sums.items())]
