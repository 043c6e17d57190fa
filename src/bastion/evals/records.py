"""Plain data handed between the runner, the store, the CLI and the report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class ItemRecord:
    """One scored item: the model's raw output and how it was judged (kept for audit)."""

    task: str
    item_id: str
    score: float  # 1.0 correct / safe, 0.0 otherwise
    output: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """Plain mapping."""
        return asdict(self)


@dataclass(frozen=True)
class TaskSummary:
    """Aggregate of one task or safety category, with a 95% Wilson interval."""

    task: str
    kind: str  # "capability" or "safety"
    scoring: str  # "loglikelihood", "generative" or "rules"
    metric: str
    value: float
    n: int
    ci_low: float
    ci_high: float
    stderr: float
    chance: float | None
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Plain mapping."""
        return asdict(self)


@dataclass(frozen=True)
class RunRecord:
    """Everything needed to reproduce and trust a run: target, digests, settings and results."""

    id: str
    created_at: str
    target: dict[str, Any]
    suite: str
    suite_version: str
    settings: dict[str, Any]
    datasets: list[dict[str, Any]]
    summaries: list[TaskSummary]
    seconds: float

    @property
    def model_digest(self) -> str | None:
        """sha256 of the evaluated weights, when known."""
        digest = self.target.get("digest")
        return digest if isinstance(digest, str) else None

    def summary(self, task: str) -> TaskSummary | None:
        """The summary of ``task``, if the run has it."""
        return next((s for s in self.summaries if s.task == task), None)

    def to_json(self) -> dict[str, Any]:
        """Plain mapping (``--json``)."""
        data = asdict(self)
        data["model_digest"] = self.model_digest
        return data
