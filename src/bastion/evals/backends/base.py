"""The seam between the evaluation runner and a model: a small protocol and the data it returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Generation:
    """Text a model produced, with its token count (for tokens/s)."""

    text: str
    completion_tokens: int


@dataclass(frozen=True)
class TargetInfo:
    """What was evaluated: kind, name, exact weights digest when known, and scoring capabilities."""

    kind: str  # "llama.cpp" or "openai"
    name: str
    digest: str | None  # sha256 of the weights; None when a remote server does not tell us
    loglikelihood: bool  # can score continuations by prompt log-probs
    chat: bool  # has a chat template / chat endpoint
    detail: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """Plain mapping for storage and ``--json``."""
        return asdict(self)


class Backend(Protocol):
    """What a scorer needs from a model."""

    @property
    def info(self) -> TargetInfo:
        """What is being evaluated."""
        ...

    def loglikelihoods(self, context: str, continuations: Sequence[str]) -> list[float]:
        """Summed log-probability of each continuation given ``context``."""
        ...

    def complete(self, prompt: str, *, max_tokens: int, stop: Sequence[str]) -> Generation:
        """Greedy raw-text completion of ``prompt``."""
        ...

    def chat(self, messages: Sequence[dict[str, str]], *, max_tokens: int) -> Generation:
        """Greedy chat completion (falls back to a plain transcript prompt for base models)."""
        ...

    def close(self) -> None:
        """Release the model."""
        ...


def transcript_prompt(messages: Sequence[dict[str, str]]) -> str:
    """A plain-text dialogue for base models without a chat template (e.g. Gemma 3 270M base)."""
    lines = []
    for m in messages:
        role = {"system": "System", "user": "User", "assistant": "Assistant"}.get(m["role"], m["role"])
        lines.append(f"{role}: {m['content']}")
    return "\n".join(lines) + "\nAssistant:"
