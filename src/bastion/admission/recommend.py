"""What does a policy cost? Rank admissible catalog models by a benchmark, next to the best refused one.

Figures are compared only within one (benchmark, setting) group: the same benchmark measured with
different shots, modes or evaluators is not comparable, so each group is ranked on its own.
Admissibility is decided by the real Cedar policy on each entry's catalog facts and whole ancestry
through ``admission.decide``, *assuming* the artifact would pass vet cleanly and be signed by the
organisation's first trusted key: recommend answers "could we admit it", admission later checks the
actual file with the same function.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.admission.decide import Subject, decide
from bastion.catalog import Catalog, load_catalog
from bastion.errors import UsageError
from bastion.policy import Organisation, load_policy

#: Task -> benchmarks that speak to it, most relevant first.
TASKS: dict[str, tuple[str, ...]] = {
    "knowledge": ("MMLU-Pro", "MMLU"),
    "reasoning": ("GPQA Diamond", "GPQA"),
    "math": ("AIME 2024", "AIME 2025", "MATH-500", "GSM8K"),
    "code": ("HumanEval",),
    "instructions": ("IFEval", "Arena Hard", "AlpacaEval 2 LC"),
}


@dataclass(frozen=True)
class Ranked:
    """One model's figure in a group, with the policy's decision on it."""

    name: str
    country: str
    params_b: float
    value: float
    admissible: bool
    deciding: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The row as a plain mapping."""
        return {
            "name": self.name,
            "country": self.country,
            "params_b": self.params_b,
            "value": self.value,
            "admissible": self.admissible,
            "deciding_statements": list(self.deciding),
        }


@dataclass(frozen=True)
class Group:
    """Figures for one benchmark in one setting: admissible ranked, the best refused, and the gap."""

    benchmark: str
    setting: str
    admissible: tuple[Ranked, ...]
    best_refused: Ranked | None

    @property
    def gap(self) -> float | None:
        """Points lost by taking the best admissible model instead of the best refused one (>0 = cost)."""
        if self.best_refused is None or not self.admissible:
            return None
        return round(self.best_refused.value - self.admissible[0].value, 2)

    def to_json(self) -> dict[str, Any]:
        """The group as a plain mapping."""
        return {
            "benchmark": self.benchmark,
            "setting": self.setting,
            "admissible": [r.to_json() for r in self.admissible],
            "best_refused": self.best_refused.to_json() if self.best_refused else None,
            "gap": self.gap,
        }


@dataclass(frozen=True)
class Recommendation:
    """The answer to "which admissible model is best, and what does the policy cost"."""

    policy: str
    max_params_b: float
    benchmarks: tuple[str, ...]
    groups: tuple[Group, ...]
    admissible_count: int
    refused_count: int

    def to_json(self) -> dict[str, Any]:
        """The recommendation as a plain mapping."""
        return {
            "policy": self.policy,
            "max_params_b": self.max_params_b,
            "benchmarks": list(self.benchmarks),
            "admissible_count": self.admissible_count,
            "refused_count": self.refused_count,
            "groups": [g.to_json() for g in self.groups],
        }


def recommend(
    policy: str | Path,
    max_params_b: float,
    *,
    task: str = "knowledge",
    benchmark: str | None = None,
    organisation: Organisation | None = None,
    catalog: Catalog | None = None,
) -> Recommendation:
    """Rank catalog models up to ``max_params_b`` by ``benchmark`` (or the task's) under ``policy``."""
    if benchmark is None and task not in TASKS:
        raise UsageError(
            f"unknown task {task!r}", hint=f"Choose one of: {', '.join(TASKS)}; or pass --benchmark."
        )
    if max_params_b <= 0:
        raise UsageError(
            "--max-params must be positive (billions of parameters)", hint="For example --max-params 32."
        )
    cat = catalog if catalog is not None else load_catalog()
    org = organisation if organisation is not None else Organisation.load()
    source = load_policy(policy)
    wanted = (benchmark,) if benchmark else TASKS[task]
    known = sorted({b.name for e in cat.entries for b in e.benchmarks})
    if benchmark and benchmark.lower() not in {k.lower() for k in known}:
        raise UsageError(
            f"no catalog entry has a figure for benchmark {benchmark!r}",
            hint="Known benchmarks: " + ", ".join(known),
        )
    admissible_count = refused_count = 0
    rows: dict[tuple[str, str], list[Ranked]] = {}
    for entry in cat.select(max_params_b=max_params_b):
        decision = decide(Subject.assumed(entry.name, org), source, org, cat).decision
        admissible_count += decision.allowed
        refused_count += not decision.allowed
        for b in entry.benchmarks:
            if b.name.lower() in (w.lower() for w in wanted):
                rows.setdefault((b.name, b.setting), []).append(
                    Ranked(
                        entry.name,
                        entry.country,
                        entry.params_b,
                        b.value,
                        decision.allowed,
                        tuple(r.id for r in decision.reasons),
                    )
                )
    order = {w.lower(): i for i, w in enumerate(wanted)}
    groups = []
    def _rank(kv: tuple[tuple[str, str], list[Ranked]]) -> tuple[int, int, int, str]:
        # Groups holding both an admissible and a refused model answer "what does it cost": show them first.
        both = any(r.admissible for r in kv[1]) and any(not r.admissible for r in kv[1])
        return (order[kv[0][0].lower()], 0 if both else 1, -len(kv[1]), kv[0][1])

    for (name, setting), ranked in sorted(rows.items(), key=_rank):
        ranked.sort(key=lambda r: -r.value)
        refused = [r for r in ranked if not r.admissible]
        groups.append(
            Group(name, setting, tuple(r for r in ranked if r.admissible), refused[0] if refused else None)
        )
    return Recommendation(source.origin, max_params_b, wanted, tuple(groups), admissible_count, refused_count)
